"""The allocation protocol of the tenant step (DESIGN §4), as plain data in and out.

Per reconcile of a tenant XR:

1. Sticky: a claim the XR controls and holds *is* the allocation. Nothing moves it.
2. Claim first: otherwise look up the pool's accepting shards, then the claims of a few
   candidate shards, and pick a free port of the lowest shard with room, at an offset
   hashed from the XR's UID into its free ports. Only the claim (and the XR's ticket,
   rule 4) is emitted this time.
3. Use: the next reconcile observes the claim as held (rule 1) and builds the data path.
4. Lost race: a claim another XR got first never shows up as observed; we just claim again
   from a fresher view. Waiting tenants queue up (function/tickets.py): each composes a
   ticket with its first claim, and the waiters, oldest live ticket first, take the free
   slots of the candidate shards in order, so a loser does not lose again to a tenant that
   read the same view. An expired ticket (its holder stopped renewing it) holds nobody up.
5. Pool full / no shards: nothing new is emitted.
6. Partial view: while a lookup is unresolved the decision is PENDING and the caller keeps
   everything the XR already has.

Lookups are Crossplane required resources. Requirements are a pure function of what was
resolved so far, so Crossplane's requirement loop converges: gateways → (all gateways) →
claims of the first window of candidates → claims of the next window → stable.
"""

import datetime
import enum
from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from function import claims as claimlib
from function import labels, legacy, listeners, resting, tickets
from function.names import digest, label_value
from function.requirement import Requirement
from function.shards import Shard, ShardError, from_gateway

GATEWAY_API = "gateway.networking.k8s.io/v1"
# Claims are read in two windows of candidate shards (two requirement rounds, within
# Crossplane's limit of calls per step). The first has the few shards most reconciles
# need; the second, for tenants that find those full or wait behind others, as many as the
# claim budget allows. The budget counts tenant slots (the most claims a shard holds) and
# the tickets read: a wrapped claim is ~3 KiB, and a request must stay under 1 MB.
WINDOW = 3  # shards in the first window, at most
CLAIM_BUDGET = 250  # claims (and tickets) one reconcile may read; half of it in window one
MAX_SHARDS_READ = 24  # shards whose claims one reconcile may read

ACCEPTING_GATEWAYS = "tcp-gateways-accepting"
OWN_CLAIMS = "tcp-claims-own"
TICKETS = "tcp-tickets"
LOOKUP_FIELDS = {TICKETS: tickets.FIELDS}  # lookups whose readers need only these fields
ALL_GATEWAYS = "tcp-gateways"


def shard_gateway_requirement(index: int) -> str:
    return f"tcp-gateway-shard-{index}"


def claims_requirement(index: int) -> str:
    return f"tcp-claims-shard-{index}"


def placed_requirement(index: int) -> str:
    return f"tcp-placed-shard-{index}"


