"""The pool step on plain data: shards, growth, draining, status."""

import datetime

import pytest

from function import labels, pool
from function.inputs import GatewayPool
from function.step import FATAL, StepRequest
from tests.factories import NS, claim, gateway, tenant_listener_set, ticket

NOW = datetime.datetime(2026, 11, 26, 10, 5, tzinfo=datetime.UTC)
HOUR, MINUTE = datetime.timedelta(hours=1), datetime.timedelta(minutes=1)
XR = {"apiVersion": "x/v1", "kind": "XGatewayPool", "metadata": {"name": "postgresql"}}
INPUT = {
    "pool": "postgresql",
    "namespace": NS,
    "gatewayClassName": "envoy-gateway",
    "provider": "exoscale",
    "ports": "10000-10499",
    "hostname": "db{index}.example.ch",
    "minShards": 1,
    "maxShards": 5,
    "headroom": 3,
}


def spec(**changes) -> GatewayPool:
    return GatewayPool.model_validate({**INPUT, **changes})


def listening(claims):
    """The listener sets of settled cluster-scoped tenants: one per claim, on its port."""
    return [
        tenant_listener_set(
            int(c["metadata"]["labels"][labels.PORT]),
            int(c["metadata"]["labels"][labels.SHARD]),
            namespace=f"vshn-postgresql-{c['metadata']['name']}",
        )
        for c in claims
        if c["metadata"]["labels"].get(labels.SHARD, "").isdigit()
    ]


def lookups(claims, listener_sets=None, tickets=()) -> dict:
    """Every lookup of the pool step; tenants listen where they claimed unless told."""
    found = listening(claims) if listener_sets is None else listener_sets
    return {pool.CLAIMS: claims, pool.LISTENER_SETS: found, pool.TICKETS: list(tickets)}


def reconcile(spec_, claims, observed=None, listener_sets=None, tickets=(), now=NOW):
    found = lookups(claims, listener_sets, tickets)
    return pool.run(spec_, StepRequest(xr=XR, observed=observed or {}, lookups=found, now=now))


def claims_on(shard: int, count: int, capacity: int = 10):
    start = 10000 + (shard - 1) * capacity
    return [claim(start + i, shard) for i in range(count)]


def gateways(result):
    return {k: d.resource for k, d in result.resources.items()}


def as_observed(result):
    """What the cluster would show next time: the Gateways as written."""
    return {k: dict(d.resource) for k, d in result.resources.items()}


def test_unread_claims_keep_every_gateway():
    first = reconcile(spec(), claims_on(1, 8))
    observed = as_observed(first)
    request = StepRequest(xr=XR, observed=observed, lookups={})
    result = pool.run(spec(), request)
    assert gateways(result) == observed
    assert [r.name for r in result.requirements] == [pool.CLAIMS, pool.TICKETS, pool.LISTENER_SETS]


def test_one_gateway_per_shard_with_its_slice_labels_and_annotations():
    result = reconcile(spec(), [])
    gateway = gateways(result)["gateway-1"]
    meta = gateway["metadata"]
    assert meta["name"] == "postgresql-1" and meta["namespace"] == NS
    assert meta["labels"] == {
        labels.POOL: "postgresql",
        labels.SHARD: "1",
        labels.ACCEPTING: "true",
    }
    assert meta["annotations"] == {
        labels.HOSTNAME: "db1.example.ch",
        labels.PORTS: "10000-10009",
        labels.CAPACITY: "10",
        labels.USED: "0",
        labels.PORT_REST: "3600",  # the resting record: nothing seen, nothing freed
        labels.CLIENT_ADDRESS: "Unknown",
    }
    [listener] = gateway["spec"]["listeners"]
    assert (listener["name"], listener["port"], listener["protocol"]) == ("shard", 10009, "TCP")
    assert gateway["spec"]["allowedListeners"] == {
        "namespaces": {
            "from": "Selector",
            "selector": {"matchLabels": {labels.LISTENER_NAMESPACE: "true"}},
        }
    }
    assert not [r for r in result.results if r.severity == "Warning"]
    assert gateway["spec"]["infrastructure"]["annotations"] == {
        "service.beta.kubernetes.io/exoscale-loadbalancer-name": "postgresql-1",
        "external-dns.alpha.kubernetes.io/hostname": "db1.example.ch",
    }


