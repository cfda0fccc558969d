"""Benchmark 3: the handler against the protobuf floor.

For one request, the floor is what any Python function on this SDK pays per call
whatever it does: parse the request bytes (`RunFunctionRequest.FromString`) and
serialise the response (`rsp.SerializeToString()`, the function's own response). The
handler is `await FunctionRunner().RunFunction(req, None)` on the parsed request. Both are
thread CPU time medians.

Requests: the sticky reconcile's two calls (Crossplane v2 and v1.20), the sticky final
call as it arrives after an earlier pipeline step that desired 30 resources (what an
AppCat composition's earlier steps leave; the function must pass them through), and the
allocation (alloc-w1) final call.
"""

from __future__ import annotations

import copy
import time

from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from bench.common import (
    Section,
    call,
    fmt_bytes,
    fmt_us,
    log,
    machine_line,
    table,
    time_interleaved,
    time_pair,
)
from bench.fixtures import (
    POOL,
    Store,
    condition_reason,
    fill_pool,
    first_requests,
    label_shards,
    requirement_loop,
)
from function.fn import FunctionRunner
from tests.simulator import dict_to_struct

EARLIER_RESOURCES = 30


def earlier_step_object(i: int) -> dict:
    """A composed resource an earlier step desired (~2 KB, like AppCat's)."""
    return {
        "apiVersion": "kubernetes.crossplane.io/v1alpha2",
        "kind": "Object",
        "metadata": {
            "name": f"pg-sticky-object-{i}",
            "labels": {"appcat.vshn.io/ownerkind": "XVSHNPostgreSQL", "index": str(i)},
        },
        "spec": {
            "providerConfigRef": {"name": "kubernetes"},
            "forProvider": {
                "manifest": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cfg-{i}", "namespace": "vshn-postgresql-pg-sticky"},
                    "data": {f"key-{k}": f"value {k} of object {i} " * 3 for k in range(16)},
                }
            },
        },
    }


def after_earlier_step(req: fnv1.RunFunctionRequest) -> fnv1.RunFunctionRequest:
    out = fnv1.RunFunctionRequest()
    out.CopyFrom(req)
    for i in range(EARLIER_RESOURCES):
        out.desired.resources[f"object-{i}"].resource.CopyFrom(
            dict_to_struct(earlier_step_object(i))
        )
    out.desired.composite.resource.CopyFrom(
        dict_to_struct(
            {
                "apiVersion": "vshn.appcat.vshn.io/v1",
                "kind": "XVSHNPostgreSQL",
                "status": {
                    "instanceNamespace": "vshn-postgresql-pg-sticky",
                    "schedules": {"backup": "30 23 * * *", "maintenance": "tue 22:30"},
                    "conditions": [
                        {"type": f"Step{k}Ready", "status": "True", "reason": "Ok"}
                        for k in range(6)
                    ],
                },
            }
        )
    )
    return out


def requests() -> list[tuple[str, fnv1.RunFunctionRequest]]:
    runner = FunctionRunner(cache_size=0)  # time the computation, not cache hits
    found = []
    for mode in ("v2", "v1"):
        tenants = first_requests(mode)
        store = Store(mode)
        shape = fill_pool(store, POOL, 1_000)
        label_shards(store, shape, 1)
        loop = requirement_loop(runner, tenants.sticky, store)
        assert condition_reason(loop.final, "TCPAccessReady") == "Ready"
        found.append((f"{mode} sticky, call 1 (no lookups yet)", loop.requests[0]))
        found.append((f"{mode} sticky, call 2 (own shard Gateway)", loop.requests[-1]))
        if mode == "v2":
            found.append(
                (
                    f"v2 sticky, call 2, after a step that desired {EARLIER_RESOURCES} resources",
                    after_earlier_step(loop.requests[-1]),
                )
            )
            alloc = requirement_loop(runner, tenants.new, store)
            found.append(("v2 alloc-w2, last call (claims of 2 shards)", alloc.requests[-1]))
    return found


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    rounds = 4 if quick else 20
    runner = FunctionRunner(cache_size=0)  # time the computation, not cache hits
    cases = requests()
    rows = []
    log(f"floor: {len(cases)} requests")
    handler = time_interleaved([(runner, req) for _, req in cases], rounds=rounds)
    for (name, req), timing in zip(cases, handler, strict=True):
        data = req.SerializeToString()
        rsp = call(runner, copy.deepcopy(req))
        rsp_bytes = rsp.SerializeToString()
        parse = time_pair(
            lambda data=data: fnv1.RunFunctionRequest.FromString(data), repeats=rounds * 3
        )
        serialise = time_pair(rsp.SerializeToString, repeats=rounds * 3)
        floor = parse.cpu + serialise.cpu
        rows.append(
            (
                name,
                fmt_bytes(len(data)),
                fmt_bytes(len(rsp_bytes)),
                fmt_us(parse.cpu),
                fmt_us(serialise.cpu),
                fmt_us(floor),
                fmt_us(timing.cpu),
                f"{timing.cpu / floor:.0f}x",
                f"{(floor + timing.cpu) / floor:.0f}x",
            )
        )
    section = Section(
        "floor",
        "3. Handler time against the protobuf floor",
        "Floor = `RunFunctionRequest.FromString(bytes)` + `rsp.SerializeToString()` (the "
        "function's own response for that request); handler = `await "
        "FunctionRunner().RunFunction(req, None)` on the parsed request. Thread CPU time, "
        f"medians ({rounds * 3}+ runs each). No target was set; the ratio says how much of a "
        "call is the function's own work rather than the wire format's.",
    )
    section.tables.append(
        (
            "",
            table(
                [
                    "request",
                    "request",
                    "response",
                    "parse us",
                    "serialise us",
                    "floor us",
                    "handler us",
                    "handler / floor",
                    "(floor + handler) / floor",
                ],
                rows,
            ),
        )
    )
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
