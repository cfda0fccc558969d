"""Freed ports rest before reuse (function/resting.py): the pool step records on each shard
Gateway what it saw taken and what was freed since, and a tenant never claims a port that
rests, so a stale client of a deleted service never reaches the next tenant."""

import datetime

import pytest

from function import allocation, labels, pool, resting, shards
from function.allocation import Phase, Pool
from function.inputs import GatewayPool
from function.step import StepRequest
from tests import test_pool
from tests.factories import NS, claim
from tests.test_pool import XR

NOW = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)
MINUTE, HOUR = datetime.timedelta(minutes=1), datetime.timedelta(hours=1)
TENANTS = Pool(name="postgresql", namespace=NS, wrapped=False)
INPUT = {**test_pool.INPUT, "headroom": 1}


def spec(**changes) -> GatewayPool:
    return GatewayPool.model_validate({**INPUT, **changes})


class Platform:
    """One shard written by the real pool step, read by the real tenant allocation."""

    def __init__(self, **changes):
        self.spec = spec(**changes)
        self.claims: dict[int, dict] = {}
        self.observed: dict = {}
        self.result = None

    def claim(self, *ports: int):
        for port in ports:
            self.claims[port] = claim(port, 1, holder=f"uid-{port}")

    def release(self, *ports: int):
        for port in ports:
            del self.claims[port]

    def pool_step(self, now: datetime.datetime):
        lookups = {
            pool.CLAIMS: list(self.claims.values()),
            pool.LISTENER_SETS: [],
            pool.TICKETS: [],
        }
        request = StepRequest(xr=XR, observed=self.observed, lookups=lookups, now=now)
        self.result = pool.run(self.spec, request)
        self.observed = {k: d.resource for k, d in self.result.resources.items()}
        return self.result

    def gateway(self, index: int = 1) -> dict:
        return self.observed[f"gateway-{index}"]

    def annotations(self, index: int = 1) -> dict:
        return self.gateway(index)["metadata"]["annotations"]

    def offered(self, now: datetime.datetime | None) -> list[int]:
        """The ports shard 1 offers a new tenant that reads the claims as they are now."""
        shard = shards.from_gateway(self.gateway())
        view = allocation.ShardView(taken=set(self.claims), tenants=set(self.claims))
        return allocation.free_ports(shard, view, set(self.claims), now)

    def decide(self, identity: str, now: datetime.datetime):
        """A new tenant's reconcile, through Crossplane's requirement loop."""
        available = {
            "tcp-gateways-accepting": [self.gateway()],
            "tcp-claims-shard-1": list(self.claims.values()),
        }
        lookups: dict = {}
        previous = None
        for _ in range(6):
            decision = allocation.decide(TENANTS, identity, None, lookups, now=now)
            if decision.requirements == previous:
                return decision
            previous = decision.requirements
            lookups = {r.name: available.get(r.name, []) for r in decision.requirements}
        raise AssertionError("requirements did not settle")


def test_a_released_port_rests_from_the_first_reconcile_before_the_pool_step_runs_again():
    platform = Platform()
    platform.claim(*range(10000, 10009))  # shard 1 full: 9 tenants and its own listener
    platform.pool_step(NOW)
    platform.release(10004)
    # The pool step has not run since: the port it saw taken and no claim holds now rests.
    assert platform.offered(NOW + MINUTE) == []
    assert platform.decide("uid-new", NOW + MINUTE).phase is Phase.POOL_FULL
    platform.pool_step(NOW + 2 * MINUTE)
    assert platform.offered(NOW + 2 * MINUTE + HOUR - datetime.timedelta(seconds=1)) == []
    assert platform.offered(NOW + 2 * MINUTE + HOUR) == [10004]