def test_grows_before_the_headroom_is_gone():
    result = reconcile(spec(), claims_on(1, 7))  # 9 slots, 7 used: 2 free < 3
    assert set(gateways(result)) == {"gateway-1", "gateway-2"}
    assert result.status["totals"] == {
        "shards": 2,
        "slots": 18,
        "used": 7,
        "free": 11,
        "resting": 0,
    }


def test_a_full_shard_stops_accepting():
    result = reconcile(spec(), claims_on(1, 9))
    assert gateways(result)["gateway-1"]["metadata"]["labels"][labels.ACCEPTING] == "false"
    assert gateways(result)["gateway-2"]["metadata"]["labels"][labels.ACCEPTING] == "true"


def test_max_shards_reached_is_a_warning_and_a_condition():
    full = [c for shard in (1, 2) for c in claims_on(shard, 9)]
    result = reconcile(spec(maxShards=2, ports="10000-10019"), full)
    assert len(gateways(result)) == 2
    [cond] = result.conditions
    assert (cond.type, cond.status, cond.reason) == ("PoolCapacity", "False", "MaxShardsReached")
    assert any(r.reason == "MaxShardsReached" for r in result.results)


def test_trailing_empty_shard_drains_then_goes():
    unrested = spec(portRest="0")
    grown = reconcile(unrested, claims_on(1, 7) + claims_on(2, 1))
    assert len(gateways(grown)) == 2
    # Tenants on shard 1 leave: shard 1 alone keeps the headroom, shard 2 holds one claim.
    result = reconcile(unrested, claims_on(1, 2) + claims_on(2, 1), as_observed(grown))
    assert len(gateways(result)) == 2  # never removed while it holds a claim
    # The last tenant of shard 2 leaves: first it stops accepting...
    drain = reconcile(unrested, claims_on(1, 2), as_observed(result))
    assert gateways(drain)["gateway-2"]["metadata"]["labels"][labels.ACCEPTING] == "false"
    # ...and only when it was observed draining and still empty, it goes.
    gone = reconcile(unrested, claims_on(1, 2), as_observed(drain))
    assert set(gateways(gone)) == {"gateway-1"}


def test_a_shard_whose_freed_port_rests_is_not_removed_until_it_has_rested():
    grown = reconcile(spec(), claims_on(1, 2) + claims_on(2, 1))
    emptied = reconcile(spec(), claims_on(1, 2), as_observed(grown))
    kept = reconcile(spec(), claims_on(1, 2), as_observed(emptied), now=NOW + HOUR / 2)
    assert set(gateways(kept)) == {"gateway-1", "gateway-2"}  # added again, it would forget
    assert kept.status["shards"][1]["resting"] == 1
    later = NOW + HOUR + MINUTE
    drain = reconcile(spec(), claims_on(1, 2), as_observed(kept), now=later)
    assert gateways(drain)["gateway-2"]["metadata"]["labels"][labels.ACCEPTING] == "false"
    gone = reconcile(spec(), claims_on(1, 2), as_observed(drain), now=later + MINUTE)
    assert set(gateways(gone)) == {"gateway-1"}


def test_an_empty_claim_lookup_never_shrinks_the_pool():
    grown = reconcile(spec(), claims_on(1, 7) + claims_on(2, 1))
    drained = reconcile(spec(), claims_on(1, 1), as_observed(grown))
    drained = reconcile(spec(), claims_on(1, 1), as_observed(drained))
    observed = as_observed(drained)
    result = reconcile(spec(), [], observed)
    assert set(gateways(result)) == set(observed)


def test_status_reports_every_shard_and_nodeports():
    result = reconcile(spec(), claims_on(1, 7))
    first = result.status["shards"][0]
    assert first == {
        "index": 1,
        "gateway": "postgresql-1",
        "hostname": "db1.example.ch",
        "ports": "10000-10009",
        "capacity": 10,
        "used": 7,
        "free": 2,
        "address": "",
        "programmed": False,
        "resting": 0,
        "listenerDrift": {
            "foreign": 0,
            "unclaimed": 0,
            "unattached": 0,
            "refused": 0,
            "noAddress": True,
        },
        "clientAddress": "Unknown",
    }
    assert result.status["nodePorts"] == 2 + 7  # two Gateways' own listeners, seven tenants
    assert result.status["headroom"] == 3


