"""Freed ports rest, on the simulator: tenants come and go at random, two function replicas
serve them, and no port reaches another tenant within `portRest` of its release."""

import datetime
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from function import labels
from function.fn import FunctionRunner
from tests.test_pool_scenarios import PoolWorld

SCALE = float(os.environ.get("TCP_ACCESS_HISTORIES", "1"))
REST = 300  # seconds of the cluster's clock (one tick per write)


class Replicas:
    """Two replicas of the function: Crossplane's calls alternate between them, each with
    its own response cache."""

    def __init__(self, clock):
        self.replicas = [FunctionRunner(clock=clock), FunctionRunner(clock=clock)]
        self.calls = 0

    async def RunFunction(self, request, context=None):
        self.calls += 1
        return await self.replicas[self.calls % 2].RunFunction(request, context)


def resting_world(mode: str, **pool) -> PoolWorld:
    world = PoolWorld(mode=mode, provider="custom", capacity=4, headroom=1, **pool)
    world.sim.close()
    world.runner = Replicas(world.cluster.time)
    world.sim = world._crossplane()
    return world


def check(world: PoolWorld):
    """The promises of every pool (tests/world.py), and each tenant's port in its shard's
    slice, never the shard's own."""
    world.check()
    for name in world.tenants:
        status = world.status(name)
        if status.get("port") is not None:
            start, end = world.spec.slice(status["shard"])
            assert start <= status["port"] < end, (name, status)


class Ledger:
    """Who held which port, when it was released, and what the pool step has seen."""

    def __init__(self, world: PoolWorld):
        self.world = world
        self.seen: set[tuple[int, str]] = set()  # (port, holder) some pool step saw
        self.released: dict[int, tuple[str, datetime.datetime]] = {}  # port -> holder, when
        self.holders: dict[str, str] = {}  # tenant name -> XR uid

    def holdings(self) -> dict[int, tuple[str, str]]:
        found = {}
        for lease in self.world.claims():
            port = int(lease["metadata"]["labels"][labels.PORT])
            found[port] = (lease["spec"]["holderIdentity"], lease["metadata"]["creationTimestamp"])
        return found

    def pool_step(self):
        self.world.reconcile_pool()
        self.seen |= {(port, holder) for port, (holder, _) in self.holdings().items()}

    def delete(self, name: str):
        uid = self.world.xr(name)["metadata"]["uid"]
        ports = [p for p, (holder, _) in self.holdings().items() if holder == uid]
        self.world.delete_tenant(name)
        for port in ports:
            # A claim born and gone between two pool-step runs left no record (README).
            if (port, uid) in self.seen:
                self.released[port] = (uid, self.world.cluster.time())

    def check(self):
        for port, (holder, created) in self.holdings().items():
            if port not in self.released:
                continue
            before, when = self.released[port]
            claimed = datetime.datetime.fromisoformat(created)
            if holder != before:
                rested = (claimed - when).total_seconds()
                assert rested >= REST, f"port {port} went to another tenant {rested}s after"


# The pool read whole, and recounted in windows (10 KiB: under one full shard of three).
VIEWS = {"full": {}, "window": {"readBudgetKiB": 10}}


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("mode", ["v2", "v1"])
@settings(
    max_examples=max(1, int(4 * SCALE)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_port_reaches_another_tenant_within_port_rest_of_its_release(mode, view, data):
    world = resting_world(mode, portRest=f"{REST}s", **VIEWS[view])
    ledger = Ledger(world)
    ledger.pool_step()
    born = 0
    for _ in range(data.draw(st.integers(6, 10), label="turns")):
        for _ in range(data.draw(st.integers(0, 3), label="created")):
            born += 1
            world.create_tenant(f"t{born:03d}")
        names = sorted(world.tenants)
        gone = data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True)) if names else []
        for name in gone:
            ledger.delete(name)
        if world.tenants:
            # Racing: every tenant computed from one view, as replicas reading one cache.
            world.round(same_snapshot=data.draw(st.booleans(), label="race"))
            ledger.check()
            world.round()
        if data.draw(st.booleans(), label="pool step"):
            ledger.pool_step()
        world.cluster.tick(data.draw(st.sampled_from([0, 30, REST // 2, REST]), label="wait"))
        ledger.check()
        check(world)
    world.close()
    world.pool_sim.close()


def churn(world: PoolWorld, rounds: int = 8) -> int:
    """A steady pool of 12 tenants, 3 replaced every half rest; the most shards it had."""
    names = [f"s{i:03d}" for i in range(12)]
    for name in names:
        world.create_tenant(name)
    world.until_everyone_holds_a_port(names)
    most = len(world.shards())
    born = len(names)
    for turn in range(rounds):
        for name in sorted(world.tenants)[turn % 3 :: 4][:3]:
            world.delete_tenant(name)
        fresh = [f"s{born + i:03d}" for i in range(3)]
        born += 3
        for name in fresh:
            world.create_tenant(name)
        world.until_everyone_holds_a_port(fresh)
        world.reconcile_pool()
        check(world)
        world.cluster.tick(REST // 2)
        most = max(most, len(world.shards()))
    return most


def test_wide_slices_make_resting_cost_no_shard():
    without = resting_world("v2", portRest="0")
    # Twice the capacity: the freed ports of one rest fit the spare numbers.
    with_rest = resting_world("v2", portRest=f"{REST}s", portsPerShard=8)
    without.reconcile_pool()
    with_rest.reconcile_pool()
    shards_without, shards_with = churn(without), churn(with_rest)
    status = with_rest.pool_sim.get_xr(with_rest.pool_xr)["status"]["pool"]
    assert status["totals"]["resting"] > 0  # the freed ports do rest
    assert shards_with <= shards_without == math.ceil((12 + 1) / 3)
    for world in (without, with_rest):
        world.close()
        world.pool_sim.close()
