"""The allocation protocol (DESIGN §4), rule by rule, on plain data."""

import datetime

import pytest

from function import allocation, claims, labels, shards
from function.allocation import Phase, Pool
from function.inputs import StaticGateway
from tests.factories import NS, claim, gateway, tenant_listener_set, ticket

POOL = Pool(name="postgresql", namespace=NS, wrapped=False)


def resolve(decision, available: dict) -> dict:
    """Play Crossplane's requirement loop: resolve what the decision asked for."""
    return {r.name: available.get(r.name, []) for r in decision.requirements}


def run_loop(pool, identity, held, available, max_calls=6, owner=None, now=None):
    """Call `decide` until the requirements repeat, as Crossplane does; return the last."""
    lookups: dict = {}
    previous = None
    for call in range(1, max_calls + 1):
        decision = allocation.decide(pool, identity, held, lookups, owner=owner, now=now)
        if decision.requirements == previous:
            return decision, call
        previous = decision.requirements
        lookups = resolve(decision, available)
    raise AssertionError("requirements did not stabilise within Crossplane's limit")


def test_sticky_held_claim_is_the_allocation_and_reads_only_its_shard():
    held = claims.parse(claim(10004, shard=2, holder="uid-a"))
    available = {"tcp-gateway-shard-2": [gateway(2, address="192.0.2.2")]}
    decision, calls = run_loop(POOL, "uid-a", held, available)
    assert decision.phase is Phase.STICKY
    assert (decision.allocation.shard, decision.allocation.port) == (2, 10004)
    assert decision.shard.address == "192.0.2.2"
    assert [r.name for r in decision.requirements] == ["tcp-gateway-shard-2"]
    assert decision.requirements[0].match_labels == {labels.POOL: "postgresql", labels.SHARD: "2"}
    assert calls == 2


def test_sticky_survives_a_vanished_shard_gateway():
    held = claims.parse(claim(10004, shard=2, holder="uid-a"))
    decision, _ = run_loop(POOL, "uid-a", held, {})
    assert decision.phase is Phase.STICKY
    assert decision.allocation.port == 10004
    assert decision.allocation.gateway == "postgresql-2"
    assert decision.allocation.hostname == "db2.example.ch"


def test_claim_first_picks_lowest_shard_with_room():
    full = [claim(p, shard=1) for p in range(10000, 10009)]  # 9 tenant slots, all taken
    available = {
        "tcp-gateways-accepting": [gateway(1), gateway(2)],
        "tcp-claims-shard-1": full,
        "tcp-claims-shard-2": [],
    }
    decision, calls = run_loop(POOL, "uid-new", None, available)
    assert decision.phase is Phase.CLAIM
    assert decision.allocation.shard == 2
    assert 10010 <= decision.allocation.port <= 10018  # 10019 is the Gateway's own listener
    assert decision.allocation.claim_name == f"tcp-postgresql-{decision.allocation.port}"
    assert calls == 3


def test_claim_first_never_picks_a_claimed_port_or_the_gateways_own():
    taken = [claim(p, shard=1) for p in (10000, 10001, 10002, 10004, 10005, 10006, 10007)]
    available = {"tcp-gateways-accepting": [gateway(1)], "tcp-claims-shard-1": taken}
    for identity in (f"uid-{i}" for i in range(50)):
        decision, _ = run_loop(POOL, identity, None, available)
        assert decision.allocation.port in (10003, 10008)


def test_start_offset_spreads_concurrent_new_tenants():
    available = {"tcp-gateways-accepting": [gateway(1, capacity=100)], "tcp-claims-shard-1": []}
    ports = {run_loop(POOL, f"uid-{i}", None, available)[0].allocation.port for i in range(20)}
    assert len(ports) >= 15  # a fixed start would give one port


