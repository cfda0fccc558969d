"""Which shards the pool step recounts in one reconcile, and what it carries for the rest.

A pool whose claims and tenant listener sets fit the read budget is read whole every
reconcile: the full view. A bigger pool is recounted a window of shards at a time, so that
what the lookups add to a request grows with the window, not with the pool:

* A shard's facts are carried on its Gateway from its last recount: `used`, and `free` (only
  where it is a lower bound, see below). Its status entry says when that was (`countedAt`)
  and how many listener sets the Gateway reported then (`attachedAtCount`).
* Each reconcile recounts the lowest accepting shard and the shard counted longest ago
  (so every shard is recounted within as many reconciles as the pool has shards, and much
  sooner when the budget holds several), then, within the budget and in this order: the
  trailing shards that carry nothing (they cost nothing to read, and only a recounted
  shard is ever removed), shards whose Gateway is missing, the other accepting shards
  (tenants land there), shards whose Gateway reports another number of attached listener
  sets than at their last recount (a tenant came or went: `status.attachedListenerSets`
  is the Gateway controller's count, a cheap cross-check), shards counted with free slots
  in reserve (while the accepting ones have less room than the headroom), the audit
  below, and the rest, oldest count first.
* A recount reads the shard's claims and the listener sets Namespaced XRs placed on it
  (they hold no claim). Before the rest of the rotation, and when the budget has room, the
  shard audited longest ago is audited: all its listener sets are read, and its listener
  drift is found anew (`auditedAt`); the others keep the drift of their last audit.
* The tickets are read first, in a call of their own: what they take of the budget (a
  burst of waiting tenants) the window may not. When they take it all, only the lowest
  accepting shard is recounted.
* A shard outside the window never accepts tenants: its count may be behind. Its free
  slots count towards the headroom only when they were counted while it already accepted
  nobody (`free` on its Gateway), so a tenant that read an older "accepting" could not
  have taken one since. Deletions only ever make a carried count conservative.
* A shard is removed only right after a recount that found it empty, with its Gateway
  reporting no attached listener set.
* A claim locks its port pool-wide, whatever shard it names: an adopted port may lie in
  another shard's slice. A recount records the ports its shard's claims hold outside its
  slice (`portsOutside` in the status); while that shard is carried they stay held, so a
  recounted shard whose slice has one keeps it off its free ports (`held-elsewhere`) as a
  full read would. Where a carried shard has no record (the status was lost, or written
  before it had one), a recounted shard keeps what its `held-elsewhere` said.

Plain data only: the pool step (function/pool.py) reads and writes the Kubernetes objects.
"""

import datetime
from dataclasses import dataclass

from function import fieldpath, labels
from function.shards import parse_ports

FULL = "Full"
WINDOW = "Window"

# What each object adds to a request, as Crossplane sends it (measured with managed fields
# and status, `bench/RESULTS.md`), rounded up: a claim is a Lease, or as a
# provider-kubernetes Object it carries the provider's copy in its status; a tenant listener
# set carries its Gateway's report; a ticket is a Lease or an Object like a claim.
CLAIM_BYTES = {False: 1_200, True: 3_200}  # by wrapped
LISTENER_SET_BYTES = 5_000
TICKET_BYTES = {False: 1_100, True: 2_300}

# On a shard Gateway, written by the pool step after a recount made while the shard already
# accepted no tenant: its free slots then, a lower bound until its next recount.
FREE = labels.FREE
# In a shard's status entry: the ports its claims held outside its slice at the last count.
OUTSIDE = "portsOutside"


