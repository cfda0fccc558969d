"""Benchmark 6: peak RSS of the function server process under a mixed load.

`python -m function.main --insecure` in its own process gets 10,000 requests over gRPC
from 8 concurrent clients: the calls of tenant reconciles recorded from benchmark 1's
loops at pool sizes 100, 1,000 and 10,000, Crossplane v2 and v1.20 -- 95% sticky calls
and 5% allocation calls (alloc-w1, alloc-w2, alloc-full), shuffled with a fixed seed.
Peak RSS is the kernel's high-water mark, `VmHWM` in /proc/<pid>/status, read after the
last response.

A second row adds what the same server also serves in a real platform: the pool step
over 10,000 claims (benchmark 4, v2 and v1.20), 10 times among 2,000 such calls, which
needs a larger receive limit (`--max-recv-message-size 64`).

A third row is a hostile load on the response cache: 2,000 distinct requests of ~0.9 MB
each (a sticky tenant whose earlier step's desired state a tenant inflated). The cache is
bounded by bytes, so the server stays under 250 MiB however many such requests come.
"""

from __future__ import annotations

import random
import time

from bench import servers
from bench.common import Section, log, machine_line, table, verdict
from bench.fixtures import POOL, Store, fill_pool, first_requests, label_shards, requirement_loop
from function.fn import FunctionRunner

TARGET_MB = 150
LARGE_TARGET_MB = 250
LARGE_REQUESTS = 2_000
LARGE_BYTES = 900_000
SIZES = (100, 1_000, 10_000)
STICKY_SHARE = 0.95
QUICK_NOTE = " Quick mode: 500 requests (v2, pool sizes 100 and 1,000), no second row."


def tenant_payloads(quick: bool) -> tuple[list[bytes], list[bytes]]:
    runner = FunctionRunner()
    sticky, alloc = [], []
    for mode in ("v2",) if quick else ("v2", "v1"):
        tenants = first_requests(mode)
        for size in SIZES[:2] if quick else SIZES:
            store = Store(mode)
            shape = fill_pool(store, POOL, size)
            for stale in (0, 1, 2):
                try:
                    label_shards(store, shape, stale)
                except ValueError:
                    continue
                if stale == 0:
                    loop = requirement_loop(runner, tenants.sticky, store)
                    sticky += [r.SerializeToString() for r in loop.requests]
                loop = requirement_loop(runner, tenants.new, store)
                alloc += [r.SerializeToString() for r in loop.requests]
    return sticky, alloc


def pool_payloads() -> list[bytes]:
    from bench.poolstep import CLAIMS, first_request

    runner = FunctionRunner()
    out = []
    for mode in ("v2", "v1"):
        store = Store(mode)
        shape = fill_pool(store, POOL, CLAIMS)
        loop = requirement_loop(runner, first_request(mode, shape.used), store)
        out.append(loop.requests[-1].SerializeToString())
    return out