def test_hint_only_orders_the_search_and_claims_decide():
    # Shard 1 says it is full, shard 2 has room: shard 2 is read first.
    available = {
        "tcp-gateways-accepting": [gateway(1, used=9), gateway(2, used=0)],
        "tcp-claims-shard-1": [],
        "tcp-claims-shard-2": [],
    }
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.allocation.shard == 2


def test_reads_at_most_two_windows_of_claims_however_big_the_pool():
    gateways = [gateway(i) for i in range(1, 41)]
    full = {
        f"tcp-claims-shard-{i}": [claim(10000 + (i - 1) * 10 + p, shard=i) for p in range(9)]
        for i in range(1, 41)
    }
    available = {"tcp-gateways-accepting": gateways, **full}
    decision, calls = run_loop(POOL, "uid-x", None, available)
    claim_reads = [r for r in decision.requirements if r.name.startswith("tcp-claims-shard-")]
    assert len(claim_reads) == allocation.MAX_SHARDS_READ  # 24 shards of 9 slots: 216 claims
    assert decision.phase is Phase.POOL_FULL
    assert calls <= 6


def big_full_shards(count: int) -> dict:
    """`count` shards of capacity 100 (99 tenant slots), every slot claimed."""
    available = {"tcp-gateways-accepting": [gateway(i, capacity=100) for i in range(1, count + 1)]}
    for i in range(1, count + 1):
        start = 10000 + (i - 1) * 100
        available[f"tcp-claims-shard-{i}"] = [claim(start + p, shard=i) for p in range(99)]
    return available


def claims_read(decision, available) -> int:
    return sum(
        len(available[r.name]) for r in decision.requirements
        if r.name.startswith("tcp-claims-shard-")
    )  # fmt: skip


def test_a_reconcile_reads_no_more_claims_than_the_budget_of_shards_of_any_size():
    # Three shards of 99 claims would be ~900 KiB of wrapped claims in one request.
    available = big_full_shards(10)
    decision, calls = run_loop(POOL, "uid-x", None, available)
    assert decision.phase is Phase.POOL_FULL
    assert claims_read(decision, available) == 198 <= allocation.CLAIM_BUDGET  # two shards
    assert calls <= 6


def test_waiting_tickets_count_against_the_claim_budget():
    available = big_full_shards(10)
    available["tcp-tickets"] = [ticket(f"uid-{i}", "2026-11-26T10:00:00Z") for i in range(60)]
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert claims_read(decision, available) == 99  # 60 tickets + 2 x 99 claims > 250


def test_the_second_window_reaches_the_free_slots_of_many_small_shards():
    # A burst of 100 waiters behind a full first shard: the first window (three shards)
    # holds 18 free slots, the second as many shards as the budget left after the tickets
    # allows (150 claims: 16 shards in all), so every waiter is given its own port at once.
    gateways = [gateway(i) for i in range(1, 31)]
    available = {"tcp-gateways-accepting": gateways, "tcp-claims-shard-1": [
        claim(10000 + p) for p in range(9)
    ]}  # fmt: skip
    available["tcp-tickets"] = [ticket(f"uid-{i:03d}", "2026-11-26T10:00:00Z") for i in range(100)]
    ports = set()
    for i in range(100):
        decision, _ = run_loop(POOL, f"uid-{i:03d}", None, available)
        if decision.allocation:
            ports.add(decision.allocation.port)
    assert len(ports) == 100


def test_second_window_is_read_when_first_is_full():
    gateways = [gateway(i) for i in range(1, 6)]
    available = {"tcp-gateways-accepting": gateways}
    for i in range(1, 4):
        available[f"tcp-claims-shard-{i}"] = [
            claim(10000 + (i - 1) * 10 + p, shard=i) for p in range(9)
        ]
    available["tcp-claims-shard-4"] = []
    decision, calls = run_loop(POOL, "uid-x", None, available)
    assert (decision.phase, decision.allocation.shard) == (Phase.CLAIM, 4)
    assert calls == 4