def test_claim_naming_a_missing_shard_keeps_that_shard():
    result = reconcile(spec(), [*claims_on(1, 1), claim(10035, 4)])
    assert "gateway-4" in gateways(result)


def test_orphaned_claim_is_reported():
    orphan = claim(10003, 1)
    del orphan["metadata"]["labels"][labels.SHARD]
    result = reconcile(spec(), [orphan])
    assert result.status["orphanedClaims"] == ["tcp-postgresql-10003"]
    assert any(r.reason == "OrphanedClaim" for r in result.results)


def test_too_many_infrastructure_annotations_is_fatal_naming_the_field():
    many = {f"example.com/a{i}": "x" for i in range(15)}
    result = reconcile(spec(infrastructure={"annotations": many}), [])
    [fatal] = result.results
    assert fatal.severity == FATAL and "infrastructure.annotations" in fatal.message


def test_wrapped_gateways_and_object_claims():
    result = reconcile(spec(wrap={"providerConfigName": "kubernetes"}), [])
    gateway = gateways(result)["gateway-1"]
    assert gateway["kind"] == "Object"
    assert gateway["spec"]["forProvider"]["manifest"]["kind"] == "Gateway"
    for requirement in result.requirements:  # the claims and the tickets, Objects both
        if requirement.name != pool.LISTENER_SETS:
            assert (requirement.kind, requirement.namespace) == ("Object", None)
    [listener_sets] = [r for r in result.requirements if r.name == pool.LISTENER_SETS]
    # Listeners are counted where they are: the ListenerSets provider-kubernetes made.
    assert (listener_sets.kind, listener_sets.namespace) == ("ListenerSet", None)


def admits(gateway: dict) -> dict:
    return gateway["spec"]["allowedListeners"]["namespaces"]


def warnings(result) -> list[str]:
    return [r.message for r in result.results if r.severity == "Warning"]


ALL = {"from": "All"}
PLATFORM = {"from": "Selector", "selector": {"matchLabels": {labels.LISTENER_NAMESPACE: "true"}}}


@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "wrapped"])
def test_a_live_shard_keeps_the_listener_namespaces_it_was_made_with(wrapped):
    """Shards made when every namespace was admitted by default keep admitting them (their
    tenants' namespaces may not carry the label), with a Warning; a new shard gets the
    platform's label."""
    wrap = {"wrap": {"providerConfigName": "kubernetes"}} if wrapped else {}
    first = reconcile(spec(allowedListenerNamespaces=ALL, **wrap), [])
    observed = as_observed(first)
    result = reconcile(spec(**wrap), claims_on(1, 8), observed=observed)  # grows a shard
    made = gateways(result)
    if wrapped:
        made = {k: g["spec"]["forProvider"]["manifest"] for k, g in made.items()}
    assert admits(made["gateway-1"]) == ALL
    assert admits(made["gateway-2"]) == PLATFORM
    [warning] = warnings(result)
    assert "shard(s) 1 " in warning and labels.LISTENER_NAMESPACE in warning


def test_allowed_listener_namespaces_given_apply_to_every_shard():
    observed = as_observed(reconcile(spec(allowedListenerNamespaces=ALL), []))
    tightened = {"from": "Selector", "selector": {"matchLabels": {"platform": "yes"}}}
    result = reconcile(spec(allowedListenerNamespaces=tightened), [], observed=observed)
    assert admits(gateways(result)["gateway-1"]) == tightened
    assert warnings(result) == []


def test_from_all_is_an_explicit_choice_with_a_warning():
    result = reconcile(spec(allowedListenerNamespaces=ALL), [])
    assert admits(gateways(result)["gateway-1"]) == ALL
    [warning] = warnings(result)
    assert "allowedListenerNamespaces.from is All" in warning
    assert "every namespace" in warning


