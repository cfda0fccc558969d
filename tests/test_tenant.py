"""The tenant step on plain data: what it returns in each phase of the protocol."""

import datetime

import pytest

from function import labels, tenant
from function.inputs import TCPAccess
from function.step import FATAL, WARNING, StepRequest
from tests.factories import NS, accepted_view, claim, gateway, gateway_report, ticket

XR = {
    "apiVersion": "vshn.appcat.vshn.io/v1",
    "kind": "XVSHNPostgreSQL",
    "metadata": {"name": "pg-abc12", "uid": "uid-pg-abc12", "labels": {"pc": "kubernetes-2"}},
    "spec": {"parameters": {"network": {"serviceType": "TCPGateway"}}},
}
INPUT = {
    "pool": "postgresql",
    "gatewayNamespace": NS,
    "listenerName": "postgresql",
    "backend": {
        "namespace": "vshn-postgresql-{metadata.name}",
        "service": "postgresql-rw",
        "port": 5432,
        "podSelector": {"cnpg.io/cluster": "postgresql"},
    },
    "connectionDetails": {"host": "POSTGRESQL_GATEWAY_HOST", "port": "POSTGRESQL_GATEWAY_PORT"},
}


def spec(**changes) -> TCPAccess:
    return TCPAccess.model_validate({**INPUT, **changes})


def step(
    spec_,
    observed=None,
    available=None,
    xr=XR,
    connection=None,
    now=None,
    context=None,
    desired=None,
):
    """Run the step through Crossplane's requirement loop (at `now`, if given); return the
    final result. `context` and `desired`: what earlier steps of the pipeline handed on."""
    lookups: dict = {}
    previous = None
    for _ in range(6):
        request = StepRequest(
            xr=xr,
            observed=observed or {},
            lookups=lookups,
            connection=connection or {},
            desired=desired or {},
        )
        request.now = now or request.now
        request.context = context or {}
        result = tenant.run(spec_, request)
        if result.fatal or result.requirements == previous:
            return result
        previous = result.requirements
        lookups = {r.name: (available or {}).get(r.name, []) for r in result.requirements}
    raise AssertionError("requirements did not stabilise")


def pool(*gateways, claims=None):
    available = {"tcp-gateways-accepting": list(gateways)}
    for g in gateways:
        index = int(g["metadata"]["labels"][labels.SHARD])
        available[f"tcp-claims-shard-{index}"] = (claims or {}).get(index, [])
        available[f"tcp-gateway-shard-{index}"] = [g]
    return available


def held(port=10003, shard=1, wrapped=False):
    return claim(port, shard, holder=XR["metadata"]["uid"], owner="pg-abc12", wrapped=wrapped)


def condition(result):
    [only] = [c for c in result.conditions if c.type == tenant.CONDITION]
    return only


def test_new_tenant_emits_only_its_claim_and_its_ticket():
    result = step(spec(), available=pool(gateway(1)))
    [key] = [k for k in result.resources if k != "tcp-ticket"]
    desired = result.resources[key]
    assert key == f"tcp-claim-{desired.resource['metadata']['labels'][labels.PORT]}"
    assert desired.resource["kind"] == "Lease"
    assert desired.resource["spec"]["holderIdentity"] == "uid-pg-abc12"
    assert desired.ready is False
    assert (condition(result).status, condition(result).reason) == ("False", "Claiming")
    port = int(desired.resource["metadata"]["labels"][labels.PORT])
    assert result.status == {"phase": "Claiming", "claimAttempts": 1, "triedPorts": [port]}
    assert result.connection == {}
    ticket = result.resources["tcp-ticket"].resource
    assert ticket["kind"] == "Lease" and ticket["metadata"]["namespace"] == NS
    assert ticket["metadata"]["labels"][labels.ROLE] == labels.TICKET_ROLE
    assert ticket["metadata"]["labels"][labels.POOL] == "postgresql"
    assert ticket["spec"]["holderIdentity"] == "uid-pg-abc12"


def test_the_ticket_goes_once_the_claim_is_held():
    ticket = step(spec(), available=pool(gateway(1))).resources["tcp-ticket"].resource
    observed = {"tcp-claim-10003": held(), "tcp-ticket": ticket}
    result = step(spec(), observed=observed, available=pool(gateway(1)))
    assert "tcp-ticket" not in result.resources
    assert condition(result).reason == "Programming"


def test_a_tenant_whose_lookups_are_unread_keeps_its_ticket():
    ticket = step(spec(), available=pool(gateway(1))).resources["tcp-ticket"].resource
    result = step(spec(), observed={"tcp-ticket": ticket}, available={})
    assert result.resources["tcp-ticket"].resource == ticket