def test_pool_full():
    available = {
        "tcp-gateways-accepting": [gateway(1)],
        "tcp-claims-shard-1": [claim(p) for p in range(10000, 10009)],
    }
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.phase is Phase.POOL_FULL
    assert decision.allocation is None


def test_capacity_counts_claims_not_just_ports():
    # Capacity 5 in a 10-port slice: four tenants fill it although ports remain.
    available = {
        "tcp-gateways-accepting": [gateway(1, ports="10000-10009", capacity=5, own_port=10009)],
        "tcp-claims-shard-1": [claim(p) for p in (10000, 10001, 10002, 10003)],
    }
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.phase is Phase.POOL_FULL


def test_no_accepting_label_falls_back_to_all_gateways_of_the_pool():
    handmade = gateway(1, accepting=None)
    available = {
        "tcp-gateways-accepting": [],
        "tcp-gateways": [handmade, gateway(2, accepting=False)],
        "tcp-claims-shard-1": [],
    }
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.phase is Phase.CLAIM
    assert decision.allocation.shard == 1
    names = [r.name for r in decision.requirements]
    assert names == [
        "tcp-gateways-accepting",
        "tcp-gateways",
        "tcp-tickets",
        "tcp-claims-shard-1",
        "tcp-placed-shard-1",
    ]


def test_no_shards():
    decision, _ = run_loop(POOL, "uid-x", None, {"tcp-gateways-accepting": []})
    assert decision.phase is Phase.NO_SHARDS


def test_partial_view_is_pending_not_full():
    decision = allocation.decide(POOL, "uid-x", None, {})
    assert decision.phase is Phase.PENDING
    lookups = {"tcp-gateways-accepting": [gateway(1)]}  # claims not read yet
    decision = allocation.decide(POOL, "uid-x", None, lookups)
    assert decision.phase is Phase.PENDING


def test_malformed_shard_is_skipped_with_a_warning_naming_the_annotation():
    bad = gateway(1)
    bad["metadata"]["annotations"][labels.PORTS] = "ten-to-twenty"
    available = {"tcp-gateways-accepting": [bad, gateway(2)], "tcp-claims-shard-2": []}
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.allocation.shard == 2
    assert any(labels.PORTS in w and "postgresql-1" in w for w in decision.warnings)


def test_gateways_of_other_namespaces_are_ignored():
    # Crossplane v1.x label lookups span all namespaces.
    elsewhere = gateway(1, namespace="somewhere-else")
    available = {"tcp-gateways-accepting": [elsewhere], "tcp-gateways": [elsewhere]}
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.phase is Phase.NO_SHARDS


def test_wrapped_claims_are_objects_and_still_lock_their_port():
    pool = Pool(name="postgresql", namespace=NS, wrapped=True)
    taken = [claim(p, wrapped=True) for p in range(10000, 10008)]
    available = {"tcp-gateways-accepting": [gateway(1)], "tcp-claims-shard-1": taken}
    decision, _ = run_loop(pool, "uid-x", None, available)
    assert decision.allocation.port == 10008
    reads = [r for r in decision.requirements if r.name == "tcp-claims-shard-1"]
    assert (reads[0].api_version, reads[0].kind, reads[0].namespace) == (
        "kubernetes.crossplane.io/v1alpha2",
        "Object",
        None,
    )


def test_claim_with_damaged_port_label_still_locks_the_port_in_its_name():
    damaged = claim(10000)
    damaged["metadata"]["labels"][labels.PORT] = "not-a-port"
    available = {
        "tcp-gateways-accepting": [gateway(1, ports="10000-10001", capacity=3, own_port=9999)],
        "tcp-claims-shard-1": [damaged],
    }
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.allocation.port == 10001