def test_from_selector_without_a_selector_selects_the_platform_label():
    result = reconcile(spec(allowedListenerNamespaces={"from": "Selector"}), [])
    assert admits(gateways(result)["gateway-1"]) == PLATFORM


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"allowedListenerNamespaces": {"from": "Selector", "selector": {}}}, "selector"),
        ({"ports": "10000-10010"}, "ports"),
        ({"ports": "19999-10000"}, "ports"),
        ({"capacity": 20}, "capacity"),
        ({"provider": "custom"}, "capacity"),
        ({"hostname": "db.example.ch"}, "hostname"),
        ({"minShards": 6}, "minShards"),
        ({"headroom": True}, "headroom"),
        ({"allowedListenerNamespaces": {"from": "Selector", "selector": "x"}}, "selector"),
        (
            {"allowedListenerNamespaces": {"from": "Selector", "selector": {"matchLabels": "x"}}},
            "matchLabels",
        ),
        (
            {
                "allowedListenerNamespaces": {
                    "from": "Selector",
                    "selector": {"matchExpressions": [{"key": "k", "operator": "In"}]},
                }
            },
            "values",
        ),
    ],
)
def test_bad_input(change, named):
    with pytest.raises(ValueError, match=named):
        spec(**change)


def test_a_claim_on_a_shard_whose_gateway_vanished_brings_it_back_and_says_so():
    first = reconcile(spec(), claims_on(1, 7) + claims_on(2, 1))
    observed = as_observed(first)
    del observed["gateway-2"]  # deleted by hand
    result = reconcile(spec(), claims_on(1, 7) + claims_on(2, 1), observed)
    assert "gateway-2" in gateways(result)
    assert result.status["missingShards"] == [2]
    assert any(r.reason == "MissingShard" for r in result.results)


def own_port(result, key="gateway-1") -> int:
    return gateways(result)[key]["spec"]["listeners"][0]["port"]


def reconcile_with_status(spec_, claims, previous):
    """The next reconcile: the Gateways as written, and the XR's status as published."""
    xr = {**XR, "status": {"pool": previous.status}}
    request = StepRequest(xr=xr, observed=as_observed(previous), lookups=lookups(claims))
    return pool.run(spec_, request)


def test_lowering_capacity_never_moves_a_slice_or_the_gateways_own_port():
    wide = spec(provider="custom", capacity=20, ports="10000-10999", headroom=7, maxShards=10)
    tenants = [claim(port, 1) for port in (10002, 10009, 10015)]
    first = reconcile(wide, tenants)
    assert own_port(first) == 10019
    narrow = spec(provider="custom", capacity=10, ports="10000-10999", headroom=7, maxShards=10)
    for previous in (first, reconcile_with_status(narrow, tenants, first)):
        after = reconcile_with_status(narrow, tenants, previous)
        gateway = gateways(after)["gateway-1"]
        assert own_port(after) == 10019  # not 10009, which a tenant holds
        assert gateway["metadata"]["annotations"][labels.PORTS] == "10000-10019"
        # It accepts fewer tenants: capacity 10 (its own listener and nine).
        assert gateway["metadata"]["annotations"][labels.CAPACITY] == "10"
        assert after.status["shards"][0]["free"] == 9 - 3
        # A new shard would take 10010-10019, inside shard 1's slice: refused, and said so.
        assert set(gateways(after)) == {"gateway-1"}
        [condition] = after.conditions
        assert (condition.status, condition.reason) == ("False", "SliceConflict")
        assert "overlaps shard 1's slice 10000-10019" in condition.message
        assert any(r.reason == "SliceConflict" for r in after.results)


def test_changing_ports_shapes_new_shards_only():
    first = reconcile(spec(), claims_on(1, 5))
    assert set(gateways(first)) == {"gateway-1"}
    moved = spec(ports="20000-20499")
    after = reconcile_with_status(moved, claims_on(1, 8), first)
    shards = {g["metadata"]["name"]: g for g in gateways(after).values()}
    assert shards["postgresql-1"]["metadata"]["annotations"][labels.PORTS] == "10000-10009"
    assert own_port(after, "gateway-1") == 10009
    # Shard 2 is new: its slice comes from the new range, and overlaps nothing.
    assert shards["postgresql-2"]["metadata"]["annotations"][labels.PORTS] == "20010-20019"