def test_held_claim_builds_the_data_path():
    observed = {"tcp-claim-10003": held()}
    available = pool(gateway(1, address="203.0.113.7"))
    result = step(spec(), observed=observed, available=available)
    assert set(result.resources) == {
        "tcp-claim-10003",
        "tcp-listenerset",
        "tcp-route",
        "tcp-networkpolicy",
    }
    ls = result.resources["tcp-listenerset"].resource
    assert ls["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert ls["metadata"]["namespace"] == "vshn-postgresql-pg-abc12"
    assert ls["spec"]["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "postgresql-1",
        "namespace": NS,
    }
    [listener] = ls["spec"]["listeners"]
    assert listener["port"] == 10003 and listener["protocol"] == "TCP"
    assert listener["allowedRoutes"]["namespaces"] == {"from": "Same"}
    route = result.resources["tcp-route"].resource
    assert route["spec"]["parentRefs"][0]["sectionName"] == "postgresql"
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "postgresql-rw"
    # The Gateway has not reported the listener yet: the port may still be an older
    # listener's, so it is published nowhere.
    assert result.status == {"shard": 1, "gateway": "postgresql-1", "phase": "Programming"}
    assert result.connection == {} and result.composite == {}
    assert condition(result).reason == "Programming"


def test_the_port_is_published_once_the_gateway_accepts_the_listener():
    s = spec(patches=[{"fieldPath": "status.sshPort", "value": "port"}])
    available = pool(gateway(1, address="203.0.113.7"))
    first = step(s, observed={"tcp-claim-10003": held()}, available=available)
    result = step(s, observed=accepted_view(first.resources), available=available)
    assert result.status == {
        "host": "db1.example.ch",
        "port": 10003,
        "shard": 1,
        "gateway": "postgresql-1",
        "address": "203.0.113.7",
        "phase": "Programming",  # the route is not reported yet
    }
    assert result.connection == {
        "POSTGRESQL_GATEWAY_HOST": b"db1.example.ch",
        "POSTGRESQL_GATEWAY_PORT": b"10003",
    }
    assert result.composite == {"status.sshPort": 10003}


def test_the_claim_remembers_a_published_port_for_an_xr_read_from_before():
    available = pool(gateway(1))
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=available)
    accepted = step(spec(), observed=accepted_view(first.resources), available=available)
    claim = accepted.resources["tcp-claim-10003"].resource
    assert claim["metadata"]["annotations"][labels.PUBLISHED] == "true"
    # The XR as read is older than that reconcile: no status, no listener set in view.
    result = step(spec(), observed={"tcp-claim-10003": claim}, available=available)
    assert result.status["port"] == 10003
    assert result.connection["POSTGRESQL_GATEWAY_PORT"] == b"10003"
    assert result.resources["tcp-claim-10003"].resource == claim  # the mark stays


def pending(listener_set: dict) -> dict:
    """A listener set as the API server stores it before any Gateway reports: the
    CRD's default status."""
    waiting = {"status": "Unknown", "reason": "Pending", "message": "Waiting for controller"}
    conditions = [{"type": t, **waiting} for t in ("Accepted", "Programmed")]
    return {**listener_set, "status": {"conditions": conditions}}


def stale(listener_set: dict) -> dict:
    """Accepted, but the report is about the previous generation of its spec."""
    reported = gateway_report(listener_set)
    reported["metadata"] = {**reported["metadata"], "generation": 2}
    for condition_ in reported["status"]["conditions"]:
        condition_["observedGeneration"] = 1
    return reported


UNREPORTED = pytest.mark.parametrize(
    "report", [pending, stale, lambda ls: ls], ids=["pending", "stale", "none"]
)


@UNREPORTED
def test_a_port_the_gateway_has_not_accepted_is_not_published(report):
    s = spec(patches=[{"fieldPath": "status.sshPort", "value": "port"}])
    first = step(s, observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    observed["tcp-listenerset"] = report(observed["tcp-listenerset"])
    result = step(s, observed=observed, available=pool(gateway(1)))
    assert "port" not in result.status and "host" not in result.status
    assert result.connection == {} and result.composite == {}
    assert condition(result).reason == "Programming"


def test_a_listener_set_the_gateway_does_not_admit_says_which_label_is_missing():
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    refused = {"type": "Accepted", "status": "False", "reason": "NotAllowed"}
    observed["tcp-listenerset"] = {
        **observed["tcp-listenerset"],
        "status": {"conditions": [refused]},
    }
    result = step(spec(), observed=observed, available=pool(gateway(1)))
    assert condition(result).reason == "NotAllowed"
    assert "vshn-postgresql-pg-abc12" in condition(result).message
    assert labels.LISTENER_NAMESPACE in condition(result).message
    assert "port" not in result.status and result.connection == {}
    # The port is not squatted: the claim stays the tenant's, nothing moves.
    assert (
        labels.BLOCKED
        not in result.resources["tcp-claim-10003"].resource["metadata"]["annotations"]
    )


@UNREPORTED
def test_a_served_port_stays_published_whatever_the_status_reads(report):
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    observed["tcp-listenerset"] = report(observed["tcp-listenerset"])
    xr = {**XR, "status": {"tcpAccess": {"phase": "Ready", "port": 10003, "servedPort": 10003}}}
    published = {"POSTGRESQL_GATEWAY_HOST": b"db1.example.ch", "POSTGRESQL_GATEWAY_PORT": b"10003"}
    available = pool(gateway(1))
    result = step(spec(), observed=observed, available=available, xr=xr, connection=published)
    assert result.status["port"] == 10003 and result.status["servedPort"] == 10003
    assert result.connection == published


def test_ready_once_the_gateway_accepts_and_programs():
    ls_status = {"conditions": [{"type": t, "status": "True"} for t in ("Accepted", "Programmed")]}
    route_status = {
        "parents": [
            {"conditions": [{"type": t, "status": "True"} for t in ("Accepted", "ResolvedRefs")]}
        ]
    }
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {key: dict(d.resource) for key, d in first.resources.items()}
    observed["tcp-listenerset"]["status"] = ls_status
    observed["tcp-route"]["status"] = route_status
    result = step(spec(), observed=observed, available=pool(gateway(1)))
    assert all(d.ready for d in result.resources.values())
    assert (condition(result).status, condition(result).reason) == ("True", "Ready")


def test_placement_gateway_adds_a_reference_grant_for_exactly_one_service():
    result = step(
        spec(placement="Gateway"), observed={"tcp-claim-10003": held()}, available=pool(gateway(1))
    )
    ls = result.resources["tcp-listenerset"].resource
    assert ls["metadata"]["namespace"] == NS
    grant = result.resources["tcp-referencegrant"].resource
    assert grant["metadata"]["namespace"] == "vshn-postgresql-pg-abc12"
    assert grant["spec"]["from"] == [
        {"group": "gateway.networking.k8s.io", "kind": "TCPRoute", "namespace": NS}
    ]
    assert grant["spec"]["to"] == [{"group": "", "kind": "Service", "name": "postgresql-rw"}]


def test_network_policy_admits_only_the_data_plane_on_the_pod_port():
    result = step(
        spec(dataPlane={"namespace": "envoy-gateway-system"}),
        observed={"tcp-claim-10003": held()},
        available=pool(gateway(1)),
    )
    policy = result.resources["tcp-networkpolicy"].resource["spec"]
    assert policy["podSelector"] == {"matchLabels": {"cnpg.io/cluster": "postgresql"}}
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]


