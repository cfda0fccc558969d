"""Benchmark 1: the tenant step per reconcile, sticky and allocation, by pool size.

For each pool size the pool is filled as the pool step would leave it (99 tenants per
cloudscale shard, lowest shard first, full shards `accepting: "false"`), and Crossplane's
requirement loop is played against it for

* sticky: a settled tenant (claim held, data path Ready) on shard 1;
* alloc-w1: a new tenant; the lowest accepting shard has room: the first window of claims
  (one shard of 99 slots: CLAIM_BUDGET) decides. Same shape at every size, so the sizes
  compare like for like;
* alloc-w2: a new tenant; the lowest shard that still says it accepts is in fact full
  (its Gateway's hint is one claim old), the next one has room: the second window decides.
* alloc-full: the two lowest accepting shards are in fact full: both windows (198 claims,
  the claim budget) are read, the largest request a tenant reconcile causes; the function
  reports PoolFull although a higher shard has room (until the pool step relabels).
  Needs >= 2 full shards: from 1,000 tenants.
* alloc-queue: as alloc-w2, with 100 other tenants waiting (their tickets are read, and
  count against the claim budget: the second window is left out, the tenant is Queued).

One pool cannot hold 100,000 tenants at capacity 100 (1,011 shards x 100 ports is more
than the 55,536 ports from 10000 to 65535; claim names make ports unique per pool), so the
100,000 row is two pools of 50,000 in the same namespace and store, the tenant in one.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

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
    POOL,
    Loop,
    PoolShape,
    Store,
    Tenants,
    claimed_shard,
    condition_reason,
    fill_pool,
    first_requests,
    label_shards,
    requirement_loop,
    ticket_object,
    trim_open_shard,
)
from function.fn import FunctionRunner

SIZES = (100, 1_000, 10_000, 100_000)
POOL_LIMIT = 50_000  # tenants per pool in the 100,000 row
MB = 1_000_000
RATIO_TARGET = 1.3
PATHS = ("sticky", "alloc-w1", "alloc-w2", "alloc-queue", "alloc-full")
STALE = ((0, ("sticky", "alloc-w1")), (1, ("alloc-w2", "alloc-queue")), (2, ("alloc-full",)))
WAITING = 100  # other tenants in line on the alloc-queue path


@dataclass
class Row:
    mode: str
    path: str
    size: int
    shards: str
    loop: Loop
    handler: list[float]  # median thread CPU seconds per call
    wall: list[float]  # median wall seconds per call
    outcome: str

    @property
    def total(self) -> float:
        return sum(self.handler)


def build_store(mode: str, size: int) -> tuple[Store, PoolShape]:
    store = Store(mode)
    shape = fill_pool(store, POOL, min(size, POOL_LIMIT))
    if size > POOL_LIMIT:
        fill_pool(store, "redis", size - POOL_LIMIT)  # a second pool beside it
    trim_open_shard(store, shape)
    return store, shape


def measure(mode: str, tenants: Tenants, store: Store, shape, size: int, path: str, runner) -> Row:
    first = tenants.sticky if path == "sticky" else tenants.new
    if path == "alloc-queue":
        for number in range(WAITING):
            store.add(ticket_object(shape.pool, number, mode))
    loop = requirement_loop(runner, first, store)
    if path == "alloc-queue":
        store.remove_tickets()
    if not loop.stable:
        raise RuntimeError(f"{mode} {path} {shape.tenants}: requirements did not stabilise")
    reason = condition_reason(loop.final, "TCPAccessReady")
    if path == "sticky":
        if reason != "Ready":
            raise RuntimeError(f"{mode} sticky {shape.tenants}: {reason}")
        outcome = "Ready (shard 1)"
    elif path == "alloc-queue":
        if reason != "Queued":
            raise RuntimeError(f"{mode} {path} {shape.tenants}: {reason}")
        outcome = f"Queued behind {WAITING} (shard {shape.expected_shard} has room)"
    elif path == "alloc-full":
        if reason != "PoolFull":
            raise RuntimeError(f"{mode} {path} {shape.tenants}: {reason}")
        room = min(i for i, n in shape.used.items() if n < 99)
        outcome = f"PoolFull (shard {room} has room)"
    else:
        shard = claimed_shard(loop.final)
        if reason != "Claiming" or shard != shape.expected_shard:
            raise RuntimeError(f"{mode} {path} {shape.tenants}: {reason} on shard {shard}")
        outcome = f"claims on shard {shard}"
    shards = f"{shape.shards:,}"
    if size > POOL_LIMIT:  # a second pool of the same size beside it
        shards += f" (+{shape.shards:,})"
    return Row(mode, path, size, shards, loop, [], [], outcome)


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    sizes = (100, 10_000) if quick else SIZES
    rounds = 2 if quick else 12  # x 3 runs per round
    repeats = rounds * 3
    modes = ("v2",) if quick else ("v2", "v1")
    runner = FunctionRunner(cache_size=0)  # time the computation, not cache hits
    rows: list[Row] = []
    for mode in modes:
        tenants = first_requests(mode)
        for size in sizes:
            store, shape = build_store(mode, size)
            for stale, paths in STALE:
                try:
                    label_shards(store, shape, stale)
                except ValueError:
                    continue  # too few full shards for this path at this size
                for path in paths:
                    log(f"tenant: {mode} {path} {size:,}")
                    rows.append(measure(mode, tenants, store, shape, size, path, runner))
            del store, shape
            gc.collect()
    # Time only once every pool is gone (a process holding 100,000 claims as dicts pays
    # for them in every full garbage collection; a function server does not), and
    # round-robin over all requests, so that load from other processes hits all alike.
    jobs = [(runner, q) for row in rows for q in row.loop.requests]
    log(f"tenant: timing {len(jobs)} requests, {rounds} rounds")
    timings = iter(time_interleaved(jobs, rounds=rounds))
    for row in rows:
        timed = [next(timings) for _ in row.loop.requests]
        row.handler = [t.cpu for t in timed]
        row.wall = [t.wall for t in timed]
    rows.sort(key=lambda r: (modes.index(r.mode), PATHS.index(r.path), r.size))
    section = Section(
        "tenant",
        "1. Tenant step: one reconcile, by pool size",
        "Crossplane's requirement loop played against an in-memory pool (objects carry "
        "server metadata, owner references and Gateway status; no managedFields). "
        "`v2`: Crossplane v2 as `tests/simulator` models it: it answers both "
        "`requirements.resources` and the deprecated `requirements.extra_resources`, so "
        "every lookup arrives twice, and claims are Leases. `v1`: Crossplane v1.20, "
        "`extra_resources` only, claims are provider-kubernetes Objects (wrap). Handler = "
        "median of `await FunctionRunner().RunFunction(req, None)` per call of the loop, "
        f"{repeats}+ runs each, request building excluded; total = the sum over the loop. "
        "Handler times are thread CPU time (other engineers' test runs share the 2 cores, "
        "which inflates wall time; the wall total is shown beside it). "
        "Paths: `sticky` = a settled tenant on shard 1; `alloc-w1` = a new tenant, the "
        "lowest accepting shard has room (same shape at every size); `alloc-w2` = the "
        "lowest accepting shard is in fact full (hint one claim old), the next has room: "
        f"the second window of claims decides; `alloc-queue` = alloc-w2 with {WAITING} "
        "other tenants waiting: their tickets are read and count against the claim budget, "
        "the second window is left out, the tenant is Queued; `alloc-full` = the two lowest "
        "accepting shards are full: both windows, 198 claims (the claim budget), the "
        "largest request a tenant reconcile can cause, ending PoolFull (from 1,000 "
        "tenants). The partly filled shard is trimmed to one claim at every size (so a new "
        "tenant sees the same shape: up to 98 fewer tenants than the row says). The "
        "100,000 row is two "
        "pools of 50,000 (one pool cannot hold more than ~55,000 tenants at capacity 100: "
        "ports 10000-65535 are unique per pool).",
    )
    header = [
        "mode",
        "path",
        "tenants",
        "shards",
        "calls",
        "request bytes per call",
        "max request",
        "total bytes",
        "handler ms per call (CPU)",
        "handler total ms (CPU)",
        "wall total ms",
        "outcome",
    ]
    body = [
        (
            r.mode,
            r.path,
            f"{r.size:,}" + (" (2x50,000)" if r.size > POOL_LIMIT else ""),
            r.shards,
            len(r.loop.requests),
            " / ".join(fmt_bytes(s) for s in r.loop.sizes),
            fmt_bytes(max(r.loop.sizes)),
            fmt_bytes(sum(r.loop.sizes)),
            " / ".join(fmt_ms(h) for h in r.handler),
            fmt_ms(r.total),
            fmt_ms(sum(r.wall)),
            r.outcome,
        )
        for r in rows
    ]
    section.tables.append(("", table(header, body)))

    checks = []
    for mode in modes:
        for path in PATHS:
            mine = {r.size: r for r in rows if r.mode == mode and r.path == path}
            if not mine:
                continue
            biggest = max(max(r.loop.sizes) for r in mine.values())
            small, large = min(mine), max(mine)
            if small == large:  # --quick: one size only for this path
                size_text = f"{fmt_bytes(biggest)} ({biggest:,} B)"
                checks.append((mode, path, size_text, verdict(biggest < MB), "-", "-"))
                continue
            ratio = mine[large].total / mine[small].total
            checks.append(
                (
                    mode,
                    path,
                    f"{fmt_bytes(biggest)} ({biggest:,} B)",
                    verdict(biggest < MB),
                    f"{ratio:.2f}x ({large:,} vs {small:,})",
                    verdict(ratio <= RATIO_TARGET),
                )
            )
    section.tables.append(
        (
            "Targets: every request < 1 MB (10^6 bytes); handler total (CPU) at the largest "
            f"size (100,000; 10,000 with --quick) <= {RATIO_TARGET}x the smallest size "
            "measured for that path (alloc-full starts at 1,000).",
            table(
                [
                    "mode",
                    "path",
                    "largest request",
                    "< 1 MB",
                    "handler total, largest / smallest size",
                    f"<= {RATIO_TARGET}x",
                ],
                checks,
            ),
        )
    )
    section.notes.append(
        "The sticky requests are the same bytes at every size (a sticky reconcile reads "
        "only its own shard's Gateway), so differences along a sticky row are noise of the "
        "shared machine, not growth with the pool."
    )
    for mode, path, _, ok_size, ratio, ok_ratio in checks:
        if "MISSED" in ok_size:
            section.notes.append(f"MISSED: {mode} {path}: a request is 1 MB or larger.")
        if "MISSED" in ok_ratio:
            section.notes.append(
                f"MISSED: {mode} {path}: handler total grows with the pool: {ratio}."
            )
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
