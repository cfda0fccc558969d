"""The pool step (`GatewayPool`, DESIGN §6): the shard Gateways of one pool.

It reads every claim of the pool (one lookup) and every tenant listener set (another:
Namespaced XRs hold no claim, their listener is their slot), or, for a pool beyond its read
budget, those of a window of shards (function/poolwindow.py: the rest keep their last
count), counts the ports per shard, returns one Gateway per shard, adds a shard before the
pool runs out of headroom, and publishes utilisation. Shards holding a claim or carrying a
tenant listener are never removed; trailing empty ones above minShards go only when the
rest still keep the headroom, and only on a complete view.

It also reads the pool's tickets (function/tickets.py): the live waiters (tenants in line
with no claim) are about to take free slots, so the pool keeps its headroom beyond them, and
a queue longer than the headroom is served by new shards, not by waiting for deletions.

A shard's slice of ports (and so its own listener port, the slice's last) is fixed for its
life: it is read back from the pool's record (its status, else the shard's Gateway), never
recomputed from the current input. Input changes (`capacity`, `ports`) shape new shards
only; a new shard whose slice would overlap an existing slice or claim is not added.
"""

import bisect
import functools
import re
from dataclasses import dataclass, field

from function import claims as claimlib
from function import (
    clientaddress,
    drift,
    fieldpath,
    labels,
    listeners,
    poolwindow,
    resting,
    tickets,
)
from function.allocation import TICKETS, Pool, Requirement
from function.builders.clienttrafficpolicy import proxy_protocol_policy
from function.builders.gateway import shard_gateway
from function.builders.object import wrap
from function.flavours import FLAVOURS
from function.inputs import GatewayPool, ListenerNamespaces, parse_port_range
from function.observed import keep, live
from function.readiness import conditions
from function.shards import first_address, format_ports, parse_ports
from function.step import WARNING, Condition, Desired, Result, StepRequest, StepResult

CLAIMS = "tcp-pool-claims"
LISTENER_SETS = "tcp-pool-listenersets"
KEY = re.compile(r"^gateway-(\d+)$")
PROXY_PROTOCOL_KEY = re.compile(r"^proxy-protocol-(\d+)$")
CONDITION = "PoolCapacity"

PROVIDER_ANNOTATIONS = {
    "cloudscale": lambda name: {"k8s.cloudscale.ch/loadbalancer-name": name},
    "exoscale": lambda name: {"service.beta.kubernetes.io/exoscale-loadbalancer-name": name},
    "custom": lambda name: {},
}
DNS_ANNOTATION = "external-dns.alpha.kubernetes.io/hostname"


def gateway_key(index: int) -> str:
    return f"gateway-{index}"


def gateway_name(spec: GatewayPool, index: int) -> str:
    return f"{spec.pool}-{index}"


def proxy_protocol_key(index: int) -> str:
    return f"proxy-protocol-{index}"


@dataclass(frozen=True)
class Slice:
    """A shard's ports, `start-end` inclusive; the last one is the Gateway's own listener."""

    start: int
    end: int

    @property
    def own_port(self) -> int:
        return self.end

    @property
    def width(self) -> int:
        return self.end - self.start + 1

    @property
    def tenant_ports(self) -> range:
        return range(self.start, self.end)  # all but its own listener's

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def overlaps(self, other: "Slice") -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _parse_slice(text: object) -> Slice | None:
    if not isinstance(text, str):
        return None
    try:
        start, end = parse_port_range(text)
    except ValueError:
        return None
    return Slice(start, end) if end > start else None  # its own listener and a tenant