def test_wrap_puts_every_object_in_a_provider_kubernetes_object():
    wrap = {
        "providerConfigName": "kubernetes",
        "providerConfigFromLabel": "pc",
        "allowedProviderConfigs": ["kubernetes-*"],
    }
    observed = {"tcp-claim-10003": held(wrapped=True)}
    result = step(spec(wrap=wrap), observed=observed, available=pool(gateway(1)))
    for key, desired in result.resources.items():
        obj = desired.resource
        assert obj["kind"] == "Object", key
        assert obj["spec"]["providerConfigRef"] == {"name": "kubernetes-2"}
        assert obj["metadata"]["name"] == obj["spec"]["forProvider"]["manifest"]["metadata"]["name"]


def test_partial_view_keeps_everything_unchanged():
    # The XR lost its claim (deleted by hand) but has a data path: while lookups are
    # unresolved, nothing of it may disappear.
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items() if k != "tcp-claim-10003"}
    request = StepRequest(xr=XR, observed=observed, lookups={})
    result = tenant.run(spec(), request)
    assert {k: d.resource for k, d in result.resources.items()} == observed


def test_pool_full_keeps_everything_and_warns():
    taken = {1: [claim(p) for p in range(10000, 10009)]}
    observed = {"tcp-networkpolicy": {"apiVersion": "networking.k8s.io/v1", "kind": "X"}}
    result = step(spec(), observed=observed, available=pool(gateway(1), claims=taken))
    assert set(result.resources) == {"tcp-networkpolicy", "tcp-ticket"}  # it waits in line
    assert condition(result).reason == "PoolFull"
    assert any(r.severity == WARNING and "postgresql" in r.message for r in result.results)


def test_no_shards():
    result = step(spec(), available={"tcp-gateways-accepting": [], "tcp-gateways": []})
    assert condition(result).reason == "NoShards"
    assert set(result.resources) == {"tcp-ticket"}


def test_disabled_returns_nothing_of_its_own():
    result = step(spec(enabled=False), observed={"tcp-claim-10003": held()})
    assert result.resources == {}
    assert condition(result).reason == "Disabled"


@pytest.mark.parametrize(
    ("value", "enabled"), [("TCPGateway", True), ("ClusterIP", False), (None, False)]
)
def test_enabled_from_xr_field(value, enabled):
    xr = {**XR, "spec": {"parameters": {"network": {"serviceType": value}}}}
    s = spec(enabledFromFieldPath="spec.parameters.network.serviceType", enabledValue="TCPGateway")
    result = step(s, xr=xr, available=pool(gateway(1)))
    assert (condition(result).reason != "Disabled") is enabled


def test_namespace_template_naming_an_absent_field_is_fatal_naming_it():
    s = spec(backend={**INPUT["backend"], "namespace": "{status.instanceNamespace}"})
    result = step(s, observed={"tcp-claim-10003": held()})
    [fatal] = result.results
    assert fatal.severity == FATAL
    assert "backend.namespace" in fatal.message and "status.instanceNamespace" in fatal.message


def test_template_falls_back_to_the_desired_xr_of_earlier_steps():
    s = spec(backend={**INPUT["backend"], "namespace": "{status.instanceNamespace}"})
    request = StepRequest(
        xr=XR,
        desired_xr={"status": {"instanceNamespace": "vshn-postgresql-pg-abc12"}},
        observed={"tcp-claim-10003": held()},
        lookups={"tcp-gateway-shard-1": [gateway(1)]},
    )
    result = tenant.run(s, request)
    ns = result.resources["tcp-listenerset"].resource["metadata"]["namespace"]
    assert ns == "vshn-postgresql-pg-abc12"


def test_a_second_held_claim_is_released_and_the_used_one_kept():
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = accepted_view(first.resources)
    observed["tcp-claim-10001"] = held(10001)
    result = step(spec(), observed=observed, available=pool(gateway(1)))
    assert "tcp-claim-10003" in result.resources
    assert "tcp-claim-10001" not in result.resources
    assert result.status["port"] == 10003


def test_long_names_stay_valid_and_distinct():
    long_a = {**XR, "metadata": {**XR["metadata"], "name": "a" * 62 + "1", "uid": "u1"}}
    long_b = {**XR, "metadata": {**XR["metadata"], "name": "a" * 62 + "2", "uid": "u2"}}
    s = spec(backend={**INPUT["backend"], "namespace": "tenant"})
    names = []
    for xr in (long_a, long_b):
        observed = {"tcp-claim-10003": claim(10003, holder=xr["metadata"]["uid"])}
        result = step(s, observed=observed, available=pool(gateway(1)), xr=xr)
        for desired in result.resources.values():
            name = desired.resource["metadata"]["name"]
            assert len(name) <= 63
            names.append(name)
    assert len(names) == len(set(names)) + 1  # only the shared claim name repeats


