"""Benchmark: the pool step by pool size (1,000, 10,000 and 50,000 claims), in steady state.

A pool of 99 claims per cloudscale shard (506 shards at 50,000), each tenant with its claim
and its ListenerSet in the store (as the API server returns them: status, managedFields),
run as in production: every reconcile's desired Gateways come back as the observed composed
resources (served, with the Gateway controller's status: `attachedListenerSets` is the true
number of tenant listener sets on the shard) and its status (`status.pool`) comes back in the
observed XR. From a state where no shard has been counted yet (`countedAt`), reconciles run
until every shard has been; the steady-state reconcile after that is the one measured:

* `first`: its first request (the pool XR and its observed Gateways alone);
* `largest`: its largest request once the lookups resolve; `lookups`: largest minus first;
* handler CPU of the first call and of the whole reconcile (every call of the requirement
  loop summed), and their ratio;
* reconciles until every shard was recounted (from the state with no `countedAt`).

Above `REPLAY_ABOVE` claims the recount cycle (hundreds of reconciles of ~1 s) is replayed
through `function.poolwindow.choose` over the same shards instead (checked against the real
cycle at the smaller sizes), and the steady state is seeded with what that cycle leaves:
each shard's `countedAt` and `attachedAtCount` in the status; real reconciles run from there.

`convergence` rows (10,000 claims): reconciles until the status is right again after 1,000
deletions spread over the pool, and until the pool has grown for a burst of waiting tenants
(live tickets). `rss`: peak RSS of one function server process serving the tenant step and
the pool step at 50,000 claims (both modes).
"""

from __future__ import annotations

import datetime
import math
import random
import time
from dataclasses import dataclass, field

from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from bench.common import (
    Section,
    fmt_bytes,
    fmt_ms,
    log,
    machine_line,
    table,
    time_interleaved,
    verdict,
)
from bench.fixtures import (
    HEADROOM,
    NS,
    POOL,
    SLOTS,
    Loop,
    PoolShape,
    Store,
    _condition,
    _uid,
    condition_reason,
    fill_pool,
    gateway_status,
    remove_tenant,
    requirement_loop,
    served,
    ticket_object,
)
from bench.poolstep import POOL_XR, pool_input
from function import poolwindow
from function.builders.object import wrap
from function.fn import FunctionRunner
from function.pool import KEY
from tests.simulator import dict_to_struct
from tests.simulator.crossplane import V2_CAPABILITIES

SIZES = (1_000, 10_000, 50_000)
QUICK_SIZES = (1_000, 10_000)
MODES = ("v2", "v1")
MIB = 1024 * 1024
LOOKUP_TARGET = 1 * MIB  # issue 17: what the lookups add stays under 1 MiB
REQUEST_TARGET = 4 * MIB  # gRPC's default receive limit
RATIO_GROWTH = 1.3  # issue 17: the ratio within 1.3x from 1,000 to 50,000 claims
RSS_TARGET_MIB = 150
# 50,000 tenants need 506 shards of 100 ports: the whole upper port range.
PORTS = "10000-65535"
MAX_SHARDS = 550  # 550 x 100 ports fit the range; the pool needs 506
GATEWAY_API = "v1.6"
REPLAY_ABOVE = 20_000  # claims: the recount cycle is replayed, not reconciled
QUICK_REPLAY_ABOVE = 5_000
MAX_RECONCILES = 400
STEADY_RECONCILES = 2  # real reconciles after the cycle (or the seeded state), then measured
INTERVAL = datetime.timedelta(seconds=60)  # Crossplane's default poll interval
DELETION_SIZES = (10_000,)  # a deletion wave takes about a recount cycle: 10,000 only
BURST_SIZES = (10_000, 50_000)  # a burst takes a reconcile or two, on the measured pool
DELETIONS = 1_000
WAITING = 300  # live tickets of a burst of new tenants: beyond the headroom (5)


class Clock:
    """The pool step's clock: one poll interval later every reconcile."""

    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self) -> None:
        self.now += INTERVAL