def test_static_shards_sharing_one_range_never_pick_a_port_claimed_on_another_shard():
    static = shards.from_static(
        [
            StaticGateway(name="db-1", ports="10000-10003", capacity=5),
            StaticGateway(name="db-2", ports="10000-10003", capacity=5),
        ],
        NS,
    )
    pool = Pool(name="postgresql", namespace=NS, wrapped=False, static_shards=static)
    available = {
        "tcp-claims-shard-1": [claim(p, shard=1) for p in (10000, 10001, 10002, 10003)],
        "tcp-claims-shard-2": [],
    }
    decision, _ = run_loop(pool, "uid-x", None, available)
    assert decision.phase is Phase.POOL_FULL  # every port of the shared range is claimed
    available["tcp-claims-shard-1"] = [claim(p, shard=1) for p in (10000, 10001)]
    decision, _ = run_loop(pool, "uid-x", None, available)
    assert decision.allocation.port in (10002, 10003)


def test_every_shard_saying_it_is_full_is_pool_full_not_no_shards():
    available = {
        "tcp-gateways-accepting": [],
        "tcp-gateways": [gateway(1, accepting=False), gateway(2, accepting=False)],
    }
    decision, _ = run_loop(POOL, "uid-x", None, available)
    assert decision.phase is Phase.POOL_FULL


def test_claim_lookups_select_on_the_claim_role():
    # Wrapped Gateways, listeners and routes carry the pool label too: only claims match.
    pool = Pool(name="postgresql", namespace=NS, wrapped=True)
    decision, _ = run_loop(pool, "uid-x", None, {"tcp-gateways-accepting": [gateway(1)]})
    [read] = [r for r in decision.requirements if r.name == "tcp-claims-shard-1"]
    assert read.match_labels[labels.ROLE] == labels.CLAIM_ROLE
    assert read.matches(claim(10001, wrapped=True))
    from function.builders.object import wrap

    assert not read.matches(wrap(gateway(1), provider_config="kubernetes"))


def test_racers_for_the_last_slot_of_a_wide_range_all_pick_the_same_port():
    # Capacity 3 (two tenant slots) over ten ports, one taken: every racer from this view
    # must pick the same port, so the claim (a port lock) also locks the last slot.
    available = {
        "tcp-gateways-accepting": [gateway(1, ports="10000-10009", capacity=3, own_port=9999)],
        "tcp-claims-shard-1": [claim(10004)],
        "tcp-claims-own": [],
    }
    ports = {run_loop(POOL, f"uid-{i}", None, available)[0].allocation.port for i in range(20)}
    assert ports == {10000}


def test_an_own_claim_the_lagging_xr_does_not_show_is_its_allocation():
    mine = claim(10006, holder="uid-a", owner="a")
    available = {"tcp-claims-own": [mine], "tcp-gateway-shard-1": [gateway(1)]}
    decision, _ = run_loop(POOL, "uid-a", None, available, owner="a")
    assert decision.phase is Phase.STICKY  # used at once: no second claim, no Claiming phase
    assert decision.allocation.port == 10006
    # Someone else's claim with the same owner label is not ours.
    other = {**available, "tcp-gateways-accepting": []}
    decision, _ = run_loop(POOL, "uid-b", None, other, owner="a")
    assert decision.phase is not Phase.STICKY


# -- the queue of waiting tenants (rule 4) ------------------------------------------------


def test_waiters_from_one_view_take_the_free_slots_in_ticket_order():
    line = [ticket(f"uid-{i}", f"2026-11-26T10:00:0{i}Z") for i in range(4)]
    available = {
        "tcp-gateways-accepting": [gateway(1, capacity=6, ports="10000-10005")],
        "tcp-claims-shard-1": [claim(10001)],
        "tcp-tickets": line,
    }
    ports = [run_loop(POOL, f"uid-{i}", None, available)[0].allocation.port for i in range(4)]
    assert ports == [10000, 10002, 10003, 10004]  # oldest ticket first, the lowest free port


