"""The tenant step on the pipeline simulator: what Crossplane, the API server and the
Gateway controller make of it. Every scenario runs as Crossplane v1.20 (wrapped in
provider-kubernetes Objects) and as v2 (composed directly)."""

import datetime

import pytest

from function import allocation
from tests.factories import NS
from tests.world import World

MODES = [pytest.param("v1", id="crossplane-v1.20"), pytest.param("v2", id="crossplane-v2")]


@pytest.fixture(params=MODES)
def world(request):
    w = World(mode=request.param)
    yield w
    w.close()


def fill(world: World, names, rounds: int = 3):
    """Create tenants one at a time; each gets rounds to hold its port."""
    for name in names:
        world.create_tenant(name)
        for _ in range(rounds):
            world.round([name])
        world.check()


def uids(world: World, name: str) -> dict[str, str]:
    return {key: obj["metadata"]["uid"] for key, obj in world.composed(name).items()}


def reconcile_and_restart_change_nothing(world: World, *, after: int):
    """Three reconciles of everyone, a function restart, `after` more: no port changes,
    and not one composed object is deleted and recreated."""
    before = world.ports()
    objects = {name: uids(world, name) for name in world.tenants}
    world.settle(3)
    world.restart_function()
    world.settle(after)
    assert world.ports() == before
    assert {name: uids(world, name) for name in world.tenants} == objects
    world.check()


def test_shards_fill_in_order_and_tenant_28_finds_the_pool_full(world):
    for index in (1, 2, 3):
        world.add_shard(index, capacity=10)
    names = [f"pg-{i:02d}" for i in range(1, 28)]
    fill(world, names)
    world.controllers()
    for i, name in enumerate(names):
        status = world.status(name)
        assert status["shard"] == i // 9 + 1, (name, status)
        assert world.condition(name) == ("True", "Ready")
    assert len(world.traffic()) == 27

    world.create_tenant("pg-28")
    world.settle(3, ["pg-28"])
    assert world.condition("pg-28") == ("False", "PoolFull")
    assert set(world.composed("pg-28")) == {"tcp-ticket"}  # it waits in line, nothing else
    world.check()

    # Deleting one tenant frees its port, and tenant 28 gets it.
    freed = world.port("pg-13")
    world.delete_tenant("pg-13")
    world.settle(3, ["pg-28"])
    assert world.port("pg-28") == freed
    assert world.condition("pg-28") == ("True", "Ready")
    assert "tcp-ticket" not in world.composed("pg-28")

    # Three more reconciles of everyone and a function restart change no port.
    reconcile_and_restart_change_nothing(world, after=1)


def test_a_deleted_tenant_frees_its_port_for_the_next(world):
    world.add_shard(1, capacity=4)  # three tenant slots
    fill(world, ["a", "b", "c"])
    world.create_tenant("d")
    world.settle(2, ["d"])
    assert world.condition("d")[1] == "PoolFull"

    freed = world.port("b")
    world.delete_tenant("b")
    world.settle(3, ["d"])
    assert world.port("d") == freed
    assert world.condition("d") == ("True", "Ready")
    world.check()


def test_a_tenant_paused_in_line_holds_the_others_up_for_no_longer_than_its_ticket_lives(world):
    world.add_shard(1, capacity=4)  # three tenant slots
    fill(world, ["a", "b", "c"])
    for name in ("paused", "d", "e"):  # they line up in this order
        world.create_tenant(name)
        world.settle(2, [name])
    assert [world.condition(n)[1] for n in ("paused", "d", "e")] == ["PoolFull", "Queued", "Queued"]
    # "paused" stops reconciling (paused, or failing in a later step); two slots come free.
    last_renewal = world.cluster.time()
    world.delete_tenant("a")
    world.delete_tenant("b")
    ttl = datetime.timedelta(seconds=900)  # ticketTTLSeconds' default
    served = {}
    while world.cluster.time() < last_renewal + ttl + datetime.timedelta(minutes=4):
        world.cluster.tick(60)  # Crossplane's poll interval
        world.round(["d", "e"])
        for name in ("d", "e"):
            if world.port(name) and name not in served:
                served[name] = world.cluster.time()
        if world.cluster.time() < last_renewal + ttl:
            assert "e" not in served  # the paused tenant's live ticket is still ahead of it
    # "d" had a slot at once; "e" the one the paused tenant held, once its ticket expired.
    # Each is served three polls after it was let through: claim, listener, published
    # once the Gateway accepted the listener.
    soon = datetime.timedelta(minutes=4)
    assert served["d"] < last_renewal + soon
    assert last_renewal + ttl <= served["e"] < last_renewal + ttl + soon
    assert world.condition("d") == world.condition("e") == ("True", "Ready")
    world.check()
    # Resumed, it renews its ticket and waits again, first in line for the next slot.
    world.settle(2, ["paused"])
    assert world.condition("paused")[1] == "PoolFull"
    world.delete_tenant("c")
    world.settle(3, ["paused"])
    assert world.condition("paused") == ("True", "Ready")
    world.check()


