"""A tenant's source allowlist (AppCat ipFilter) on the shared IP: the tenant step composes
an Envoy Gateway SecurityPolicy on its route and fails closed at every moment."""

import copy

import pytest

from function import labels
from function.step import WARNING
from tests.factories import gateway
from tests.test_tenant import XR, condition, held, pool, spec, step

OFFICE = ["203.0.113.0/24"]
FILTER = {"fromFieldPath": "spec.parameters.network.ipFilter"}
ACCEPTED = {
    "ancestors": [
        {
            "ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "x"},
            "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
        }
    ]
}
ALL_TRUE = {
    "tcp-listenerset": {
        "conditions": [{"type": t, "status": "True"} for t in ("Accepted", "Programmed")]
    },
    "tcp-route": {
        "parents": [
            {"conditions": [{"type": t, "status": "True"} for t in ("Accepted", "ResolvedRefs")]}
        ]
    },
    "tcp-securitypolicy": ACCEPTED,
}


def xr(ip_filter=None):
    if ip_filter is None:
        return XR
    tenant_xr = copy.deepcopy(XR)
    tenant_xr["spec"]["parameters"]["network"]["ipFilter"] = ip_filter
    return tenant_xr


def shard(client_address="ProxyProtocol"):
    g = gateway(1)
    if client_address is not None:
        g["metadata"]["annotations"][labels.CLIENT_ADDRESS] = client_address
    return pool(g)


def filtered(**changes):
    return spec(sourceRanges=FILTER, **changes)


def applied(result, statuses=None):
    """What the cluster shows after applying a result (with these statuses)."""
    observed = {key: copy.deepcopy(d.resource) for key, d in result.resources.items()}
    for key, status in (statuses or {}).items():
        if key in observed:
            observed[key]["status"] = status
    return observed


def cidrs(result):
    policy = result.resources["tcp-securitypolicy"].resource
    rules = policy["spec"]["authorization"].get("rules", [])
    return [c for rule in rules for c in rule["principal"]["clientCIDRs"]]


def reconcile(tenant_xr, observed=None, available=None, spec_=None):
    return step(
        spec_ or filtered(),
        observed=observed or {"tcp-claim-10003": held()},
        available=available or shard(),
        xr=tenant_xr,
    )


def test_a_new_filtered_tenant_gets_its_policy_first_and_its_route_only_once_it_is_seen(
    crd_validator,
):
    first = reconcile(xr(OFFICE))
    policy = first.resources["tcp-securitypolicy"]
    assert "tcp-route" not in first.resources
    assert policy.ready is False
    assert policy.resource["metadata"]["namespace"] == "vshn-postgresql-pg-abc12"
    assert policy.resource["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "TCPRoute", "name": "pg-abc12-tcp-route"}
    ]
    assert policy.resource["spec"]["authorization"] == {
        "defaultAction": "Deny",
        "rules": [
            {"name": "source-ranges", "action": "Allow", "principal": {"clientCIDRs": OFFICE}}
        ],
    }
    assert crd_validator("v1.6", False).validate(policy.resource) == []
    assert (condition(first).status, condition(first).reason) == ("False", "SourceRangesPending")
    assert first.connection == {}

    second = reconcile(xr(OFFICE), observed=applied(first))
    assert second.resources["tcp-route"].resource["metadata"]["name"] == "pg-abc12-tcp-route"
    assert condition(second).reason == "SourceRangesPending"  # not accepted yet
    assert second.connection == {}

    third = reconcile(xr(OFFICE), observed=applied(second, ALL_TRUE))
    assert (condition(third).status, condition(third).reason) == ("True", "Ready")
    assert all(d.ready for d in third.resources.values())
    assert third.connection["POSTGRESQL_GATEWAY_PORT"] == b"10003"


def test_a_live_tenant_gaining_a_filter_keeps_its_route_and_what_it_published():
    before = reconcile(xr(), spec_=filtered())  # default 0.0.0.0/0: no policy at all
    assert "tcp-securitypolicy" not in before.resources
    live = applied(before, ALL_TRUE)
    published = {"POSTGRESQL_GATEWAY_HOST": b"db1.example.ch", "POSTGRESQL_GATEWAY_PORT": b"10003"}
    result = step(filtered(), observed=live, available=shard(), xr=xr(OFFICE), connection=published)
    route = {k: v for k, v in live["tcp-route"].items() if k != "status"}
    assert result.resources["tcp-route"].resource == route
    assert cidrs(result) == OFFICE
    assert condition(result).reason == "SourceRangesPending"
    assert result.connection == published  # kept, never dropped, never new

    served = xr(OFFICE)
    served["status"] = {"tcpAccess": {"phase": "Ready", "port": 10003, "servedPort": 10003}}
    result = step(filtered(), observed=live, available=shard(), xr=served)  # none as read
    assert condition(result).reason == "SourceRangesPending"
    assert result.connection == published  # the port it was served on stays published