def test_a_tenant_not_yet_in_line_leaves_the_waiters_their_slots():
    line = [ticket("uid-old", "2026-11-26T10:00:00Z")]
    available = {
        "tcp-gateways-accepting": [gateway(1, capacity=4, ports="10000-10003")],  # 3 slots
        "tcp-claims-shard-1": [],
        "tcp-tickets": line,
    }
    for i in range(20):
        decision, _ = run_loop(POOL, f"uid-new-{i}", None, available)
        assert decision.allocation.port in (10001, 10002), decision.allocation


def test_a_waiter_behind_every_free_slot_is_queued_and_keeps_its_place():
    line = [ticket(f"uid-{i}", f"2026-11-26T10:00:0{i}Z") for i in range(3)]
    available = {
        "tcp-gateways-accepting": [gateway(1, capacity=3, ports="10000-10002")],  # 2 slots
        "tcp-claims-shard-1": [],
        "tcp-tickets": line,
    }
    decision, _ = run_loop(POOL, "uid-2", None, available)
    assert (decision.phase, decision.ahead, decision.ticket) == (Phase.QUEUED, 2, True)
    newcomer, _ = run_loop(POOL, "uid-new", None, available)
    assert (newcomer.phase, newcomer.ahead) == (Phase.QUEUED, 3)


def test_a_ticket_holder_with_a_claim_in_view_is_not_waiting():
    line = [ticket("uid-done", "2026-11-26T10:00:00Z"), ticket("uid-b", "2026-11-26T10:00:01Z")]
    available = {
        "tcp-gateways-accepting": [gateway(1, capacity=3, ports="10000-10002")],
        "tcp-claims-shard-1": [claim(10000, holder="uid-done")],
        "tcp-tickets": line,
    }
    decision, _ = run_loop(POOL, "uid-b", None, available)
    assert decision.allocation.port == 10001


def test_a_waiter_reading_the_second_window_takes_a_slot_nobody_got_from_the_first():
    # Two tenant slots a shard; the first window (shards 1-3) has two free, the second
    # (shard 4) one more. The first two waiters decide from the first window alone; the
    # third reads the second, where a claim of the first waiter shows up: the line stays as
    # the first window set it, or it would take the second waiter's slot.
    def shard(i: int) -> dict:
        start = 10000 + 10 * (i - 1)
        return gateway(i, capacity=3, ports=f"{start}-{start + 1}", own_port=19000 + i)

    available = {
        "tcp-gateways-accepting": [shard(i) for i in range(1, 5)],
        "tcp-claims-shard-1": [claim(10000, shard=1), claim(10001, shard=1)],
        "tcp-claims-shard-2": [claim(10010, shard=2)],
        "tcp-claims-shard-3": [claim(10020, shard=3)],
        "tcp-claims-shard-4": [claim(10031, shard=4, holder="uid-0")],
        "tcp-tickets": [ticket(f"uid-{i}", f"2026-11-26T10:00:0{i}Z") for i in range(4)],
    }
    decisions = {f"uid-{i}": run_loop(POOL, f"uid-{i}", None, available)[0] for i in range(4)}
    chosen = {u: d.allocation.port for u, d in decisions.items() if d.allocation}
    assert chosen == {"uid-0": 10011, "uid-1": 10021, "uid-2": 10030}
    assert decisions["uid-3"].phase is Phase.QUEUED


def test_wrapped_tickets_are_read_from_their_objects():
    pool = Pool(name="postgresql", namespace=NS, wrapped=True)
    line = [ticket(f"uid-{i}", f"2026-11-26T10:00:0{i}Z", wrapped=True) for i in (1, 0)]
    available = {
        "tcp-gateways-accepting": [gateway(1, capacity=6, ports="10000-10005")],
        "tcp-claims-shard-1": [],
        "tcp-tickets": line,
    }
    decision, _ = run_loop(pool, "uid-1", None, available)
    assert decision.allocation.port == 10001
    [read] = [r for r in decision.requirements if r.name == "tcp-tickets"]
    assert read.kind == "Object" and read.match_labels[labels.ROLE] == labels.TICKET_ROLE
    assert read.matches(line[0]) and not read.matches(claim(10001, wrapped=True))