@dataclass
class Pool:
    """One pool in operation: the cluster's objects (`store`), the pool XR's status and its
    observed Gateways as the last reconcile left them."""

    mode: str
    store: Store
    shape: PoolShape
    spec: dict
    runner: FunctionRunner
    clock: Clock
    gateways: dict[int, dict]  # observed composed Gateways (Objects in v1), by shard
    structs: dict[int, object] = field(default_factory=dict)  # their Structs, once built
    status: dict = field(default_factory=dict)  # the XR's status
    reconciles: int = 0
    waiting: int = 0  # live tickets in the store

    @property
    def wrapped(self) -> bool:
        return self.mode == "v1"

    def truth(self, index: int) -> int:
        """Tenant listener sets on the shard (one per claim in the fixture)."""
        return self.shape.used.get(index, 0)

    @property
    def shards(self) -> list[dict]:
        return list((self.status.get("pool") or {}).get("shards") or [])

    @property
    def view(self) -> dict:
        return (self.status.get("pool") or {}).get("view") or {}

    def counted_all(self) -> bool:
        if self.view.get("mode") == poolwindow.FULL:
            return bool(self.shards)
        return bool(self.shards) and all(s.get("countedAt") for s in self.shards)


def observe(mode: str, index: int, gateway: dict, attached: int) -> dict:
    """A composed shard Gateway as the API server returns it: served, with the Gateway
    controller's status (`attached` tenant listener sets); in v1 the provider-kubernetes
    Object wrapping it, the Gateway in its status."""
    owner = (f"{POOL}-pool", _uid(7))
    key = f"gateway-{index}"
    if mode == "v2":
        obj = served(gateway, owner=owner, key=key)
        obj["status"] = gateway_status(index, attached)
        return obj
    if gateway.get("kind") != "Object":
        gateway = wrap(gateway, provider_config="kubernetes")
    inner = served(gateway["spec"]["forProvider"]["manifest"])
    inner["status"] = gateway_status(index, attached)
    obj = served(gateway, owner=owner, key=key)
    obj["status"] = {
        "atProvider": {"manifest": inner},
        "conditions": [
            _condition("Synced", reason="ReconcileSuccess"),
            _condition("Ready", reason="Available"),
        ],
    }
    return obj


def set_attached(pool: Pool, index: int) -> None:
    """The Gateway controller's count of the shard's listener sets, as the truth is now."""
    obj = pool.gateways[index]
    live = obj["status"]["atProvider"]["manifest"] if pool.wrapped else obj
    live["status"]["attachedListenerSets"] = pool.truth(index)
    pool.structs.pop(index, None)


def build(mode: str, claims: int, *, budget_kib: int | None = None) -> Pool:
    """A pool of `claims` tenants whose Gateways a pool step wrote (the fixture's), its XR
    with no status yet: no shard has been counted."""
    store = Store(mode)
    shape = fill_pool(store, POOL, claims, listener_sets=GATEWAY_API)
    spec = pool_input(mode, ports=PORTS, max_shards=MAX_SHARDS)
    spec["gatewayAPI"] = GATEWAY_API
    if budget_kib is not None:
        spec["readBudgetKiB"] = budget_kib
    clock = Clock()
    runner = FunctionRunner(cache_size=0, clock=clock)  # time the computation, not hits
    gateways = {}
    for index, used in shape.used.items():
        gateway = store.objects[("gateway.networking.k8s.io/v1", "Gateway")][
            (NS, f"{POOL}-{index}")
        ]
        if mode == "v1":
            written = {k: v for k, v in gateway.items() if k != "status"}
            gateway = observe(mode, index, written, used)
        gateways[index] = gateway
    return Pool(mode, store, shape, spec, runner, clock, gateways)


def request(pool: Pool) -> fnv1.RunFunctionRequest:
    """What Crossplane sends first: the pool XR (with its status) and its observed Gateways."""
    xr = {
        "apiVersion": POOL_XR[0],
        "kind": POOL_XR[1],
        "metadata": {
            "name": f"{POOL}-pool",
            "uid": _uid(7),
            "resourceVersion": str(1000 + pool.reconciles),
            "generation": 1,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {},
        },
        "spec": {"parameters": {"pool": POOL}},
    }
    if pool.status:
        xr["status"] = pool.status
    req = fnv1.RunFunctionRequest()
    req.observed.composite.resource.CopyFrom(dict_to_struct(xr))
    for index in sorted(pool.gateways):
        if index not in pool.structs:
            pool.structs[index] = dict_to_struct(pool.gateways[index])
        req.observed.resources[f"gateway-{index}"].resource.CopyFrom(pool.structs[index])
    req.desired.SetInParent()
    req.input.CopyFrom(dict_to_struct(pool.spec))
    req.context.SetInParent()
    if pool.mode == "v2":
        req.meta.capabilities.extend(V2_CAPABILITIES)
    return req