@dataclass(frozen=True)
class Pool:
    """What the protocol needs to know about the pool from the step's input."""

    name: str
    namespace: str
    wrapped: bool
    static_shards: list[Shard] | None = None
    respect_legacy: bool = False  # AppCat's webhook allocates in the same ranges
    legacy_lease_namespace: str | None = None  # where it writes its Leases (default: ours)
    listener_sets: tuple[str, str] = (GATEWAY_API, "ListenerSet")  # apiVersion, kind

    def labels(self, **extra: str) -> dict[str, str]:
        return {labels.POOL: self.name, **extra}

    def gateways(self, name: str, **extra: str) -> Requirement:
        return Requirement(name, GATEWAY_API, "Gateway", self.labels(**extra), self.namespace)

    def claim_lookup(self, name: str, **extra: str) -> Requirement:
        """Claims of the pool with these labels."""
        return self._leases(name, labels.CLAIM_ROLE, **extra)

    def tickets(self) -> Requirement:
        """The pool's tenants waiting for a port."""
        return self._leases(TICKETS, labels.TICKET_ROLE)

    def _leases(self, name: str, role: str, **extra: str) -> Requirement:
        """Leases of the pool in this role, or (wrapped) the cluster-scoped
        provider-kubernetes Objects that carry them."""
        match = self.labels(**extra, **{labels.ROLE: role})
        if self.wrapped:
            return Requirement(name, claimlib.OBJECT_API, "Object", match)
        return Requirement(name, claimlib.LEASE_API, "Lease", match, self.namespace)

    def own_claims(self, owner: str) -> Requirement:
        """This XR's claims, wherever they are: the XR as Crossplane shows it may lag."""
        return self.claim_lookup(OWN_CLAIMS, **{labels.OWNER: owner})

    def claims(self, shard: Shard) -> list[Requirement]:
        """The lookups of one shard's claims. A static shard is its Gateway, wherever it
        stands in the list: its claims by the gateway label, and by the shard label claims
        made before they carried one (a tenant's next reconcile labels its claim)."""
        by_index = self.claim_lookup(
            claims_requirement(shard.index), **{labels.SHARD: str(shard.index)}
        )
        if self.static_shards is None:
            return [by_index]
        by_name = self.claim_lookup(
            f"tcp-claims-gateway-{shard.index}", **{labels.GATEWAY: label_value(shard.gateway)}
        )
        return [by_name, by_index]

    def holds(self, claim: claimlib.Claim, shard: Shard) -> bool:
        """The claim is one of the shard's tenants (its listener is behind that Gateway)."""
        if self.static_shards is not None:
            return claim.gateway == shard.gateway
        return claim.shard == shard.index

    def listener_set_lookup(self, name: str, index: int, **extra: str) -> Requirement:
        """Tenant listener sets labelled with shard `index`, in every namespace."""
        api_version, kind = self.listener_sets
        match = self.labels(**{labels.SHARD: str(index)}, **extra)
        return Requirement(name, api_version, kind, match)

    def placed(self, index: int) -> Requirement:
        """The listener sets Namespaced XRs placed on shard `index`: they hold no claim."""
        return self.listener_set_lookup(
            placed_requirement(index), index, **{labels.ROLE: labels.PLACED_ROLE}
        )


class Phase(enum.StrEnum):
    STICKY = "Sticky"
    CLAIM = "Claim"
    POOL_FULL = "PoolFull"
    NO_SHARDS = "NoShards"
    QUEUED = "Queued"  # no slot in reach for this XR, and others have waited longer
    BLOCKED = "Blocked"  # the XR holds the most blocked claims it may: it claims no more
    PENDING = "Pending"


@dataclass(frozen=True)
class Allocation:
    shard: int
    port: int
    gateway: str
    hostname: str | None
    claim_name: str


@dataclass(frozen=True)
class Adoption:
    """A port the XR already listens on (another allocator gave it): claim that first."""

    gateway: str
    port: int
    listener_set: tuple[str, str]  # (namespace, name) of the XR's own listener set


@dataclass
class Decision:
    phase: Phase
    allocation: Allocation | None = None
    shard: Shard | None = None  # the allocation's shard as last seen, if seen
    requirements: list[Requirement] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflict: str | None = None  # why the port the XR listens on could not be adopted
    adopted: bool = False
    ticket: bool = False  # the XR waits for a port: it composes its ticket (tickets.py)
    ahead: int = 0  # waiters before this XR in the queue
    timed: bool = False  # tickets were judged by the clock: it depends on the time too


@dataclass
class ShardView:
    """One shard as the lookups show it."""

    tenants: set[int] = field(default_factory=set)  # ports counted against its capacity
    taken: set[int] = field(default_factory=set)  # ports in its range nobody new may claim
    holders: set[str] = field(default_factory=set)  # who holds its claims
    seen: set[int] = field(default_factory=set)  # every claimed port its lookups showed


def start_offset(identity: str, size: int) -> int:
    """A stable pseudo-random index in [0, size) for this XR (and attempt)."""
    return int(digest(identity, 12), 16) % size