def test_in_a_full_pool_the_head_of_the_line_reports_it_full_and_the_rest_wait_behind():
    line = [ticket(f"uid-{i}", f"2026-11-26T10:00:0{i}Z") for i in range(3)]
    available = {
        "tcp-gateways-accepting": [gateway(1, capacity=3, ports="10000-10002")],
        "tcp-claims-shard-1": [claim(10000), claim(10001)],
        "tcp-tickets": line,
    }
    phases = [run_loop(POOL, f"uid-{i}", None, available)[0] for i in range(3)]
    assert [(d.phase, d.ahead) for d in phases] == [
        (Phase.POOL_FULL, 0),
        (Phase.QUEUED, 1),
        (Phase.QUEUED, 2),
    ]


def test_a_tenant_that_found_no_slot_in_reach_searches_the_rest_of_the_pool():
    # Ten shards of 99 slots and no pool step: every shard says it accepts, only shard 8
    # has room. The reach (two shards: the claim budget) holds no slot; searching, the
    # tenant looks from another shard on each try, and finds it.
    available = big_full_shards(10)
    available["tcp-claims-shard-8"] = available["tcp-claims-shard-8"][:-1]

    def decide(attempt: int, searching: bool):
        lookups: dict = {}
        for _ in range(6):
            decision = allocation.decide(POOL, "uid-x", None, lookups, attempt, searching=searching)
            lookups = resolve(decision, available)
        assert claims_read(decision, available) <= allocation.CLAIM_BUDGET
        return decision

    assert decide(2, searching=False).phase is Phase.POOL_FULL
    found = [a for a in range(2, 40) if decide(a, searching=True).phase is Phase.CLAIM]
    assert found and {decide(a, True).allocation.shard for a in found} == {8}


# -- a claim's port is taken wherever it lies ------------------------------------------------


def test_an_adopted_claim_outside_its_shards_slice_is_never_claimed_again():
    # An adopted claim labelled shard 1 holds 10012, in shard 2's slice; the head of the line
    # would be handed 10012 first, on every reconcile, if only shard 2's claims counted.
    adopted = claim(10012, shard=1, holder="uid-legacy")
    available = {
        "tcp-gateways-accepting": [gateway(1), gateway(2)],
        "tcp-claims-shard-1": [adopted, *(claim(p, shard=1) for p in range(10000, 10008))],
        "tcp-claims-shard-2": [claim(10010, shard=2), claim(10011, shard=2)],
        "tcp-tickets": [ticket("uid-head", "2024-01-01T00:00:00Z")],
    }
    decision, _ = run_loop(POOL, "uid-head", None, available)
    assert decision.phase is Phase.CLAIM
    assert decision.allocation.port not in (10010, 10011, 10012)


def test_ports_the_pool_step_saw_held_elsewhere_are_never_offered():
    shard2 = gateway(2)
    shard2["metadata"]["annotations"][labels.HELD_ELSEWHERE] = "10010,10011"
    available = {
        "tcp-gateways-accepting": [shard2],
        "tcp-claims-shard-2": [],
        "tcp-tickets": [ticket("uid-head", "2024-01-01T00:00:00Z")],
    }
    decision, _ = run_loop(POOL, "uid-head", None, available)
    assert decision.allocation.port == 10012  # the lowest port nobody holds


def test_ports_an_earlier_claim_failed_on_are_avoided():
    available = {
        "tcp-gateways-accepting": [gateway(1)],
        "tcp-claims-shard-1": [],
        "tcp-tickets": [ticket("uid-head", "2024-01-01T00:00:00Z")],
    }
    first, _ = run_loop(POOL, "uid-head", None, available)
    lookups = resolve(first, available)
    again = allocation.decide(
        POOL, "uid-head", None, lookups, attempt=2, avoid=frozenset({first.allocation.port})
    )
    assert again.phase is Phase.CLAIM
    assert again.allocation.port != first.allocation.port