def large_payloads(sticky: list[bytes], count: int = LARGE_REQUESTS) -> list[bytes]:
    """Distinct requests of ~0.9 MB: one sticky tenant call carrying an earlier step's
    desired ConfigMap of LARGE_BYTES, different in every request (so every one misses)."""
    from crossplane.function.proto.v1 import run_function_pb2 as fnv1

    base = fnv1.RunFunctionRequest.FromString(sticky[0])
    out = []
    for n in range(count):
        req = fnv1.RunFunctionRequest()
        req.CopyFrom(base)
        blob = req.desired.resources["earlier-step"].resource
        blob.update({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{n}"}})
        blob.get_or_create_struct("data")["payload"] = f"{n:08d}" + "x" * (LARGE_BYTES - 8)
        out.append(req.SerializeToString())
    return out


def mix(total: int, sticky: list[bytes], alloc: list[bytes], extra: list[bytes]) -> list[bytes]:
    rng = random.Random(42)
    n_alloc = round(total * (1 - STICKY_SHARE))
    n_sticky = total - n_alloc - len(extra)
    out = [sticky[i % len(sticky)] for i in range(n_sticky)]
    out += [alloc[i % len(alloc)] for i in range(n_alloc)]
    rng.shuffle(out)
    step = max(1, len(out) // (len(extra) + 1))
    for i, payload in enumerate(extra):  # spread evenly
        out.insert((i + 1) * step, payload)
    return out


def measure(payloads: list[bytes], max_recv_mb: int | None) -> dict:
    server = servers.start("real", max_recv_mb=max_recv_mb)
    try:
        start = server.status("VmRSS")
        t0 = time.perf_counter()
        errors = servers.send_all(server, payloads)
        seconds = time.perf_counter() - t0
        return {
            "start": start,
            "peak": server.status("VmHWM"),
            "end": server.status("VmRSS"),
            "errors": errors,
            "seconds": seconds,
        }
    finally:
        server.stop()


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    total = 500 if quick else 10_000
    log("rss: recording requests")
    sticky, alloc = tenant_payloads(quick)
    runs = [("tenant calls", mix(total, sticky, alloc, []), None, TARGET_MB)]
    if not quick:
        pool = pool_payloads()
        label = "tenant calls + 10 pool steps (10,000 claims)"
        runs.append((label, mix(2_000, sticky, alloc, pool * 5), 64, TARGET_MB))
        label = f"{LARGE_REQUESTS:,} distinct ~0.9 MB tenant calls (the cache's byte bound)"
        runs.append((label, large_payloads(sticky), None, LARGE_TARGET_MB))
    rows, notes = [], []
    for label, payloads, limit, target in runs:
        log(f"rss: {label}: {len(payloads):,} requests")
        found = measure(payloads, limit)
        if found["errors"]:
            raise RuntimeError(f"{label}: {found['errors']} failed calls")
        peak_mb = found["peak"] / 1024
        rows.append(
            (
                label,
                f"{len(payloads):,}",
                f"{sum(map(len, payloads)) / 1e6:,.0f} MB",
                "default (4)" if limit is None else str(limit),
                f"{found['start'] / 1024:.0f}",
                f"{peak_mb:.0f}",
                f"{found['end'] / 1024:.0f}",
                f"{len(payloads) / found['seconds']:,.0f}",
                f"< {target}",
                verdict(peak_mb < target),
            )
        )
        if peak_mb >= target:
            notes.append(f"MISSED: peak RSS {peak_mb:.0f} MiB with {label} (target < {target} MB).")
    section = Section(
        "rss",
        "6. Peak RSS of the function server",
        "`python -m function.main --insecure` in its own process gets 10,000 requests over "
        "gRPC from 8 concurrent clients: calls recorded from benchmark 1's requirement loops "
        "at pool sizes 100, 1,000 and 10,000, Crossplane v2 and v1.20, 95% sticky and 5% "
        "allocation calls (alloc-w1, -w2, -full), shuffled with a fixed seed. Peak RSS = "
        "`VmHWM` in /proc/<pid>/status after the last response. The second row is an extra "
        "beyond the brief: what the same server also serves on a platform, the pool step "
        "over 10,000 claims (benchmark 4, v2 and v1.20) 10 times among 2,000 calls, with "
        "`--max-recv-message-size 64` (it needs more than the default 4)."
        + (QUICK_NOTE if quick else ""),
    )
    section.tables.append(
        (
            f"Target: peak RSS < {TARGET_MB} MB, < {LARGE_TARGET_MB} MB for the hostile row "
            "(figures in MiB).",
            table(
                [
                    "load",
                    "requests",
                    "bytes sent",
                    "--max-recv-message-size",
                    "RSS at start",
                    "peak RSS (VmHWM)",
                    "RSS at end",
                    "requests/s",
                    "target (MiB)",
                    "met",
                ],
                rows,
            ),
        )
    )
    section.notes += notes
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