def conflicted(listener_set: dict) -> dict:
    """The listener set as the Gateway reports it when an older listener has its port."""
    found = {"type": "Conflicted", "status": "True", "reason": "HostnameConflict"}
    return {
        **listener_set,
        "status": {"listeners": [{"name": "postgresql", "conditions": [found]}]},
    }


def blocked(port: int) -> dict:
    lease = held(port)
    lease["metadata"]["annotations"][labels.BLOCKED] = f"port {port} is taken"
    return lease


def test_a_squatted_port_never_served_is_published_nowhere_and_blocked():
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    observed["tcp-listenerset"] = conflicted(observed["tcp-listenerset"])
    s = spec(patches=[{"fieldPath": "status.sshPort", "value": "port"}])
    result = step(s, observed=observed, available=pool(gateway(1)))
    # Everything stays composed; the claim says why its port is not used.
    assert set(result.resources) == set(observed)
    lease = result.resources["tcp-claim-10003"].resource
    assert "10003" in lease["metadata"]["annotations"][labels.BLOCKED]
    assert lease["spec"]["holderIdentity"] == XR["metadata"]["uid"]
    # Nothing tells a client to connect there.
    assert result.status == {"shard": 1, "gateway": "postgresql-1", "phase": "Conflicted"}
    assert result.connection == {} and result.composite == {}
    assert condition(result).reason == "Conflicted"
    assert "port 10003 behind postgresql-1" in condition(result).message


PUBLISHED_10003 = {
    "POSTGRESQL_GATEWAY_HOST": b"db1.example.ch",
    "POSTGRESQL_GATEWAY_PORT": b"10003",
    "POSTGRESQL_GATEWAY_URL": b"postgresql://db1.example.ch:10003",
}
WITH_URL = {**INPUT["connectionDetails"], "templates": {"POSTGRESQL_GATEWAY_URL": "x"}}


