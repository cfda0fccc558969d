"""The pool step and the tenants together on the simulator: shards appear before the pool
runs full, and go when they are empty and not needed, without moving anybody."""

import math
import random

import pytest

from function import labels
from function.builders.listenerset import listener_set as build_listener_set
from function.flavours import FLAVOURS
from function.fn import FunctionRunner
from function.inputs import GatewayPool
from tests.factories import NS
from tests.simulator import Crossplane, Step
from tests.world import POOL, World

GATEWAY_API = "gateway.networking.k8s.io/v1"
# The pool read whole every reconcile (a budget beyond any of these pools), and recounted
# in windows: 40 KiB holds fewer than two full shards of them (function/poolwindow.py).
VIEWS = {"full": {"readBudgetKiB": 65536}, "window": {"readBudgetKiB": 40}}


class PoolWorld(World):
    """A World whose shards come from the pool step instead of by hand."""

    def __init__(self, *, mode: str, provider: str, capacity: int, headroom: int, **pool):
        super().__init__(mode=mode)
        self.pool_input = {
            "apiVersion": "tcp.fn.servala.io/v1alpha1",
            "kind": "GatewayPool",
            "pool": POOL,
            "namespace": NS,
            "gatewayClassName": "envoy-gateway",
            "provider": provider,
            "capacity": capacity,
            "ports": "10000-19999",
            "hostname": "db{index}.example.ch",
            "minShards": 1,
            "maxShards": 100,
            "headroom": headroom,
            **pool,
        }
        if self.wrap:
            self.pool_input["wrap"] = {"providerConfigName": "kubernetes"}
        self.spec = GatewayPool.model_validate(self.pool_input)
        self.pool_sim = Crossplane(
            self.cluster,
            mode=mode,
            pipeline=[Step("pool", FunctionRunner(clock=self.cluster.time), self.pool_input)],
            rng=random.Random(99),
        )
        self.pool_xr = self.pool_sim.create_xr("tcp.example.org/v1", "XGatewayPool", POOL)

    def reconcile_pool(self):
        plan = self.pool_sim.reconcile(self.pool_xr)
        assert not plan.fatal, plan.results
        self.controllers()
        return plan

    def shards(self) -> dict[int, dict]:
        gateways = self.cluster.list(GATEWAY_API, "Gateway", NS, {labels.POOL: POOL})
        return {int(g["metadata"]["labels"][labels.SHARD]): g for g in gateways}

    def until_everyone_holds_a_port(self, names, rounds: int = 12):
        for _ in range(rounds):
            self.round([n for n in names if self.port(n) is None])
            self.reconcile_pool()
            if all(self.port(n) is not None for n in names):
                return
        missing = [n for n in names if self.port(n) is None]
        raise AssertionError(f"{len(missing)} tenants without a port: {missing[:5]}")

    def check_pool(self):
        self.check()
        slots = self.spec.shard_capacity - 1
        for index, gateway in self.shards().items():
            start, end = self.spec.slice(index)
            assert gateway["metadata"]["annotations"][labels.PORTS] == f"{start}-{end}"
        for name in self.tenants:
            status = self.status(name)
            start, end = self.spec.slice(status["shard"])
            assert start <= status["port"] < end, (name, status)  # the last port is the shard's
        used = len(self.tenants)
        needed = max(1, math.ceil((used + self.spec.headroom) / slots))
        return needed


# The full read of a v1.20 pool is covered by the operator histories (tests/test_pool_operator.py):
# this long history runs it in v2 only.
@pytest.mark.parametrize(("mode", "view"), [("v2", "full"), ("v2", "window"), ("v1", "window")])
def test_exoscale_pool_grows_in_bursts_and_shrinks_without_moving_anyone(mode, view):
    world = PoolWorld(mode=mode, provider="exoscale", capacity=10, headroom=3, **VIEWS[view])
    world.reconcile_pool()
    assert len(world.shards()) == 1
    for burst in range(10):
        names = [f"t{burst:02d}-{i:02d}" for i in range(25)]
        for name in names:
            world.create_tenant(name)
        world.until_everyone_holds_a_port(names)
        world.reconcile_pool()
        needed = world.check_pool()
        assert len(world.shards()) == needed, (burst, len(world.shards()), needed)
    assert len(world.shards()) == math.ceil((250 + 3) / 9)

    ports = world.ports()
    gone = random.Random(5).sample(sorted(world.tenants), 200)
    for name in gone:
        world.delete_tenant(name)
    world.reconcile_pool()  # it records the freed ports: they rest an hour (portRest)
    world.cluster.tick(3600)  # a shard whose freed ports rest is never removed
    for _ in range(3):  # a shard drains first, and goes on a later reconcile
        world.reconcile_pool()
        world.settle(1)
    remaining = world.ports()
    assert remaining == {n: ports[n] for n in remaining}  # nobody moved
    held_shards = {world.status(n)["shard"] for n in remaining}
    shards = world.shards()
    assert held_shards <= set(shards)  # no shard with a claim went
    top = max(shards)
    free_without_top = sum(
        9 - sum(1 for n in remaining if world.status(n)["shard"] == i) for i in shards if i != top
    )
    assert top in held_shards or free_without_top < 3  # the top shard stays only if needed
    world.check_pool()
    for name in remaining:
        assert world.condition(name) == ("True", "Ready"), name
    world.close()


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("mode", ["v2", "v1"])
def test_a_line_longer_than_the_headroom_is_served_by_new_shards_at_once(mode, view):
    world = PoolWorld(mode=mode, provider="exoscale", capacity=10, headroom=3, **VIEWS[view])
    world.reconcile_pool()
    names = [f"t{i:02d}" for i in range(25)]
    for name in names:
        world.create_tenant(name)
    world.round(names)  # nine claim shard 1's slots; sixteen wait in line
    assert len(world.claims()) == 9
    world.reconcile_pool()
    # One reconcile adds room for the whole line plus the headroom: 16 + 3 <= 3 x 9.
    assert len(world.shards()) == 4
    assert world.pool_sim.get_xr(world.pool_xr)["status"]["pool"]["waiting"] == 16
    world.until_everyone_holds_a_port(names, rounds=3)
    world.check_pool()
    world.close()


