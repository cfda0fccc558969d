"""Benchmark 2: sticky-path throughput over real gRPC, real function vs a no-op function.

Both servers run in their own process, started the way the function is served
(`python -m function.main --insecure ...` and `python -m bench.noop --insecure ...`, both
`function/server.py`: one grpc.aio server, one asyncio loop, gRPC metrics on both).
8 concurrent clients (grpc.aio, one channel each) in the benchmark process send the two
requests of a sticky reconcile (Crossplane v2, tenant on shard 1 of a 1,000-tenant pool)
round-robin as pre-serialised bytes, so the clients do no protobuf work. Runs alternate
real / no-op, after a warm-up, and the median of the runs is reported.
"""

from __future__ import annotations

import time

from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from bench import servers
from bench.common import Section, fmt_bytes, log, machine_line, median, table, verdict
from bench.fixtures import (
    POOL,
    Store,
    condition_reason,
    fill_pool,
    first_requests,
    requirement_loop,
)
from function.fn import FunctionRunner

TARGET = 0.8
KINDS = ("real", "uncached", "noop")
CLIENTS = 8


def sticky_payloads() -> list[bytes]:
    tenants = first_requests("v2")
    store = Store("v2")
    fill_pool(store, POOL, 1_000, stale=1)
    loop = requirement_loop(FunctionRunner(), tenants.sticky, store)
    assert condition_reason(loop.final, "TCPAccessReady") == "Ready"
    return [r.SerializeToString() for r in loop.requests]


def check(server: servers.Server, payload: bytes) -> None:
    """The served function answers the final sticky request as in process: Ready."""
    import grpc

    with grpc.insecure_channel(server.address) as channel:
        raw = channel.unary_unary(servers.METHOD)(payload, timeout=30)
    rsp = fnv1.RunFunctionResponse.FromString(raw)
    if server.kind != "noop" and condition_reason(rsp, "TCPAccessReady") != "Ready":
        raise RuntimeError(f"served function did not answer Ready: {rsp.conditions}")


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    reps, seconds, warmup = (1, 2.0, 0.5) if quick else (3, 5.0, 1.0)
    payloads = sticky_payloads()
    started_servers = [servers.start(kind) for kind in KINDS]
    loads: dict[str, list[servers.Load]] = {kind: [] for kind in KINDS}
    try:
        for server in started_servers:
            check(server, payloads[-1])
        for rep in range(reps):
            order = started_servers if rep % 2 == 0 else started_servers[::-1]
            for server in order:
                log(f"throughput: {server.kind} run {rep + 1}/{reps}")
                load = servers.drive(
                    server, payloads, clients=CLIENTS, warmup=warmup, seconds=seconds
                )
                if load.errors:
                    raise RuntimeError(f"{server.kind}: {load.errors} failed calls")
                loads[server.kind].append(load)
    finally:
        for server in started_servers:
            server.stop()

    rate = {k: median([x.rate for x in v]) for k, v in loads.items()}
    busy = {k: median([x.server_busy for x in v]) for k, v in loads.items()}
    ratio = rate["real"] / rate["noop"]
    per_cpu = {k: median([x.rate / x.server_busy for x in v]) for k, v in loads.items()}
    section = Section(
        "throughput",
        "2. Sticky-path throughput over gRPC: real function vs no-op",
        f"{CLIENTS} concurrent grpc.aio clients (one channel each) against a server process; "
        "the two requests of one sticky reconcile (Crossplane v2, "
        + " and ".join(fmt_bytes(len(p)) for p in payloads)
        + f") sent round-robin as raw bytes. {reps} run(s) of {seconds:.0f} s per server "
        f"after {warmup:.1f} s warm-up, alternating real / no-op; medians. Server CPU = "
        "the server process's CPU seconds per second of the run (100% = one core: its "
        "asyncio loop is single-threaded, gRPC's C core adds some threads). Client and "
        "server share the machine's 2 cores with whatever else runs; requests per server "
        "CPU-second is the figure least disturbed by that.",
    )
    rows = [
        (
            kind,
            f"{rate[kind]:,.0f}",
            " / ".join(f"{x.rate:,.0f}" for x in loads[kind]),
            f"{busy[kind] * 100:.0f}%",
            f"{per_cpu[kind]:,.0f}",
            f"{1000 * CLIENTS / rate[kind]:.2f}",
        )
        for kind in KINDS
    ]
    section.tables.append(
        (
            "",
            table(
                [
                    "function",
                    "requests/s (median)",
                    "runs",
                    "server CPU",
                    "requests per server CPU-second",
                    "latency ms (8 in flight)",
                ],
                rows,
            ),
        )
    )
    section.tables.append(
        (
            f"Target: real / no-op >= {TARGET}. `real` answers a repeated request from its "
            "response cache (a settled tenant's reconciles repeat); `uncached` computes every "
            "call (TCP_ACCESS_RESPONSE_CACHE=0), which is what a changing tenant costs.",
            table(
                ["server", "/ no-op, requests/s", f">= {TARGET}", "per server CPU-second"],
                [
                    (
                        kind,
                        f"{rate[kind] / rate['noop']:.2f}",
                        verdict(rate[kind] / rate["noop"] >= TARGET) if kind == "real" else "-",
                        f"{per_cpu[kind] / per_cpu['noop']:.2f}",
                    )
                    for kind in ("real", "uncached")
                ],
            ),
        )
    )
    if ratio < TARGET:
        section.notes.append(
            f"MISSED: sticky-path throughput is {ratio:.2f}x the no-op function's "
            f"({rate['real']:,.0f} vs {rate['noop']:,.0f} requests/s), target {TARGET}."
        )
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