@dataclass
class Usage:
    """Claims and tenant listeners per shard, as the lookups saw them."""

    ports: dict[int, set[int]] = field(default_factory=dict)  # claimed, by shard label
    held: set[int] = field(default_factory=set)  # every claimed port, whatever its label
    listeners: dict[int, set[int]] = field(default_factory=dict)  # ports listened on
    orphans: list[str] = field(default_factory=list)  # claims naming no usable shard
    strays: list[str] = field(default_factory=list)  # claims outside their shard's slice
    outside: dict[int, set[int]] = field(default_factory=dict)  # ... their ports, by shard
    holders: set[str] = field(default_factory=set)  # who holds a claim it may use
    waiting: int = 0  # live waiters: tenants in line that hold no claim
    # Freed ports that rest, by shard: port -> epoch second its rest ends (None: not timed yet)
    resting: dict[int, dict[int, int | None]] = field(default_factory=dict)
    seen: dict[int, list[drift.SeenClaim]] = field(default_factory=dict)  # claims by shard
    # Shards outside this reconcile's window (function/poolwindow.py): their last count
    carried: dict[int, poolwindow.Shard] = field(default_factory=dict)

    def taken(self, index: int) -> set[int]:
        # A cluster-scoped tenant has a claim and a listener on one port: one slot.
        return self.ports.get(index, set()) | self.listeners.get(index, set())

    def used(self, index: int) -> int:
        shard = self.carried.get(index)
        if shard is not None:  # not recounted: never less than its Gateway reports now
            counted = shard.slots if shard.used is None else shard.used
            return max(counted, shard.attached or 0)
        return len(self.taken(index))

    def holding(self) -> set[int]:
        """Shards that carry a claim or a tenant listener, or whose freed ports rest (a
        shard added again would know nothing of them)."""
        return (
            {i for i in (*self.ports, *self.listeners) if self.taken(i)}
            | {i for i, ports in self.resting.items() if ports}
            | {i for i, shard in self.carried.items() if not shard.empty}
        )

    @functools.cached_property
    def _held_sorted(self) -> list[int]:
        # Read only once every claim is counted; free() runs per shard per growth step, so
        # the claimed ports of a slice are found by bisection, not by a pass over them all.
        return sorted(self.held)

    def held_in(self, ports: "Slice") -> list[int]:
        """Every claimed port in this slice, whatever shard its claim names."""
        low = bisect.bisect_left(self._held_sorted, ports.start)
        return self._held_sorted[low : bisect.bisect_right(self._held_sorted, ports.end)]

    def held_elsewhere(self, index: int, ports: "Slice") -> set[int]:
        """Ports of shard `index`'s slice that claims of other shards (or of none) hold."""
        return set(self.held_in(ports)) - self.ports.get(index, set())

    def free(self, index: int, ports: "Slice", capacity: int) -> int:
        """Tenant slots left, and never more than the slice has ports nobody holds."""
        if index in self.carried:  # not recounted: what it may count on (poolwindow.py)
            return self.carried[index].free
        slots = capacity - 1 - self.used(index)
        listening = {p for p in self.listeners.get(index, ()) if p in ports}
        unavailable = listening.union(self.held_in(ports), self.resting.get(index, ()))
        return max(0, min(slots, ports.width - 1 - len(unavailable)))

    def slice_taken(self, index: int, ports: "Slice") -> set[int]:
        """Ports of the slice a claim or a listener on the shard holds: its resting record."""
        listening = {p for p in self.listeners.get(index, ()) if p in ports}
        return listening.union(self.held_in(ports))


def _pool(spec: GatewayPool) -> Pool:
    return Pool(name=spec.pool, namespace=spec.namespace, wrapped=spec.wrap is not None)


def claims_requirement(spec: GatewayPool) -> Requirement:
    return _pool(spec).claim_lookup(CLAIMS)


def tickets_requirement(spec: GatewayPool) -> Requirement:
    """The pool's tickets, as the tenant step reads them (and so with the same fields)."""
    return _pool(spec).tickets()


def listener_sets_requirement(spec: GatewayPool) -> Requirement:
    """The pool's tenant listener sets, in every namespace."""
    flavour = FLAVOURS[spec.gatewayAPI]
    return Requirement(
        LISTENER_SETS,
        flavour.listenerset_api,
        flavour.listenerset_kind,
        {labels.POOL: spec.pool},
    )


def read_listener_sets(
    spec: GatewayPool, request: StepRequest, result: StepResult
) -> list[listeners.TenantListeners] | None:
    """The tenant listener sets of the pool (asked for in `result`); None while unread."""
    requirement = listener_sets_requirement(spec)
    result.requirements.append(requirement)
    objects = request.lookups.get(requirement.name)
    return None if objects is None else _parse_listener_sets(objects, result)


def _parse_listener_sets(objects: list, result: StepResult) -> list[listeners.TenantListeners]:
    found = []
    for obj in objects:
        parsed = listeners.parse(obj)
        if parsed is None:
            kind = obj.get("kind", "object") if isinstance(obj, dict) else type(obj).__name__
            result.results.append(
                Result(WARNING, f"skipped a {kind} returned by the listener set lookup")
            )
            continue
        found.append(parsed)
    return found