def test_narrowing_updates_the_policy_in_place_and_waits_for_envoy_gateway():
    ready = applied(reconcile(xr(OFFICE), observed=applied(reconcile(xr(OFFICE)))), ALL_TRUE)
    narrower = reconcile(xr(["203.0.113.7"]), observed=ready)
    assert cidrs(narrower) == ["203.0.113.7/32"]
    assert "tcp-route" in narrower.resources
    assert condition(narrower).reason == "SourceRangesPending"  # the cluster has the old ranges
    again = reconcile(xr(["203.0.113.7"]), observed=applied(narrower, ALL_TRUE))
    assert condition(again).reason == "Ready"


def test_clearing_the_filter_removes_the_policy_and_keeps_the_route():
    ready = applied(reconcile(xr(OFFICE), observed=applied(reconcile(xr(OFFICE)))), ALL_TRUE)
    for open_list in (["0.0.0.0/0"], ["0.0.0.0/0", "::/0"], []):
        result = reconcile(xr(open_list), observed=ready)
        assert "tcp-securitypolicy" not in result.resources
        assert "tcp-route" in result.resources
        assert condition(result).reason == "Ready"


@pytest.mark.parametrize(
    "hostile",
    [
        ["300.1.1.1/8"],  # Envoy Gateway's CRD admits it, then leaves the route open
        ["203.0.113.0/24", "0.0.0.0/0 "],
        ["010.0.0.0/8"],
        ["fe80::1%eth0"],
        "0.0.0.0/0",  # a string, not a list
        {"cidr": "0.0.0.0/0"},
        [None],
        [f"10.0.{i // 256}.{i % 256}" for i in range(257)],
    ],
)
def test_a_bad_entry_keeps_the_previous_ranges_and_names_the_field(hostile):
    ready = applied(reconcile(xr(OFFICE), observed=applied(reconcile(xr(OFFICE)))), ALL_TRUE)
    result = reconcile(xr(hostile), observed=ready)
    assert cidrs(result) == OFFICE
    assert "tcp-route" in result.resources
    assert (condition(result).status, condition(result).reason) == ("False", "InvalidSourceRanges")
    assert "spec.parameters.network.ipFilter" in condition(result).message
    assert any(r.severity == WARNING and r.reason == "InvalidSourceRanges" for r in result.results)
    assert not any(r.severity == "Fatal" for r in result.results)

    new = reconcile(xr(hostile))  # nothing to keep: nobody is admitted
    assert cidrs(new) == []
    assert "tcp-route" not in new.resources


def test_a_shard_that_does_not_keep_the_client_address_gets_no_route(crd_validator):
    for annotation in (None, "Unknown", "SNAT"):
        result = reconcile(xr(OFFICE), available=shard(annotation))
        assert cidrs(result) == []
        assert (
            crd_validator("v1.6", False).validate(result.resources["tcp-securitypolicy"].resource)
            == []
        )
        again = reconcile(
            xr(OFFICE), observed=applied(result, ALL_TRUE), available=shard(annotation)
        )
        assert "tcp-route" not in again.resources
        assert condition(again).reason == "ClientAddressNotPreserved"
        assert "postgresql-1" in condition(again).message
        assert again.connection == {}
    ok = reconcile(xr(OFFICE), available=shard("Local"))
    assert cidrs(ok) == OFFICE


def test_a_live_route_on_such_a_shard_stays_but_its_policy_admits_nobody():
    live = applied(reconcile(xr(), spec_=filtered(), available=shard("Unknown")), ALL_TRUE)
    result = reconcile(xr(OFFICE), observed=live, available=shard("Unknown"))
    assert "tcp-route" in result.resources  # never dropped (Crossplane would delete it)
    assert cidrs(result) == []
    assert condition(result).reason == "ClientAddressNotPreserved"


def test_an_unread_shard_changes_no_policy():
    ready = applied(reconcile(xr(OFFICE), observed=applied(reconcile(xr(OFFICE)))), ALL_TRUE)
    result = reconcile(xr(OFFICE), observed=ready, available={})
    assert result.resources["tcp-securitypolicy"].resource == {
        k: v for k, v in ready["tcp-securitypolicy"].items() if k != "status"
    }
    assert "tcp-route" in result.resources