def renew_tickets(pool: Pool) -> None:
    """Waiting tenants renew their tickets every reconcile of theirs: live at the clock."""
    if not pool.waiting:
        return
    pool.store.remove_tickets()
    for n in range(pool.waiting):
        pool.store.add(ticket_object(POOL, n, pool.mode, renewed=pool.clock.now))


def reconcile(pool: Pool) -> Loop:
    """One reconcile: Crossplane's requirement loop, then what it and the controllers
    write back (the composed Gateways as served, with status; the XR's status)."""
    renew_tickets(pool)
    loop = requirement_loop(pool.runner, request(pool), pool.store)
    if not loop.stable:
        raise RuntimeError("the pool step's requirements did not settle")
    rsp = loop.final
    gateways = {}
    for key, desired in rsp.desired.resources.items():
        match = KEY.match(key)
        if match:
            index = int(match.group(1))
            obj = resource.struct_to_dict(desired.resource)
            gateways[index] = observe(pool.mode, index, obj, pool.truth(index))
    if not gateways:
        raise RuntimeError(f"the pool step desired no Gateway: {rsp.results}")
    pool.gateways, pool.structs = gateways, {}
    xr = resource.struct_to_dict(rsp.desired.composite.resource)
    pool.status = {**pool.status, **(xr.get("status") or {})}
    pool.reconciles += 1
    pool.clock.advance()
    return loop


def cycle(pool: Pool) -> int:
    """Reconciles until every shard was recounted (counted from where none has been)."""
    for n in range(1, MAX_RECONCILES + 1):
        reconcile(pool)
        if pool.counted_all():
            return n
    raise RuntimeError(f"not every shard recounted after {MAX_RECONCILES} reconciles")


def replay(pool: Pool) -> tuple[int, dict[int, datetime.datetime]]:
    """The recount cycle through `poolwindow.choose` alone, over the pool's shards as its
    Gateways say (used, accepting) and the Gateway controller reports them: reconciles until
    every shard was counted, and when each was last."""
    spec_budget = int(pool.spec.get("readBudgetKiB", 900)) * 1024
    accepting = {i for i, n in pool.shape.used.items() if n < SLOTS}
    counted: dict[int, datetime.datetime] = {}
    audited: dict[int, datetime.datetime] = {}
    now = pool.clock.now
    for n in range(1, 10 * len(pool.shape.used) + 1):
        shards = [
            poolwindow.Shard(
                index=i,
                used=used,
                free=0,
                accepting=i in accepting,
                slots=SLOTS,
                attached=used,
                attached_at_count=used if i in counted else None,
                counted=counted.get(i),
                placed=0 if i in counted else None,
                audited=audited.get(i),
            )
            for i, used in sorted(pool.shape.used.items())
        ]
        if poolwindow.full_view(shards, spec_budget, pool.wrapped):
            return 1, {}
        window = poolwindow.choose(shards, spec_budget, pool.wrapped, headroom=HEADROOM)
        for i in window.shards:
            counted[i] = now
        if window.audit is not None:
            audited[window.audit] = now
        if len(counted) == len(shards):
            return n, counted
        now += INTERVAL
    raise RuntimeError("the replayed cycle did not end")


def seed(pool: Pool, counted: dict[int, datetime.datetime]) -> None:
    """The status a completed recount cycle leaves: each shard's `countedAt` (from the
    replay, ending now) and `attachedAtCount` (the truth)."""
    shift = pool.clock.now - max(counted.values())
    for entry in pool.shards:
        index = entry["index"]
        if index in counted:
            entry["countedAt"] = poolwindow.format_time(counted[index] + shift - INTERVAL)
            entry["attachedAtCount"] = pool.truth(index)
            entry["placed"] = 0


