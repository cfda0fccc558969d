"""The pool's invariants while the operator changes its input (DESIGN §4, §6).

Random histories on the simulator: tenants come and go in bursts while the platform team
lowers and raises `capacity`, moves `ports`, and lowers and raises `maxShards`, and the pool
step and the tenant step run after every change. After every round:

* no port is listened on twice behind one Gateway, so no tenant port equals a shard
  Gateway's own listener port;
* a tenant once Ready keeps its port for its life;
* the pool composes no Gateway beyond `maxShards` (shards that exist stay when it is
  lowered), no listener above port 65535, and never drops a Gateway that a claim or a
  tenant listener is on;
* and once the operator gives the pool room again, every waiting tenant gets a port within
  a few rounds.
"""

import random

import pytest

from function import labels
from tests.test_pool_scenarios import PoolWorld
from tests.world import LISTENER_SETS, claim_locks, listeners_per_gateway

SEEDS = range(3)


class OperatorHistory:
    def __init__(self, mode: str, seed: int, **pool):
        self.rng = random.Random(seed)
        self.world = PoolWorld(
            mode=mode,
            provider="custom",
            capacity=10,
            headroom=3,
            ports="10000-10999",
            maxShards=12,
            **pool,
        )
        self.served: dict[str, int] = {}  # tenant -> the port it was first Ready on
        self.count = 0
        self.world.reconcile_pool()

    # -- what the operator and the tenants do ----------------------------------------------

    def change(self, **changes):
        world = self.world
        world.pool_input = {**world.pool_input, **changes}
        world.spec = type(world.spec).model_validate(world.pool_input)
        world.pool_sim.edit_input("pool", world.pool_input)

    def operator_step(self):
        choice = self.rng.choice(["capacity-down", "capacity-up", "ports", "max-down", "max-up"])
        current = self.world.pool_input
        if choice == "capacity-down":
            self.change(capacity=self.rng.choice([4, 6, 8]))
        elif choice == "capacity-up":
            self.change(capacity=10)
        elif choice == "ports":
            start = self.rng.choice([10000, 11000, 12000, 13000])
            self.change(ports=f"{start}-{start + 999}")
        elif choice == "max-down":
            self.change(maxShards=max(1, len(self.world.shards()) - 1))
        else:
            self.change(maxShards=min(12, current["maxShards"] + 3))

    def tenant_step(self):
        world = self.world
        if world.tenants and self.rng.random() < 0.3:
            for name in self.rng.sample(sorted(world.tenants), k=min(3, len(world.tenants))):
                world.delete_tenant(name)
                self.served.pop(name, None)
        for _ in range(self.rng.randint(0, 6)):
            self.count += 1
            world.create_tenant(f"t{self.count:03d}")

    def round(self):
        shards_before = len(self.world.shards())
        self.world.round()
        self.world.reconcile_pool()
        self.check(shards_before)

    # -- the invariants ----------------------------------------------------------------------

    def check(self, shards_before: int):
        world = self.world
        world.check()  # one holder per claim, no port twice behind a Gateway
        gateways = world.shards()
        limit = max(world.pool_input["maxShards"], shards_before)
        assert len(gateways) <= limit, (len(gateways), limit)
        for gateway_name, listeners in listeners_per_gateway(world).items():
            ports = list(listeners.values())
            assert len(ports) == len(set(ports)), (gateway_name, sorted(ports))
            assert all(1 <= port <= 65535 for port in ports), gateway_name
        names = {g["metadata"]["name"] for g in gateways.values()}
        for lock in claim_locks(world):
            gateway_name = lock["metadata"]["annotations"][labels.GATEWAY]
            assert gateway_name in names, f"a claim is on {gateway_name}, which is gone"
        for api_version, kind in LISTENER_SETS:
            for listener_set in world.cluster.list(api_version, kind):
                parent = listener_set["spec"]["parentRef"]["name"]
                assert parent in names, f"a tenant listener is on {parent}, which is gone"
        for name in world.tenants:
            port = world.port(name)
            if name in self.served:
                assert port == self.served[name], (name, port, self.served[name])
            elif world.condition(name) == ("True", "Ready"):
                self.served[name] = port

    def give_room(self):
        """The operator fixes the input: a fresh range, the original capacity, room to grow."""
        self.change(capacity=10, ports="20000-29999", maxShards=30)


# The full read, and (one seed each) the pool recounted in windows of about two shards.
HISTORIES = [
    *((seed, {}) for seed in SEEDS),
    pytest.param(0, {"readBudgetKiB": 40}, id="0-window"),
]


@pytest.mark.parametrize("mode", ["v2", "v1"])
@pytest.mark.parametrize(("seed", "pool"), HISTORIES)
def test_operator_changes_never_move_a_port_or_break_a_shard(mode, seed, pool):
    history = OperatorHistory(mode, seed, **pool)
    for _ in range(14):
        if history.rng.random() < 0.5:
            history.operator_step()
        history.tenant_step()
        history.round()
    history.give_room()
    for _ in range(8):
        history.round()
        if all(history.world.port(n) is not None for n in history.world.tenants):
            break
    waiting = [n for n in history.world.tenants if history.world.port(n) is None]
    assert not waiting, waiting
    history.world.close()


def test_a_lowered_capacity_leaves_every_tenant_where_it_is():
    history = OperatorHistory("v2", seed=0)
    for n in range(15):
        history.world.create_tenant(f"a{n:02d}")
    for _ in range(4):
        history.round()
    ports = history.world.ports()
    assert None not in ports.values()
    history.change(capacity=4)
    for _ in range(3):
        history.round()
    assert history.world.ports() == ports
    status = history.world.cluster.get("tcp.example.org/v1", "XGatewayPool", "postgresql")
    conditions = {c["type"]: c for c in status["status"].get("conditions", [])}
    assert conditions["PoolCapacity"]["reason"] in ("Available", "SliceConflict")
    history.world.close()


# -- static gateways: the operator reorders the list -------------------------------------


@pytest.mark.parametrize("mode", ["v2", "v1"])
def test_reordering_static_gateways_moves_nobody_and_overfills_nothing(mode):
    from tests.world import World

    static = [
        {"name": "postgresql-1", "hostname": "db1.example.ch", "ports": "10000-10009",
         "capacity": 5, "listenerPorts": [10009]},
        {"name": "postgresql-2", "hostname": "db2.example.ch", "ports": "10010-10019",
         "capacity": 5, "listenerPorts": [10019]},
    ]  # fmt: skip
    world = World(mode=mode, gateways=static)
    for index in (1, 2):
        world.add_shard(index, capacity=5)  # the Gateways themselves, made by hand
    names = [f"s{n}" for n in range(6)]
    for name in names:
        world.create_tenant(name)
    world.settle(4)
    ports = world.ports()
    assert None not in ports.values()
    world.check()

    world.sim.edit_input("tcp-access", {**world.input, "gateways": static[::-1]})
    later = [f"s{n}" for n in range(6, 10)]
    for name in later:
        world.create_tenant(name)
    for _ in range(5):
        world.round()
        world.check()  # no Gateway over its capacity, no port twice behind one
        assert {n: world.port(n) for n in names} == ports  # nobody moved
    # Two Gateways of capacity 5 (their own listener and four tenants): eight tenants hold a
    # port, two wait for a slot.
    assert sum(world.port(n) is not None for n in names + later) == 8
    world.close()