def test_a_policy_envoy_gateway_refuses_is_reported_and_never_ready():
    refused = {"ancestors": [{"conditions": [{"type": "Accepted", "status": "False"}]}]}
    seen = applied(
        reconcile(xr(OFFICE), observed=applied(reconcile(xr(OFFICE)))),
        {**ALL_TRUE, "tcp-securitypolicy": refused},
    )
    result = reconcile(xr(OFFICE), observed=seen)
    assert condition(result).reason == "SourceRangesRejected"
    assert result.connection == {}


def test_v1_4_waits_for_a_status_envoy_gateway_may_never_report_unless_told_to_trust():
    no_status = {k: v for k, v in ALL_TRUE.items() if k != "tcp-securitypolicy"}
    v14 = filtered(gatewayAPI="v1.4")
    seen = applied(
        reconcile(xr(OFFICE), observed=applied(reconcile(xr(OFFICE), spec_=v14)), spec_=v14),
        no_status,
    )
    result = reconcile(xr(OFFICE), observed=seen, spec_=v14)
    assert condition(result).reason == "SourceRangesUnreported"
    assert "trustUnreportedPolicy" in condition(result).message
    trusting = filtered(gatewayAPI="v1.4").model_copy(deep=True)
    trusting.sourceRanges.trustUnreportedPolicy = True
    assert condition(reconcile(xr(OFFICE), observed=seen, spec_=trusting)).reason == "Ready"


def test_wrapped_policies_are_objects_and_read_back_through_them(crd_validator):
    wrapped = filtered(wrap={"providerConfigName": "kubernetes"})
    first = reconcile(xr(OFFICE), observed={"tcp-claim-10003": held(wrapped=True)}, spec_=wrapped)
    policy = first.resources["tcp-securitypolicy"].resource
    assert policy["kind"] == "Object"
    assert crd_validator("v1.6", True).validate(policy) == []
    assert "tcp-route" not in first.resources
    observed = {k: copy.deepcopy(d.resource) for k, d in first.resources.items()}
    manifest = copy.deepcopy(policy["spec"]["forProvider"]["manifest"])
    observed["tcp-securitypolicy"]["status"] = {"atProvider": {"manifest": manifest}}
    second = reconcile(xr(OFFICE), observed=observed, spec_=wrapped)
    assert "tcp-route" in second.resources


def test_the_default_applies_when_the_field_is_unset_and_the_input_default_is_checked():
    result = reconcile(xr(), spec_=spec(sourceRanges={**FILTER, "default": OFFICE}))
    assert cidrs(result) == OFFICE
    with pytest.raises(ValueError, match=r"300\.1\.1\.1"):
        spec(sourceRanges={"default": ["300.1.1.1/8"]})


def test_no_source_ranges_input_composes_no_policy_and_drops_one_it_had():
    ready = applied(reconcile(xr(OFFICE), observed=applied(reconcile(xr(OFFICE)))), ALL_TRUE)
    result = step(spec(), observed=ready, available=shard(), xr=xr(OFFICE))
    assert "tcp-securitypolicy" not in result.resources
    assert condition(result).reason == "Ready"


def test_the_role_is_named_in_resources_like_the_others():
    named = spec(
        sourceRanges=FILTER,
        resources={"securityPolicy": {"key": "sp", "name": "{metadata.name}-ipfilter"}},
    )
    result = reconcile(xr(OFFICE), spec_=named)
    assert result.resources["sp"].resource["metadata"]["name"] == "pg-abc12-ipfilter"


def test_a_port_whose_policy_is_pending_is_neither_published_nor_remembered_as_published():
    """The Gateway accepted the listener, Envoy Gateway has not yet accepted the policy:
    nothing is published, and the claim does not say it was (else the next reconcile would
    publish on the claim's word, the policy still pending)."""
    from tests.factories import gateway_report

    first = reconcile(xr(OFFICE))
    second = reconcile(xr(OFFICE), observed=applied(first))
    pending = {k: v for k, v in ALL_TRUE.items() if k != "tcp-securitypolicy"}
    observed = applied(second, pending)
    observed["tcp-listenerset"] = gateway_report(observed["tcp-listenerset"])
    for _ in range(2):
        result = reconcile(xr(OFFICE), observed=observed)
        assert condition(result).reason == "SourceRangesPending"
        assert result.connection == {}
        claim = result.resources["tcp-claim-10003"].resource
        assert labels.PUBLISHED not in (claim["metadata"].get("annotations") or {})
        observed = {**applied(result, pending), "tcp-listenerset": observed["tcp-listenerset"]}
