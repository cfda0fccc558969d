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
  in reserve, and the rest, oldest count first.
* A recount reads the shard's claims and the listener sets Namespaced XRs placed on it
  (they hold no claim). When the budget has room left, the shard counted longest ago is
  audited: all its listener sets are read, and its listener drift is found anew; the
  others keep the drift of their last audit.
* A shard outside the window never accepts tenants: its count may be behind. Its free
  slots count towards the headroom only when they were counted while it already accepted
  nobody (`free` on its Gateway), so a tenant that read an older "accepting" could not
  have taken one since. Deletions only ever make a carried count conservative.
* A shard is removed only right after a recount that found it empty, with its Gateway
  reporting no attached listener set.

Plain data only: the pool step (function/pool.py) reads and writes the Kubernetes objects.
"""

import datetime
from dataclasses import dataclass

from function import fieldpath, labels

FULL = "Full"
WINDOW = "Window"

# What one tenant slot adds to the pool step's request when its shard is recounted: its
# claim (a Lease, ~1 KiB; ~2.8 KiB as a provider-kubernetes Object with the provider's copy
# in its status) or, for a Namespaced XR, its listener set (~2.2 KiB with status and managed
# fields), rounded up. The audited shard's listener sets are read too (LISTENER_SET_BYTES).
SLOT_BYTES = {False: 2_400, True: 3_000}  # by wrapped
LISTENER_SET_BYTES = 2_400

# On a shard Gateway, written by the pool step after a recount made while the shard already
# accepted no tenant: its free slots then, a lower bound until its next recount.
FREE = labels.FREE


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
    missing: bool = False  # recorded in the pool's status, its Gateway not observed

    @property
    def cost(self) -> int:
        """Tenant objects a recount reads: as many as it counted, a full shard if unknown."""
        return self.slots if self.used is None else min(self.used, self.slots)

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
        missing=missing,
    )


def choose(shards: list[Shard], budget: int, wrapped: bool) -> Window:
    """The shards to recount: every one when the whole pool fits `budget` bytes, else a
    window in the order the module describes. The lowest accepting shard and the one
    counted longest ago are always in it, whatever the budget. The choice depends only on
    what the first call of a reconcile has (its observed Gateways and previous status), so
    it is the same in every call of the requirement loop."""
    per_slot = SLOT_BYTES[wrapped]
    # A full read takes every claim and every tenant listener set of the pool.
    whole = sum(shard.cost for shard in shards) * (per_slot + LISTENER_SET_BYTES)
    if whole <= budget:
        return Window(FULL, frozenset(shard.index for shard in shards), None, whole)
    by_index = sorted(shards, key=lambda shard: shard.index)
    never = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    oldest = sorted(by_index, key=lambda shard: (shard.counted or never, shard.index))
    accepting = [shard for shard in by_index if shard.accepting]
    forced = [*accepting[:1], oldest[0]]
    chosen = {shard.index for shard in forced}
    spent = sum(shard.cost * per_slot for shard in by_index if shard.index in chosen)
    trailing = []
    for shard in reversed(by_index):
        if not shard.empty:
            break
        trailing.append(shard)
    order = [
        *trailing,
        *(shard for shard in by_index if shard.missing),
        *accepting,
        *(shard for shard in by_index if shard.changed),
        *(shard for shard in by_index if shard.free > 0),
        *oldest,
    ]
    for shard in order:
        cost = shard.cost * per_slot
        if shard.index in chosen or (cost and spent + cost > budget):
            continue
        chosen.add(shard.index)
        spent += cost
    # The audit: the shard counted longest ago has every listener set read too (its
    # drift), when the budget has room for them after the counts.
    audit = oldest[0]
    if spent + audit.cost * LISTENER_SET_BYTES <= budget:
        spent += audit.cost * LISTENER_SET_BYTES
        return Window(WINDOW, frozenset(chosen), audit.index, spent)
    return Window(WINDOW, frozenset(chosen), None, spent)


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
    per_slot = SLOT_BYTES[wrapped]
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


def _whole(value: object) -> int | None:
    """A count as written by the pool step (a string annotation) or as a protobuf number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return int(value) if value.isdigit() else None
    if isinstance(value, int | float) and value >= 0 and value == int(value):
        return int(value)
    return None
