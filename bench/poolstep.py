"""Benchmark 4: the pool step (GatewayPool) over 10,000 claims.

The pool composition's XR has composed its 102 shard Gateways (observed, with status);
Crossplane's requirement loop answers the step's one lookup (every claim of the pool,
10,000 of them, 99 per cloudscale shard). Reported per Crossplane flavour: the calls, the
request sizes, the handler time of each call, and the `--max-recv-message-size` the
function server needs for the largest request (the SDK's flag is in MiB; its default is
4, and Crossplane v2 sends every claim twice, see benchmark 1).
"""

from __future__ import annotations

import hashlib
import math
import time

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
    NS,
    POOL,
    Store,
    condition_reason,
    fill_pool,
    gateway_object,
    requirement_loop,
    served,
)
from function.builders.object import wrap
from function.fn import FunctionRunner
from tests.simulator import dict_to_struct
from tests.simulator.crossplane import V2_CAPABILITIES

CLAIMS = 10_000
TARGET_SECONDS = 1.0
MIB = 1024 * 1024
POOL_XR = ("platform.example.ch/v1", "XTCPGatewayPool")


def pool_input(mode: str, *, ports: str = "10000-39999", max_shards: int = 300) -> dict:
    spec = {
        "apiVersion": "tcp.fn.servala.io/v1alpha1",
        "kind": "GatewayPool",
        "pool": POOL,
        "namespace": NS,
        "gatewayClassName": "envoy-gateway",
        "provider": "cloudscale",
        "ports": ports,
        "hostname": "postgresql{index}.example.ch",
        "maxShards": max_shards,
        "headroom": 5,
    }
    if mode == "v1":
        spec["wrap"] = {"providerConfigName": "kubernetes"}
    return spec


def first_request(
    mode: str, shards: dict[int, int], spec: dict | None = None
) -> fnv1.RunFunctionRequest:
    """What Crossplane sends first: the pool XR and its observed shard Gateways."""
    xr = served(
        {
            "apiVersion": POOL_XR[0],
            "kind": POOL_XR[1],
            "metadata": {"name": "postgresql-pool", "labels": {}},
            "spec": {"parameters": {"pool": POOL}},
        }
    )
    req = fnv1.RunFunctionRequest()
    req.observed.composite.resource.CopyFrom(dict_to_struct(xr))
    for index, used in shards.items():
        gateway = gateway_object(POOL, index, used, used < 99)
        if mode == "v1":
            obj = served(wrap(gateway, provider_config="kubernetes"), key=f"gateway-{index}")
            obj["status"] = {"atProvider": {"manifest": gateway}}
            gateway = obj
        req.observed.resources[f"gateway-{index}"].resource.CopyFrom(dict_to_struct(gateway))
    req.desired.SetInParent()
    req.input.CopyFrom(dict_to_struct(spec or pool_input(mode)))
    req.context.SetInParent()
    if mode == "v2":
        req.meta.tag = hashlib.sha256(req.SerializeToString(deterministic=True)).hexdigest()
        req.meta.capabilities.extend(V2_CAPABILITIES)
    return req


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    rounds = 1 if quick else 5
    modes = ("v2",) if quick else ("v2", "v1")
    runner = FunctionRunner(cache_size=0)  # time the computation, not cache hits
    rows, checks, needs = [], [], {}
    for mode in modes:
        log(f"pool: {mode}, {CLAIMS:,} claims")
        store = Store(mode)
        shape = fill_pool(store, POOL, CLAIMS)
        loop = requirement_loop(runner, first_request(mode, shape.used), store)
        rsp = loop.final
        if condition_reason(rsp, "PoolCapacity") != "Available" or len(
            rsp.desired.resources
        ) != len(shape.used):
            raise RuntimeError(f"pool step: {rsp.conditions} {len(rsp.desired.resources)}")
        del store
        timed = time_interleaved(
            [(runner, q) for q in loop.requests], rounds=rounds, per_round=1, warm=not quick
        )
        biggest = max(loop.sizes)
        per_claim = (loop.sizes[-1] - loop.sizes[0]) / CLAIMS
        need = math.ceil(biggest / MIB)
        needs[mode] = need
        heavy = max(t.cpu for t in timed)
        rows.append(
            (
                mode,
                f"{CLAIMS:,}",
                shape.shards,
                len(loop.requests),
                " / ".join(fmt_bytes(s) for s in loop.sizes),
                f"{per_claim:,.0f} B",
                fmt_bytes(rsp.ByteSize()),
                " / ".join(fmt_ms(t.cpu) for t in timed),
                " / ".join(fmt_ms(t.wall) for t in timed),
                f"{need} (recommend {2 * need})",
            )
        )
        checks.append(
            (
                mode,
                f"{heavy * 1000:,.0f} ms",
                verdict(heavy < TARGET_SECONDS),
                f"{biggest / MIB:.1f} MiB",
                verdict(biggest <= 4 * MIB) + " (default 4)",
                f"{int((4 * MIB - loop.sizes[0]) / per_claim):,}",
            )
        )
        if heavy >= TARGET_SECONDS:
            section_note = f"MISSED: {mode} pool step over {CLAIMS:,} claims: {heavy:.2f} s >= 1 s."
            checks[-1] = (*checks[-1], section_note)
    section = Section(
        "pool",
        f"4. Pool step over {CLAIMS:,} claims",
        "The pool step's requirement loop with every claim of a 10,000-tenant pool "
        "(102 cloudscale shards, their Gateways observed as composed). Handler = thread CPU "
        f"(and wall) median per call, {rounds} runs each. `v2` sends the claims twice "
        "(`required_resources` and `extra_resources`), `v1` once but as provider-kubernetes "
        "Objects. The flag is `--max-recv-message-size` of the function server (MiB); "
        "`recommend` doubles the minimum so the pool can double before it must change.",
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
                    "request bytes per call",
                    "bytes per claim",
                    "response",
                    "handler ms per call (CPU)",
                    "wall ms",
                    "--max-recv-message-size",
                ],
                rows,
            ),
        )
    )
    section.tables.append(
        (
            f"Target: handler < {TARGET_SECONDS:.0f} s. The SDK's default receive limit is 4 MiB.",
            table(
                [
                    "mode",
                    "slowest call (CPU)",
                    "< 1 s",
                    "largest request",
                    "fits 4 MiB",
                    "claims that fit 4 MiB",
                ],
                [c[:6] for c in checks],
            ),
        )
    )
    for c in checks:
        if len(c) > 6:
            section.notes.append(c[6])
        if "MISSED" in c[4]:
            section.notes.append(
                f"{c[0]}: the request ({c[3]}) is over the SDK's default 4 MiB receive limit: "
                f"run the function with --max-recv-message-size {2 * needs[c[0]]} "
                f"(at least {needs[c[0]]}), or the pool step fails with RESOURCE_EXHAUSTED "
                "once the pool holds more than the claims shown."
            )
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