def test_details_published_before_a_port_turns_out_squatted_are_overwritten_empty():
    # An earlier reconcile (an earlier version) published the port while it was programmed.
    s = spec(connectionDetails=WITH_URL)
    first = step(s, observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    observed["tcp-listenerset"] = conflicted(observed["tcp-listenerset"])
    xr = {**XR, "status": {"tcpAccess": {"phase": "Programming", "port": 10003}}}
    available = pool(gateway(1))
    result = step(s, observed=observed, available=available, xr=xr, connection=PUBLISHED_10003)
    assert labels.BLOCKED in result.resources["tcp-claim-10003"].resource["metadata"]["annotations"]
    # Crossplane v1.x keeps a detail the function stops returning: each is emptied.
    assert result.connection == {key: b"" for key in PUBLISHED_10003}
    assert "port" not in result.status


def test_a_tenant_moving_off_a_squatted_port_keeps_nothing_published_for_it():
    observed = {"tcp-claim-10003": blocked(10003)}
    available = pool(gateway(1), claims={1: [blocked(10003)]})
    available["tcp-claims-own"] = [blocked(10003)]
    xr = {**XR, "status": {"tcpAccess": {"phase": "Conflicted", "host": "db1.example.ch",
                                         "port": 10003, "address": "203.0.113.7"}}}  # fmt: skip
    result = step(spec(), observed=observed, available=available, xr=xr, connection=PUBLISHED_10003)
    assert condition(result).reason == "Conflicted"  # claiming another port
    assert result.connection == {
        "POSTGRESQL_GATEWAY_HOST": b"",
        "POSTGRESQL_GATEWAY_PORT": b"",
    }
    assert not {"host", "port", "address"} & set(result.status)


def test_a_tenant_once_ready_on_its_port_never_gives_it_up():
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    observed["tcp-listenerset"] = conflicted(observed["tcp-listenerset"])
    xr = {**XR, "status": {"tcpAccess": {"phase": "Ready", "port": 10003, "servedPort": 10003}}}
    result = step(spec(), observed=observed, available=pool(gateway(1)), xr=xr)
    lease = result.resources["tcp-claim-10003"].resource
    assert labels.BLOCKED not in lease["metadata"]["annotations"]
    assert result.status["servedPort"] == 10003 and "port" not in result.status
    assert condition(result).reason == "Conflicted" and result.connection == {}


def programmed(listener_set: dict) -> dict:
    """The listener set as the Gateway reports it when its port is its own."""
    found = [
        {"type": "Conflicted", "status": "False", "reason": "NoConflicts"},
        {"type": "Programmed", "status": "True", "reason": "Programmed"},
    ]
    return {
        **listener_set,
        "status": {"listeners": [{"name": "postgresql", "conditions": found}]},
    }


def test_a_blocked_claim_is_kept_and_probed_never_used():
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    observed["tcp-listenerset"] = conflicted(observed["tcp-listenerset"])
    observed["tcp-claim-10003"] = blocked(10003)
    available = pool(gateway(1), claims={1: [blocked(10003)]})
    available["tcp-claims-own"] = [blocked(10003)]
    moving = step(spec(), observed=observed, available=available)
    new = [k for k in moving.resources if k.startswith("tcp-claim-") and k != "tcp-claim-10003"]
    assert len(new) == 1  # another port, never the blocked one nor its listener's (adoption)
    assert moving.resources["tcp-claim-10003"].resource == observed["tcp-claim-10003"]
    assert (
        moving.resources["tcp-listenerset"].resource["spec"]
        == (observed["tcp-listenerset"]["spec"])
    )
    assert condition(moving).reason == "Conflicted"
    assert "port 10003 is taken" in condition(moving).message
    assert not any("held by someone else" in r.message for r in moving.results)
    # The blocked port gets a listener of its own that no route binds to: the Gateway
    # tells through it whether the port is still taken.
    probe = moving.resources["tcp-probe-10003"]
    [listener] = probe.resource["spec"]["listeners"]
    assert listener["port"] == 10003 and probe.resource["spec"]["parentRef"]["name"] == (
        "postgresql-1"
    )
    assert probe.ready is True  # it is no part of the XR's data path
    routes = [d.resource for d in moving.resources.values() if d.resource["kind"] == "TCPRoute"]
    assert all(
        r["spec"]["parentRefs"][0]["name"] != probe.resource["metadata"]["name"] for r in routes
    )

    # Once the new claim is held, the listener moves there; while the older listener holds
    # the blocked port, its claim and probe stay.
    port = int(new[0].removeprefix("tcp-claim-"))
    observed[new[0]] = held(port)
    observed["tcp-probe-10003"] = conflicted(probe.resource)
    moved = step(spec(), observed=observed, available=available)
    assert moved.resources["tcp-claim-10003"].resource == observed["tcp-claim-10003"]
    assert "tcp-probe-10003" in moved.resources
    [listener] = moved.resources["tcp-listenerset"].resource["spec"]["listeners"]
    assert listener["port"] == port and "port" not in moved.status  # not accepted there yet
    assert condition(moved).reason == "Programming"
    assert not any("held by someone else" in r.message for r in moved.results)


def test_a_claim_that_keeps_failing_is_not_tried_on_the_same_port_forever():
    # Every claim this XR composes fails to apply (a claim of that name exists, out of view):
    # the XR remembers its attempts in its status and moves on after a second try.
    xr = XR
    tried = []
    for _ in range(6):
        result = step(spec(), available=pool(gateway(1)), xr=xr)
        assert condition(result).reason == "Claiming"
        [key] = [k for k in result.resources if k.startswith("tcp-claim-")]
        tried.append(int(key.removeprefix("tcp-claim-")))
        xr = {**XR, "status": {"tcpAccess": result.status}}
    assert max(tried.count(port) for port in tried) <= 2
    assert len(set(tried)) >= 3
    assert result.status["triedPorts"] == tried[-tenant.TRIED_PORTS :]


PROVIDER_CONFIG_LABEL = "appcat.vshn.io/provider-config"


def wrapped_with(xr_label: str, **wrap_changes):
    """A wrapped tenant whose XR carries the ProviderConfig label (a claim label, copied to
    the XR by Crossplane v1.x: the tenant sets it)."""
    wrap = {"providerConfigName": "kubernetes", "providerConfigFromLabel": PROVIDER_CONFIG_LABEL}
    xr = {**XR, "metadata": {**XR["metadata"], "labels": {PROVIDER_CONFIG_LABEL: xr_label}}}
    observed = {"tcp-claim-10003": held(wrapped=True)}
    result = step(
        spec(wrap={**wrap, **wrap_changes}), observed=observed, available=pool(gateway(1)), xr=xr
    )
    configs = {d.resource["spec"]["providerConfigRef"]["name"] for d in result.resources.values()}
    return configs, [r.message for r in result.results if r.severity == WARNING]


def test_a_tenants_provider_config_label_is_ignored_without_an_allowlist():
    configs, warnings = wrapped_with("cluster-admin-of-another-cluster")
    assert configs == {"kubernetes"}
    assert any("wrap.allowedProviderConfigs" in w and "ignored" in w for w in warnings)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("kubernetes-2", "kubernetes-2"),
        ("kubernetes-zrh", "kubernetes-zrh"),
        ("cluster-admin", "kubernetes"),
        ("kubernetes", "kubernetes"),
        ("kubernetes-2.evil", "kubernetes-2.evil"),  # * matches any run: list names tightly
    ],
)
def test_a_provider_config_label_is_followed_only_inside_the_allowlist(label, expected):
    configs, warnings = wrapped_with(label, allowedProviderConfigs=["kubernetes-*"])
    assert configs == {expected}
    assert bool(warnings) == (expected != label)


def test_allowed_provider_configs_are_names_with_wildcards():
    with pytest.raises(ValueError, match="allowedProviderConfigs"):
        spec(wrap={"allowedProviderConfigs": ["Kube Config"]})


def moved_away_from(port: int, to: int = 10005) -> dict:
    """What a tenant that left blocked `port` for `to` shows: both claims, its listener set
    on `to`, and the probe of `port` as last reported."""
    first = step(spec(), observed={f"tcp-claim-{to}": held(to)}, available=pool(gateway(1)))
    observed = accepted_view(first.resources)
    observed[f"tcp-claim-{port}"] = blocked(port)
    probing = step(spec(), observed=observed, available=pool(gateway(1)))
    observed[f"tcp-probe-{port}"] = probing.resources[f"tcp-probe-{port}"].resource
    return observed