def test_a_new_shard_whose_own_listener_port_is_claimed_is_refused():
    # An adopted claim of shard 1 holds 10019, the port shard 2's Gateway would listen on.
    claims = [*claims_on(1, 8), claim(10019, 1)]
    result = reconcile(spec(), claims)
    assert set(gateways(result)) == {"gateway-1"}
    [condition] = result.conditions
    assert condition.reason == "SliceConflict" and "10019" in condition.message


def test_a_port_claimed_on_another_shard_is_marked_held_elsewhere_and_costs_a_slot():
    # An adopted claim of shard 1 holds 10012, in shard 2's slice.
    claims = [*claims_on(1, 8), claim(10012, 1)]
    result = reconcile(spec(), claims)
    shard2 = gateways(result)["gateway-2"]
    assert shard2["metadata"]["annotations"][labels.HELD_ELSEWHERE] == "10012"
    assert labels.HELD_ELSEWHERE not in gateways(result)["gateway-1"]["metadata"]["annotations"]
    assert result.status["shards"][1]["free"] == 8  # nine slots, one port of them held
    assert result.status["claimsOutsideSlice"] == ["tcp-postgresql-10012"]


def test_the_slice_record_survives_a_hand_edited_gateway():
    first = reconcile(spec(), claims_on(1, 3))
    observed = as_observed(first)
    edited = observed["gateway-1"]["metadata"]["annotations"]
    edited[labels.PORTS] = "1-64"
    xr = {**XR, "status": {"pool": first.status}}
    request = StepRequest(xr=xr, observed=observed, lookups=lookups(claims_on(1, 3)))
    result = pool.run(spec(), request)
    assert gateways(result)["gateway-1"]["metadata"]["annotations"][labels.PORTS] == "10000-10009"
    assert own_port(result) == 10009


def test_a_raised_capacity_never_widens_a_fixed_slice():
    first = reconcile(spec(provider="custom", capacity=10, ports="10000-10999"), claims_on(1, 3))
    raised = spec(provider="custom", capacity=20, ports="10000-10999")
    after = reconcile_with_status(raised, claims_on(1, 3), first)
    annotations = gateways(after)["gateway-1"]["metadata"]["annotations"]
    assert (annotations[labels.PORTS], annotations[labels.CAPACITY]) == ("10000-10009", "10")


def test_a_claim_naming_a_shard_above_max_shards_composes_nothing():
    bogus = claim(10001, 600)  # a hostile or broken shard label
    result = reconcile(spec(ports="10000-14999"), [claim(10000, 1), bogus])
    assert set(gateways(result)) == {"gateway-1"}
    assert result.status["orphanedClaims"] == ["tcp-postgresql-10001"]
    ports = [own_port(result, key) for key in gateways(result)]
    assert max(ports) <= 65535


def test_a_claim_outside_every_slice_composes_nothing():
    stray = claim(10042, 3)  # shard 3's slice is 10020-10029
    result = reconcile(spec(), [*claims_on(1, 1), stray])
    assert set(gateways(result)) == {"gateway-1"}
    assert result.status["claimsOutsideSlice"] == ["tcp-postgresql-10042"]
    assert "missingShards" not in result.status


def test_lowering_max_shards_keeps_every_shard_that_exists():
    full = [c for shard in (1, 2, 3) for c in claims_on(shard, 9)]
    grown = reconcile(spec(), full)
    assert len(gateways(grown)) == 4
    after = reconcile_with_status(spec(maxShards=2, ports="10000-10499"), full, grown)
    assert set(gateways(after)) == {"gateway-1", "gateway-2", "gateway-3", "gateway-4"}


@pytest.mark.parametrize(
    ("allowed", "expected"), [(None, "kubernetes"), (["kubernetes-*"], "kubernetes-zrh")]
)
def test_the_pool_follows_its_provider_config_label_only_inside_the_allowlist(allowed, expected):
    wrap = {"providerConfigName": "kubernetes", "providerConfigFromLabel": "pc"}
    if allowed:
        wrap["allowedProviderConfigs"] = allowed
    xr = {**XR, "metadata": {**XR["metadata"], "labels": {"pc": "kubernetes-zrh"}}}
    request = StepRequest(xr=xr, observed={}, lookups=lookups([]))
    result = pool.run(spec(wrap=wrap), request)
    assert gateways(result)["gateway-1"]["spec"]["providerConfigRef"]["name"] == expected
    assert any("allowedProviderConfigs" in r.message for r in result.results) == (not allowed)


