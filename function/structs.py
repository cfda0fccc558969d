"""protobuf Struct -> plain Python, fast.

The SDK's struct_to_dict goes through json_format, which costs most of a request's time
once lookups return hundreds of objects. Reading the oneof directly is several times
cheaper and gives the same values (numbers stay floats, as on the wire).
"""

from collections.abc import Mapping, Sequence

from google.protobuf import struct_pb2


def to_dict(struct: struct_pb2.Struct) -> dict:
    return {key: _value(value) for key, value in struct.fields.items()}


def to_python(value: struct_pb2.Value):
    """One Struct value as plain Python."""
    return _value(value)


def _value(value: struct_pb2.Value):
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return {key: _value(v) for key, v in value.struct_value.fields.items()}
    if kind == "number_value":
        return value.number_value
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    if kind == "bool_value":
        return value.bool_value
    return None


STATUS_KEPT = ("addresses", "conditions")


def looked_up(struct: struct_pb2.Struct) -> dict:
    """A looked-up object without what no lookup reader needs: managedFields (large on a
    live cluster) and status other than addresses (a Gateway's) and conditions (whether a
    Gateway accepted a listener set: a refused one holds no port)."""
    out = {}
    for key, value in struct.fields.items():
        if key == "status":
            kept = {
                name: _value(value.struct_value.fields[name])
                for name in STATUS_KEPT
                if name in value.struct_value.fields
            }
            if kept:
                out["status"] = kept
        elif key == "metadata":
            out["metadata"] = {
                k: _value(v) for k, v in value.struct_value.fields.items() if k != "managedFields"
            }
        else:
            out[key] = _value(value)
    return out


def project(struct: struct_pb2.Struct, paths: tuple[tuple[str, ...], ...]) -> dict:
    """Only the fields at `paths` (each split on dots): a reader that needs three fields of
    each of hundreds of objects does not pay for converting them whole."""
    out: dict = {}
    for path in paths:
        fields, target = struct.fields, out
        for part in path[:-1]:
            value = fields.get(part)
            if value is None or value.WhichOneof("kind") != "struct_value":
                break
            fields, target = value.struct_value.fields, target.setdefault(part, {})
        else:
            value = fields.get(path[-1])
            if value is not None:
                target[path[-1]] = _value(value)
    return out


def set_path(struct: struct_pb2.Struct, parts: list[str], value) -> None:
    """Set a dotted path in a Struct in place, creating objects on the way (no round trip
    of the whole Struct through dicts). A field of another type on the way is an error."""
    for number, part in enumerate(parts[:-1]):
        field = struct.fields.get(part)
        if field is not None and field.WhichOneof("kind") not in (
            "struct_value",
            "null_value",
            None,
        ):
            raise TypeError(f"{'.'.join(parts[: number + 1])} is not an object")
        struct = struct.get_or_create_struct(part)
    struct[parts[-1]] = value


class Objects(Sequence):
    """Looked-up objects, each read from its Struct when it is used and not kept: a pool
    step over 10,000 claims then never holds them all as dicts at once."""

    def __init__(self, items, fields: tuple[str, ...] = ()):
        self._items = items  # repeated fnv1.Resource
        # The only fields its reader needs (dotted paths); none: every field.
        paths = tuple(tuple(f.split(".")) for f in fields)
        self._read = (lambda s: project(s, paths)) if paths else looked_up

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._read(item.resource) for item in self._items[index]]
        return self._read(self._items[index].resource)

    def __iter__(self):
        for item in self._items:
            yield self._read(item.resource)


class Resources(Mapping):
    """Earlier steps' desired resources, read only when asked for (a patch names one):
    converting them all on every call cost more than the step's own work."""

    def __init__(self, resources):
        self._resources = resources  # map<string, fnv1.Resource>

    def __getitem__(self, key: str) -> dict:
        if key not in self._resources:
            raise KeyError(key)
        return to_dict(self._resources[key].resource)

    def __iter__(self):
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)