def free_ports(
    shard: Shard,
    view: ShardView,
    claimed: Set[int] = frozenset(),
    now: datetime.datetime | None = None,
) -> list[int]:
    """The ports a new tenant may claim on this shard: its first free ports in the resting
    order (function/resting.py: never used, then free longest; lowest first where the shard
    keeps no record), as many as it has free slots, less those still resting at `now`. A
    claim locks a port, not a slot: offering more ports than free slots (a range wider than
    the capacity) would let tenants racing from one view all get one, beyond the shard's
    capacity. `claimed`: ports any claim in view holds, whatever shard it names (the
    claim's name locks the port pool-wide)."""
    if shard.record_error is not None:
        return []  # which ports rest is unknown: none may be claimed early
    room = shard.tenant_slots - len(view.tenants)
    blocked = view.taken | claimed | shard.own_ports | shard.held_elsewhere
    free = [port for port in shard.ports() if port not in blocked]
    rests = () if shard.record is None else resting.resting(shard.record, blocked, now)
    return resting.offer(free, room, shard.record, rests)


def decide(
    pool: Pool,
    identity: str,
    held: claimlib.Claim | None,
    lookups: dict,
    attempt: int = 1,
    adopt: Adoption | None = None,
    owner: str | None = None,
    searching: bool = False,
    avoid: frozenset[int] = frozenset(),
    now: datetime.datetime | None = None,
    pending: list[dict] | tuple = (),
) -> Decision:
    """Run the protocol for one XR. `lookups` maps requirement name -> list of objects;
    a missing name means Crossplane has not resolved that requirement yet. `attempt` counts
    this XR's claims in a row that did not come back as held (lost races); `avoid` holds
    ports its earlier claims failed on (a claim nobody in view holds may still exist, e.g.
    an adopted one labelled for another shard: never try one name forever). `owner` is the
    XR's owner label value: its own claims are looked up by it. `searching`: its last
    reconcile found no slot in reach (PoolFull, Queued): it looks further this time.
    `now`: the time tickets are judged by (None, an in-memory plan: every ticket is live).
    `pending`: claims earlier steps of this pipeline return for the XR (see `_with_pending`)."""
    if held is not None:
        return _sticky(pool, held, lookups)
    if owner is None:
        return _claim_first(pool, identity, lookups, attempt, adopt, searching, avoid, now, pending)
    # The XR as Crossplane shows it may lag behind the lookups: a claim this XR holds that
    # it does not show is still its allocation (never a second port).
    own = pool.own_claims(owner)
    found = _claims(pool, lookups.get(own.name), [])
    # A blocked claim (its port went to an older, foreign listener) is held, never used.
    mine = sorted(c for c in found or [] if c.holder == identity and not c.blocked)
    decision = (
        _sticky(pool, mine[0], lookups)
        if mine
        else _claim_first(pool, identity, lookups, attempt, adopt, searching, avoid, now, pending)
    )
    decision.requirements.insert(0, own)
    if found is None and decision.phase is not Phase.PENDING:
        decision.phase = Phase.PENDING  # nothing is decided before its own claims are read
        decision.allocation = None
    return decision


def _sticky(pool: Pool, held: claimlib.Claim, lookups: dict) -> Decision:
    decision = Decision(Phase.STICKY)
    shard = None
    if pool.static_shards is not None:
        shard = next((s for s in pool.static_shards if s.gateway == held.gateway), None)
    elif held.shard is not None:
        requirement = pool.gateways(
            shard_gateway_requirement(held.shard), **{labels.SHARD: str(held.shard)}
        )
        decision.requirements.append(requirement)
        found = _shards(pool, lookups.get(requirement.name), decision.warnings)
        shard = next((s for s in found or [] if s.gateway == held.gateway), None)
        if shard is None and found:
            shard = found[0]
    decision.shard = shard
    decision.allocation = Allocation(
        shard=held.shard if held.shard is not None else (shard.index if shard else 0),
        port=held.port,
        gateway=held.gateway or (shard.gateway if shard else ""),
        hostname=(shard.hostname if shard and shard.hostname else held.hostname),
        claim_name=held.name,
    )
    return decision


