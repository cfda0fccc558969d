"""The pool's clientAddress: how each shard keeps the client's address for tenants'
source allowlists, never switched on a live shard behind the platform's back."""

import pytest
from pydantic import ValidationError

from function import labels, pool, shards
from function.step import WARNING, StepRequest
from tests.test_pool import XR, claims_on, reconcile, spec

PROXY = "k8s.cloudscale.ch/loadbalancer-pool-protocol"


def cloudscale(**changes):
    return spec(provider="cloudscale", capacity=10, **changes)


def observed(result):
    return {k: dict(d.resource) for k, d in result.resources.items()}


def policies(result):
    return {k: d.resource for k, d in result.resources.items() if d.resource["kind"] != "Gateway"}


def test_proxy_protocol_gives_every_shard_its_policy_its_lb_annotation_and_its_mark(
    crd_validator,
):
    result = reconcile(cloudscale(clientAddress="ProxyProtocol"), claims_on(1, 8))
    gateway = result.resources["gateway-2"].resource
    assert gateway["metadata"]["annotations"][labels.CLIENT_ADDRESS] == "ProxyProtocol"
    assert gateway["spec"]["infrastructure"]["annotations"][PROXY] == "proxy"
    assert set(policies(result)) == {"proxy-protocol-1", "proxy-protocol-2"}
    policy = result.resources["proxy-protocol-2"].resource
    assert policy["kind"] == "ClientTrafficPolicy"
    assert policy["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    assert policy["spec"] == {
        "targetRefs": [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "postgresql-2"}
        ],
        "proxyProtocol": {},
    }
    validator = crd_validator("v1.6", False)
    for obj in (gateway, policy):
        assert validator.validate(obj) == []
    assert shards.from_gateway(gateway).client_address == "ProxyProtocol"  # tenants read it
    assert [s["clientAddress"] for s in result.status["shards"]] == ["ProxyProtocol"] * 2


def test_wrapped_policies_validate(crd_validator):
    wrapped = cloudscale(clientAddress="ProxyProtocol", wrap={"providerConfigName": "k8s"})
    result = reconcile(wrapped, [])
    policy = result.resources["proxy-protocol-1"].resource
    assert policy["kind"] == "Object"
    assert crd_validator("v1.6", True).validate(policy) == []
    # The Object's cluster-wide name is not the Gateway Object's.
    assert policy["metadata"]["name"] != result.resources["gateway-1"].resource["metadata"]["name"]


@pytest.mark.parametrize("mode", ["Local", "Unknown"])
def test_other_modes_compose_no_policy_and_no_lb_annotation(mode):
    result = reconcile(cloudscale(clientAddress=mode), [])
    gateway = result.resources["gateway-1"].resource
    assert gateway["metadata"]["annotations"][labels.CLIENT_ADDRESS] == mode
    assert PROXY not in gateway["spec"]["infrastructure"]["annotations"]
    assert policies(result) == {}


def test_a_live_shard_keeps_its_mode_with_a_warning_naming_it_and_new_shards_take_the_input():
    before = reconcile(cloudscale(), claims_on(1, 8))  # Unknown: two shards
    after = reconcile(cloudscale(clientAddress="ProxyProtocol"), claims_on(1, 9), observed(before))
    assert len([k for k in after.resources if k.startswith("gateway-")]) == 2
    for key in ("gateway-1", "gateway-2"):
        gateway = after.resources[key].resource
        assert gateway["metadata"]["annotations"][labels.CLIENT_ADDRESS] == "Unknown"
        assert PROXY not in gateway["spec"]["infrastructure"]["annotations"]
    assert policies(after) == {}
    [warning] = [r for r in after.results if r.reason == "ClientAddressKept"]
    assert warning.severity == WARNING
    assert "postgresql-1" in warning.message and "postgresql-2" in warning.message

    grown = reconcile(
        cloudscale(clientAddress="ProxyProtocol"),
        claims_on(1, 9) + claims_on(2, 9),
        observed(after),
    )
    third = grown.resources["gateway-3"].resource
    assert third["metadata"]["annotations"][labels.CLIENT_ADDRESS] == "ProxyProtocol"
    assert set(policies(grown)) == {"proxy-protocol-3"}


def test_the_explicit_switch_moves_live_shards():
    before = reconcile(cloudscale(), [])
    moved = cloudscale(clientAddress="ProxyProtocol", applyClientAddressToExistingShards=True)
    after = reconcile(moved, [], observed(before))
    gateway = after.resources["gateway-1"].resource
    assert gateway["spec"]["infrastructure"]["annotations"][PROXY] == "proxy"
    assert set(policies(after)) == {"proxy-protocol-1"}
    assert not any(r.reason == "ClientAddressKept" for r in after.results)


def test_a_proxy_protocol_shard_stays_so_when_the_input_goes_back():
    live = observed(reconcile(cloudscale(clientAddress="ProxyProtocol"), []))
    result = reconcile(cloudscale(), [], live)
    assert (
        result.resources["gateway-1"].resource["metadata"]["annotations"][labels.CLIENT_ADDRESS]
        == "ProxyProtocol"
    )
    assert set(policies(result)) == {"proxy-protocol-1"}  # the LB still sends PROXY headers


def test_unread_lookups_keep_the_policies():
    live = observed(reconcile(cloudscale(clientAddress="ProxyProtocol"), []))
    result = pool.run(
        cloudscale(clientAddress="ProxyProtocol"), StepRequest(xr=XR, observed=live, lookups={})
    )
    assert set(result.resources) == set(live)


def test_exoscale_cannot_send_proxy_protocol():
    with pytest.raises(ValidationError, match="clientAddress"):
        spec(clientAddress="ProxyProtocol")  # the base input's provider is exoscale
    assert spec(clientAddress="Local").clientAddress == "Local"


def test_local_and_unknown_only_declare_and_follow_the_input_on_live_shards():
    live = observed(reconcile(cloudscale(), []))
    result = reconcile(cloudscale(clientAddress="Local"), [], live)
    gateway = result.resources["gateway-1"].resource
    assert gateway["metadata"]["annotations"][labels.CLIENT_ADDRESS] == "Local"
    assert not any(r.reason == "ClientAddressKept" for r in result.results)