def lookup_bytes(req: fnv1.RunFunctionRequest) -> dict[str, int]:
    """Bytes of the resolved lookups in a request, by kind of lookup (v2 sends each twice)."""
    out: dict[str, int] = {}
    for field_ in (req.required_resources, req.extra_resources):
        for name, found in field_.items():
            if "placed" in name:
                kind = "placed sets"
            elif "listenersets" in name:
                kind = "audit sets"
            elif "claims" in name:
                kind = "claims"
            else:
                kind = "tickets"
            out[kind] = out.get(kind, 0) + found.ByteSize()
    return out


def objects_read(req: fnv1.RunFunctionRequest) -> dict[str, int]:
    """Objects the resolved lookups of a request hold, by kind, each counted once."""
    out: dict[str, int] = {}
    for field_ in (req.required_resources, req.extra_resources):
        counts: dict[str, int] = {}
        for name, found in field_.items():
            kind = "sets" if "listenersets" in name else "claims" if "claims" in name else "tickets"
            counts[kind] = counts.get(kind, 0) + len(found.items)
        for kind, count in counts.items():
            out[kind] = max(out.get(kind, 0), count)
    return out


def measure(
    mode: str,
    claims: int,
    *,
    rounds: int,
    budget_kib: int | None = None,
    replay_above: int = REPLAY_ABOVE,
    burst: int = 0,
) -> dict:
    """The steady-state reconcile of a pool of `claims` tenants, and its recount cycle; with
    `burst`, then that many tenants in line at once on the same pool (`after_burst`)."""
    pool = build(mode, claims, budget_kib=budget_kib)
    replayed = claims > replay_above
    replay_cycle, counted = replay(pool)
    if replayed:
        reconcile(pool)  # the pool step's status and Gateways, then a completed cycle's
        seed(pool, counted)
        recount = replay_cycle
    else:
        recount = cycle(pool)
        if recount != replay_cycle:
            log(f"poolsize: {mode} {claims:,}: cycle {recount}, replayed {replay_cycle}")
    for _ in range(STEADY_RECONCILES - 1):
        reconcile(pool)
    view_before = dict(pool.view)
    loop = reconcile(pool)
    rsp = loop.final
    if condition_reason(rsp, "PoolCapacity") != "Available":
        raise RuntimeError(f"pool step: {rsp.conditions}")
    if len([k for k in rsp.desired.resources if KEY.match(k)]) != len(pool.shape.used):
        raise RuntimeError(f"pool step: {len(rsp.desired.resources)} Gateways")
    timed = time_interleaved(
        [(pool.runner, q) for q in loop.requests], rounds=rounds, per_round=1, warm=rounds > 1
    )
    sizes = loop.sizes
    largest = max(range(len(sizes)), key=sizes.__getitem__)
    reconcile_cpu = sum(t.cpu for t in timed)
    found = {
        "payloads": [q.SerializeToString() for q in loop.requests],
        "burst": after_burst(pool, burst) if burst else None,
    }
    return found | {
        "mode": mode,
        "claims": claims,
        "shards": len(pool.shape.used),
        "calls": len(loop.requests),
        "first": sizes[0],
        "largest": sizes[largest],
        "lookups": sizes[largest] - sizes[0],
        "by_lookup": lookup_bytes(loop.requests[largest]),
        "objects": objects_read(loop.requests[largest]),
        "first_cpu": timed[0].cpu,
        "reconcile_cpu": reconcile_cpu,
        "ratio": reconcile_cpu / timed[0].cpu if timed[0].cpu else float("inf"),
        "view": pool.view,
        "view_before": view_before,
        "recount": recount,
        "replay": replay_cycle,
        "replayed": replayed,
    }


# -- convergence --------------------------------------------------------------------------


def steady(mode: str, claims: int) -> Pool:
    """A pool after a completed recount cycle (seeded, see `seed`) and one reconcile more."""
    pool = build(mode, claims)
    _, counted = replay(pool)
    reconcile(pool)
    if counted:
        seed(pool, counted)
    reconcile(pool)
    return pool