def _claim_first(
    pool: Pool,
    identity: str,
    lookups: dict,
    attempt: int,
    adopt: Adoption | None,
    searching: bool = False,
    avoid: frozenset[int] = frozenset(),
    now: datetime.datetime | None = None,
    pending: list[dict] | tuple = (),
) -> Decision:
    decision = Decision(Phase.PENDING)
    old = _legacy(pool, lookups, decision, adopt)
    if adopt is not None and _adopt(pool, lookups, decision, adopt, old, pending):
        return decision
    if pool.respect_legacy and old is None:
        _pool_shards(pool, lookups, decision)  # ask for everything in the same round
        return decision

    def view(shard: Shard, shards: list[Shard]) -> ShardView | None:
        found = _shard_view(pool, shard, shards, lookups, decision, old, pending=pending)
        if found is not None:
            found.taken |= avoid
        return found

    decision.ticket = True
    return _choose(pool, identity, lookups, attempt, decision, view, True, searching, now)


def _choose(
    pool: Pool,
    identity: str,
    lookups: dict,
    attempt: int,
    decision: Decision,
    view,
    queued: bool = False,
    searching: bool = False,
    now: datetime.datetime | None = None,
):
    """Pick a shard and a port from what `view` says of each candidate shard. `queued`:
    waiting tenants take the free slots in the order of their live tickets."""
    shards = _pool_shards(pool, lookups, decision)
    line = None
    read = 0  # tickets read, live or not: each costs request size
    if queued:
        requirement = pool.tickets()
        decision.requirements.append(requirement)
        objects = lookups.get(requirement.name)
        line = None if objects is None else tickets.line(objects, pool.namespace, now)
        read = len(objects or ())
        decision.timed = objects is not None and now is not None
    if shards is None:
        decision.phase = Phase.PENDING
        return decision
    if not shards:
        if decision.phase is not Phase.POOL_FULL:
            decision.phase = Phase.NO_SHARDS
        return decision

    # Shards the pool step marked as having room come first, lowest index first; the hint
    # only orders the search, the claims decide.
    ordered = sorted(shards, key=lambda s: (not s.hinted_free, s.index))
    seed = identity if attempt <= 1 else f"{identity}/{attempt}"
    if attempt > 1 and not queued:
        # This XR lost a race: others are claiming at the same time from the same view.
        # Start the search at a shard of its own among those with room, and choose among
        # the free ports of the whole window, so the contenders spread out.
        roomy = sum(1 for s in ordered if s.hinted_free) or len(ordered)
        turn = start_offset(seed, roomy)
        ordered = ordered[turn:roomy] + ordered[:turn] + ordered[roomy:]
    slots: list[tuple[Shard, int]] = []
    claimed: set[int] = set()
    waiters: list[str] | None = None
    # Not the live tickets: the windows (and so the requirements) must not change with time.
    budget = CLAIM_BUDGET - read
    reach = windows(ordered, budget)
    if searching and sum(map(len, reach)) < len(ordered):
        # Its reach had no slot for it last time, and there is more to the pool (shards
        # whose hints no pool step keeps): look from a shard of its own this time, another
        # next time. Tenants searching so may collide; the claim settles it.
        turn = start_offset(seed, len(ordered))
        reach = windows(ordered[turn:] + ordered[:turn], budget)
    for candidates in reach:
        views = [view(shard, shards) for shard in candidates]
        if any(view is None for view in views) or (queued and line is None):
            return decision
        if waiters is None:
            # Fixed by the first window: a tenant that reads further must not move up the
            # line past a slot another tenant was given from the first window alone.
            claimed = set().union(*(v.holders for v in views))
            waiters = [t.holder for t in line or [] if t.holder not in claimed]
        claimed |= set().union(*(v.seen for v in views))
        slots += [
            (shard, port)
            for shard, view in zip(candidates, views, strict=True)
            for port in free_ports(shard, view, claimed, now)
        ]
        for shard in candidates:
            if shard.record is not None and now is not None:
                decision.timed = True  # which freed ports have rested depends on the time
            if shard.record_error is not None:
                decision.warnings.append(
                    f"shard {shard.index} ({shard.gateway}) offers no port: {shard.record_error}"
                )
        if identity in waiters:
            place = waiters.index(identity)
            if place < len(slots):
                _claim(pool, decision, *slots[place])
                return decision
            continue
        # Not in line yet (its ticket is not visible): the slots after the waiters'.
        rest = slots[len(waiters) :]
        if attempt <= 1 and rest:
            # First try: fill the lowest shard with room, at a port of this XR's own.
            rest = [slot for slot in rest if slot[0] is rest[0][0]]
        if rest:
            _claim(pool, decision, *rest[start_offset(seed, len(rest))])
            return decision
    # No slot in reach for this XR: the head of the line reports the pool full (the pool
    # step acts on it); those behind it, how many are ahead.
    ahead = waiters.index(identity) if identity in waiters else len(waiters or [])
    decision.phase = Phase.QUEUED if ahead else Phase.POOL_FULL
    decision.ahead = ahead
    return decision