# -- Namespaced XRs: their listener is their slot ---------------------------------------


def test_a_pool_of_namespaced_tenants_grows():
    # Shard 1 has five tenant slots: two cluster-scoped tenants (claim and listener set,
    # one slot each) and three Namespaced ones (a listener set, no claim).
    cluster = [claim(10000, 1), claim(10001, 1)]
    namespaced = [tenant_listener_set(p, 1, namespace=f"team-{p}") for p in (10002, 10003, 10004)]
    small = spec(provider="custom", capacity=6, headroom=2)
    first = reconcile(small, [])
    result = reconcile(small, cluster, as_observed(first), listening(cluster) + namespaced)
    assert result.status["shards"][0]["used"] == 5
    assert result.status["shards"][0]["free"] == 0
    labels_1 = gateways(result)["gateway-1"]["metadata"]["labels"]
    assert labels_1[labels.ACCEPTING] == "false"
    assert set(gateways(result)) == {"gateway-1", "gateway-2"}


def test_a_gateway_carrying_namespaced_listeners_is_never_removed():
    wide = spec(provider="custom", capacity=10, headroom=5)
    cluster = [claim(10000, 1)]
    namespaced = [tenant_listener_set(p, 2, namespace=f"team-{p}") for p in (10010, 10011, 10012)]
    found = listening(cluster) + namespaced
    result = reconcile(wide, claims_on(1, 7))  # the pool grew to two shards
    assert set(gateways(result)) == {"gateway-1", "gateway-2"}
    for _ in range(3):  # draining would take two reconciles
        result = reconcile(wide, cluster, as_observed(result), listener_sets=found)
        assert set(gateways(result)) == {"gateway-1", "gateway-2"}
        assert gateways(result)["gateway-2"]["metadata"]["annotations"][labels.USED] == "3"


def test_listener_sets_that_carry_no_traffic_fill_no_slot():
    elsewhere = {"namespace": "team-mallory"}  # a Gateway of that name there: not the shard
    inert = [
        tenant_listener_set(10001, 1, namespace="team-mallory", parent=elsewhere),
        tenant_listener_set(10002, 1, parent={"kind": "ListenerSet"}),
        tenant_listener_set(10003, 1, parent={"group": "example.com"}),
        tenant_listener_set(10004, 1, accepted=False),  # its Gateway does not admit it
        tenant_listener_set(10015, 2),  # shard 2 does not exist
    ]
    first = reconcile(spec(headroom=5), [], listener_sets=[tenant_listener_set(10000, 1)])
    result = reconcile(spec(headroom=5), [], as_observed(first), listener_sets=inert)
    assert [s["used"] for s in result.status["shards"]] == [0]
    assert set(gateways(result)) == {"gateway-1"}
    # A listener set its Gateway accepted, or has not judged yet, fills its slot.
    judged = [tenant_listener_set(10004, 1, accepted=True), tenant_listener_set(10005, 1)]
    result = reconcile(spec(headroom=5), [], as_observed(first), listener_sets=judged)
    assert [s["used"] for s in result.status["shards"]] == [2]


def test_the_listener_set_kind_follows_the_gateway_api_release():
    result = reconcile(spec(gatewayAPI="v1.4"), [])
    [listener_sets] = [r for r in result.requirements if r.name == pool.LISTENER_SETS]
    assert (listener_sets.api_version, listener_sets.kind) == (
        "gateway.networking.x-k8s.io/v1alpha1",
        "XListenerSet",
    )
    assert listener_sets.match_labels == {labels.POOL: "postgresql"}


def test_unread_listener_sets_keep_every_gateway():
    first = reconcile(spec(), claims_on(1, 7) + claims_on(2, 1))
    observed = as_observed(first)
    request = StepRequest(xr=XR, observed=observed, lookups={pool.CLAIMS: claims_on(1, 1)})
    result = pool.run(spec(), request)
    assert gateways(result) == observed


