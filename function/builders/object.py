"""provider-kubernetes Object: how Crossplane v1.x composes namespaced objects.

The Object carries the wrapped object's name and labels, so the Object's cluster-wide name is
the lock for the object inside it (the provider does not check who owns what it wraps).
"""

from function import fieldpath
from function.claims import OBJECT_API


def wrap(manifest: dict, *, provider_config: str, name: str | None = None) -> dict:
    """`name` is the Object's (default: the wrapped object's); keep it one-to-one with the
    wrapped object."""
    inner_meta = manifest["metadata"]
    meta: dict = {"name": name or inner_meta["name"]}
    if inner_meta.get("labels"):
        meta["labels"] = dict(inner_meta["labels"])
    if inner_meta.get("annotations"):
        meta["annotations"] = dict(inner_meta["annotations"])
    return {
        "apiVersion": OBJECT_API,
        "kind": "Object",
        "metadata": meta,
        "spec": {
            "forProvider": {"manifest": manifest},
            "providerConfigRef": {"name": provider_config},
        },
    }


def unwrap(obj: dict) -> dict | None:
    """What the provider last saw in the cluster for this Object, status included."""
    manifest = fieldpath.get(obj, "status.atProvider.manifest", None)
    return manifest if isinstance(manifest, dict) else None