def test_cloudscale_pool_of_a_thousand_tenants():
    # Read whole: the histories above run the windowed pool step; windowed, this one
    # would take a third longer, the suite's longest test.
    world = PoolWorld(mode="v2", provider="cloudscale", capacity=100, headroom=5, **VIEWS["full"])
    world.reconcile_pool()
    for burst in range(10):  # a waiting tenant reads the whole line: bursts of 100
        names = [f"c{burst}-{i:03d}" for i in range(100)]
        for name in names:
            world.create_tenant(name)
        world.until_everyone_holds_a_port(names)
    world.reconcile_pool()
    needed = world.check_pool()
    assert len(world.shards()) == needed == math.ceil((1000 + 5) / 99)
    status = world.cluster.get("tcp.example.org/v1", "XGatewayPool", POOL)["status"]["pool"]
    assert status["totals"]["used"] == 1000
    assert status["nodePorts"] == 1000 + len(world.shards())
    world.close()


def test_a_shard_gateway_changed_by_hand_is_put_back():
    world = PoolWorld(mode="v2", provider="exoscale", capacity=10, headroom=3)
    world.reconcile_pool()
    gateway = world.shards()[1]
    written = {k: gateway[k] for k in ("metadata", "spec")}
    edited = dict(gateway)
    edited["metadata"] = {
        **gateway["metadata"],
        "annotations": {
            **gateway["metadata"]["annotations"],
            labels.CAPACITY: "64",
            labels.PORTS: "1-64",
        },
    }
    edited["spec"] = {
        **gateway["spec"],
        "listeners": [
            *gateway["spec"]["listeners"],
            {"name": "extra", "port": 10003, "protocol": "TCP"},
        ],
    }
    world.cluster.update(edited)
    assert world.shards()[1]["spec"]["listeners"] != written["spec"]["listeners"]
    world.reconcile_pool()
    restored = world.shards()[1]
    assert restored["spec"]["listeners"] == written["spec"]["listeners"]
    for key in (labels.CAPACITY, labels.PORTS):
        assert restored["metadata"]["annotations"][key] == written["metadata"]["annotations"][key]
    world.close()


@pytest.mark.parametrize("mode", ["v2", "v1"])
def test_a_listener_set_squatting_on_a_shard_is_reported_as_drift(mode):
    world = PoolWorld(mode=mode, provider="exoscale", capacity=10, headroom=3)
    world.reconcile_pool()
    names = [f"t{i}" for i in range(5)]
    for name in names:
        world.create_tenant(name)
    world.until_everyone_holds_a_port(names)
    world.settle(2)
    world.reconcile_pool()
    status = world.pool_sim.get_xr(world.pool_xr)["status"]["pool"]
    assert status["shards"][0]["listenerDrift"] == {
        "attached": 5,
        "foreign": 0,
        "unclaimed": 0,
        "unattached": 0,
        "refused": 0,
        "noAddress": False,
    }
    # Someone outside the pool attaches a listener set of their own to shard 1, from a
    # namespace the platform admits (a namespace labelled by mistake, or a tenant's own).
    taken = set(world.ports().values())
    free = next(p for p in range(10000, 10009) if p not in taken)
    world.cluster.ensure_namespace("intruder", {labels.LISTENER_NAMESPACE: "true"})
    squatter = build_listener_set(
        flavour=FLAVOURS["v1.6"],
        name="mine",
        namespace="intruder",
        labels={},
        gateway=f"{POOL}-1",
        gateway_namespace=NS,
        listener_name="x",
        port=free,
    )
    world.cluster.create(squatter)
    world.controllers()
    world.reconcile_pool()
    status = world.pool_sim.get_xr(world.pool_xr)["status"]["pool"]
    assert status["shards"][0]["listenerDrift"]["attached"] == 6
    assert status["listenerDrift"]["foreign"] == 1
    world.close()