def test_a_blocked_claim_is_released_once_the_gateway_gives_its_port_back():
    observed = moved_away_from(10003)
    observed["tcp-probe-10003"] = conflicted(observed["tcp-probe-10003"])
    still = step(spec(), observed=observed, available=pool(gateway(1)))
    assert {"tcp-claim-10003", "tcp-probe-10003"} <= set(still.resources)

    # The older listener is gone: the Gateway programs the probe, the port is free again.
    observed["tcp-probe-10003"] = programmed(observed["tcp-probe-10003"])
    freed = step(spec(), observed=observed, available=pool(gateway(1)))
    assert "tcp-claim-10003" not in freed.resources
    assert "tcp-probe-10003" not in freed.resources
    # The tenant stays where it is.
    assert (
        freed.resources["tcp-claim-10005"].resource["spec"]["holderIdentity"]
        == (XR["metadata"]["uid"])
    )
    [listener] = freed.resources["tcp-listenerset"].resource["spec"]["listeners"]
    assert listener["port"] == 10005 and freed.status["port"] == 10005


def test_each_run_says_what_it_did_with_claims():
    # What the function counts in tcp_access_claims_total{result}.
    claimed = step(spec(), available=pool(gateway(1)))
    assert claimed.claims == ["claimed"]
    # That claim never came back as held (another XR took the port): lost, and claimed anew.
    xr = {**XR, "status": {"tcpAccess": claimed.status}}
    again = step(spec(), available=pool(gateway(1)), xr=xr)
    assert again.claims == ["lost", "claimed"]
    # It came back as held: nothing more to count, however often it reconciles.
    settled = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)), xr=xr)
    assert settled.claims == []
    # A second held claim (an interrupted reconcile) is given up.
    observed = {k: d.resource for k, d in settled.resources.items()}
    observed["tcp-claim-10001"] = held(10001)
    assert step(spec(), observed=observed, available=pool(gateway(1))).claims == ["released"]
    # So is a blocked claim whose port the Gateway gives back.
    observed = moved_away_from(10003)
    observed["tcp-probe-10003"] = programmed(observed["tcp-probe-10003"])
    assert step(spec(), observed=observed, available=pool(gateway(1))).claims == ["released"]


def test_a_probe_report_about_another_port_releases_nothing():
    observed = moved_away_from(10003)
    stale = programmed(observed["tcp-probe-10003"])
    stale["spec"] = {**stale["spec"], "listeners": [{"name": "postgresql", "port": 10004}]}
    observed["tcp-probe-10003"] = stale
    result = step(spec(), observed=observed, available=pool(gateway(1)))
    assert {"tcp-claim-10003", "tcp-probe-10003"} <= set(result.resources)


def test_a_tenant_holding_the_most_blocked_claims_is_blocked_and_claims_no_more():
    ports = [10003, 10004, 10005]
    first = step(spec(), observed={"tcp-claim-10005": held(10005)}, available=pool(gateway(1)))
    observed = {k: d.resource for k, d in first.resources.items()}
    observed["tcp-listenerset"] = conflicted(observed["tcp-listenerset"])
    observed["tcp-ticket"] = (
        step(spec(), available=pool(gateway(1))).resources["tcp-ticket"].resource
    )
    for port in ports:
        observed[f"tcp-claim-{port}"] = blocked(port)
    available = pool(gateway(1), claims={1: [blocked(p) for p in ports]})
    available["tcp-claims-own"] = [blocked(p) for p in ports]
    result = step(spec(), observed=observed, available=available)
    # No fourth claim: each could be squatted too, and each keeps a port from others.
    claims = sorted(k for k in result.resources if k.startswith("tcp-claim-"))
    assert claims == [f"tcp-claim-{p}" for p in ports]
    assert all(f"tcp-probe-{p}" in result.resources for p in ports)
    assert "tcp-ticket" not in result.resources  # it waits for no slot
    # Its listener was refused on a port it never served: it keeps none there.
    assert "tcp-listenerset" not in result.resources and "tcp-route" not in result.resources
    assert "tcp-networkpolicy" in result.resources
    assert (condition(result).status, condition(result).reason) == ("False", "Blocked")
    assert result.status["phase"] == "Blocked"
    assert result.connection == {} and "port" not in result.status
    [warning] = [r for r in result.results if r.reason == "Blocked"]
    assert warning.severity == WARNING
    assert "10003 behind postgresql-1" in warning.message
    assert "allowedListenerNamespaces" in warning.message  # what to do about it

    # One port comes back: the tenant claims again.
    observed["tcp-probe-10003"] = programmed(result.resources["tcp-probe-10003"].resource)
    available["tcp-claims-own"] = [blocked(p) for p in ports]
    again = step(spec(), observed=observed, available=available)
    assert "tcp-claim-10003" not in again.resources
    new = [k for k in again.resources if k.startswith("tcp-claim-")]
    assert len(new) == 3 and condition(again).reason == "Conflicted"


# -- the ticket is a lease its holder renews while it waits --------------------------------

RENEWED = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)


def waiting(
    wrapped: bool,
    minutes_since_renewal: float,
    renewed: str = "2026-11-26T10:00:00.000000Z",
    **changes,
):
    """A tenant queued on a full shard, whose ticket was last renewed at RENEWED: the step
    `minutes_since_renewal` later. Returns the ticket it emits (the Lease itself)."""
    available = pool(gateway(1, capacity=2, ports="10000-10001"), claims={1: [claim(10000)]})
    had = ticket(XR["metadata"]["uid"], "2026-11-26T09:00:00Z", renewed=renewed, wrapped=wrapped)
    available["tcp-tickets"] = [had]
    if wrapped:
        changes["wrap"] = {"providerConfigName": "kubernetes"}
    now = RENEWED + datetime.timedelta(minutes=minutes_since_renewal)
    result = step(spec(**changes), {"tcp-ticket": had}, available, now=now)
    assert condition(result).reason == "PoolFull"
    emitted = result.resources["tcp-ticket"].resource
    return emitted, emitted["spec"]["forProvider"]["manifest"] if wrapped else emitted