def run(spec: GatewayPool, request: StepRequest) -> StepResult:
    result = StepResult(status_path=spec.statusPath)
    result.timed = True  # live waiters are judged by the clock
    clash = fieldpath.clash(request.desired_xr, spec.statusPath)
    if clash:  # another step's value where the pool reports: never overwrite it
        return StepResult(results=[Result("Fatal", f"statusPath: in the desired XR, {clash}")])
    annotations_error = _infrastructure_error(spec)
    if annotations_error:
        return StepResult(results=[Result("Fatal", annotations_error)])

    observed = _observed_shards(request)
    # Each shard Gateway as the step wrote it (the Object's manifest when wrapped): where
    # its slice, count, resting record, admitted namespaces and client address are recorded.
    written = {
        index: claimlib.inner_manifest(obj) if spec.wrap is not None else obj
        for index, obj in observed.items()
    }
    slices = _recorded_slices(spec, request, written)
    shards = _window_shards(spec, request, observed, written, slices)
    waiting_tickets = request.lookups.get(TICKETS)
    wrapped = spec.wrap is not None
    if poolwindow.full_view(list(shards.values()), spec.read_budget, wrapped):
        window = poolwindow.Window(poolwindow.FULL, frozenset(shards), None, 0)
        result.requirements += [claims_requirement(spec), tickets_requirement(spec)]
        objects = request.lookups.get(CLAIMS)
        listener_sets = read_listener_sets(spec, request, result)
    else:
        # The tickets first: what they take of the budget is what the window may not.
        result.requirements.append(tickets_requirement(spec))
        objects = listener_sets = None
        if waiting_tickets is not None:
            window = poolwindow.choose(
                list(shards.values()),
                spec.read_budget,
                wrapped,
                headroom=spec.headroom,
                tickets=len(waiting_tickets),
            )
            objects, listener_sets = _read_window(spec, request, result, window)
    if objects is None or listener_sets is None or waiting_tickets is None:
        # Not read yet: keep every Gateway as it is.
        for index, obj in observed.items():
            result.resources[gateway_key(index)] = Desired(keep(obj), _programmed(obj, spec))
        for key, obj in request.observed.items():
            if PROXY_PROTOCOL_KEY.match(key):
                result.resources[key] = Desired(keep(obj), True)
        previous = _previous_status(request, spec)
        result.status = previous
        return result

    admitted = _admitted_namespaces(spec, written)
    usage = _usage(spec, objects, slices, result)
    usage.carried = {i: shard for i, shard in shards.items() if not window.recounts(i)}
    provider_config, warning = None, None
    if spec.wrap is not None:  # the pool XR's labels: the same rule as the tenants'
        labels_ = fieldpath.mapping(request.xr, "metadata.labels")
        provider_config, warning = spec.wrap.provider_config(labels_)
    if warning:
        result.results.append(Result(WARNING, warning))
    recounted = (set(observed) | set(slices.recorded)) - set(usage.carried)
    _hold_carried_ports(spec, usage, written, slices, recounted)
    _warn_strays(usage, result)
    _count_listeners(spec, usage, listener_sets, recounted)
    # Both lookups empty may be a cold cache: then nothing is freed, every record is kept.
    records = _records(
        spec, request, written, slices, usage, result, seen=bool(objects or listener_sets)
    )
    # Shrink only on evidence from the lookups: an empty one may be a cold cache. In a
    # window, an empty shard is normal: evidence is any object read at all.
    if window.mode == poolwindow.FULL:
        complete = bool(objects) and bool(listener_sets)
    else:
        complete = bool(objects) or bool(listener_sets)
    line = tickets.line(waiting_tickets, spec.namespace, request.now)
    usage.waiting = sum(1 for ticket in line if ticket.holder not in usage.holders)
    count, draining = _shard_count(
        spec, usage, observed, slices, complete=complete, result=result, window=window
    )
    modes = _client_address_modes(spec, written, count, result)
    previous_entries = _previous_entries(request, spec)
    frees = {
        index: usage.free(index, slices[index], _capacity(spec, slices[index]))
        for index in range(1, count + 1)
    }
    open_shards = poolwindow.accepting(
        window,
        {i: free for i, free in frees.items() if i not in draining},
        {i: _capacity(spec, slices[i]) - 1 for i in frees},
        set(usage.carried),
        needed=spec.headroom + usage.waiting,
        budget=spec.read_budget,
        wrapped=spec.wrap is not None,
    )
    shard_status = []
    drifted = drift.Drift(listener_sets, usage.held, request.now)
    placed = _placed(spec, listener_sets, recounted)
    for index in range(1, count + 1):
        used = usage.used(index)
        ports = slices[index]
        capacity = _capacity(spec, ports)
        free = frees[index]
        accepting = index in open_shards
        name = gateway_name(spec, index)
        seen = observed.get(index)
        carried = usage.carried.get(index)
        window_annotations = _window_annotations(
            window, carried, written.get(index), seen, spec, free=free, accepting=accepting
        )
        gateway = shard_gateway(
            name=name,
            namespace=spec.namespace,
            pool=spec.pool,
            index=index,
            gateway_class=spec.gatewayClassName,
            hostname=spec.hostname_for(index),
            ports=(ports.start, ports.end),
            capacity=capacity,
            used=used if carried is None or carried.used is None else carried.used,
            accepting=accepting,
            allowed_listeners=admitted.get(index, _new_shard_admits(spec)),
            infrastructure=_infrastructure(spec, name, spec.hostname_for(index), modes[index]),
            held_elsewhere=_held_elsewhere(usage, index, ports, written.get(index)),
            extra_annotations={
                **_record_annotations(spec, records, index, usage, ports, request),
                **window_annotations,
            },
            client_address=modes[index],
        )
        if spec.wrap is not None:
            gateway = wrap(gateway, provider_config=provider_config)
        programmed = _programmed(seen, spec)
        seen_live = live(seen, spec.wrap is not None)
        result.resources[gateway_key(index)] = Desired(gateway, programmed)
        if modes[index] == clientaddress.PROXY_PROTOCOL:
            policy = proxy_protocol_policy(
                name=f"{name}-proxy-protocol",
                namespace=spec.namespace,
                labels={labels.POOL: spec.pool, labels.SHARD: str(index)},
                gateway=name,
            )
            if spec.wrap is not None:
                policy = wrap(policy, provider_config=provider_config)
            result.resources[proxy_protocol_key(index)] = Desired(policy, True)
        previous_entry = previous_entries.get(index, {})
        if window.mode == poolwindow.WINDOW and index != window.audit and seen is not None:
            # Only the audited shard's listener sets were all read: the others keep the
            # drift found at their last audit, with what their Gateway reports now.
            listener_drift = drift.carried(previous_entry.get("listenerDrift"), seen_live)
        else:
            claims_seen = usage.seen.get(index, ())
            listener_drift = drifted.shard(spec.namespace, name, seen_live, claims_seen)
        entry = {
            "index": index,
            "gateway": name,
            "hostname": spec.hostname_for(index),
            "ports": str(ports),
            "capacity": capacity,
            "used": used,
            "free": free,
            "address": first_address(seen_live or {}) or "",
            "programmed": programmed,
            "listenerDrift": listener_drift,
            "clientAddress": modes[index],
        }
        if spec.rest_seconds:
            entry["resting"] = len(usage.resting.get(index, ()))
        if window.mode == poolwindow.WINDOW:
            if carried is None:
                entry["placed"] = placed.get(index, 0)
                entry[poolwindow.OUTSIDE] = format_ports(usage.outside.get(index, ()))
            else:
                if carried.placed is not None:
                    entry["placed"] = carried.placed
                if carried.outside is not None:
                    entry[poolwindow.OUTSIDE] = format_ports(carried.outside)
            entry.update(_freshness(carried, seen_live, previous_entry, request))
            audited = poolwindow.audited(previous_entry)
            if index == window.audit:
                entry["auditedAt"] = poolwindow.format_time(request.now)
            elif audited is not None:
                entry["auditedAt"] = poolwindow.format_time(audited)
        shard_status.append(entry)
    _warn_all_namespaces(spec, admitted, count, result)
    listeners = sum(1 + s["used"] for s in shard_status)
    result.status = {
        "shards": shard_status,
        "totals": {
            "shards": count,
            "slots": sum(s["capacity"] - 1 for s in shard_status),
            "used": sum(s["used"] for s in shard_status),
            "free": sum(s["free"] for s in shard_status),
        },
        # Every listener is a port of the shard's LoadBalancer Service, and so a NodePort.
        "nodePorts": listeners,
        "waiting": usage.waiting,
        "headroom": spec.headroom,  # for alerts on the free slots
        "listenerDrift": drift.totals(shard_status),
        "view": _view_status(window, shard_status, count),
    }
    if spec.rest_seconds:
        result.status["totals"]["resting"] = sum(s["resting"] for s in shard_status)
    missing = sorted(i for i in usage.ports if i not in observed and i <= count)
    if missing and observed:
        # Claims on a shard whose Gateway is gone (deleted by hand): it comes back, and its
        # tenants keep their ports.
        result.status["missingShards"] = missing
        result.results.append(
            Result(
                WARNING,
                f"claims name shard(s) {missing} whose Gateway was missing; composing it again",
                "MissingShard",
            )
        )
    if usage.orphans:
        result.status["orphanedClaims"] = sorted(usage.orphans)
    if usage.strays:
        result.status["claimsOutsideSlice"] = sorted(usage.strays)
    return result


