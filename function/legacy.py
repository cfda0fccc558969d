"""Ports held by AppCat's allocation webhook, for running both allocators side by side.

The webhook reserves a port with a Lease `tcp-port-<port>` (holder: the XListenerSet's
`namespace/name`) and writes it into an XListenerSet labelled
`appcat.vshn.io/tcpgateway: "true"`. With `respectLegacyAllocations` both count as taken,
and the XListenerSets' listeners count against their Gateway's capacity.
"""

from dataclasses import dataclass, field

from function import fieldpath
from function.requirement import Requirement

LEASES = Requirement(
    "tcp-legacy-leases",
    "coordination.k8s.io/v1",
    "Lease",
    {"app.kubernetes.io/managed-by": "tcpgateway-port-allocator"},
)
LISTENER_SETS = Requirement(
    "tcp-legacy-listenersets",
    "gateway.networking.x-k8s.io/v1alpha1",
    "XListenerSet",
    {"appcat.vshn.io/tcpgateway": "true"},
)
REQUIREMENTS = (LEASES, LISTENER_SETS)


@dataclass
class Legacy:
    listeners: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # gateway -> ports
    leases: dict[int, str] = field(default_factory=dict)  # port -> holder

    def behind(self, namespace: str, gateway: str) -> set[int]:
        """Listener ports behind one Gateway: they count against its capacity."""
        return self.listeners.get((namespace, gateway), set())

    def taken(self, start: int, end: int) -> set[int]:
        ports = {p for ports in self.listeners.values() for p in ports}
        ports.update(self.leases)
        return {p for p in ports if start <= p <= end}


def read(lookups: dict, own: tuple[str, str] | None) -> Legacy | None:
    """The webhook's allocations, minus this XR's own listener set; None if unresolved."""
    leases, listener_sets = (lookups.get(r.name) for r in REQUIREMENTS)
    if leases is None or listener_sets is None:
        return None
    legacy = Legacy()
    mine = f"{own[0]}/{own[1]}" if own else None
    for lease in leases:
        name = fieldpath.text(lease, "metadata.name") or ""
        holder = fieldpath.text(lease, "spec.holderIdentity")
        port = name.removeprefix("tcp-port-")
        if port.isdigit() and holder != mine:
            legacy.leases[int(port)] = holder or ""
    for obj in listener_sets:
        namespace = fieldpath.text(obj, "metadata.namespace") or ""
        if own is not None and (namespace, fieldpath.text(obj, "metadata.name")) == own:
            continue
        parent = fieldpath.mapping(obj, "spec.parentRef")
        gateway = (parent.get("namespace") or namespace, parent.get("name"))
        for listener in fieldpath.items(obj, "spec.listeners"):
            port = listener.get("port") if isinstance(listener, dict) else None
            if isinstance(port, int | float) and not isinstance(port, bool) and port >= 1:
                legacy.listeners.setdefault(gateway, set()).add(int(port))
    return legacy
