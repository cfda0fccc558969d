"""Tenant listener sets as the pool's state: which shard a labelled ListenerSet really
listens on, and on which ports.

A ListenerSet lives in a tenant's namespace, so its labels, its spec and its name are the
tenant's to choose. Only what the Gateway acts on counts: a listener set fills slots of a
shard only when its `parentRef` is exactly that shard's Gateway (group, kind, namespace and
name, with Gateway API's defaults) and its Gateway has not refused it.
"""

from dataclasses import dataclass

from function import fieldpath, labels

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class TenantListeners:
    """One labelled ListenerSet as the Gateway sees it."""

    namespace: str
    name: str
    parent: tuple[str, str, str, str]  # (group, kind, namespace, name), defaults applied
    ports: frozenset[int]
    refused: bool  # its parent reports it not accepted (for its current spec)
    accepted: bool | None = None  # what its parent reports of its current spec
    role: str | None = None  # its label tcp.fn.servala.io/role (the tenant's to set)

    def on(self, gateway_namespace: str, gateway: str) -> bool:
        """Whether it attaches to this Gateway (refused or not)."""
        return self.parent == gateway_parent(gateway_namespace, gateway)


def gateway_parent(namespace: str, name: str) -> tuple[str, str, str, str]:
    """A `parentRef` to this Gateway, as `TenantListeners.parent` reads one."""
    return (GATEWAY_GROUP, "Gateway", namespace, name)


def parse(obj: object) -> TenantListeners | None:
    """Read a ListenerSet (or XListenerSet); None if it is not one."""
    if not isinstance(obj, dict) or obj.get("kind") not in ("ListenerSet", "XListenerSet"):
        return None
    namespace = fieldpath.text(obj, "metadata.namespace") or ""
    ref = fieldpath.mapping(obj, "spec.parentRef")
    parent = (
        _text(ref.get("group"), GATEWAY_GROUP),
        _text(ref.get("kind"), "Gateway"),
        # Gateway API: an omitted namespace is the ListenerSet's own.
        _text(ref.get("namespace"), namespace),
        _text(ref.get("name"), ""),
    )
    ports = set()
    for listener in fieldpath.items(obj, "spec.listeners"):
        port = listener.get("port") if isinstance(listener, dict) else None
        number = isinstance(port, int | float) and not isinstance(port, bool)
        if number and 1 <= port <= 65535 and port == int(port):
            ports.add(int(port))
    reported = accepted(obj)
    return TenantListeners(
        namespace=namespace,
        name=fieldpath.text(obj, "metadata.name") or "",
        parent=parent,
        ports=frozenset(ports),
        refused=reported is False,
        accepted=reported,
        role=_label(obj, labels.ROLE),
    )


def _label(obj: dict, key: str) -> str | None:
    value = fieldpath.mapping(obj, "metadata.labels").get(key)
    return value if isinstance(value, str) else None


def _text(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


def accepted(obj: dict) -> bool | None:
    """What its parent's `Accepted` condition says of the spec it has now; None with no
    report (or only one about an older generation, which says nothing about this one)."""
    generation = fieldpath.get(obj, "metadata.generation", None)
    for condition in fieldpath.items(obj, "status.conditions"):
        if isinstance(condition, dict) and condition.get("type") == "Accepted":
            seen = condition.get("observedGeneration")
            if seen is not None and generation is not None and seen != generation:
                return None
            return {"True": True, "False": False}.get(condition.get("status"))
    return None