def _hold_carried_ports(
    spec: GatewayPool,
    usage: Usage,
    written: dict[int, dict],
    slices: "Slices",
    recounted: set[int],
) -> None:
    """Ports that claims of shards outside the window hold outside their slices, as held
    (and reported) as in a full read: a recounted shard keeps them off its free ports.
    Where a carried shard has no record of them, every recounted shard keeps the ports its
    Gateway marked held elsewhere (they are freed once every shard has a record)."""
    for shard in usage.carried.values():
        usage.held.update(shard.outside or ())
        usage.strays.extend(claimlib.claim_name(spec.pool, port) for port in shard.outside or ())
    if all(shard.outside is not None for shard in usage.carried.values()):
        return
    for index in recounted:
        kept = fieldpath.mapping(written.get(index) or {}, "metadata.annotations")
        marked = parse_ports(kept.get(labels.HELD_ELSEWHERE))
        usage.held.update(port for port in marked if port in slices[index])


def _placed(
    spec: GatewayPool, found: list[listeners.TenantListeners], shards: set[int]
) -> dict[int, int]:
    """Listener sets Namespaced XRs placed on each shard, as `_count_listeners` counts them:
    what recounting the shard costs beyond its claims."""
    by_parent = {
        listeners.gateway_parent(spec.namespace, gateway_name(spec, index)): index
        for index in shards
    }
    counts: dict[int, int] = {}
    for listener_set in found:
        index = by_parent.get(listener_set.parent)
        if (
            index is not None
            and not listener_set.refused
            and listener_set.role == labels.PLACED_ROLE
        ):
            counts[index] = counts.get(index, 0) + 1
    return counts


def _window_shards(
    spec: GatewayPool, request: StepRequest, observed: dict, written: dict, slices: "Slices"
) -> dict[int, poolwindow.Shard]:
    """Every shard the pool has (observed, or recorded in its status with its Gateway
    missing) as the window sees it before reading anything."""
    previous = _previous_entries(request, spec)
    found = {}
    for index in sorted(set(observed) | set(slices.recorded)):
        ports = slices[index]
        found[index] = poolwindow.read_shard(
            index,
            written.get(index, {}),
            live(observed.get(index), spec.wrap is not None),
            previous.get(index),
            _capacity(spec, ports) - 1,
            missing=index not in observed,
        )
    return found