@pytest.mark.parametrize("wrapped", [False, True], ids=["lease", "object"])
def test_a_waiting_tenant_renews_its_ticket_only_once_half_its_life_has_passed(
    wrapped, crd_validator
):
    _, kept = waiting(wrapped, 7)
    assert kept["spec"]["renewTime"] == "2026-11-26T10:00:00.000000Z"  # the same object
    assert kept["spec"]["leaseDurationSeconds"] == 900
    emitted, renewed = waiting(wrapped, 8)
    assert renewed["spec"]["renewTime"] == "2026-11-26T10:08:00.000000Z"
    assert renewed["spec"]["leaseDurationSeconds"] == 900
    assert crd_validator("v1.6", wrapped).validate(emitted) == []


def test_a_new_ticket_time_to_live_is_written_at_once():
    _, lease = waiting(False, 1, ticketTTLSeconds=3600)
    assert lease["spec"]["leaseDurationSeconds"] == 3600
    assert lease["spec"]["renewTime"] == "2026-11-26T10:01:00.000000Z"


@pytest.mark.parametrize("renewed", ["9999-12-31T23:59:59.999999Z", "soon", ""])
def test_a_ticket_renewed_at_no_time_this_step_wrote_is_renewed_now(renewed):
    _, lease = waiting(False, 1, renewed=renewed)
    assert lease["spec"]["renewTime"] == "2026-11-26T10:01:00.000000Z"


@pytest.mark.parametrize("ttl", [59, 86401, "15m"])
def test_a_ticket_ttl_out_of_bounds_is_refused_naming_the_field(ttl):
    with pytest.raises(ValueError, match="ticketTTLSeconds"):
        spec(ticketTTLSeconds=ttl)


# -- templates read only what the platform sets --------------------------------------------


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("backend.namespace", {"backend": {**INPUT["backend"], "namespace": "{spec.ns}"}}),
        ("backend.service", {"backend": {**INPUT["backend"], "service": "{metadata.labels.svc}"}}),
        (
            "backend.podSelector.app",
            {"backend": {**INPUT["backend"], "podSelector": {"app": "{spec.app}"}}},
        ),
        (
            "resources.route.name",
            {"resources": {"route": {"key": "r", "name": "{metadata.annotations.n}"}}},
        ),
        (
            "connectionSecret.namespace",
            {"connectionSecret": {"name": "s", "namespace": "{spec.x}"}},
        ),
    ],
)
def test_a_template_over_a_field_the_tenant_sets_is_refused_naming_it(where, change):
    with pytest.raises(ValueError, match=where.replace(".", r"\.") + ".*tenants can set"):
        spec(**change)


def test_a_tenant_cannot_send_its_route_into_another_tenants_namespace():
    # The composition author opted in to a spec field: then the XRD must constrain it. Off
    # (the default), the input itself is refused, so no route is ever built from it.
    hostile = {**INPUT["backend"], "namespace": "{spec.parameters.instanceNamespace}"}
    with pytest.raises(ValueError, match="templatesReadTenantFields"):
        spec(backend=hostile, placement="Gateway")
    allowed = spec(backend={**INPUT["backend"], "namespace": "{status.instanceNamespace}"})
    assert allowed.backend.namespace == "{status.instanceNamespace}"


def test_an_empty_backend_pod_selector_is_a_warning_naming_the_field():
    open_all = step(
        spec(backend={**INPUT["backend"], "podSelector": {}}),
        observed={"tcp-claim-10003": held()},
        available=pool(gateway(1)),
    )
    assert any(
        r.severity == WARNING and r.message.startswith("backend.podSelector is empty")
        for r in open_all.results
    )
    narrow = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    assert not any("podSelector" in r.message for r in narrow.results)


# -- two TCPAccess steps in one pipeline (primary and replica endpoints) ----------------


def after(first) -> dict:
    """The pipeline context a first TCPAccess step hands on to the next one."""
    return step(first, available=pool(gateway(1))).context


def test_a_second_step_has_its_own_keys_names_holder_status_and_condition():
    replica = spec(listenerName="replica")
    context = after(spec())
    first = step(spec(), observed={"tcp-claim-10003": held()}, available=pool(gateway(1)))
    assert set(first.resources) == {  # the keys a lone step always had
        "tcp-claim-10003",
        "tcp-listenerset",
        "tcp-route",
        "tcp-networkpolicy",
    }
    claiming = step(replica, available=pool(gateway(1)), context=context)
    [claim_key] = [k for k in claiming.resources if "-claim-" in k]
    port = int(claim_key.rsplit("-", 1)[1])
    assert claim_key == f"tcp-postgresql-replica-claim-{port}"
    assert "tcp-postgresql-replica-ticket" in claiming.resources
    lease = claiming.resources[claim_key].resource
    assert lease["spec"]["holderIdentity"] == "uid-pg-abc12/tcp-postgresql-replica"

    observed = {claim_key: lease}
    result = step(replica, observed=observed, available=pool(gateway(1)), context=context)
    assert set(result.resources) == {
        claim_key,
        "tcp-postgresql-replica-listenerset",
        "tcp-postgresql-replica-route",
        "tcp-postgresql-replica-networkpolicy",
    }
    ls = result.resources["tcp-postgresql-replica-listenerset"].resource
    assert ls["metadata"]["name"] == "pg-abc12-tcp-listenerset-postgresql-replica"
    assert ls["spec"]["listeners"][0]["name"] == "replica"
    assert result.status_path == "status.tcpAccess-postgresql-replica"
    assert [c.type for c in result.conditions] == ["TCPAccessReady-postgresql-replica"]


