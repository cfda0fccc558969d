"""Benchmark 5: convergence of 100 tenants created at once.

On the pipeline simulator (tests/world.py: Crossplane, API server, provider-kubernetes
and a Gateway controller), 100 tenant XRs are created together and every round reconciles
all of them from ONE snapshot of the cluster (`World.round(names, same_snapshot=True)`:
100 Crossplane workers racing on the same stale cache, their applies landing in random
order), then the controllers run. Counted: rounds until every tenant holds a port, i.e.
a claim Lease whose holderIdentity is its UID (`World.claims()`). Pools of hand-made
shards (`World.add_shard`: labelled accepting, no used hint):

* cloudscale-like: 2 shards of capacity 100 (198 tenant slots);
* exoscale-like: 12 shards of capacity 10 (108 slots = 100 tenants + headroom 5, rounded
  up to whole shards).
"""

from __future__ import annotations

import time

from bench.common import Section, log, machine_line, median, table, verdict
from tests.world import World

TENANTS = 100
TARGET = 3
MAX_ROUNDS = 10
POOLS = {
    "cloudscale-like (2 x 100)": (2, 100),
    "exoscale-like (12 x 10)": (12, 10),
}


def rounds_to_converge(mode: str, shards: int, capacity: int, seed: int) -> tuple[int | None, dict]:
    world = World(mode=mode, seed=seed)
    try:
        for index in range(1, shards + 1):
            world.add_shard(index, capacity=capacity)
        names = [f"t{i:03d}" for i in range(TENANTS)]
        uids = {world.xr(world.create_tenant(n).name)["metadata"]["uid"] for n in names}
        history = []
        for rnd in range(1, MAX_ROUNDS + 1):
            world.round(names, same_snapshot=True)
            holders = {lease["spec"]["holderIdentity"] for lease in world.claims()}
            history.append(len(uids & holders))
            if uids <= holders:
                world.round(names)  # one more to build the data paths, then the promises
                world.check()
                return rnd, {"held": history}
        return None, {"held": history}
    finally:
        world.close()


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    seeds_for = {"v2": (1,) if quick else (1, 2, 3, 4, 5), "v1": (1, 2, 3)}
    modes = ("v2",) if quick else ("v2", "v1")
    rows, missed = [], []
    for mode in modes:
        seeds = seeds_for[mode]
        for label, (shards, capacity) in POOLS.items():
            results = []
            curves = []
            for seed in seeds:
                log(f"convergence: {mode} {label} seed {seed}")
                rounds, info = rounds_to_converge(mode, shards, capacity, seed)
                results.append(rounds if rounds is not None else MAX_ROUNDS + 1)
                curves.append("/".join(str(h) for h in info["held"]))
            worst = max(results)
            shown = [str(r) if r <= MAX_ROUNDS else f">{MAX_ROUNDS}" for r in results]
            rows.append(
                (
                    mode,
                    label,
                    len(seeds),
                    min(results),
                    f"{median(results):g}",
                    shown[results.index(worst)],
                    ", ".join(shown),
                    "; ".join(curves),
                    verdict(worst <= TARGET),
                )
            )
            if worst > TARGET:
                missed.append(
                    f"MISSED: {mode} {label}: {shown[results.index(worst)]} rounds for some "
                    f"seed (target <= {TARGET})."
                )
    section = Section(
        "convergence",
        f"5. Convergence: {TENANTS} tenants at once, one snapshot per round",
        f"{TENANTS} tenant XRs are created at once on the pipeline simulator "
        "(`tests/world.py`: Crossplane, API server, provider-kubernetes, Gateway "
        "controller). Every round reconciles all of them from ONE snapshot of the cluster "
        "(`World.round(names, same_snapshot=True)`: 100 Crossplane workers on the same "
        "stale cache, their applies landing in random order), then the controllers run. "
        "Counted: rounds until every tenant holds a port, i.e. a claim Lease whose "
        "holderIdentity is its UID (`World.claims()`). Hand-made shards "
        "(`World.add_shard`: labelled accepting, no `used` hint): cloudscale-like = 2 "
        "shards of capacity 100 (198 tenant slots); exoscale-like = 12 shards of capacity "
        "10 (108 slots: 100 tenants + headroom 5, in whole shards). v2 = Crossplane v2 "
        "(Leases), v1 = v1.20 (wrapped in Objects).",
    )
    section.tables.append(
        (
            f"Target: every tenant holds a claim within {TARGET} rounds. `held per round` is "
            "the number of tenants holding a claim after each round, per seed.",
            table(
                [
                    "mode",
                    "pool",
                    "seeds",
                    "min",
                    "median",
                    "max",
                    "rounds per seed",
                    "held per round",
                    f"<= {TARGET}",
                ],
                rows,
            ),
        )
    )
    section.notes += missed
    section.seconds = time.perf_counter() - started
    print(machine_line())
    return section