def shard_claims_requirement(spec: GatewayPool, index: int) -> Requirement:
    return _pool(spec).claim_lookup(f"{CLAIMS}-shard-{index}", **{labels.SHARD: str(index)})


def shard_listener_sets_requirement(spec: GatewayPool, index: int, *, audit: bool) -> Requirement:
    """A shard's listener sets: every one when it is audited, else the Namespaced XRs'
    (they hold no claim; a cluster-scoped tenant's port is its claim's)."""
    flavour = FLAVOURS[spec.gatewayAPI]
    match = {labels.POOL: spec.pool, labels.SHARD: str(index)}
    name = f"{LISTENER_SETS}-shard-{index}"
    if not audit:
        match[labels.ROLE] = labels.PLACED_ROLE
        name = f"{LISTENER_SETS}-placed-shard-{index}"
    return Requirement(name, flavour.listenerset_api, flavour.listenerset_kind, match)


def _read_window(
    spec: GatewayPool, request: StepRequest, result: StepResult, window: poolwindow.Window
) -> tuple[list | None, list | None]:
    """The claims and listener sets of the window's shards; None while any is unread."""
    claims: list | None = []
    found: list | None = []
    for index in sorted(window.shards):
        claims_requirement_ = shard_claims_requirement(spec, index)
        sets_requirement = shard_listener_sets_requirement(spec, index, audit=index == window.audit)
        result.requirements += [claims_requirement_, sets_requirement]
        objects = request.lookups.get(claims_requirement_.name)
        sets = request.lookups.get(sets_requirement.name)
        if objects is None or claims is None:
            claims = None
        else:
            claims.extend(objects)
        if sets is None or found is None:
            found = None
        else:
            found.extend(_parse_listener_sets(sets, result))
    return claims, found


def _window_annotations(
    window: poolwindow.Window,
    carried: poolwindow.Shard | None,
    written: dict | None,
    seen: dict | None,
    spec: GatewayPool,
    *,
    free: int,
    accepting: bool,
) -> dict[str, str]:
    """The shard's free slots, for a pool recounted in windows: carried as they are when
    it is not recounted; written after a recount only where it accepted no tenant before
    and accepts none now (a tenant that read an older hint may still claim a slot)."""
    if window.mode == poolwindow.FULL:
        return {}
    if carried is not None:
        kept = fieldpath.mapping(written or {}, "metadata.annotations").get(labels.FREE)
        return {labels.FREE: kept} if kept is not None and not carried.accepting else {}
    was_accepting = fieldpath.mapping(written or {}, "metadata.labels").get(labels.ACCEPTING)
    # A new shard accepted nobody before either.
    if (seen is None or was_accepting == "false") and not accepting and free > 0:
        return {labels.FREE: str(free)}
    return {}


def _held_elsewhere(usage: Usage, index: int, ports: Slice, written: dict | None) -> str:
    """Ports of the slice that claims of other shards hold; a shard not recounted keeps
    what its Gateway says."""
    if index in usage.carried:
        kept = fieldpath.mapping(written or {}, "metadata.annotations").get(labels.HELD_ELSEWHERE)
        return kept if isinstance(kept, str) else ""
    return format_ports(usage.held_elsewhere(index, ports))


def _freshness(
    carried: poolwindow.Shard | None, seen_live: dict | None, previous: dict, request
) -> dict:
    """When the shard's figures were counted, and what its Gateway reported then."""
    if carried is None:  # recounted now
        attached = fieldpath.get(seen_live or {}, "status.attachedListenerSets", None)
        entry: dict = {"countedAt": poolwindow.format_time(request.now)}
        if isinstance(attached, int | float) and not isinstance(attached, bool):
            entry["attachedAtCount"] = int(attached)
        return entry
    entry = {}
    if carried.counted is not None:
        entry["countedAt"] = poolwindow.format_time(carried.counted)
    if carried.attached_at_count is not None:
        entry["attachedAtCount"] = carried.attached_at_count
    return entry


def _view_status(window: poolwindow.Window, shard_status: list[dict], count: int) -> dict:
    """How the pool was read: whole (Full), or a window of shards (Window) with the oldest
    count of any shard."""
    view: dict = {"mode": window.mode, "recounted": count}
    if window.mode == poolwindow.WINDOW:
        view["recounted"] = sum(1 for s in shard_status if s["index"] in window.shards)
        counted = [s.get("countedAt") for s in shard_status]
        view["oldestCount"] = "" if None in counted else min(counted, default="")
        view["bytesBudgeted"] = window.bytes
    return view


def _previous_entries(request: StepRequest, spec: GatewayPool) -> dict[int, dict]:
    """The pool's previous status entries by shard index."""
    entries = {}
    for entry in (_previous_status(request, spec) or {}).get("shards") or ():
        if isinstance(entry, dict):
            index = entry.get("index")
            if isinstance(index, int | float) and not isinstance(index, bool):
                entries[int(index)] = entry
    return entries


