"""Plain-dict helpers shared by the simulator: copying, paths, selectors, Struct conversion.

Kubernetes objects are plain ``dict`` trees of JSON values throughout the simulator. The
API server stores them copy-on-write (an object dict is never mutated once stored), so
readers may hold on to stored dicts without copying, and writers copy with
:func:`fast_copy`, which is several times cheaper than ``copy.deepcopy`` for JSON trees.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from google.protobuf import struct_pb2

Path = tuple[str, ...]
Obj = dict[str, Any]

# Crossplane's metadata keys (crossplane-runtime xcrd / composite packages).
ANNOTATION_RESOURCE_NAME = "crossplane.io/composition-resource-name"
LABEL_COMPOSITE = "crossplane.io/composite"
LABEL_CLAIM_NAME = "crossplane.io/claim-name"
LABEL_CLAIM_NAMESPACE = "crossplane.io/claim-namespace"
# Implied on every Namespace since Kubernetes 1.21 (NamespaceDefaultLabelName).
LABEL_NAMESPACE_NAME = "kubernetes.io/metadata.name"


def fast_copy(o: Any) -> Any:
    """Deep-copy a JSON tree (dicts, lists, scalars) without ``copy.deepcopy``'s overhead."""
    t = type(o)
    if t is dict:
        return {k: fast_copy(v) for k, v in o.items()}
    if t is list:
        return [fast_copy(v) for v in o]
    return o


def group_of(api_version: str) -> str:
    """The API group of an apiVersion: ``"v1"`` -> ``""``, ``"a.b/v1"`` -> ``"a.b"``."""
    return api_version.rpartition("/")[0]


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``obj.metadata`` or an empty mapping."""
    return obj.get("metadata") or {}


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("annotations") or {}


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with ``controller: true`` (metav1.GetControllerOf), if any."""
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def get_path(d: Mapping[str, Any], path: Path, default: Any = None) -> Any:
    cur: Any = d
    for k in path:
        if type(cur) is not dict or k not in cur:
            return default
        cur = cur[k]
    return cur


def leaf_paths(d: Mapping[str, Any], prefix: Path = ()) -> Iterator[Path]:
    """Paths to every leaf of a dict tree. Lists are leaves (atomic); empty maps are
    skipped: like in server-side apply they assert nothing, so nobody owns them."""
    for k, v in d.items():
        p = (*prefix, k)
        if type(v) is dict:
            yield from leaf_paths(v, p)
        else:
            yield p


def set_path(d: dict[str, Any], path: Path, value: Any) -> None:
    """Set a leaf, creating (or replacing non-dict) intermediate maps."""
    cur = d
    for k in path[:-1]:
        nxt = cur.get(k)
        if type(nxt) is not dict:
            nxt = {}
            cur[k] = nxt
        cur = nxt
    last = path[-1]
    # An empty map in an apply asserts nothing about the map's content: never wipe
    # fields someone else put under it (server-side apply keeps them).
    if type(value) is dict and not value and type(cur.get(last)) is dict:
        return
    cur[last] = value


def delete_path(d: dict[str, Any], path: Path) -> None:
    """Remove a leaf and prune maps it leaves empty."""
    stack: list[tuple[dict[str, Any], str]] = []
    cur: Any = d
    for k in path[:-1]:
        if type(cur) is not dict or k not in cur:
            return
        stack.append((cur, k))
        cur = cur[k]
    if type(cur) is not dict or path[-1] not in cur:
        return
    del cur[path[-1]]
    while stack and not cur:
        parent, k = stack.pop()
        del parent[k]
        cur = parent


def match_label_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: matchLabels AND every matchExpression.

    An empty selector matches everything (as in Kubernetes); callers treat a missing
    selector specially where the API says so.
    """
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def dict_to_struct(d: Mapping[str, Any]) -> struct_pb2.Struct:
    """JSON tree -> protobuf Struct. Numbers become doubles, exactly as on the wire."""
    s = struct_pb2.Struct()
    s.update(d)
    return s


def struct_to_dict(s: struct_pb2.Struct, *, integral_floats_to_int: bool = True) -> Obj:
    """protobuf Struct -> JSON tree.

    With ``integral_floats_to_int`` (the default) ``10000.0`` becomes ``10000``: this is
    what reaches the API server when Crossplane turns a desired Struct into JSON (Go's
    encoding/json prints float64 10000 as ``10000`` and the CRD's integer field stores
    an int). Pass ``False`` to see exactly what a function saw.
    """
    return {k: _from_value(v, integral_floats_to_int) for k, v in s.fields.items()}


def _from_value(v: struct_pb2.Value, to_int: bool) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return {k: _from_value(x, to_int) for k, x in v.struct_value.fields.items()}
    if kind == "list_value":
        return [_from_value(x, to_int) for x in v.list_value.values]
    if kind == "number_value":
        n = v.number_value
        return int(n) if to_int and n.is_integer() else n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None