def windows(ordered: list[Shard], budget: int) -> list[list[Shard]]:
    """The candidate shards whose claims are read, in two windows (see CLAIM_BUDGET). The
    first never depends on the budget left after the tickets: tenants that read one pool
    with more or fewer tickets still agree on it (the line is fixed by it)."""
    first: list[Shard] = []
    used = 0
    for shard in ordered[:WINDOW]:
        cost = max(1, shard.tenant_slots)
        if first and used + cost > CLAIM_BUDGET // 2:
            break
        first.append(shard)
        used += cost
    second: list[Shard] = []
    for shard in ordered[len(first) : MAX_SHARDS_READ]:
        cost = max(1, shard.tenant_slots)
        if used + cost > budget:
            break
        second.append(shard)
        used += cost
    return [window for window in (first, second) if window]


def _claim(pool: Pool, decision: Decision, shard: Shard, port: int) -> None:
    decision.phase = Phase.CLAIM
    decision.shard = shard
    decision.allocation = Allocation(
        shard=shard.index,
        port=port,
        gateway=shard.gateway,
        hostname=shard.hostname,
        claim_name=claimlib.claim_name(pool.name, port),
    )


def _adopt(pool: Pool, lookups: dict, decision: Decision, adopt: Adoption, old, pending=()) -> bool:
    """Claim the port the XR already listens on, if it is on a shard and nobody holds it.

    Returns True when decided (claim, or pending); False to allocate afresh."""
    if pool.static_shards is not None:
        shards: list[Shard] | None = pool.static_shards
    else:
        everything = pool.gateways(ALL_GATEWAYS)
        decision.requirements.append(everything)
        shards = _shards(pool, lookups.get(everything.name), decision.warnings)
    if shards is None:
        return True
    shard = next((s for s in shards if s.gateway == adopt.gateway), None)
    if shard is None:
        decision.warnings.append(
            f"the XR listens on port {adopt.port} of {adopt.gateway}, which is not a shard of "
            f"pool {pool.name}; allocating afresh"
        )
        return False
    view = _shard_view(pool, shard, shards, lookups, decision, old, (adopt.port,) * 2, pending)
    if view is None or (pool.respect_legacy and old is None):
        return True
    if adopt.port in view.taken:
        decision.conflict = (
            f"port {adopt.port} on {adopt.gateway}, which this XR listens on, is held by "
            "another tenant; allocating afresh"
        )
        return False
    if not shard.port_start <= adopt.port <= shard.port_end:
        decision.warnings.append(
            f"adopted port {adopt.port} lies outside shard {shard.index}'s range "
            f"{shard.port_start}-{shard.port_end}; it is kept and counts against its capacity"
        )
    _claim(pool, decision, shard, adopt.port)
    decision.adopted = True
    return True


def _legacy(pool: Pool, lookups: dict, decision: Decision, adopt: Adoption | None):
    if not pool.respect_legacy:
        return legacy.Legacy()
    decision.requirements.extend(legacy.REQUIREMENTS)
    lease_namespace = pool.legacy_lease_namespace or pool.namespace
    return legacy.read(lookups, adopt.listener_set if adopt else None, lease_namespace)