def _observed_shards(request: StepRequest) -> dict[int, dict]:
    found = {}
    for key, obj in request.observed.items():
        match = KEY.match(key)
        if match:
            found[int(match.group(1))] = obj
    return found


def _recorded_slices(spec: GatewayPool, request: StepRequest, written: dict) -> "Slices":
    """The slice of every shard the pool has, from its record: the pool's own status first
    (a Gateway may be edited by hand), else the shard's Gateway as the step wrote it."""
    recorded: dict[int, Slice] = {}
    for index, gateway in written.items():
        annotations = fieldpath.mapping(gateway, "metadata.annotations")
        found = _parse_slice(annotations.get(labels.PORTS))
        if found is not None:
            recorded[index] = found
    previous = _previous_status(request, spec) or {}
    for entry in previous.get("shards") or ():
        if not isinstance(entry, dict):
            continue
        index = entry.get("index")
        if isinstance(index, int | float) and not isinstance(index, bool) and index >= 1:
            found = _parse_slice(entry.get("ports"))
            if found is not None and index == int(index):
                recorded[int(index)] = found
    return Slices(spec, recorded)


class Slices:
    """Every shard's slice: the recorded one of an existing shard, else the n-th slice of
    the current input's range (a new shard)."""

    def __init__(self, spec: GatewayPool, recorded: dict[int, Slice]):
        self.spec = spec
        self.recorded = recorded

    def __getitem__(self, index: int) -> Slice:
        if index in self.recorded:
            return self.recorded[index]
        return Slice(*self.spec.slice(index))

    def conflict(self, index: int, usage: "Usage") -> str | None:
        """Why shard `index` cannot be added with its input slice, if it cannot."""
        new = self[index]
        if new.end > 65535:
            return f"shard {index}'s slice {new} ends above port 65535"
        for other, ports in sorted(self.recorded.items()):
            if other != index and ports.overlaps(new):
                return f"shard {index}'s slice {new} overlaps shard {other}'s slice {ports}"
        if new.own_port in usage.held:
            # Its own listener would take a tenant's port. A claimed port elsewhere in the
            # slice only costs the shard a slot (HELD_ELSEWHERE keeps tenants off it).
            return f"shard {index}'s own listener port {new.own_port} is claimed by a tenant"
        return None


def _records(
    spec: GatewayPool,
    request: StepRequest,
    written: dict[int, dict],
    slices: "Slices",
    usage: Usage,
    result: StepResult,
    *,
    seen: bool,
) -> dict[int, resting.Record]:
    """Each existing shard's resting record after this look (function/resting.py), and the
    ports resting on it now (into `usage`). `seen`: the lookups found something; an empty
    view frees nothing (a cold cache would free every port), it keeps the records."""
    records: dict[int, resting.Record] = {}
    if not spec.rest_seconds:
        return records
    for index, gateway in written.items():
        ports = slices[index]
        annotations = fieldpath.mapping(gateway, "metadata.annotations")
        if index in usage.carried:
            # Not recounted: its record stays as it is, and what rested still rests.
            try:
                previous = resting.read(annotations, ports.start, ports.width)
            except resting.RecordError:
                previous = None
            if previous is not None:
                records[index] = previous
                usage.resting[index] = resting.resting(previous, previous.seen, request.now)
            continue
        taken = usage.slice_taken(index, ports)
        try:
            previous = resting.read(annotations, ports.start, ports.width)
        except resting.RecordError as err:
            # Written by the pool step only, so damaged by hand: every port nobody holds
            # may have been freed a moment ago, and rests from now.
            result.results.append(
                Result(WARNING, f"shard {index}: {err}; its free ports rest from now")
            )
            records[index] = resting.restart(
                taken, ports.tenant_ports, request.now, spec.rest_seconds
            )
        else:
            if not seen and previous is not None:
                records[index] = resting.Record(spec.rest_seconds, previous.seen, previous.freed)
            else:
                records[index] = resting.advance(
                    previous, taken, ports.tenant_ports, request.now, spec.rest_seconds
                )
        usage.resting[index] = resting.resting(records[index], taken, request.now)
    return records


def _record_annotations(
    spec: GatewayPool,
    records: dict[int, resting.Record],
    index: int,
    usage: Usage,
    ports: Slice,
    request: StepRequest,
) -> dict[str, str]:
    if not spec.rest_seconds:
        return {}
    record = records.get(index) or resting.advance(
        None, usage.slice_taken(index, ports), ports.tenant_ports, request.now, spec.rest_seconds
    )
    return resting.annotations(record, ports.start, ports.width)


def _capacity(spec: GatewayPool, ports: Slice) -> int:
    """Listeners a shard takes: the input's capacity, but never more than its slice holds
    (a raised capacity cannot widen a fixed slice)."""
    return min(spec.shard_capacity, ports.width)