# -- waiting tenants: the queue is served by new shards ------------------------------------


def line(count: int, *, renewed_minutes_ago: int = 1, first: int = 0):
    """`count` tenants in line, their tickets renewed that long before NOW."""
    renewed = (NOW - datetime.timedelta(minutes=renewed_minutes_ago)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    return [
        ticket(f"uid-wait-{first + i}", "2026-11-26T09:00:00Z", renewed=renewed)
        for i in range(count)
    ]


def test_a_queue_longer_than_the_headroom_grows_the_pool_for_it():
    # Shard 1 has 9 slots, 8 taken: 1 free. Twelve tenants wait: the pool keeps its headroom
    # of 3 beyond them, so shards 2 and 3 come now (1 + 9 + 9 = 19 free, 12 about to go).
    result = reconcile(spec(), claims_on(1, 8), tickets=line(12))
    assert set(gateways(result)) == {"gateway-1", "gateway-2", "gateway-3"}
    assert result.status["waiting"] == 12
    [cond] = result.conditions
    assert (cond.status, cond.reason) == ("True", "Available")


def test_expired_tickets_and_tenants_with_a_claim_are_not_waiting():
    stale = line(12, renewed_minutes_ago=16)  # their holders stopped renewing them
    placed = line(3, first=100)
    claims = [
        *claims_on(1, 8),
        *(claim(10010 + i, 2, holder=f"uid-wait-{100 + i}") for i in range(3)),
    ]
    result = reconcile(spec(), claims, tickets=[*stale, *placed])
    assert result.status["waiting"] == 0
    assert set(gateways(result)) == {"gateway-1", "gateway-2"}  # headroom alone


def test_a_long_queue_never_grows_the_pool_past_max_shards():
    result = reconcile(spec(maxShards=3, ports="10000-10029"), [], tickets=line(100))
    assert set(gateways(result)) == {"gateway-1", "gateway-2", "gateway-3"}
    assert result.status["waiting"] == 100
    [cond] = result.conditions
    assert (cond.status, cond.reason) == ("False", "MaxShardsReached")


def test_unread_tickets_keep_every_gateway():
    observed = as_observed(reconcile(spec(), []))
    request = StepRequest(xr=XR, observed=observed, lookups={pool.CLAIMS: claims_on(1, 8)})
    assert gateways(pool.run(spec(), request)) == observed  # no shard 2 yet


def test_waiters_keep_a_shard_the_pool_would_otherwise_drain():
    # Shard 2 is empty and shard 1 alone (8 free) keeps the headroom, but six tenants wait.
    grown = reconcile(spec(), claims_on(1, 7))
    assert set(gateways(grown)) == {"gateway-1", "gateway-2"}
    result = reconcile(spec(), claims_on(1, 1), observed=as_observed(grown), tickets=line(6))
    gateway = gateways(result)["gateway-2"]
    assert gateway["metadata"]["labels"][labels.ACCEPTING] == "true"  # not draining


def test_a_tenant_moving_off_a_blocked_claim_is_waiting():
    blocked = claim(10008, 1, holder="uid-wait-0")
    blocked["metadata"]["annotations"][labels.BLOCKED] = "port 10008 is taken by an older listener"
    result = reconcile(spec(), [*claims_on(1, 8), blocked], tickets=line(1))
    assert result.status["waiting"] == 1


# -- listener drift: what the Gateway reports against the claims -------------------------


def minutes_ago(minutes: int) -> str:
    return (NOW - datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def aged_claim(port: int, minutes: int) -> dict:
    obj = claim(port, 1)
    obj["metadata"]["creationTimestamp"] = minutes_ago(minutes)
    return obj


def reported_gateway(attached: int | None, address: str | None = "192.0.2.1") -> dict:
    """Shard 1's Gateway as its controller reports it."""
    obj = gateway(1, address=address)
    if attached is not None:
        obj.setdefault("status", {})["attachedListenerSets"] = attached
    return {"gateway-1": obj}


def drift_of(result, index: int = 1) -> dict:
    return result.status["shards"][index - 1]["listenerDrift"]


def test_listener_sets_attached_beyond_the_pools_tenants_are_foreign():
    claims = [aged_claim(10000, 60), aged_claim(10001, 60)]
    tenants = [tenant_listener_set(p, namespace=f"t{p}", accepted=True) for p in (10000, 10001)]
    # The Gateway counts three: one is nobody's in this pool (a squatter, or made by hand).
    result = reconcile(spec(), claims, reported_gateway(3), listener_sets=tenants)
    assert drift_of(result) == {
        "attached": 3,
        "foreign": 1,
        "unclaimed": 0,
        "unattached": 0,
        "refused": 0,
        "noAddress": False,
    }
    assert result.status["listenerDrift"] == {
        "foreign": 1,
        "unclaimed": 0,
        "unattached": 0,
        "refused": 0,
        "shardsWithoutAddress": 0,
    }


def test_a_tenant_listener_without_a_claim_is_unclaimed_unless_a_namespaced_xr_placed_it():
    leaked = tenant_listener_set(10002, namespace="gone", accepted=True)
    placed = tenant_listener_set(10003, namespace="ns-tenant", accepted=True)
    placed["metadata"]["labels"][labels.ROLE] = labels.PLACED_ROLE
    claims = [aged_claim(10000, 60)]
    mine = tenant_listener_set(10000, namespace="t", accepted=True)
    result = reconcile(spec(), claims, reported_gateway(3), listener_sets=[mine, leaked, placed])
    assert drift_of(result)["unclaimed"] == 1 and drift_of(result)["foreign"] == 0


def test_a_claim_without_an_attached_listener_is_drift_only_after_the_bound():
    claims = [aged_claim(10000, 30), aged_claim(10001, 2), aged_claim(10002, 30)]
    blocked = aged_claim(10003, 30)
    blocked["metadata"]["annotations"][labels.BLOCKED] = "PortUnavailable"
    # 10000 has no listener set, 10001 is new, 10002's listener is not accepted yet.
    pending = tenant_listener_set(10002, namespace="t2")
    result = reconcile(spec(), [*claims, blocked], reported_gateway(0), listener_sets=[pending])
    assert drift_of(result)["unattached"] == 2
    later = reconcile(
        spec(),
        [*claims, blocked],
        reported_gateway(0),
        listener_sets=[pending],
        now=NOW + datetime.timedelta(minutes=9),
    )
    assert drift_of(later)["unattached"] == 3  # 10001 is now 11 minutes old


def test_listener_sets_the_gateway_refused_are_counted():
    claims = [aged_claim(10000, 60)]
    refused = tenant_listener_set(10000, namespace="t", accepted=False)
    result = reconcile(spec(), claims, reported_gateway(0), listener_sets=[refused])
    assert drift_of(result)["refused"] == 1 and drift_of(result)["unattached"] == 1


def test_a_shard_without_an_address_is_reported():
    result = reconcile(spec(), [], reported_gateway(0, address=None))
    assert drift_of(result)["noAddress"] is True
    assert result.status["listenerDrift"]["shardsWithoutAddress"] == 1


def test_drift_never_changes_the_gateways_returned():
    claims = [aged_claim(10000 + i, 60) for i in range(8)]
    calm = reconcile(spec(), claims, reported_gateway(8))
    tenants = [tenant_listener_set(10000 + i, namespace=f"t{i}", accepted=True) for i in range(8)]
    settled = reconcile(spec(), claims, reported_gateway(8), listener_sets=tenants)
    drifting = reconcile(spec(), claims, reported_gateway(40, address=None), listener_sets=[])
    assert drift_of(drifting)["foreign"] == 40 and drift_of(drifting)["unattached"] == 8
    assert gateways(drifting) == gateways(calm) == gateways(settled)


def test_wrapped_gateways_report_drift_through_their_object():
    from function.builders.object import wrap

    observed = reported_gateway(2)
    wrapped = wrap(observed["gateway-1"], provider_config="kubernetes")
    wrapped["status"] = {"atProvider": {"manifest": observed["gateway-1"]}}
    claims = [claim(10000, 1, wrapped=True)]
    result = reconcile(
        spec(wrap={"providerConfigName": "kubernetes"}), claims, {"gateway-1": wrapped}, []
    )
    assert drift_of(result)["attached"] == 2 and drift_of(result)["foreign"] == 2
