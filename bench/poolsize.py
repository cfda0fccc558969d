"""Benchmark: the pool step by pool size (1,000, 10,000 and 50,000 claims).

The baseline for a pool step whose cost grows with shards rather than claims. For each size
and Crossplane flavour, one reconcile's requirement loop is played against a full pool
(99 claims per cloudscale shard, 506 shards at 50,000): the largest request the step
receives (observed Gateways plus resolved lookups), the part the lookups add (largest
request minus the first, which carries the observed Gateways alone), handler CPU for the
whole reconcile, and that CPU over the first call's (the observed Gateways alone). The
pool step of `bench.poolstep` is reused; only the sizes differ.
"""

from __future__ import annotations

import time

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
from bench.fixtures import POOL, Store, condition_reason, fill_pool, requirement_loop
from bench.poolstep import first_request, pool_input
from function.fn import FunctionRunner

SIZES = (1_000, 10_000, 50_000)
QUICK_SIZES = (1_000, 10_000)
MIB = 1024 * 1024
LOOKUP_TARGET = 1 * MIB  # issue 17: what the lookups add stays under 1 MiB
REQUEST_TARGET = 4 * MIB  # gRPC's default receive limit
RATIO_TARGET = 1.3  # issue 17: a reconcile within 1.3x of its first call, 1k to 50k
# 50,000 tenants need 506 shards of 100 ports: the whole upper port range.
PORTS = "10000-65535"
MAX_SHARDS = 550  # 550 x 100 ports fit the range; the pool needs 506


def measure(mode: str, claims: int, *, rounds: int) -> dict:
    runner = FunctionRunner(cache_size=0)  # time the computation, not cache hits
    store = Store(mode)
    shape = fill_pool(store, POOL, claims)
    spec = pool_input(mode, ports=PORTS, max_shards=MAX_SHARDS)
    loop = requirement_loop(runner, first_request(mode, shape.used, spec), store)
    rsp = loop.final
    if condition_reason(rsp, "PoolCapacity") != "Available" or len(rsp.desired.resources) != len(
        shape.used
    ):
        raise RuntimeError(f"pool step: {rsp.conditions} {len(rsp.desired.resources)}")
    del store
    timed = time_interleaved(
        [(runner, q) for q in loop.requests], rounds=rounds, per_round=1, warm=rounds > 1
    )
    sizes = loop.sizes
    reconcile = sum(t.cpu for t in timed)
    return {
        "mode": mode,
        "claims": claims,
        "shards": len(shape.used),
        "calls": len(loop.requests),
        "first": sizes[0],
        "largest": max(sizes),
        "lookups": max(sizes) - sizes[0],
        "first_cpu": timed[0].cpu,
        "reconcile_cpu": reconcile,
        "ratio": reconcile / timed[0].cpu if timed[0].cpu else float("inf"),
    }


def run(quick: bool = False, sizes: tuple[int, ...] | None = None) -> Section:
    started = time.perf_counter()
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    rounds = 1 if quick else 3
    rows, notes = [], []
    results = []
    for claims in sizes:
        for mode in ("v2", "v1"):
            log(f"poolsize: {mode}, {claims:,} claims")
            results.append(measure(mode, claims, rounds=rounds))
    for r in results:
        rows.append(
            (
                r["mode"],
                f"{r['claims']:,}",
                r["shards"],
                r["calls"],
                fmt_bytes(r["first"]),
                fmt_bytes(r["largest"]),
                verdict(r["largest"] < REQUEST_TARGET),
                fmt_bytes(r["lookups"]),
                verdict(r["lookups"] < LOOKUP_TARGET),
                fmt_ms(r["first_cpu"]),
                fmt_ms(r["reconcile_cpu"]),
                f"{r['ratio']:.1f}x",
                verdict(r["ratio"] <= RATIO_TARGET),
            )
        )
        for name, ok in (
            ("largest request", r["largest"] < REQUEST_TARGET),
            ("lookups' bytes", r["lookups"] < LOOKUP_TARGET),
            ("reconcile / first call", r["ratio"] <= RATIO_TARGET),
        ):
            if not ok:
                notes.append(f"MISSED: {r['mode']} pool step at {r['claims']:,} claims: {name}.")
    section = Section(
        "poolsize",
        "Pool step by pool size",
        "One reconcile of the pool step (`GatewayPool`) per pool size and flavour, 99 claims "
        "per cloudscale shard (capacity 100), ports 10000-65535. `first` is the first "
        "request: the pool XR and its observed shard Gateways alone. `largest` is the "
        "largest request once the lookups resolve; `lookups` is what they add to it. "
        "Handler = thread CPU median per call, "
        f"{rounds} run(s); `reconcile` sums every call of the loop; `ratio` is reconcile "
        "over the first call. Targets (issue 17): lookups < 1 MiB, largest < 4 MiB, "
        f"ratio <= {RATIO_TARGET}x at every size.",
    )
    section.tables.append(
        (
            "",
            table(
                [
                    "mode",
                    "claims",
                    "shards",
                    "calls",
                    "first",
                    "largest",
                    "< 4 MiB",
                    "lookups",
                    "< 1 MiB",
                    "first call CPU",
                    "reconcile CPU",
                    "ratio",
                    f"<= {RATIO_TARGET}x",
                ],
                rows,
            ),
        )
    )
    section.notes.extend(notes)
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