def _usage(spec: GatewayPool, objects: list, slices: "Slices", result: StepResult) -> Usage:
    usage = Usage()
    highest = _max_index(spec, slices)
    for obj in objects:
        claim = claimlib.parse(obj)
        if claim is None:
            name = fieldpath.text(obj, "metadata.name") or "?"
            result.results.append(Result(WARNING, f"skipped claim {name}: it names no port"))
            continue
        usage.held.add(claim.port)
        if claim.holder and not claim.blocked:  # a blocked claim is no port: it waits
            usage.holders.add(claim.holder)
        if claim.shard is None or not 1 <= claim.shard <= highest:
            # No shard of the pool, nor one it may ever have: it never makes one.
            usage.orphans.append(claim.name)
            continue
        usage.ports.setdefault(claim.shard, set()).add(claim.port)
        usage.seen.setdefault(claim.shard, []).append(drift.SeenClaim.of(claim, obj))
        if claim.port not in slices[claim.shard]:
            usage.strays.append(claim.name)
            usage.outside.setdefault(claim.shard, set()).add(claim.port)
    for name in usage.orphans:
        result.results.append(
            Result(WARNING, f"claim {name} names no shard of pool {spec.pool}", "OrphanedClaim")
        )
    return usage


def _warn_strays(usage: Usage, result: StepResult) -> None:
    if usage.strays:
        result.results.append(
            Result(
                WARNING,
                f"{len(usage.strays)} claim(s) hold ports outside their shard's slice: "
                + ", ".join(sorted(usage.strays)[:5]),
                "ClaimOutsideSlice",
            )
        )


def _count_listeners(
    spec: GatewayPool,
    usage: Usage,
    found: list[listeners.TenantListeners],
    shards: set[int],
) -> None:
    """Add the ports tenant listener sets listen on to the shards they attach to. Only a
    listener set whose parent is exactly the Gateway of a shard the pool has, and which
    that Gateway did not refuse, fills a slot: anything else in a tenant's namespace (a
    decoy naming another namespace, a Gateway that does not admit it) carries no traffic."""
    by_parent = {
        listeners.gateway_parent(spec.namespace, gateway_name(spec, index)): index
        for index in shards
    }
    for listener_set in found:
        index = by_parent.get(listener_set.parent)
        if index is not None and not listener_set.refused:
            usage.listeners.setdefault(index, set()).update(listener_set.ports)


def _max_index(spec: GatewayPool, slices: "Slices") -> int:
    """The highest shard index the pool may have: maxShards, or an existing shard above it
    (maxShards was lowered: a shard is never dropped for that)."""
    return max(spec.maxShards, max(slices.recorded, default=0))


def _shard_count(
    spec,
    usage: Usage,
    observed: dict,
    slices: Slices,
    *,
    complete: bool,
    result,
    window: poolwindow.Window,
) -> tuple[int, set[int]]:
    def free(count: int) -> int:
        return sum(
            usage.free(i, slices[i], _capacity(spec, slices[i])) for i in range(1, count + 1)
        )

    def spare(count: int) -> int:
        """Free slots the waiters leave: what the headroom is kept on."""
        return free(count) - usage.waiting

    # A claim brings back the shard it names only with a port in that shard's slice: a
    # claim's labels are no reason to compose a load balancer.
    claimed = max(
        (i for i, ports in usage.ports.items() if any(p in slices[i] for p in ports)),
        default=0,
    )
    existing = max(observed, default=0)
    count = max(existing, claimed)
    conflict = None
    while count < spec.maxShards and (count < spec.minShards or spare(count) < spec.headroom):
        conflict = slices.conflict(count + 1, usage)
        if conflict:
            break
        count += 1
    if conflict:
        # The input changed (capacity, ports) so that a new shard would share ports with
        # one that exists: nothing existing moves, the pool stops growing.
        message = f"pool {spec.pool} cannot add a shard: {conflict}; change ports or capacity"
        result.results.append(Result(WARNING, message, "SliceConflict"))
        result.conditions.append(Condition(CONDITION, "False", "SliceConflict", message))
    elif spare(count) < spec.headroom:
        message = (
            f"pool {spec.pool} has {free(count)} free slots for {usage.waiting} waiting "
            f"tenant(s) at maxShards {spec.maxShards}"
        )
        result.results.append(Result(WARNING, message, "MaxShardsReached"))
        result.conditions.append(Condition(CONDITION, "False", "MaxShardsReached", message))
    else:
        result.conditions.append(
            Condition(CONDITION, "True", "Available", f"{free(count)} free slots")
        )
    # Shrink only on a complete view (a lookup that returned nothing may be a cold cache),
    # only trailing shards that hold no claim and carry no listener, and only while the
    # rest keep the headroom. Removal takes two reconciles: first the shard stops accepting
    # tenants (drains), and only a shard already observed draining and still empty goes.
    draining: set[int] = set()
    holding = max(usage.holding(), default=0)  # never below a shard that carries a tenant
    while (
        complete
        and count > max(spec.minShards, holding)
        and spare(count - 1) >= spec.headroom
        and window.recounts(count)  # a shard goes only right after a recount found it empty
    ):
        if not _drained(observed.get(count), spec):
            draining.add(count)
            break
        count -= 1
    return count, draining