# -- static shards are their Gateways, wherever they stand in the list -----------------------


def decide_on(pool, identity, cluster):
    """Run the requirement loop against `cluster`, selecting as Crossplane does."""
    available = {}
    lookups: dict = {}
    decision = None
    for _ in range(6):
        decision = allocation.decide(pool, identity, None, lookups)
        available = {r.name: [o for o in cluster if r.matches(o)] for r in decision.requirements}
        if available.keys() == lookups.keys():
            return decision
        lookups = available
    raise AssertionError("requirements did not stabilise within Crossplane's limit")


def static_claim(port: int, position: int, gateway_name: str, *, labelled: bool = True) -> dict:
    lease = claim(port, shard=position)
    lease["metadata"]["annotations"][labels.GATEWAY] = gateway_name
    if labelled:
        lease["metadata"]["labels"][labels.GATEWAY] = gateway_name
    else:  # made before claims carried the gateway label
        del lease["metadata"]["labels"][labels.GATEWAY]
    return lease


A = StaticGateway(name="postgresql-a", ports="10000-10009", capacity=5)
B = StaticGateway(name="postgresql-b", ports="10010-10019", capacity=5)


def static_pool(*gateways: StaticGateway) -> Pool:
    return Pool(
        name="postgresql",
        namespace=NS,
        wrapped=False,
        static_shards=shards.from_static(list(gateways), NS),
    )


def test_reordering_static_gateways_never_fills_a_full_gateway():
    # B is full (its own listener and four tenants), claimed while B was the list's second.
    full_b = [static_claim(p, 2, "postgresql-b") for p in (10014, 10015, 10016, 10017)]
    for order in ((A, B), (B, A)):
        decision = decide_on(static_pool(*order), "uid-new", full_b)
        assert decision.phase is Phase.CLAIM
        assert decision.allocation.gateway == "postgresql-a"


def test_claims_made_before_the_gateway_label_still_count_until_relabelled():
    full_b = [
        static_claim(p, 2, "postgresql-b", labelled=False) for p in (10014, 10015, 10016, 10017)
    ]
    decision = decide_on(static_pool(B, A), "uid-new", [])
    assert decision.allocation.gateway == "postgresql-b"  # B is empty, and first
    decision = decide_on(static_pool(A, B), "uid-new", full_b)
    assert decision.allocation.gateway == "postgresql-a"


def test_a_static_gateways_own_listener_port_is_never_handed_out():
    gateway_ = StaticGateway(
        name="postgresql-a", ports="10000-10002", capacity=3, listenerPorts=[10000]
    )
    pool = static_pool(gateway_)
    ports = {decide_on(pool, f"uid-{n}", []).allocation.port for n in range(40)}
    assert ports == {10001, 10002}


def test_claim_views_take_the_ports_namespaced_tenants_listen_on_and_nothing_else():
    # Shard 1: three tenant slots (10000-10002, its own listener 10003). A Namespaced
    # tenant listens on 10000; a listener set its Gateway refused, and a decoy naming a
    # Gateway of that name in its own namespace, carry no traffic.
    available = {
        "tcp-gateways-accepting": [gateway(1, capacity=4)],
        "tcp-placed-shard-1": [
            tenant_listener_set(10000, 1, namespace="team-a", accepted=True),
            tenant_listener_set(10001, 1, namespace="team-b", accepted=False),
            tenant_listener_set(10002, 1, namespace="team-m", parent={"namespace": "team-m"}),
        ],
    }
    chosen = set()
    for identity in (f"uid-{i}" for i in range(30)):
        decision, _ = run_loop(POOL, identity, None, available)
        assert decision.phase is Phase.CLAIM
        chosen.add(decision.allocation.port)
    assert chosen == {10001, 10002}


# -- tickets are leases: an expired one holds nobody up ------------------------------------

