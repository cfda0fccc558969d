"""Ports held by AppCat's allocation webhook, for running both allocators side by side.

The webhook reserves a port with a Lease `tcp-port-<port>` (holder: the XListenerSet's
`namespace/name`) and writes it into an XListenerSet labelled
`appcat.vshn.io/tcpgateway: "true"`. With `respectLegacyAllocations` both count as taken,
and the XListenerSets' listeners count against their Gateway's capacity.

Both kinds can be made by anyone who may create them somewhere (a Namespaced tenant in its
own namespace), and v1.x lookups span every namespace: a Lease is believed only in the
namespace the webhook writes them to, and a listener set only on the shard Gateway its
`parentRef` names exactly, once that Gateway accepted it.
"""

from dataclasses import dataclass, field

from function import fieldpath, listeners
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

    def taken(self, start: int, end: int, namespace: str, gateway: str) -> set[int]:
        """Ports of [start, end] nobody new may take on this Gateway: the webhook's Leases
        lock a port pool-wide, its listeners the port of their own Gateway."""
        ports = set(self.leases) | self.behind(namespace, gateway)
        return {p for p in ports if start <= p <= end}


def read(lookups: dict, own: tuple[str, str] | None, lease_namespace: str) -> Legacy | None:
    """The webhook's allocations, minus this XR's own listener set; None if unresolved."""
    leases, listener_sets = (lookups.get(r.name) for r in REQUIREMENTS)
    if leases is None or listener_sets is None:
        return None
    legacy = Legacy()
    mine = f"{own[0]}/{own[1]}" if own else None
    for lease in leases:
        if fieldpath.text(lease, "metadata.namespace") != lease_namespace:
            continue  # not where the webhook writes them: anyone's Lease
        name = fieldpath.text(lease, "metadata.name") or ""
        holder = fieldpath.text(lease, "spec.holderIdentity")
        port = name.removeprefix("tcp-port-")
        if port.isdigit() and holder != mine:
            legacy.leases[int(port)] = holder or ""
    for obj in listener_sets:
        found = listeners.parse(obj)
        if found is None or (own is not None and (found.namespace, found.name) == own):
            continue
        group, kind, namespace, name = found.parent
        if (group, kind) != (listeners.GATEWAY_GROUP, "Gateway") or listeners.accepted(
            obj
        ) is not True:
            continue  # a Gateway that never took it carries none of its listeners
        legacy.listeners.setdefault((namespace, name), set()).update(found.ports)
    return legacy