def test_a_second_step_of_another_pool_neither_adopts_nor_rewrites_the_first_steps_claim():
    replicas = gateway(1, pool="replica")
    observed = {"tcp-claim-10003": held()}  # the first step's, in pool postgresql
    # After the first step, which returns its claim: the second leaves it to the first.
    result = step(
        spec(pool="replica", listenerName="replica"),
        observed=observed,
        desired={"tcp-claim-10003": held()},
        available=pool(replicas),
        context=after(spec()),
    )
    assert "tcp-claim-10003" not in result.resources
    assert condition_of(result).reason == "Claiming"
    [lease] = [d.resource for k, d in result.resources.items() if "-claim-" in k]
    assert lease["metadata"]["labels"][labels.POOL] == "replica"

    # Alone (it wrongly runs as the first step, or its `pool` changed): nobody else returns
    # the claim, so it is kept as it is (Crossplane would delete it), never used.
    result = step(
        spec(pool="replica", listenerName="replica"), observed=observed, available=pool(replicas)
    )
    assert result.resources["tcp-claim-10003"].resource["metadata"]["labels"][labels.POOL] == (
        "postgresql"
    )
    assert condition_of(result).reason == "Claiming"
    [lease] = [d.resource for k, d in result.resources.items() if k != "tcp-claim-10003"
               and "-claim-" in k]  # fmt: skip
    assert lease["metadata"]["labels"][labels.POOL] == "replica"

    # A claim named for the first step's pool stays its own, whatever a foreign step wrote
    # into its pool label.
    relabelled = held(10003)
    relabelled["metadata"]["labels"][labels.POOL] = "replica"
    result = step(spec(), observed={"tcp-claim-10003": relabelled}, available=pool(gateway(1)))
    assert condition(result).reason == "Programming"
    claim_labels = result.resources["tcp-claim-10003"].resource["metadata"]["labels"]
    assert claim_labels[labels.POOL] == "postgresql"


def test_a_second_step_in_the_same_pool_never_takes_the_first_steps_claim_for_its_own():
    first_claim = held(10003)  # held by the XR, found by its owner label too
    available = pool(gateway(1), claims={1: [first_claim]})
    available["tcp-claims-own"] = [first_claim]
    result = step(
        spec(listenerName="replica"),
        observed={"tcp-claim-10003": first_claim},
        available=available,
        context=after(spec()),
    )
    assert condition_of(result).reason == "Claiming"
    assert "tcp-claim-10003" not in result.resources
    [key] = [k for k in result.resources if "-claim-" in k]
    assert key.startswith("tcp-postgresql-replica-claim-") and not key.endswith("-10003")


def test_two_steps_choosing_from_one_view_never_pick_one_port():
    one_slot = pool(gateway(1, capacity=2))  # port 10000, and the Gateway's own 10001
    first = step(spec(), available=one_slot)
    assert "tcp-claim-10000" in first.resources
    desired = {key: d.resource for key, d in first.resources.items()}
    second = step(
        spec(listenerName="replica"), available=one_slot, context=first.context, desired=desired
    )
    assert condition_of(second).reason == "PoolFull"
    assert not [key for key in second.resources if "-claim-" in key]


def test_no_xr_name_gets_the_object_names_of_another_xrs_second_step():
    """Wrapped Objects' names are cluster-wide, and tenants choose their XR names: an XR
    named `<victim>-tcp-postgresql` must not get the names of its victim's second step (of
    the default listener name `tcp`), nor may one XR's two steps share one name."""
    steps_ = (spec(wrap={}), spec(listenerName="tcp", wrap={}))
    owners: dict[str, str] = {}
    for name in ("pg-a", "pg-a-tcp-postgresql", "pg-a-tcp-postgresql-tcp", "pg-a-tcp"):
        xr = {**XR, "metadata": {"name": name, "uid": f"uid-{name}"}}
        context: dict = {}
        for each in steps_:
            claiming = step(each, available=pool(gateway(1)), xr=xr, context=context)
            claims = {k: d.resource for k, d in claiming.resources.items() if "-claim-" in k}
            held_now = step(each, observed=claims, available=pool(gateway(1)), xr=xr,
                            context=context)  # fmt: skip
            assert condition_of(held_now).reason == "Programming", held_now.results
            for key, desired in held_now.resources.items():
                if "-claim-" in key:
                    continue  # its name is the port's lock: taken by whoever comes first
                object_name = desired.resource["metadata"]["name"]
                assert owners.setdefault(object_name, name) == name, object_name
                owners[object_name] = "taken"  # not even the same XR may return it twice
            context = held_now.context


@pytest.mark.parametrize(
    "second, field",
    [
        ({"pool": "postgresql", "listenerName": "replica", "keyPrefix": "tcp"}, "keyPrefix"),
        ({"listenerName": "replica", "statusPath": "status.tcpAccess"}, "statusPath"),
    ],
)
def test_two_steps_sharing_keys_or_a_status_path_is_fatal_naming_the_field(second, field):
    result = step(spec(**second), available=pool(gateway(1)), context=after(spec()))
    [fatal] = [r for r in result.results if r.severity == FATAL]
    assert fatal.message.startswith(f"{field}:")
    assert result.resources == {}


def condition_of(result):
    [only] = [c for c in result.conditions if c.type.startswith(tenant.CONDITION)]
    return only