@dataclass(frozen=True)
class Shard:
    """One existing shard as the pool step last wrote it and as the cluster reports it."""

    index: int
    used: int | None  # the `used` annotation: claims and listeners at the last recount
    free: int  # free slots the pool may count on without recounting (0 unless recorded)
    accepting: bool  # labelled accepting when the pool step last wrote it
    slots: int  # tenant slots: what a full shard costs to read
    attached: int | None  # status.attachedListenerSets now (None: not reported)
    attached_at_count: int | None  # ... as recorded at the last recount
    counted: datetime.datetime | None  # the last recount (None: never, or status lost)
    placed: int | None = None  # Namespaced XRs' listener sets at the last count
    audited: datetime.datetime | None = None  # the last audit of all its listener sets
    missing: bool = False  # recorded in the pool's status, its Gateway not observed
    # Ports its claims held outside its slice at the last count (adopted ones): they keep
    # tenants off those ports of other shards while it is carried. None: not recorded.
    outside: frozenset[int] | None = None

    @property
    def tenants(self) -> int:
        """Tenants a recount finds: as many as it counted, a full shard if unknown."""
        return self.slots if self.used is None else min(self.used, self.slots)

    def count_bytes(self, wrapped: bool) -> int:
        """What a recount reads: its claims and the listener sets Namespaced XRs placed
        (all of them listener sets where the last count is unknown)."""
        placed = self.tenants if self.placed is None else min(self.placed, self.tenants)
        return (self.tenants - placed) * CLAIM_BYTES[wrapped] + placed * LISTENER_SET_BYTES

    def audit_bytes(self) -> int:
        """What an audit reads beyond the count: every other listener set on it."""
        placed = self.tenants if self.placed is None else min(self.placed, self.tenants)
        return (self.tenants - placed) * LISTENER_SET_BYTES

    @property
    def room(self) -> int:
        """Free slots by its last count (an accepting shard's own count may be behind)."""
        return max(0, self.slots - self.tenants)

    @property
    def changed(self) -> bool:
        """The Gateway reports another number of attached listener sets than at the last
        recount: a tenant listener came or went since."""
        return self.attached is not None and self.attached != self.attached_at_count

    @property
    def empty(self) -> bool:
        return self.used == 0 and not self.attached


@dataclass(frozen=True)
class Window:
    mode: str  # FULL or WINDOW
    shards: frozenset[int]  # recounted in this reconcile
    audit: int | None  # the one whose every listener set is read too (WINDOW, budget allowing)
    bytes: int  # the estimated size of what their lookups return

    def recounts(self, index: int) -> bool:
        return self.mode == FULL or index in self.shards


def read_shard(
    index: int,
    written: dict,
    live: dict | None,
    previous: dict | None,
    slots: int,
    *,
    missing: bool = False,
) -> Shard:
    """A shard from its Gateway as the pool step wrote it (`written`), the Gateway as the
    cluster has it (`live`) and its entry in the pool's previous status (`previous`)."""
    meta_labels = fieldpath.mapping(written, "metadata.labels")
    annotations = fieldpath.mapping(written, "metadata.annotations")
    accepting = meta_labels.get(labels.ACCEPTING) == "true"
    free = _whole(annotations.get(FREE))
    used = _whole(annotations.get(labels.USED))
    room = max(0, slots - (used or 0))  # a lowered capacity leaves less
    return Shard(
        index=index,
        used=used,
        free=0 if accepting or free is None else min(free, room),
        accepting=accepting,
        slots=slots,
        attached=_whole(fieldpath.get(live or {}, "status.attachedListenerSets", None)),
        attached_at_count=_whole((previous or {}).get("attachedAtCount")),
        counted=_time((previous or {}).get("countedAt")),
        placed=_whole((previous or {}).get("placed")),
        audited=audited(previous),
        outside=_ports((previous or {}).get(OUTSIDE)),
        missing=missing,
    )


def audited(previous: dict | None) -> datetime.datetime | None:
    """When the shard's listener sets were last all read, by its previous status entry."""
    return _time((previous or {}).get("auditedAt"))


def full_view(shards: list[Shard], budget: int, wrapped: bool) -> bool:
    """Whether the whole pool fits the budget: every claim and every tenant listener set.
    Decided on the observed Gateways and the previous status alone, before any lookup."""
    claims = sum(shard.tenants - min(shard.placed or 0, shard.tenants) for shard in shards)
    listener_sets = sum(shard.tenants for shard in shards)
    return claims * CLAIM_BYTES[wrapped] + listener_sets * LISTENER_SET_BYTES <= budget


