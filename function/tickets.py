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

A ticket is a lease: `spec.leaseDurationSeconds` is its time to live, and its holder
renews `spec.renewTime` while it waits, once half of it has passed (not on every
reconcile: a waiting XR's ticket stays the same object between renewals). A ticket not
renewed in time is expired and holds nobody up: its holder is paused, fails in a later
step, or was deleted without garbage collection. The place in line stays the ticket's
creation time, so a holder that comes back takes its old place once it renews.
"""

import datetime
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from function import fieldpath
from function.claims import elsewhere, lease_of
from function.names import digest, fit

# All `parse` reads of a ticket, as a Lease or an Object wrapping one.
FIELDS = (
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.creationTimestamp",
    "spec.holderIdentity",
    "spec.renewTime",
    "spec.leaseDurationSeconds",
    "spec.forProvider.manifest.kind",
    "spec.forProvider.manifest.spec.holderIdentity",
    "spec.forProvider.manifest.spec.renewTime",
    "spec.forProvider.manifest.spec.leaseDurationSeconds",
)
DEFAULT_TTL = 900  # seconds: a ticket's life when it states none (written before it could)
MAX_TTL = 86400  # the longest life a ticket may claim, whatever it says
# A renewTime this far ahead of the reader's clock is clock skew between replicas; further
# ahead it is no time this function wrote, and the ticket counts as expired.
SKEW = datetime.timedelta(seconds=60)


def ticket_name(pool: str, identity: str) -> str:
    return fit(f"tcp-{pool}-wait-{digest(identity, 10)}")


def parse_time(value: object) -> datetime.datetime | None:
    """An RFC 3339 timestamp (a Time or MicroTime) as an aware datetime; None if it is not
    one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def micro_time(instant: datetime.datetime) -> str:
    """A Kubernetes MicroTime, as the API server writes it back (so a kept renewTime is the
    same text)."""
    return instant.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_duration(value: object) -> int | None:
    """`spec.leaseDurationSeconds` as whole seconds (a Struct number is a float), capped at
    MAX_TTL; None if it is not a positive whole number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if value != int(value) or value < 1:
        return None
    return min(int(value), MAX_TTL)


@dataclass(frozen=True, order=True)
class Ticket:
    created: str  # RFC 3339 from the API server: sorts as text
    name: str
    holder: str
    # Renewed last (else created) and its time to live: when it expires. Not its place.
    renewed: datetime.datetime | None = field(default=None, compare=False)
    ttl: int = field(default=DEFAULT_TTL, compare=False)

    def live(self, now: datetime.datetime) -> bool:
        """Renewed within its time to live (and not from a time ahead of ours)."""
        return self.renewed is not None and _within(now - self.renewed, self.ttl)


def parse(obj: object) -> Ticket | None:
    """A ticket from a Lease or an Object wrapping one; None if it names no holder."""
    lease = lease_of(obj)
    holder = fieldpath.get(lease, "spec.holderIdentity", None) if lease else None
    if not isinstance(holder, str) or not holder:
        return None
    created = fieldpath.get(obj, "metadata.creationTimestamp", None)
    name = fieldpath.get(obj, "metadata.name", None)
    renewed = parse_time(fieldpath.get(lease, "spec.renewTime", None)) or parse_time(created)
    ttl = lease_duration(fieldpath.get(lease, "spec.leaseDurationSeconds", None))
    return Ticket(
        created=created if isinstance(created, str) else "",
        name=name if isinstance(name, str) else "",
        holder=holder,
        renewed=renewed,
        ttl=DEFAULT_TTL if ttl is None else ttl,
    )


def line(
    objects: Iterable[object], namespace: str, now: datetime.datetime | None = None
) -> list[Ticket]:
    """The pool's live tickets at `now`, oldest first; one per holder (its oldest). Without
    a clock (an in-memory plan) every ticket counts."""
    found: dict[str, Ticket] = {}
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("kind") not in ("Lease", "Object"):
            continue
        if elsewhere(obj, namespace):
            continue
        ticket = parse(obj)
        if ticket is None or (now is not None and not ticket.live(now)):
            continue
        if ticket.holder not in found or ticket < found[ticket.holder]:
            found[ticket.holder] = ticket
    return sorted(found.values())


def renew_time(lease: dict | None, now: datetime.datetime, ttl: int) -> str:
    """The renewTime the holder writes on its ticket: the one it has while less than half of
    its life has passed (the ticket stays the same object), else now."""
    previous = fieldpath.get(lease, "spec.renewTime", None) if lease else None
    renewed = parse_time(previous)
    kept_ttl = lease_duration(
        fieldpath.get(lease, "spec.leaseDurationSeconds", None) if lease else None
    )
    due = renewed is None or kept_ttl != ttl or not _within(now - renewed, ttl / 2)
    return micro_time(now) if due else previous


def _within(age: datetime.timedelta, seconds: float) -> bool:
    """An age (now - renewTime) below `seconds`, and not from further ahead than SKEW.
    Differences, not sums: a renewTime near year 1 or 9999 must not overflow."""
    return -SKEW <= age < datetime.timedelta(seconds=seconds)
