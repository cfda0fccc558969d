"""Readiness of composed objects, read from what the cluster reports (DESIGN §5)."""

from function import fieldpath, listeners


def _status(obj: dict | None) -> dict:
    return fieldpath.mapping(obj, "status")


def conditions(holder: dict) -> dict[str, str]:
    """type -> status of a `conditions` list (of an object's status, a parent, a listener)."""
    items = holder.get("conditions") if isinstance(holder, dict) else None
    return {
        c.get("type"): c.get("status")
        for c in (items if isinstance(items, list) else [])
        if isinstance(c, dict)
    }


def all_true(holder: dict, *kinds: str) -> bool:
    found = conditions(holder)
    return all(found.get(kind) == "True" for kind in kinds)


def listener_set_ready(obj: dict | None) -> bool:
    return all_true(_status(obj), "Accepted", "Programmed")


def route_ready(obj: dict | None) -> bool:
    parents = _status(obj).get("parents")
    if not isinstance(parents, list) or not parents:
        return False
    return all(all_true(p, "Accepted", "ResolvedRefs") for p in parents)


def listener_conditions(obj: dict | None, listener: str) -> dict[str, str]:
    listeners = _status(obj).get("listeners")
    for item in listeners if isinstance(listeners, list) else []:
        if isinstance(item, dict) and item.get("name") == listener:
            return conditions(item)
    return {}


def listener_port(obj: dict | None) -> int | None:
    listeners = fieldpath.items(obj, "spec.listeners")
    if listeners and isinstance(listeners[0], dict):
        port = listeners[0].get("port")
        if isinstance(port, int | float) and not isinstance(port, bool) and port == int(port):
            return int(port)
    return None


def listener_refused(obj: dict | None, listener: str, port: int) -> bool:
    """The Gateway reports the listener, as it is now on `port`, as Conflicted: an older
    listener has that port. A report about an earlier spec (another port, an older
    generation) says nothing about this one."""
    return _current_condition(obj, listener, port, "Conflicted") == "True"


def listener_accepted(obj: dict | None, listener: str, port: int) -> bool:
    """The Gateway accepts the listener set and the listener, as it is now on `port`, and
    reports no conflict: the port is the tenant's to publish. Before the Gateway reports
    (no status, or the CRD's default `Accepted: Unknown, reason Pending`), or while its
    report is about an earlier spec, it is not."""
    return (
        obj is not None
        and listener_port(obj) == port
        and listeners.accepted(obj) is True
        and _current_condition(obj, listener, port, "Accepted") != "False"
        and _current_condition(obj, listener, port, "Conflicted") != "True"
    )


def not_allowed(obj: dict | None) -> bool:
    """The Gateway refuses the listener set for its namespace (`allowedListeners`), in a
    report about its spec as it is now."""
    if obj is None or listeners.accepted(obj) is not False:
        return False
    found = [c for c in fieldpath.items(obj, "status.conditions") if isinstance(c, dict)]
    return any(c.get("type") == "Accepted" and c.get("reason") == "NotAllowed" for c in found)


def listener_programmed(obj: dict | None, listener: str, port: int) -> bool:
    """The Gateway programs the listener, as it is now on `port`, without a conflict: no
    older listener has that port (any more)."""
    return (
        _current_condition(obj, listener, port, "Programmed") == "True"
        and _current_condition(obj, listener, port, "Conflicted") != "True"
    )


def _current_condition(obj: dict | None, listener: str, port: int, kind: str) -> object:
    """The status of condition `kind` of the listener, if reported for its spec as it is
    now (on `port`, this generation); None otherwise."""
    if listener_port(obj) != port:
        return None
    generation = fieldpath.get(obj, "metadata.generation", None)
    listeners = _status(obj).get("listeners")
    for item in listeners if isinstance(listeners, list) else []:
        if not isinstance(item, dict) or item.get("name") != listener:
            continue
        found = item.get("conditions")
        for condition in found if isinstance(found, list) else []:
            if not isinstance(condition, dict) or condition.get("type") != kind:
                continue
            seen = condition.get("observedGeneration")
            current = seen is None or generation is None or seen == generation
            return condition.get("status") if current else None
    return None