def _pool_shards(pool: Pool, lookups: dict, decision: Decision) -> list[Shard] | None:
    """The shards to consider: static ones, accepting ones, or (none labelled) all."""
    if pool.static_shards is not None:
        return pool.static_shards
    accepting = pool.gateways(ACCEPTING_GATEWAYS, **{labels.ACCEPTING: "true"})
    decision.requirements.append(accepting)
    shards = _shards(pool, lookups.get(accepting.name), decision.warnings)
    if shards is None or shards:
        return shards
    # No shard says it accepts: hand-made shards without the label, or all full.
    everything = pool.gateways(ALL_GATEWAYS)
    decision.requirements.append(everything)
    shards = _shards(pool, lookups.get(everything.name), decision.warnings)
    if shards is None:
        return None
    open_shards = [s for s in shards if s.accepting is not False]
    if shards and not open_shards:
        decision.phase = Phase.POOL_FULL  # shards exist, and every one says it is full
    return open_shards


def _shards(pool: Pool, objects: Iterable[dict] | None, warnings: list[str]) -> list[Shard] | None:
    if objects is None:
        return None
    shards: dict[int, Shard] = {}
    for obj in objects:
        metadata = _metadata(obj)
        name = f"Gateway {metadata.get('namespace', '?')}/{metadata.get('name', '?')}"
        if metadata is _NO_METADATA or obj.get("kind") != "Gateway":
            warnings.append(f"skipped a {_kind(obj)} returned by the Gateway lookup")
            continue
        # Crossplane v1.x label lookups span all namespaces.
        if metadata.get("namespace") != pool.namespace:
            continue
        try:
            shard = from_gateway(obj)
        except ShardError as err:
            warnings.append(f"skipped shard {name}: {err}")
            continue
        if shard.index in shards:
            other = shards[shard.index].gateway
            warnings.append(f"skipped shard {name}: shard index {shard.index} is also {other}")
            continue
        shards[shard.index] = shard
    return sorted(shards.values(), key=lambda s: s.index)


_NO_METADATA: dict = {}


def _metadata(obj: object) -> dict:
    if not isinstance(obj, dict):
        return _NO_METADATA
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _kind(obj: object) -> str:
    return str(obj.get("kind", "object")) if isinstance(obj, dict) else type(obj).__name__


def _shard_view(
    pool: Pool,
    shard: Shard,
    shards: list[Shard],
    lookups: dict,
    decision: Decision,
    old: legacy.Legacy | None,
    port_range: tuple[int, int] | None = None,
    pending: list[dict] | tuple = (),
) -> ShardView | None:
    """What the claims (and the webhook's allocations) say of one shard; None if unresolved.

    Shards may share a port range (static shards, AppCat's single global range): a port is
    then unique per pool through the claim's name, so the claims of every overlapping
    shard are read too. `port_range` widens "taken" to ports outside the shard's slice.
    """
    start, end = port_range or (shard.port_start, shard.port_end)
    start, end = min(start, shard.port_start), max(end, shard.port_end)
    overlapping = [
        s for s in shards if s.index == shard.index or (s.port_start <= end and start <= s.port_end)
    ]
    view = ShardView()
    resolved = True
    for other in overlapping:
        for requirement in pool.claims(other):
            if requirement not in decision.requirements:
                decision.requirements.append(requirement)
            objects = _with_pending(lookups.get(requirement.name), requirement, pending)
            found = _claims(pool, objects, decision.warnings)
            if found is None:
                resolved = False
                continue
            for claim in found:
                view.seen.add(claim.port)
                if claim.holder and not claim.blocked:  # a blocked claim is no port of its own
                    view.holders.add(claim.holder)
                if start <= claim.port <= end:
                    # Taken whatever its shard label says: the claim's name locks the port.
                    view.taken.add(claim.port)
                if pool.holds(claim, shard):
                    view.tenants.add(claim.port)
    # A Namespaced tenant's listener is its claim: its ports are taken on its Gateway (a
    # port both claimed and listened on is one slot: these are sets).
    placed = pool.placed(shard.index)
    if placed not in decision.requirements:
        decision.requirements.append(placed)
    listening = lookups.get(placed.name)
    if listening is None:
        resolved = False
    for ports in attached_ports(shard, listening or []):
        view.taken |= ports
        view.tenants |= ports
    if not resolved or old is None:
        return None
    view.taken |= old.taken(start, end, shard.namespace, shard.gateway)
    view.tenants |= old.behind(shard.namespace, shard.gateway)
    return view