def _drained(obj: dict | None, spec: GatewayPool) -> bool:
    """Observed as not accepting and empty when the pool step last wrote it, and its Gateway
    reports no attached listener set (the Gateway controller's count, a cross-check)."""
    if obj is None:
        return True
    reported = live(obj, spec.wrap is not None) or {}
    attached = fieldpath.get(reported, "status.attachedListenerSets", 0)
    if isinstance(attached, int | float) and not isinstance(attached, bool) and attached > 0:
        return False
    gateway = obj if spec.wrap is None else claimlib.inner_manifest(obj)
    accepting = fieldpath.mapping(gateway, "metadata.labels").get(labels.ACCEPTING)
    used = fieldpath.mapping(gateway, "metadata.annotations").get(labels.USED)
    return accepting == "false" and used == "0"


def _programmed(obj: dict | None, spec: GatewayPool) -> bool:
    status = fieldpath.mapping(live(obj, spec.wrap is not None), "status")
    return conditions(status).get("Programmed") == "True"


def _new_shard_admits(spec: GatewayPool) -> dict:
    """`allowedListeners.namespaces` of a new shard: the input's, else the default."""
    return (spec.allowedListenerNamespaces or ListenerNamespaces()).allowed_listeners()


def _admitted_namespaces(spec: GatewayPool, written: dict[int, dict]) -> dict[int, dict]:
    """What every existing shard admits. Without `allowedListenerNamespaces` in the input,
    each keeps what its Gateway was made with (as the step wrote it): a default that changed
    between versions must not shut out the listeners a live shard carries. Given, it is
    the operator's choice for every shard."""
    if spec.allowedListenerNamespaces is not None:
        return {}
    admitted = {}
    for index, gateway in written.items():
        recorded = fieldpath.get(gateway, "spec.allowedListeners.namespaces", None)
        try:
            admitted[index] = ListenerNamespaces.model_validate(recorded).allowed_listeners()
        except ValueError:
            continue  # unreadable (edited by hand): the default
    return admitted


def _warn_all_namespaces(
    spec: GatewayPool, admitted: dict[int, dict], count: int, result: StepResult
) -> None:
    """Shards that admit ListenerSets from every namespace: anyone who may create one can
    take a free port before a tenant's listener is there."""
    open_to_all = [
        index
        for index in range(1, count + 1)
        if admitted.get(index, _new_shard_admits(spec))["from"] == "All"
    ]
    if not open_to_all:
        return
    if spec.allowedListenerNamespaces is not None:
        why = "allowedListenerNamespaces.from is All"
        fix = "label the namespaces tenant listener sets live in and use from: Selector"
    else:
        why = "they were created when All was the default, and keep it"
        fix = (
            f"label the namespaces tenant listener sets live in {labels.LISTENER_NAMESPACE}: "
            '"true", then set allowedListenerNamespaces: {from: Selector} to tighten them'
        )
    shards = ", ".join(str(i) for i in open_to_all)
    message = (
        f"shard(s) {shards} of pool {spec.pool} admit ListenerSets from every namespace "
        f"({why}): anyone who may create a ListenerSet can take their free ports; {fix}"
    )
    result.results.append(Result(WARNING, message, "ListenersFromAllNamespaces"))


def _client_address_modes(
    spec: GatewayPool, written: dict[int, dict], count: int, result: StepResult
) -> dict[int, str]:
    """Each shard's clientAddress: its own once it exists (clientaddress.py), the input's
    for a new one. A live shard left as it was is named in a Warning."""
    existing = {index: gateway for index, gateway in written.items() if index <= count}
    modes, left = clientaddress.shard_modes(
        spec.clientAddress, existing, spec.applyClientAddressToExistingShards
    )
    if left:
        names = ", ".join(f"{gateway_name(spec, i)} ({modes[i]})" for i in left)
        result.results.append(
            Result(
                WARNING,
                f"clientAddress {spec.clientAddress} applies to new shards only: {names} "
                "keep theirs (set applyClientAddressToExistingShards to switch them; on "
                "cloudscale their load balancers' pools are recreated, a short outage)",
                "ClientAddressKept",
            )
        )
    return {index: modes.get(index, spec.clientAddress) for index in range(1, count + 1)}


def _infrastructure(spec: GatewayPool, name: str, hostname: str, mode: str) -> dict:
    proxy = clientaddress.PROXY_ANNOTATIONS[spec.provider] or {}
    annotations = {
        **PROVIDER_ANNOTATIONS[spec.provider](name),
        **(proxy if mode == clientaddress.PROXY_PROTOCOL else {}),
        DNS_ANNOTATION: hostname,
        **spec.infrastructure.annotations,
    }
    infrastructure: dict = {"annotations": annotations}
    if spec.infrastructure.labels:
        infrastructure["labels"] = dict(spec.infrastructure.labels)
    return infrastructure


def _infrastructure_error(spec: GatewayPool) -> str | None:
    name, hostname = gateway_name(spec, 1), spec.hostname_for(1)
    keys = _infrastructure(spec, name, hostname, spec.clientAddress)["annotations"]
    if len(keys) > 16:
        return (
            f"infrastructure.annotations: {len(keys)} keys with the provider's and the DNS "
            "annotation; a Gateway allows at most 16"
        )
    return None


def _previous_status(request: StepRequest, spec: GatewayPool) -> dict | None:
    previous = fieldpath.get(request.xr, spec.statusPath, None)
    return previous if isinstance(previous, dict) else None