def choose(
    shards: list[Shard], budget: int, wrapped: bool, *, headroom: int, tickets: int = 0
) -> Window:
    """The shards to recount in a pool beyond the budget, in the order the module
    describes, within what the budget leaves after the `tickets` read. The lowest accepting
    shard is always in it; the shard counted longest ago too, unless the tickets alone
    take the budget (a burst: rotation waits). The choice depends only on the observed
    Gateways, the previous status and the tickets, so it is the same in every later call
    of the requirement loop."""
    budget -= tickets * TICKET_BYTES[wrapped]
    by_index = sorted(shards, key=lambda shard: shard.index)
    never = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    oldest = sorted(by_index, key=lambda shard: (shard.counted or never, shard.index))
    accepting = [shard for shard in by_index if shard.accepting]
    forced = [*accepting[:1], *(oldest[:1] if budget > 0 else ())]
    chosen = {shard.index for shard in forced}
    spent = sum(shard.count_bytes(wrapped) for shard in by_index if shard.index in chosen)
    trailing = []
    for shard in reversed(by_index):
        if not shard.empty:
            break
        trailing.append(shard)
    # Shards in reserve are recounted (and so may open) only while the accepting ones
    # have less room than the headroom by their last counts.
    short = sum(shard.room for shard in accepting) < headroom
    urgent = [
        *trailing,
        *(shard for shard in by_index if shard.missing),
        *accepting,
        *(shard for shard in by_index if shard.changed),
        *(shard for shard in by_index if shard.free > 0 and short),
    ]

    def take(candidates: list[Shard]) -> None:
        nonlocal spent
        for shard in candidates:
            cost = shard.count_bytes(wrapped)
            if shard.index in chosen or (cost and spent + cost > budget):
                continue
            chosen.add(shard.index)
            spent += cost

    take(urgent)
    # The audit, before the rest of the rotation: the shard audited longest ago is counted
    # with every listener set on it (its drift), when the budget has room for them.
    audit = min(by_index, key=lambda shard: (shard.audited or never, shard.index), default=None)
    if audit is not None:
        cost = audit.audit_bytes() + (0 if audit.index in chosen else audit.count_bytes(wrapped))
        if spent + cost <= budget:
            chosen.add(audit.index)
            spent += cost
        else:
            audit = None
    take(oldest)
    return Window(WINDOW, frozenset(chosen), audit.index if audit else None, spent)


def accepting(
    window: Window,
    free: dict[int, int],
    slots: dict[int, int],
    carried: set[int],
    *,
    needed: int,
    budget: int,
    wrapped: bool,
) -> set[int]:
    """Which shards with free slots accept tenants. In a full view, every one. In a window,
    only recounted or new ones (a carried count may be behind): the lowest, then more
    until their free slots cover `needed` (the headroom and the waiting tenants), as long as
    all of them full would still fit half the budget, so that the next reconcile recounts
    every accepting shard. The others keep their free slots in reserve, recorded as a lower
    bound (nobody claims on a shard that does not accept)."""
    open_ = sorted(index for index, count in free.items() if count > 0)
    if window.mode == FULL:
        return set(open_)
    per_slot = CLAIM_BYTES[wrapped]  # what an accepting shard, filled, costs to recount
    chosen: set[int] = set()
    spent = covered = 0
    for index in open_:
        if index in carried:
            continue
        cost = slots[index] * per_slot
        if chosen and (covered >= needed or spent + cost > budget // 2):
            break
        chosen.add(index)
        spent += cost
        covered += free[index]
    return chosen


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=datetime.UTC)


def _ports(value: object) -> frozenset[int] | None:
    """A port list as the pool step writes it (`10012,10013`, or empty); None if it is
    not one: then what the shard's claims hold elsewhere is unknown."""
    if not isinstance(value, str):
        return None
    ports = parse_ports(value)
    return frozenset(ports) if len(ports) == len([p for p in value.split(",") if p]) else None


def _whole(value: object) -> int | None:
    """A count as written by the pool step (a string annotation) or as a protobuf number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return int(value) if value.isdigit() else None
    if isinstance(value, int | float) and value >= 0 and value == int(value):
        return int(value)
    return None