def after_deletions(mode: str, claims: int, deletions: int, seed_: int = 17) -> dict:
    """Delete `deletions` tenants at random shards (claim and ListenerSet; each Gateway
    reports its new count), then reconcile until every shard's `used` is the truth."""
    pool = steady(mode, claims)
    rng = random.Random(seed_)
    ports = rng.sample(sorted(pool.shape.tenant_of), deletions)
    for port in ports:
        remove_tenant(pool.store, pool.shape, port)
    touched = {(p - 10000) // 100 + 1 for p in ports}
    for index in pool.gateways:
        set_attached(pool, index)
    largest, recounted = 0, []
    for n in range(1, MAX_RECONCILES + 1):
        loop = reconcile(pool)
        largest = max(largest, *loop.sizes)
        recounted.append(int(pool.view.get("recounted", 0)))
        wrong = [s["index"] for s in pool.shards if s["used"] != pool.truth(s["index"])]
        if not wrong:
            return {
                "mode": mode,
                "claims": claims,
                "what": f"{deletions:,} deletions on {len(touched)} shards",
                "reconciles": n,
                "recounted": recounted,
                "largest": largest,
                "shards": f"{len(pool.shape.used)} -> {len(pool.shards)}",
            }
    raise RuntimeError(f"used not right after {MAX_RECONCILES} reconciles")


def after_burst(pool: Pool, waiting: int) -> dict:
    """`waiting` new tenants in line at once (live tickets, no claim yet) on a pool in steady
    state: reconciles until the pool's free slots cover them and its headroom."""
    mode, claims = pool.mode, pool.shape.tenants
    before = pool.status["pool"]["totals"]["shards"]
    pool.waiting = waiting
    largest, tickets, recounted = 0, 0, []
    headroom = int(pool.spec["headroom"])
    for n in range(1, 21):
        loop = reconcile(pool)
        for q in loop.requests:
            if q.ByteSize() > largest:
                largest = q.ByteSize()
                tickets = lookup_bytes(q).get("tickets", 0)
        status = pool.status["pool"]
        recounted.append(int(pool.view.get("recounted", 0)))
        if status["waiting"] == waiting and status["totals"]["free"] - waiting >= headroom:
            return {
                "mode": mode,
                "claims": claims,
                "what": f"{waiting} waiting tenants (live tickets)",
                "reconciles": n,
                "recounted": recounted,
                "largest": largest,
                "tickets": tickets,
                "shards": f"{before:.0f} -> {status['totals']['shards']:.0f}",
            }
    raise RuntimeError(f"the pool did not grow for {waiting} waiting tenants: {pool.status}")


# -- RSS of one server serving both steps -------------------------------------------------


def rss(pool_payloads: list[bytes], quick: bool) -> dict:
    from bench import rss as rss_bench

    sticky, alloc = rss_bench.tenant_payloads(quick=quick)
    total = 500 if quick else 2_000
    repeats = 1 if quick else 3
    payloads = rss_bench.mix(total, sticky, alloc, pool_payloads * repeats)
    largest = max(map(len, pool_payloads))
    limit = max(4, math.ceil(largest / MIB))
    found = rss_bench.measure(payloads, None if limit == 4 else limit)
    if found["errors"]:
        raise RuntimeError(f"rss: {found['errors']} failed calls")
    return {
        "requests": len(payloads),
        "pool_requests": len(pool_payloads) * repeats,
        "bytes": sum(map(len, payloads)),
        "limit": limit,
        "start": found["start"] / 1024,
        "peak": found["peak"] / 1024,
        "end": found["end"] / 1024,
    }


# -- the section --------------------------------------------------------------------------


def _spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high} (median {sorted(values)[len(values) // 2]})"


def run(
    quick: bool = False,
    sizes: tuple[int, ...] | None = None,
    *,
    convergence: tuple[int, ...] | None = None,
    bursts: tuple[int, ...] | None = None,
    with_rss: bool | None = None,
    budget_kib: int | None = None,
    replay_above: int | None = None,
) -> Section:
    started = time.perf_counter()
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    rounds = 1 if quick else 3
    if convergence is None:
        convergence = () if quick else DELETION_SIZES
    if bursts is None:
        bursts = () if quick else BURST_SIZES
    with_rss = (not quick) if with_rss is None else with_rss
    if replay_above is None:
        replay_above = QUICK_REPLAY_ABOVE if quick else REPLAY_ABOVE
    results = []
    for claims in sizes:
        for mode in MODES:
            log(f"poolsize: {mode}, {claims:,} claims")
            results.append(
                measure(
                    mode,
                    claims,
                    rounds=rounds,
                    budget_kib=budget_kib,
                    replay_above=replay_above,
                    burst=WAITING if claims in bursts else 0,
                )
            )
    section = Section(
        "poolsize",
        "Pool step by pool size",
        "The pool step (`GatewayPool`) in steady state, per pool size and flavour: 99 claims "
        "per cloudscale shard (capacity 100), ports 10000-65535, each tenant's claim and "
        "ListenerSet in the store (status, managedFields), the Gateways and `status.pool` of "
        "each reconcile fed back into the next (Gateways served with the controller's status, "
        "`attachedListenerSets` = the true count). `first`: the measured reconcile's first "
        "request (pool XR and observed Gateways alone); `largest`: its largest request; "
        "`lookups`: largest minus first. Handler = thread CPU median per call, "
        f"{rounds} run(s); `reconcile` sums every call; `ratio` = reconcile over first call. "
        "`recount cycle`: reconciles from no shard counted until every shard was. Targets "
        "(issue 17): lookups < 1 MiB, largest < 4 MiB, ratio at every size <= "
        f"{RATIO_GROWTH}x the ratio at the smallest size, same flavour."
        + (f" readBudgetKiB {budget_kib}." if budget_kib else " readBudgetKiB: default (900)."),
    )
    base = {r["mode"]: r["ratio"] for r in results if r["claims"] == min(sizes)}
    rows, detail, notes = [], [], []
    for r in results:
        limit = RATIO_GROWTH * base[r["mode"]]
        ratio_ok = r["ratio"] <= limit
        view = r["view"]
        rows.append(
            (
                r["mode"],
                f"{r['claims']:,}",
                r["shards"],
                view.get("mode", "?"),
                r["calls"],
                fmt_bytes(r["first"]),
                fmt_bytes(r["largest"]),
                verdict(r["largest"] < REQUEST_TARGET),
                fmt_bytes(r["lookups"]),
                verdict(r["lookups"] < LOOKUP_TARGET),
                fmt_ms(r["first_cpu"]),
                fmt_ms(r["reconcile_cpu"]),
                f"{r['ratio']:.1f}x",
                f"{verdict(ratio_ok)} (<= {limit:.1f}x)",
                f"{r['recount']}" + (" (replayed)" if r["replayed"] else ""),
            )
        )
        parts = r["by_lookup"]
        objects = r["objects"]
        detail.append(
            (
                r["mode"],
                f"{r['claims']:,}",
                f"{view.get('recounted', 0):.0f}",
                fmt_bytes(view.get("bytesBudgeted", 0)),
                f"{objects.get('claims', 0):,}",
                f"{objects.get('sets', 0):,}",
                fmt_bytes(parts.get("claims", 0)),
                fmt_bytes(parts.get("audit sets", 0)),
                fmt_bytes(parts.get("placed sets", 0)),
                fmt_bytes(parts.get("tickets", 0)),
                f"{r['replay']}",
            )
        )
        for name, ok in (
            ("largest request", r["largest"] < REQUEST_TARGET),
            ("lookups' bytes", r["lookups"] < LOOKUP_TARGET),
            (f"ratio {r['ratio']:.1f}x over {limit:.1f}x", ratio_ok),
        ):
            if not ok:
                notes.append(f"MISSED: {r['mode']} pool step at {r['claims']:,} claims: {name}.")
    section.tables.append(
        (
            "Steady state (after the recount cycle):",
            table(
                [
                    "mode",
                    "claims",
                    "shards",
                    "view",
                    "calls",
                    "first",
                    "largest",
                    "< 4 MiB",
                    "lookups",
                    "< 1 MiB",
                    "first call CPU",
                    "reconcile CPU",
                    "ratio",
                    f"<= {RATIO_GROWTH}x ratio at {min(sizes):,}",
                    "recount cycle",
                ],
                rows,
            ),
        )
    )
    section.tables.append(
        (
            "What the lookups of the largest request hold, in bytes as sent (v2: in "
            "`required_resources` only, the function asks with `requirements.resources` "
            "when Crossplane advertises it; v1.20: `extra_resources`). `audit sets`: every "
            "listener set of the audited shard; `placed sets`: Namespaced XRs' (none here: "
            "the tenants are cluster-scoped). `recounted`, `budgeted`: the pool's "
            "`status.pool.view` (shards recounted, the window's estimate of its lookups). "
            "`replayed cycle`: the recount cycle through `poolwindow.choose` alone.",
            table(
                [
                    "mode",
                    "claims",
                    "recounted",
                    "budgeted",
                    "claims read",
                    "sets read",
                    "claims",
                    "audit sets",
                    "placed sets",
                    "tickets",
                    "replayed cycle",
                ],
                detail,
            ),
        )
    )
    changes = [r["burst"] for r in results if r["burst"]]
    for claims in convergence:
        for mode in MODES:
            log(f"poolsize: {DELETIONS:,} deletions, {mode}, {claims:,} claims")
            changes.append(after_deletions(mode, claims, DELETIONS))
    if changes:
        conv_rows = []
        for found in sorted(changes, key=lambda f: ("tickets" in f, f["claims"])):
            conv_rows.append(
                (
                    found["mode"],
                    f"{found['claims']:,}",
                    found["what"],
                    found["reconciles"],
                    _spread(found["recounted"]),
                    found["shards"],
                    fmt_bytes(found["largest"]),
                    verdict(found["largest"] < REQUEST_TARGET),
                    fmt_bytes(found["tickets"]) if "tickets" in found else "",
                )
            )
            if found["largest"] >= REQUEST_TARGET:
                notes.append(
                    f"MISSED: {found['mode']} at {found['claims']:,} claims, {found['what']}: "
                    f"a request of {fmt_bytes(found['largest'])}."
                )
        section.tables.append(
            (
                "Convergence from the steady state. Deletions: tenants deleted at random "
                "shards (claim and ListenerSet), each Gateway reporting its new count; "
                "reconciles until every shard's `used` in `status.pool` is the true count. "
                "Burst: live tickets of tenants in line; reconciles until the free slots "
                "cover them plus the headroom. `largest`: the largest request meanwhile; "
                "`tickets`: what the ticket lookup adds to it (read whole, outside the budget).",
                table(
                    [
                        "mode",
                        "claims",
                        "change",
                        "reconciles",
                        "shards recounted per reconcile",
                        "shards",
                        "largest",
                        "< 4 MiB",
                        "tickets",
                    ],
                    conv_rows,
                ),
            )
        )
    if with_rss:
        biggest = max(sizes)
        payloads = [p for r in results if r["claims"] == biggest for p in r["payloads"]]
        log(f"poolsize: rss, {len(payloads)} pool-step requests at {biggest:,} claims")
        found = rss(payloads, quick)
        peak_ok = found["peak"] < RSS_TARGET_MIB
        section.tables.append(
            (
                "Peak RSS (MiB, `VmHWM`) of one `python -m function.main` process serving "
                f"tenant-step calls (section 6's sticky and allocation mix) and the steady-state "
                f"pool-step calls at {biggest:,} claims, both flavours, over gRPC from 8 "
                f"clients. Target < {RSS_TARGET_MIB} MiB.",
                table(
                    [
                        "requests",
                        "pool-step requests",
                        "bytes sent",
                        "--max-recv-message-size",
                        "RSS at start",
                        "peak RSS",
                        "RSS at end",
                        f"< {RSS_TARGET_MIB} MiB",
                    ],
                    [
                        (
                            f"{found['requests']:,}",
                            found["pool_requests"],
                            f"{found['bytes'] / 1e6:,.0f} MB",
                            "default (4)" if found["limit"] == 4 else str(found["limit"]),
                            f"{found['start']:.0f}",
                            f"{found['peak']:.0f}",
                            f"{found['end']:.0f}",
                            verdict(peak_ok),
                        )
                    ],
                ),
            )
        )
        if not peak_ok:
            notes.append(
                f"MISSED: peak RSS {found['peak']:.0f} MiB serving both steps at {biggest:,} "
                f"claims (target < {RSS_TARGET_MIB} MiB)."
            )
    for r in results:
        del r["payloads"], r["burst"]
    section.notes.extend(notes)
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