def test_more_reconciles_and_a_function_restart_change_no_port(world):
    for index in (1, 2):
        world.add_shard(index, capacity=10)
    fill(world, [f"t{i}" for i in range(12)])
    reconcile_and_restart_change_nothing(world, after=3)


def test_two_tenants_that_pick_the_same_port_from_one_snapshot_end_on_different_ports(world):
    world.add_shard(1, capacity=10, ports="10000-10009", own_port=10009)
    # Only 10003 and 10004 are free.
    for port in (10000, 10001, 10002, 10005, 10006, 10007, 10008):
        world.cluster.create(_foreign_claim(port, wrapped=world.wrap))
    a, b = _two_tenants_starting_alike(world)
    plans = world.reconcile([a, b], same_snapshot=True)
    claimed = [next(k for k in p.desired if k.startswith("tcp-claim-")) for p in plans]
    assert claimed[0] == claimed[1] == "tcp-claim-10003"
    assert sum(bool(p.report.failed) for p in plans) == 1  # one lost the race: a 422
    world.controllers()
    world.settle(3, [a, b])
    assert {world.port(a), world.port(b)} == {10003, 10004}
    world.check()


def test_a_vanished_shard_gateway_drops_nothing(world):
    world.add_shard(1)
    fill(world, ["a"])
    before = uids(world, "a")
    world.remove_shard("postgresql-1")
    world.settle(2, ["a"])
    assert uids(world, "a") == before
    assert world.port("a") is not None


def test_a_lost_claim_and_an_empty_pool_lookup_drop_nothing(world):
    world.add_shard(1)
    fill(world, ["a"])
    before = {k: v for k, v in uids(world, "a").items() if not k.startswith("tcp-claim-")}
    # Someone deletes the claim and the shard: the tenant is no longer sticky, and every
    # lookup comes back empty.
    claim_key = next(k for k in uids(world, "a") if k.startswith("tcp-claim-"))
    claim = world.composed("a")[claim_key]
    world.cluster.delete(claim["apiVersion"], claim["kind"], claim["metadata"]["name"],
                         claim["metadata"].get("namespace"))  # fmt: skip
    world.remove_shard("postgresql-1")
    world.settle(2, ["a"])
    after = uids(world, "a")
    assert {k: after.get(k) for k in before} == before
    assert world.condition("a")[1] == "NoShards"


def test_over_real_grpc():
    world = World(mode="v2", grpc=True)
    try:
        world.add_shard(1)
        fill(world, ["a", "b"])
        assert world.condition("a") == ("True", "Ready")
        assert world.port("a") != world.port("b")
    finally:
        world.close()


def test_new_tenants_racing_from_one_snapshot_each_round_all_hold_a_port_soon(world):
    """15 tenants created at once, every round computed from one stale snapshot: the first
    try fills shard 1 (9 slots) and collides; the losers' retries spread over the window."""
    for index in (1, 2, 3):
        world.add_shard(index, capacity=10)
    names = [f"n{i}" for i in range(15)]
    uids = {world.xr(n)["metadata"]["uid"] for n in (world.create_tenant(n).name for n in names)}
    for _ in range(4):
        world.round(names, same_snapshot=True)
    holders = {lease["spec"]["holderIdentity"] for lease in world.claims()}
    assert holders == uids
    world.round(names)
    assert all(world.port(n) is not None for n in names), world.ports()
    world.check()


def _foreign_claim(port: int, *, wrapped: bool) -> dict:
    from tests.factories import claim

    obj = claim(port, shard=1, holder="uid-of-someone-else", wrapped=wrapped)
    return obj


def _two_tenants_starting_alike(world: World) -> tuple[str, str]:
    """Two new tenants whose offsets into the free ports [10003, 10004] both lead to 10003."""
    chosen = []
    for i in range(50):
        name = f"race-{i}"
        ref = world.create_tenant(name)
        uid = world.sim.get_xr(ref)["metadata"]["uid"]
        if allocation.start_offset(uid, 2) == 0:
            chosen.append(name)
        else:
            world.sim.delete_xr(world.tenants.pop(name))
        if len(chosen) == 2:
            return chosen[0], chosen[1]
    raise AssertionError("no two tenants start alike")


assert NS  # the gateway namespace all scenarios use