def test_the_pool_step_records_the_time_it_first_saw_a_port_free():
    platform = Platform()
    platform.claim(10000, 10001)
    platform.pool_step(NOW)
    platform.release(10001)
    platform.pool_step(NOW + MINUTE)
    platform.pool_step(NOW + 5 * MINUTE)  # seen free again: the time stays the first one
    record = resting.read(platform.annotations(), 10000, 10)
    assert record.seen == {10000}
    assert record.freed == ((int((NOW + MINUTE).timestamp()), (10001,)),)
    assert platform.result.status["shards"][0]["resting"] == 1


def test_never_used_ports_come_first_then_those_free_longest():
    platform = Platform(portsPerShard=12)  # capacity 10 in a slice of 12: two spare numbers
    platform.claim(*range(10000, 10009))
    platform.pool_step(NOW)
    platform.release(10003)
    platform.pool_step(NOW + MINUTE)
    platform.release(10001)
    # Two slots free: the never-used ports, lowest first; the freed ones rest meanwhile.
    assert platform.offered(NOW + 2 * MINUTE) == [10009, 10010]
    platform.claim(10009, 10010)
    platform.pool_step(NOW + 2 * MINUTE)
    platform.release(10009, 10010)
    platform.pool_step(NOW + 3 * MINUTE)
    # Every number used once: free longest first (10003 before the lower 10001), each only
    # once it has rested.
    assert platform.offered(NOW + 2 * HOUR) == [10003, 10001]
    assert platform.offered(NOW + MINUTE + HOUR + MINUTE / 2) == [10003]


def test_a_shard_offers_only_as_many_ports_as_free_slots_and_resting_ones_last():
    platform = Platform(portsPerShard=20)
    platform.claim(*range(10000, 10009))
    platform.pool_step(NOW)
    platform.release(10002, 10005)
    platform.pool_step(NOW + MINUTE)
    # Two free slots, spare port numbers: the resting ports cost no slot.
    assert platform.offered(NOW + 2 * MINUTE) == [10009, 10010]
    assert platform.result.status["shards"][0]["free"] == 2


def test_with_the_default_slice_a_resting_port_takes_a_slot_until_it_has_rested():
    platform = Platform()
    platform.claim(*range(10000, 10009))
    platform.pool_step(NOW)
    platform.release(10002)
    result = platform.pool_step(NOW + MINUTE)
    assert result.status["shards"][0]["free"] == 0  # counted when sizing the headroom
    assert result.status["totals"]["resting"] == 1
    later = platform.pool_step(NOW + MINUTE + HOUR)
    assert later.status["shards"][0]["free"] == 1
    assert later.status["shards"][0]["resting"] == 0


def test_racing_tenants_offer_one_window_whatever_their_clocks_say():
    platform = Platform(portsPerShard=12)
    platform.claim(*range(10000, 10009))
    platform.pool_step(NOW)
    platform.release(10001, 10002, 10003)
    platform.pool_step(NOW + MINUTE)
    platform.claim(10009, 10010)  # the spares go: one slot left, only resting ports free
    # A replica whose clock says they rested offers no more than one that says they rest:
    # both offer from the window [10001], so one claim locks the last slot.
    assert platform.offered(NOW + 2 * MINUTE) == []
    assert platform.offered(NOW + 2 * HOUR) == [10001]


def test_port_rest_zero_turns_resting_off():
    platform = Platform(portRest="0")
    platform.claim(*range(10000, 10009))
    platform.pool_step(NOW)
    platform.release(10004)
    assert labels.PORT_REST not in platform.annotations()
    assert "resting" not in platform.result.status["shards"][0]
    assert platform.offered(NOW) == [10004]


def test_an_empty_view_frees_nothing():
    platform = Platform()
    platform.claim(10000, 10001)
    platform.pool_step(NOW)
    saved = dict(platform.claims)
    platform.claims.clear()  # a cold cache: both lookups empty
    platform.pool_step(NOW + MINUTE)
    assert resting.read(platform.annotations(), 10000, 10).seen == {10000, 10001}
    platform.claims = saved
    platform.release(10001)  # the tenant really goes later: it rests from then
    platform.pool_step(NOW + 30 * MINUTE)
    assert platform.offered(NOW + 30 * MINUTE + HOUR - MINUTE) == list(range(10002, 10009))
    assert platform.offered(NOW + 30 * MINUTE + HOUR)[-1] == 10001


