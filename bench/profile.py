"""Profile the slowest paths in process with cProfile (standard library only):

    python -m bench.profile [sticky|earlier|alloc|full|pool ...] [--top N] [--runs N]

Each case replays one recorded request (the heaviest call of its requirement loop) through
`FunctionRunner().RunFunction` `--runs` times under cProfile and prints the top functions
by own time and by cumulative time, with file:line. Cases:

* sticky:  v2 sticky reconcile, call 2 (own shard Gateway resolved)
* earlier: the same, after an earlier step that desired 30 resources
* alloc:   v2 alloc-w2, last call (claims of 2 shards, the lowest one full)
* full:    v2 alloc-full, last call (claims of 2 full shards: the claim budget, PoolFull)
* pool:    v2 pool step over 10,000 claims

For a sampling view of the gRPC server process (asyncio and gRPC included), py-spy is
optional and not a dependency: `.venv/bin/pip install py-spy`, start the server, then
`py-spy record -o profile.svg --pid <server pid>` while `python -m bench throughput` runs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

from bench.common import _loop
from bench.fixtures import POOL, Store, fill_pool, first_requests, label_shards, requirement_loop
from function.fn import FunctionRunner

CASES = ("sticky", "earlier", "alloc", "full", "pool")


def request_for(case: str):
    runner = FunctionRunner(cache_size=0)  # time the computation, not cache hits
    if case == "pool":
        from bench.poolstep import CLAIMS, first_request

        store = Store("v2")
        shape = fill_pool(store, POOL, CLAIMS)
        return requirement_loop(runner, first_request("v2", shape.used), store).requests[-1]
    tenants = first_requests("v2")
    store = Store("v2")
    shape = fill_pool(store, POOL, 1_000)
    label_shards(store, shape, 2 if case == "full" else 1)
    first = tenants.new if case in ("alloc", "full") else tenants.sticky
    req = requirement_loop(runner, first, store).requests[-1]
    if case == "earlier":
        from bench.floor import after_earlier_step

        req = after_earlier_step(req)
    return req


def profile(case: str, runs: int, top: int) -> str:
    req = request_for(case)
    runner = FunctionRunner(cache_size=0)  # time the computation, not cache hits
    loop = _loop()

    async def many() -> None:
        for _ in range(runs):
            await runner.RunFunction(req, None)

    loop.run_until_complete(many())  # warm up
    profiler = cProfile.Profile()
    profiler.enable()
    loop.run_until_complete(many())
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"=== {case}: {req.ByteSize():,} byte request, {runs} runs ===\n")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("cases", nargs="*", metavar="CASE", help=", ".join(CASES))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--runs", type=int, default=0, help="default: 200, pool: 3")
    args = parser.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; one of {', '.join(CASES)}")
    for case in args.cases or CASES:
        runs = args.runs or (3 if case == "pool" else 50 if case in ("alloc", "full") else 200)
        print(profile(case, runs, args.top))


if __name__ == "__main__":
    main()