def attached_ports(
    shard: Shard, objects: Iterable[dict], exclude: tuple[str, str] | None = None
) -> list[frozenset[int]]:
    """The ports of each tenant listener set that listens on this shard's Gateway: its
    `parentRef` is exactly that Gateway and the Gateway has not refused it. Labels are the
    tenant's to set: a decoy naming another parent takes nothing. `exclude`: the
    (namespace, name) of a listener set left out."""
    found = []
    for obj in objects:
        listener_set = listeners.parse(obj)
        if listener_set is None or listener_set.refused:
            continue
        if not listener_set.on(shard.namespace, shard.gateway):
            continue
        if exclude is not None and (listener_set.namespace, listener_set.name) == exclude:
            continue
        found.append(listener_set.ports)
    return found


def _with_pending(objects: list | None, requirement: Requirement, pending) -> list | None:
    """A resolved lookup plus what earlier steps of this pipeline return for the XR that it
    would find: two steps of one XR that choose from one view must not pick one port."""
    if objects is None or not pending:
        return objects
    return [*objects, *(obj for obj in pending if requirement.matches(obj))]


def _claims(pool: Pool, objects: Iterable[dict] | None, warnings: list[str]):
    if objects is None:
        return None
    found = []
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("kind") not in ("Lease", "Object"):
            warnings.append(f"skipped a {_kind(obj)} returned by the claim lookup")
            continue
        if claimlib.elsewhere(obj, pool.namespace):
            continue
        claim = claimlib.parse(obj)
        if claim is None:
            name = _metadata(obj).get("name", "?")
            warnings.append(f"skipped claim {name}: no port in label {labels.PORT} or name")
            continue
        found.append(claim)
    return found


# -- Namespaced XRs (Crossplane v2) -------------------------------------------------------
#
# A Namespaced XR composes only in its own namespace, so it cannot own a claim in the
# gateway namespace. It places its listener optimistically: the same choice of shard and
# port, with the listener sets of the candidate shards as the view, and the Gateway API
# rule that the oldest listener on a port wins settles a race. A tenant whose listener the
# Gateway reports as Conflicted places itself again (a new listener set, so its age never
# beats a tenant that was there first). Weaker than a claim: two tenants may briefly
# program the same port, and only the older gets traffic.


def listener_sets_requirement(index: int) -> str:
    return f"tcp-listenersets-shard-{index}"


@dataclass(frozen=True)
class Placed:
    """The XR's current listener: where it is, and whether the Gateway refused it."""

    shard: int
    port: int
    gateway: str
    hostname: str | None
    conflicted: bool
    listener_set: tuple[str, str]  # (namespace, name)


def place(
    pool: Pool,
    identity: str,
    current: Placed | None,
    lookups: dict,
    attempt: int = 1,
    pending: list[dict] | tuple = (),
    now: datetime.datetime | None = None,
) -> Decision:
    if current is not None and not current.conflicted:
        decision = _sticky(
            pool,
            claimlib.Claim(
                name=f"{current.listener_set[0]}/{current.listener_set[1]}",
                port=current.port,
                shard=current.shard,
                holder=identity,
                gateway=current.gateway,
                hostname=current.hostname,
            ),
            lookups,
        )
        return decision
    decision = Decision(Phase.PENDING)
    if current is not None:  # it is conflicted
        decision.conflict = f"port {current.port} on {current.gateway} is used by an older listener"

    def view(shard: Shard, shards: list[Shard]) -> ShardView | None:
        # Every tenant listener set of the shard, cluster-scoped tenants' too.
        requirement = pool.listener_set_lookup(listener_sets_requirement(shard.index), shard.index)
        if requirement not in decision.requirements:
            decision.requirements.append(requirement)
        objects = _with_pending(lookups.get(requirement.name), requirement, pending)
        if objects is None:
            return None
        result = ShardView()
        own = current.listener_set if current is not None else None
        for ports in attached_ports(shard, objects):
            result.taken |= ports
        for ports in attached_ports(shard, objects, exclude=own):
            result.tenants |= ports
        if current is not None and current.gateway == shard.gateway:
            result.taken.add(current.port)  # the port it lost stays someone else's
        return result

    return _choose(pool, identity, lookups, attempt, decision, view, now=now)