def test_the_record_of_a_thousand_port_slice_stays_small():
    record = resting.Record(
        3600,
        seen=frozenset(range(20000, 20999, 10)),
        freed=tuple(
            (1_790_000_000 + 60 * i, tuple(range(20001 + i, 20999, 60))) for i in range(60)
        ),
    )
    written = resting.annotations(record, 20000, 1000)
    assert len(written[labels.PORTS_SEEN]) == 167
    assert sum(map(len, written.values())) < 3000
    assert resting.read(written, 20000, 1000) == record


GARBLED = [
    {labels.PORT_REST: "soon"},
    {labels.PORT_REST: "-5"},
    {labels.PORT_REST: "99999999999"},
    {labels.PORT_REST: "3600", labels.PORTS_SEEN: "!!"},
    {labels.PORT_REST: "3600", labels.PORTS_SEEN: "AAAA"},  # not the slice's width
    {labels.PORT_REST: "3600", labels.PORTS_FREED: "zz:A"},  # an offset cut short
    {labels.PORT_REST: "3600", labels.PORTS_FREED: "1:AZ"},  # beyond the slice
    {labels.PORT_REST: "3600", labels.PORTS_FREED: "2:00,1:01"},  # out of order
    {labels.PORT_REST: "3600", labels.PORTS_FREED: "1:0000"},  # one port twice
    {labels.PORT_REST: "3600", labels.PORTS_FREED: "1:00;"},
    {labels.PORT_REST: 3600},
    {labels.PORT_REST: "3600", labels.PORTS_SEEN: ["AA"]},
]


@pytest.mark.parametrize("record", GARBLED, ids=range(len(GARBLED)))
def test_a_garbled_record_never_makes_a_port_claimable(record):
    # Only the pool step and the platform's people write shard Gateways; a damaged record
    # still offers nothing rather than guessing which ports rest.
    platform = Platform()
    platform.claim(10000)
    platform.pool_step(NOW)
    platform.annotations().update(record)
    assert hash(shards.from_gateway(platform.gateway()))  # still a plain value
    assert platform.offered(NOW + 10 * HOUR) == []
    decision = platform.decide("uid-new", NOW + 10 * HOUR)
    assert decision.allocation is None or decision.allocation.shard != 1
    assert any("offers no port" in w and labels.PREFIX in w for w in decision.warnings)
    # The pool step writes a fresh record on which every free port rests from now.
    result = platform.pool_step(NOW + 10 * HOUR)
    assert any("rest from now" in r.message for r in result.results)
    assert platform.offered(NOW + 10 * HOUR + HOUR - MINUTE) == []
    assert platform.offered(NOW + 11 * HOUR) != []


def test_a_forged_free_time_in_the_future_only_rests_longer():
    platform = Platform()
    platform.claim(10000, 10001)
    platform.pool_step(NOW)
    platform.annotations()[labels.PORTS_FREED] = f"{resting._base36(4_000_000_000)}:01"
    platform.release(10001)
    platform.pool_step(NOW + MINUTE)  # keeps the time it read, never an earlier one
    assert 10001 not in platform.offered(NOW + 100 * HOUR)


def test_port_rest_is_a_duration():
    assert spec(portRest="90s").rest_seconds == 90
    assert spec(portRest="1h30m").rest_seconds == 5400
    assert spec().rest_seconds == 3600
    for bad in ("1d", "soon", "", "200h", "-1h"):
        with pytest.raises(ValueError, match="portRest"):
            spec(portRest=bad)
    with pytest.raises(ValueError, match="portsPerShard: 5 is below capacity 10"):
        spec(portsPerShard=5)
    with pytest.raises(ValueError, match="maxShards x portsPerShard needs 1000"):
        spec(portsPerShard=200)