NOW = datetime.datetime(2026, 11, 26, 11, 0, tzinfo=datetime.UTC)


def ago(minutes: int) -> str:
    return (NOW - datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def one_free_slot(stuck_renewed: str) -> dict:
    """A shard with one free slot; a tenant that queued first (renewed when given) ahead of
    uid-me, which renewed its ticket a minute ago."""
    return {
        "tcp-gateways-accepting": [gateway(1, capacity=4, ports="10000-10003")],
        "tcp-claims-shard-1": [claim(10000), claim(10001)],
        "tcp-tickets": [
            ticket("uid-stuck", "2026-11-26T10:00:00Z", renewed=stuck_renewed),
            ticket("uid-me", "2026-11-26T10:30:00Z", renewed=ago(1)),
        ],
    }


def test_an_expired_ticket_ahead_no_longer_holds_a_waiter_back():
    # uid-stuck stopped reconciling (paused, failing later): its ticket is 16 minutes old.
    decision, _ = run_loop(POOL, "uid-me", None, one_free_slot(ago(16)), now=NOW)
    assert decision.phase is Phase.CLAIM
    assert decision.allocation.port == 10002


def test_a_live_ticket_ahead_still_holds_a_waiter_back():
    decision, _ = run_loop(POOL, "uid-me", None, one_free_slot(ago(14)), now=NOW)
    assert (decision.phase, decision.ahead) == (Phase.QUEUED, 1)


def test_a_renewed_ticket_keeps_its_place_in_line_whenever_it_was_created():
    # Created long ago, renewed just now: alive, and first by its creation time.
    available = one_free_slot(ago(0))
    decision, _ = run_loop(POOL, "uid-me", None, available, now=NOW)
    assert (decision.phase, decision.ahead) == (Phase.QUEUED, 1)
    first, _ = run_loop(POOL, "uid-stuck", None, available, now=NOW)
    assert first.allocation.port == 10002


def test_a_ticket_renewed_far_in_the_future_holds_nobody_up():
    # No replica's clock is a day ahead: such a renewTime is no lease this step wrote.
    future = (NOW + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    decision, _ = run_loop(POOL, "uid-me", None, one_free_slot(future), now=NOW)
    assert decision.allocation.port == 10002


def test_a_ticket_states_its_own_time_to_live():
    # A tenant step with a one-hour TTL wrote it: 30 minutes after renewal it is alive.
    available = one_free_slot(ago(30))
    available["tcp-tickets"][0] = ticket(
        "uid-stuck", "2026-11-26T10:00:00Z", renewed=ago(30), ttl=3600
    )
    decision, _ = run_loop(POOL, "uid-me", None, available, now=NOW)
    assert (decision.phase, decision.ahead) == (Phase.QUEUED, 1)


@pytest.mark.parametrize(
    ("renew_time", "duration", "ahead"),
    [
        ("9999-12-31T23:59:59.999999Z", 900, 0),  # no renewal this step wrote
        ("0001-01-01T00:00:00+14:00", 900, 0),
        ("yesterday", 900, 0),  # unreadable: its creation, an hour ago, counts
        (ago(16), float("inf"), 0),  # unreadable: the default 15 minutes
        (ago(16), float("nan"), 0),
        (ago(16), -5, 0),
        (ago(16), True, 0),
        (ago(30), 1e12, 1),  # capped at a day: alive after 30 minutes
        (ago(25 * 60), 1e12, 0),  # and expired after the day
    ],
)
def test_a_ticket_with_hostile_times_raises_nothing_and_holds_nobody_up_for_long(
    renew_time, duration, ahead
):
    available = one_free_slot(ago(0))
    stuck = available["tcp-tickets"][0]
    stuck["spec"].update(renewTime=renew_time, leaseDurationSeconds=duration)
    decision, _ = run_loop(POOL, "uid-me", None, available, now=NOW)
    assert decision.ahead == ahead
    assert (decision.phase is Phase.CLAIM) == (ahead == 0)
