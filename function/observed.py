"""Reading observed composed objects, and returning them unchanged."""

from function.builders.object import unwrap

SERVER_FIELDS = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "ownerReferences",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "finalizers",
        "selfLink",
        "generateName",
    }
)


def keep(obj: dict) -> dict:
    """An observed object as a desired one: what we would have written, not what the server
    added (status, UID, owner references...)."""
    kept = {k: v for k, v in obj.items() if k != "status"}
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        kept["metadata"] = {k: v for k, v in metadata.items() if k not in SERVER_FIELDS}
    return kept


def live(observed: dict | None, wrapped: bool) -> dict | None:
    """The object as it is in the cluster: a wrapped one through its Object's status."""
    if not isinstance(observed, dict):
        return None
    if wrapped and observed.get("kind") == "Object":
        return unwrap(observed)
    return observed
