"""protobuf Struct -> plain Python, fast.

The SDK's struct_to_dict goes through json_format, which costs most of a request's time
once lookups return hundreds of objects. Reading the oneof directly is several times
cheaper and gives the same values (numbers stay floats, as on the wire).
"""

from google.protobuf import struct_pb2


def to_dict(struct: struct_pb2.Struct) -> dict:
    return {key: _value(value) for key, value in struct.fields.items()}


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


def looked_up(struct: struct_pb2.Struct) -> dict:
    """A looked-up object without what no lookup reader needs: managedFields (large on a
    live cluster) and status other than the Gateway's addresses."""
    out = {}
    for key, value in struct.fields.items():
        if key == "status":
            addresses = value.struct_value.fields.get("addresses")
            if addresses is not None:
                out["status"] = {"addresses": _value(addresses)}
        elif key == "metadata":
            out["metadata"] = {
                k: _value(v) for k, v in value.struct_value.fields.items() if k != "managedFields"
            }
        else:
            out[key] = _value(value)
    return out


def set_path(struct: struct_pb2.Struct, parts: list[str], value) -> None:
    """Set a dotted path in a Struct in place, creating objects on the way (no round trip
    of the whole Struct through dicts). A field of another type on the way is an error."""
    for number, part in enumerate(parts[:-1]):
        field = struct.fields.get(part)
        if field is not None and field.WhichOneof("kind") not in ("struct_value", None):
            raise TypeError(f"{'.'.join(parts[: number + 1])} is not an object")
        struct = struct.get_or_create_struct(part)
    struct[parts[-1]] = value
