"""Tickets: the queue of tenants waiting for a port (DESIGN §4, rule 4).

Uncoordinated choice cannot bound how often a new tenant loses a race: tenants reconciled
from one view pick ports by hash, and a loser may lose again. So a tenant without a port
also composes a ticket, a Lease `tcp-<pool>-wait-<uid digest>` (wrapped: an Object of that
name), next to its first claim. Every tenant reads the pool's tickets; the waiters (ticket
holders with no claim in view) line up oldest ticket first, and the waiter in place r takes
the r-th free slot of the candidate shards, so waiters that read one view never pick the
same port. Tenants without a visible ticket yet choose among the slots after the waiters'.
The claim stays the lock: a ticket only orders the choice, so a stale or missing ticket
costs at most a retry, never a port. The ticket goes with the first reconcile that finds
the claim held (Crossplane deletes what the step no longer returns).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from function import fieldpath
from function.claims import elsewhere, lease_of
from function.names import digest, fit

KEY = "tcp-ticket"
# All `parse` reads of a ticket, as a Lease or an Object wrapping one.
FIELDS = (
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.creationTimestamp",
    "spec.holderIdentity",
    "spec.forProvider.manifest.kind",
    "spec.forProvider.manifest.spec.holderIdentity",
)


def ticket_name(pool: str, identity: str) -> str:
    return fit(f"tcp-{pool}-wait-{digest(identity, 10)}")


@dataclass(frozen=True, order=True)
class Ticket:
    created: str  # RFC 3339 from the API server: sorts as text
    name: str
    holder: str


def parse(obj: object) -> Ticket | None:
    """A ticket from a Lease or an Object wrapping one; None if it names no holder."""
    lease = lease_of(obj)
    holder = fieldpath.get(lease, "spec.holderIdentity", None) if lease else None
    if not isinstance(holder, str) or not holder:
        return None
    created = fieldpath.get(obj, "metadata.creationTimestamp", None)
    name = fieldpath.get(obj, "metadata.name", None)
    return Ticket(
        created=created if isinstance(created, str) else "",
        name=name if isinstance(name, str) else "",
        holder=holder,
    )


def line(objects: Iterable[object], namespace: str) -> list[Ticket]:
    """The pool's tickets, oldest first; one per holder (its oldest)."""
    found: dict[str, Ticket] = {}
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("kind") not in ("Lease", "Object"):
            continue
        if elsewhere(obj, namespace):
            continue
        ticket = parse(obj)
        if ticket is not None and (ticket.holder not in found or ticket < found[ticket.holder]):
            found[ticket.holder] = ticket
    return sorted(found.values())
