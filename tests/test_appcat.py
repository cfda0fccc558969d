"""AppCat drop-in on plain data: its names and keys, adoption of webhook-allocated ports,
coexistence with the webhook, connection-detail templates and patches."""

import pytest

from function import labels, tenant
from function.inputs import TCPAccess
from function.requirement import Requirement
from function.step import WARNING, StepRequest
from tests.factories import NS, accepted_view, claim, gateway

XR = {
    "apiVersion": "vshn.appcat.vshn.io/v1",
    "kind": "XVSHNPostgreSQL",
    "metadata": {"name": "pg-abc12", "uid": "uid-pg"},
}
APPCAT = {
    "pool": "postgresql",
    "gatewayNamespace": NS,
    "gatewayAPI": "v1.4",
    "listenerName": "postgresql",
    "backend": {"namespace": "vshn-postgresql-{metadata.name}", "service": "postgresql-rw",
                "port": 5432},
    "resources": {
        "listenerSet": {"key": "{metadata.name}-xls", "name": "{metadata.name}",
                        "objectName": "{metadata.name}-xls"},
        "route": {"key": "{metadata.name}-tcproute", "name": "{metadata.name}",
                  "objectName": "{metadata.name}-tcproute"},
        "networkPolicy": {"key": "{metadata.name}-gw-netpol", "name": "{metadata.name}",
                          "objectName": "{metadata.name}-gw-netpol"},
        "referenceGrant": {"key": "{metadata.name}-refgrant", "name": "{metadata.name}",
                           "objectName": "{metadata.name}-refgrant"},
    },
    "wrap": {"providerConfigName": "kubernetes"},
    "connectionDetails": {
        "host": "POSTGRESQL_GATEWAY_HOST",
        "port": "POSTGRESQL_GATEWAY_PORT",
        "templates": {
            "POSTGRESQL_GATEWAY_URL": (
                "postgresql://{POSTGRESQL_USER}:{POSTGRESQL_PASSWORD}@{host}:{port}/{POSTGRESQL_DB}"
            )
        },
    },
}  # fmt: skip


def spec(**changes) -> TCPAccess:
    return TCPAccess.model_validate({**APPCAT, **changes})


def step(spec_, *, observed=None, available=None, desired=None, connection=None, xr=None, v1=False):
    """Run the step until its requirements settle; `v1`: label lookups span every
    namespace, as on Crossplane v1.x."""
    lookups: dict = {}
    previous = None
    for _ in range(6):
        request = StepRequest(
            xr=xr or XR,
            observed=observed or {},
            lookups=lookups,
            desired=desired or {},
            desired_connection=connection or {},
        )
        result = tenant.run(spec_, request)
        if result.fatal or result.requirements == previous:
            return result
        previous = result.requirements
        selectors = [
            Requirement(r.name, r.api_version, r.kind, r.match_labels) if v1 else r
            for r in result.requirements
        ]
        lookups = {r.name: [o for o in available or [] if r.matches(o)] for r in selectors}
    raise AssertionError("requirements did not stabilise")


def appcat_xls(
    port: int,
    gateway_name: str = "postgresql-1",
    name: str = "pg-abc12",
    namespace: str | None = None,
    accepted: bool | None = True,
) -> dict:
    """The XListenerSet AppCat's function composes (wrapped) and its webhook gave a port,
    as its Gateway reports it (`accepted`; None: no report yet)."""
    inner = {
        "apiVersion": "gateway.networking.x-k8s.io/v1alpha1",
        "kind": "XListenerSet",
        "metadata": {
            "name": name,
            "namespace": f"vshn-postgresql-{name}",
            "labels": {"appcat.vshn.io/tcpgateway": "true"},
        },
        "spec": {
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                          "name": gateway_name, "namespace": NS},
            "listeners": [{"name": "postgresql", "port": port, "protocol": "TCP"}],
        },
    }  # fmt: skip
    if namespace is not None:
        inner["metadata"]["namespace"] = namespace
    if accepted is not None:
        status = "True" if accepted else "False"
        inner["status"] = {"conditions": [{"type": "Accepted", "status": status}]}
    return inner


def wrapped(inner: dict, object_name: str) -> dict:
    return {
        "apiVersion": "kubernetes.crossplane.io/v1alpha2",
        "kind": "Object",
        "metadata": {"name": object_name},
        "spec": {"forProvider": {"manifest": inner}},
        "status": {"atProvider": {"manifest": inner}},
    }


def webhook_lease(port: int, holder: str, namespace: str = NS) -> dict:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": f"tcp-port-{port}",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "tcpgateway-port-allocator"},
        },
        "spec": {"holderIdentity": holder},
    }


def held(port: int) -> dict:
    return claim(port, 1, holder="uid-pg", owner="pg-abc12", wrapped=True)


def accepted_on(port: int, spec_: TCPAccess, **kwargs) -> dict:
    """What the XR observes once its claim of `port` is held and the Gateway accepted its
    listener set there."""
    first = step(spec_, observed={f"tcp-claim-{port}": held(port)}, **kwargs)
    return accepted_view(first.resources)


def test_appcat_keys_and_names():
    result = step(spec(), observed={"tcp-claim-10003": held(10003)}, available=[gateway(1)])
    assert set(result.resources) == {
        "tcp-claim-10003",
        "pg-abc12-xls",
        "pg-abc12-tcproute",
        "pg-abc12-gw-netpol",
    }
    xls = result.resources["pg-abc12-xls"].resource
    assert xls["metadata"]["name"] == "pg-abc12-xls"  # the Object, named like AppCat's
    inner = xls["spec"]["forProvider"]["manifest"]
    assert (inner["kind"], inner["metadata"]["name"]) == ("XListenerSet", "pg-abc12")
    route = result.resources["pg-abc12-tcproute"].resource["spec"]["forProvider"]["manifest"]
    assert route["spec"]["parentRefs"][0]["name"] == "pg-abc12"


def test_wrapped_objects_need_distinct_names():
    same = {role: {"key": f"{{metadata.name}}-{role}", "name": "{metadata.name}"}
            for role in ("listenerSet", "route", "networkPolicy", "referenceGrant")}  # fmt: skip
    result = step(spec(resources=same), observed={"tcp-claim-10003": held(10003)})
    [fatal] = result.results
    assert "objectName" in fatal.message and fatal.severity == "Fatal"


def test_adopts_the_port_the_webhook_gave():
    observed = {"pg-abc12-xls": wrapped(appcat_xls(10004), "pg-abc12-xls")}
    available = [gateway(1), gateway(2)]
    result = step(spec(), observed=observed, available=available)
    claims = [k for k in result.resources if k.startswith("tcp-claim-")]
    assert claims == ["tcp-claim-10004"]
    # Claim first: the listener set is kept exactly as it was until the claim is held.
    assert result.resources["pg-abc12-xls"].resource["spec"] == observed["pg-abc12-xls"]["spec"]
    [condition] = result.conditions
    assert condition.reason == "Claiming" and "adopting port 10004" in condition.message
    assert result.claims == ["adopted"]  # what the function counts (tcp_access_claims_total)


def test_adopts_the_port_only_the_live_listener_set_has_yet():
    # The webhook gave 10014 behind shard 2 at admission; the Object still says port 0.
    desired = appcat_xls(0, gateway_name="postgresql-1")
    obj = {**wrapped(appcat_xls(10014, gateway_name="postgresql-2"), "pg-abc12-xls")}
    obj["spec"] = {"forProvider": {"manifest": desired}}
    available = [gateway(1), gateway(2)]
    result = step(spec(), observed={"pg-abc12-xls": obj}, available=available)
    assert [k for k in result.resources if k.startswith("tcp-claim-")] == ["tcp-claim-10014"]
    [condition] = result.conditions
    assert "adopting port 10014 on shard 2" in condition.message


def test_a_port_in_the_objects_spec_wins_over_the_live_one():
    obj = wrapped(appcat_xls(10004), "pg-abc12-xls")
    obj["status"] = {"atProvider": {"manifest": appcat_xls(10007)}}
    result = step(spec(), observed={"pg-abc12-xls": obj}, available=[gateway(1)])
    assert [k for k in result.resources if k.startswith("tcp-claim-")] == ["tcp-claim-10004"]


def test_adopts_a_port_outside_the_slice_and_says_so():
    observed = {"pg-abc12-xls": wrapped(appcat_xls(10500), "pg-abc12-xls")}
    result = step(spec(), observed=observed, available=[gateway(1)])
    assert "tcp-claim-10500" in result.resources
    assert any("outside" in r.message for r in result.results if r.severity == WARNING)


def test_adoption_conflict_allocates_afresh_and_reports_it():
    observed = {"pg-abc12-xls": wrapped(appcat_xls(10004), "pg-abc12-xls")}
    other = claim(10004, 1, holder="uid-someone", wrapped=True)
    result = step(spec(), observed=observed, available=[gateway(1), other])
    claims = [k for k in result.resources if k.startswith("tcp-claim-")]
    assert len(claims) == 1 and claims != ["tcp-claim-10004"]
    [condition] = result.conditions
    assert condition.reason == "Conflicted"


def test_legacy_allocations_are_taken_and_count_against_capacity():
    # Shard 1 (9 slots): 8 webhook tenants with XListenerSets, one more port with a Lease.
    legacy = [appcat_xls(10000 + i, name=f"old-{i}") for i in range(8)]
    leases = [webhook_lease(10008, "vshn-postgresql-old-x/old-x")]
    available = [gateway(1), gateway(2), *legacy, *leases]
    result = step(spec(respectLegacyAllocations=True), available=available)
    [key] = [k for k in result.resources if k.startswith("tcp-claim-")]
    port = int(key.removeprefix("tcp-claim-"))
    assert (
        10010 <= port <= 10018
    )  # shard 1 counts 8 legacy listeners; its last slot 10008 is leased
    # Without the flag, the webhook's ports look free.
    result = step(spec(), available=available)
    [key] = [k for k in result.resources if k.startswith("tcp-claim-")]
    assert int(key.removeprefix("tcp-claim-")) < 10009


def claimed_port(result) -> int:
    [key] = [k for k in result.resources if k.startswith("tcp-claim-")]
    return int(key.removeprefix("tcp-claim-"))


def test_forged_legacy_allocations_take_no_port():
    # A tenant may create Leases and listener sets in its own namespace, with any labels:
    # none of these is the webhook's, and none is a listener its Gateway carries.
    forged = [
        *(webhook_lease(p, "x", namespace="tenant-mallory") for p in range(10000, 10020)),
        appcat_xls(10000, name="decoy-a", namespace="tenant-mallory", accepted=None),
        appcat_xls(10001, name="decoy-b", namespace="tenant-mallory", accepted=False),
        appcat_xls(10002, gateway_name="not-a-shard", name="decoy-c", namespace="tenant-mallory"),
    ]
    available = [gateway(1, capacity=4, ports="10000-10003"), *forged]
    ports = {claimed_port(step(spec(respectLegacyAllocations=True), available=available))}
    assert ports <= {10000, 10001, 10002}  # every tenant slot is still free to claim
    result = step(spec(respectLegacyAllocations=True), available=available)
    assert not any(c.reason == "PoolFull" for c in result.conditions)


def test_legacy_leases_are_read_where_the_webhook_writes_them():
    lease = webhook_lease(10000, "ns/old", namespace="appcat-system")
    available = [gateway(1, capacity=3, ports="10000-10002"), lease]
    moved = spec(respectLegacyAllocations=True, legacyLeaseNamespace="appcat-system")
    assert claimed_port(step(moved, available=available)) == 10001
    assert claimed_port(step(spec(respectLegacyAllocations=True), available=available)) in (
        10000,
        10001,
    )


def test_a_legacy_listener_counts_on_its_own_shard_only():
    # Two shards share 10000-10002 (their own listeners on 10002). The webhook's tenant
    # listens on 10000 behind shard 1, a claim holds 10001: shard 1 is full, and 10000 is
    # still free behind shard 2's address.
    shared = "10000-10002"
    shards = [gateway(1, capacity=3, ports=shared), gateway(2, capacity=3, ports=shared)]
    old = appcat_xls(10000, gateway_name="postgresql-1", name="old-1")
    available = [*shards, old, claim(10001, 2, wrapped=True)]
    result = step(spec(respectLegacyAllocations=True), available=available)
    [claim_] = [d.resource for k, d in result.resources.items() if k.startswith("tcp-claim-")]
    manifest = claim_["spec"]["forProvider"]["manifest"]
    assert manifest["metadata"]["labels"]["tcp.fn.servala.io/shard"] == "2"
    assert claimed_port(result) == 10000


def test_the_xrs_own_legacy_allocation_does_not_block_its_adoption():
    observed = {"pg-abc12-xls": wrapped(appcat_xls(10004), "pg-abc12-xls")}
    available = [
        gateway(1),
        appcat_xls(10004),  # its own XListenerSet, as the legacy lookup returns it
        webhook_lease(10004, "vshn-postgresql-pg-abc12/pg-abc12"),
    ]
    result = step(spec(respectLegacyAllocations=True), observed=observed, available=available)
    assert "tcp-claim-10004" in result.resources


def test_connection_detail_templates():
    earlier = {"POSTGRESQL_USER": b"app", "POSTGRESQL_PASSWORD": b"s3cret", "POSTGRESQL_DB": b"db"}
    observed = accepted_on(10003, spec(), available=[gateway(1)], connection=earlier)
    result = step(spec(), observed=observed, available=[gateway(1)], connection=earlier)
    assert result.connection == {
        "POSTGRESQL_GATEWAY_HOST": b"db1.example.ch",
        "POSTGRESQL_GATEWAY_PORT": b"10003",
        "POSTGRESQL_GATEWAY_URL": b"postgresql://app:s3cret@db1.example.ch:10003/db",
    }


def test_a_template_naming_a_missing_detail_is_left_out_with_a_warning():
    observed = accepted_on(10003, spec(), available=[gateway(1)])
    result = step(spec(), observed=observed, available=[gateway(1)])
    assert "POSTGRESQL_GATEWAY_PORT" in result.connection
    assert "POSTGRESQL_GATEWAY_URL" not in result.connection
    assert any("POSTGRESQL_USER" in r.message for r in result.results if r.severity == WARNING)


def test_patches_write_the_allocation_into_earlier_resources_and_the_xr():
    release = {"apiVersion": "helm.crossplane.io/v1beta1", "kind": "Release",
               "spec": {"forProvider": {"values": {"gitea": {"config": {"server": {
                   "DOMAIN": "git.example.ch"}}}}}}}  # fmt: skip
    patches = [
        {"resource": "forgejo-release",
         "fieldPath": "spec.forProvider.values.gitea.config.server.SSH_PORT", "value": "port"},
        {"resource": "forgejo-release",
         "fieldPath": "spec.forProvider.values.gitea.config.server.SSH_DOMAIN", "value": "host"},
        {"fieldPath": "status.sshPort", "value": "port"},
        {"resource": "missing", "fieldPath": "spec.x", "value": "hostPort"},
    ]  # fmt: skip
    given = {"available": [gateway(1)], "desired": {"forgejo-release": release}}
    observed = accepted_on(10003, spec(patches=patches), **given)
    result = step(spec(patches=patches), observed=observed, **given)
    server = result.resources["forgejo-release"].resource["spec"]["forProvider"]["values"]
    assert server["gitea"]["config"]["server"] == {
        "DOMAIN": "git.example.ch",
        "SSH_PORT": 10003,
        "SSH_DOMAIN": "db1.example.ch",
    }
    assert result.resources["forgejo-release"].ready is None  # the earlier step's to say
    assert result.composite == {"status.sshPort": 10003}
    assert any("'missing'" in r.message for r in result.results if r.severity == WARNING)
    assert release["spec"]["forProvider"]["values"]["gitea"]["config"]["server"] == {
        "DOMAIN": "git.example.ch"
    }  # the request's copy is untouched


def test_patch_of_the_xr_must_stay_below_status():
    try:
        spec(patches=[{"fieldPath": "spec.port", "value": "port"}])
    except ValueError as err:
        assert "status" in str(err)
    else:
        raise AssertionError("a patch of the XR's spec was accepted")


def test_a_patch_needs_one_value():
    for patch in ({"fieldPath": "status.x"}, {"fieldPath": "status.x", "value": "port",
                                               "literal": 1}):  # fmt: skip
        with pytest.raises(ValueError, match="exactly one of value and literal"):
            spec(patches=[patch])


def test_a_patch_key_template_reads_platform_fields_only():
    # The claim's spec is the tenant's: a key from it could patch any earlier resource.
    patch = {"resource": "{spec.parameters.target}", "fieldPath": "spec.x", "value": "port"}
    with pytest.raises(ValueError, match=r"patches.0.resource: \{spec.parameters.target\}"):
        spec(patches=[patch])


# -- Forgejo: the Release keyed by the XR's name, the SSH Service named by Helm's rule --------

FORGEJO = {
    **APPCAT,
    "pool": "forgejo",
    "listenerName": "ssh",
    "enabledFromFieldPath": "spec.parameters.service.ssh.enabled",
    "backend": {
        "namespace": "vshn-forgejo-{metadata.name}",
        "serviceSelector": {"app.kubernetes.io/name": "forgejo",
                            "app.kubernetes.io/instance": "{metadata.name}"},
        "port": 22,
        "podSelector": {"app.kubernetes.io/name": "forgejo",
                        "app.kubernetes.io/instance": "{metadata.name}"},
        "podPort": 2222,
    },
    "resources": {
        "listenerSet": {"key": "{metadata.name}-ssh-xls", "name": "{metadata.name}-ssh",
                        "objectName": "{metadata.name}-ssh-xls"},
        "route": {"key": "{metadata.name}-ssh-tcproute", "name": "{metadata.name}-ssh",
                  "objectName": "{metadata.name}-ssh-tcproute"},
        "networkPolicy": {"key": "{metadata.name}-ssh-gw-netpol", "name": "{metadata.name}-ssh",
                          "objectName": "{metadata.name}-ssh-gw-netpol"},
        "referenceGrant": {"key": "{metadata.name}-ssh-refgrant", "name": "{metadata.name}-ssh",
                           "objectName": "{metadata.name}-ssh-refgrant"},
    },
    "connectionDetails": {"host": "FORGEJO_SSH_HOST", "port": "FORGEJO_SSH_PORT"},
    "patches": [
        {"resource": "{metadata.name}", "fieldPath": f"spec.forProvider.values.gitea.config."
         f"server.{key}", **value}
        for key, value in (("DISABLE_SSH", {"literal": False}),
                           ("START_SSH_SERVER", {"literal": True}),
                           ("SSH_DOMAIN", {"value": "host"}), ("SSH_PORT", {"value": "port"}))
    ] + [{"fieldPath": "status.sshPort", "value": "port"}],
}  # fmt: skip


def forgejo_xr(name: str) -> dict:
    return {
        "apiVersion": "vshn.appcat.vshn.io/v1",
        "kind": "XVSHNForgejo",
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {"parameters": {"service": {"ssh": {"enabled": True}}}},
    }


def chart_services(release: str, namespace: str | None = None) -> list[dict]:
    """The Forgejo chart's Services: <fullname>-http and -ssh, both with the chart's labels
    (fullname: the release name if it contains `forgejo`, else <release>-forgejo)."""
    fullname = release if "forgejo" in release else f"{release}-forgejo"
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": f"{fullname}-{kind}",
                "namespace": namespace or f"vshn-forgejo-{release}",
                "labels": {"app.kubernetes.io/name": "forgejo",
                           "app.kubernetes.io/instance": release},
            },
            "spec": {"ports": [{"name": kind, "port": port}]},
        }
        for kind, port in (("http", 3000), ("ssh", 22))
    ]  # fmt: skip


def release(name: str) -> dict:
    server = {"DOMAIN": "git.example.ch", "DISABLE_SSH": True, "SSH_LISTEN_PORT": 2222}
    values = {"gitea": {"config": {"server": server}}}
    return {"apiVersion": "helm.crossplane.io/v1beta1", "kind": "Release",
            "metadata": {"name": name}, "spec": {"forProvider": {"values": values}}}  # fmt: skip


def forgejo_claim(name: str, port: int = 10003) -> dict:
    return claim(port, 1, holder=f"uid-{name}", owner=name, pool="forgejo", wrapped=True)


def manifest(result, key: str) -> dict:
    return result.resources[key].resource["spec"]["forProvider"]["manifest"]


@pytest.mark.parametrize(
    ("name", "service"),
    [("codey-5fz3w", "codey-5fz3w-forgejo-ssh"), ("forgejo-x8k2p", "forgejo-x8k2p-ssh")],
)
def test_forgejo_routes_to_the_ssh_service_its_chart_named(name, service):
    given = {
        "xr": forgejo_xr(name),
        "available": [gateway(1, pool="forgejo"), *chart_services(name)],
        "desired": {name: release(name)},
        "v1": True,
    }
    claimed = {"tcp-claim-10003": forgejo_claim(name)}
    first = step(TCPAccess.model_validate(FORGEJO), observed=claimed, **given)
    # Published once the Gateway accepted the listener set.
    observed = {**claimed, **accepted_view(first.resources)}
    result = step(TCPAccess.model_validate(FORGEJO), observed=observed, **given)
    route = manifest(result, f"{name}-ssh-tcproute")
    [backend] = route["spec"]["rules"][0]["backendRefs"]
    assert (backend["name"], backend["port"]) == (service, 22)
    assert manifest(result, f"{name}-ssh-xls")["metadata"]["name"] == f"{name}-ssh"
    server = result.resources[name].resource["spec"]["forProvider"]["values"]["gitea"]
    assert server["config"]["server"] == {
        "DOMAIN": "git.example.ch",
        "DISABLE_SSH": False,
        "START_SSH_SERVER": True,
        "SSH_DOMAIN": "db1.example.ch",
        "SSH_LISTEN_PORT": 2222,
        "SSH_PORT": 10003,
    }
    assert result.composite == {"status.sshPort": 10003}
    assert result.connection == {"FORGEJO_SSH_HOST": b"db1.example.ch",
                                 "FORGEJO_SSH_PORT": b"10003"}  # fmt: skip


def test_forgejo_before_a_port_leaves_the_release_alone():
    name = "codey-5fz3w"
    result = step(
        TCPAccess.model_validate(FORGEJO), xr=forgejo_xr(name),
        available=[gateway(1, pool="forgejo"), *chart_services(name)],
        desired={name: release(name)},
    )  # fmt: skip
    assert name not in result.resources  # the earlier step's Release stands as it is
    assert result.composite == {} and result.connection == {}


def test_until_the_service_exists_the_route_the_xr_has_is_kept():
    name = "codey-5fz3w"
    route = wrapped(
        {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
         "metadata": {"name": f"{name}-ssh", "namespace": f"vshn-forgejo-{name}"},
         "spec": {"rules": [{"backendRefs": [{"name": f"{name}-forgejo-ssh", "port": 22}]}]}},
        f"{name}-ssh-tcproute",
    )  # fmt: skip
    observed = {"tcp-claim-10003": forgejo_claim(name), f"{name}-ssh-tcproute": route}
    given = {"xr": forgejo_xr(name), "available": [gateway(1, pool="forgejo")],
             "desired": {name: release(name)}, "v1": True}  # fmt: skip
    first = step(TCPAccess.model_validate(FORGEJO), observed=observed, **given)
    listener_set = f"{name}-ssh-xls"  # accepted by the Gateway: the port is published
    observed[listener_set] = accepted_view({listener_set: first.resources[listener_set]})[
        listener_set
    ]
    result = step(TCPAccess.model_validate(FORGEJO), observed=observed, **given)
    assert result.resources[f"{name}-ssh-tcproute"].resource["spec"] == route["spec"]
    assert {"tcp-claim-10003", f"{name}-ssh-xls", f"{name}-ssh-gw-netpol"} <= set(result.resources)
    [condition] = result.conditions
    assert condition.reason == "BackendMissing" and condition.status == "False"
    assert "app.kubernetes.io/instance=codey-5fz3w" in condition.message
    assert result.connection["FORGEJO_SSH_PORT"] == b"10003"  # the port is held: it is kept


def test_a_service_outside_the_backend_namespace_is_never_the_backend():
    # Anyone may label a Service in their own namespace like the chart's, and v1.x label
    # lookups span every namespace: a look-alike elsewhere must not catch the route.
    name = "codey-5fz3w"
    decoys = chart_services(name, namespace="tenant-mallory")
    result = step(
        TCPAccess.model_validate(FORGEJO), xr=forgejo_xr(name),
        observed={"tcp-claim-10003": forgejo_claim(name)},
        available=[gateway(1, pool="forgejo"), *decoys], desired={name: release(name)}, v1=True,
    )  # fmt: skip
    assert f"{name}-ssh-tcproute" not in result.resources
    assert result.conditions[0].reason == "BackendMissing"
    [ssh] = [s for s in chart_services(name) if s["metadata"]["name"].endswith("-ssh")]
    result = step(
        TCPAccess.model_validate(FORGEJO), xr=forgejo_xr(name),
        observed={"tcp-claim-10003": forgejo_claim(name)},
        available=[gateway(1, pool="forgejo"), *decoys, ssh], desired={name: release(name)},
        v1=True,
    )  # fmt: skip
    route = manifest(result, f"{name}-ssh-tcproute")
    [backend] = route["spec"]["rules"][0]["backendRefs"]
    assert backend["name"] == f"{name}-forgejo-ssh"
    assert route["metadata"]["namespace"] == f"vshn-forgejo-{name}"


def test_two_matching_services_are_reported_not_guessed():
    name = "codey-5fz3w"
    services = chart_services(name)
    services[0]["spec"]["ports"] = [{"port": 22}]  # the http Service now has port 22 too
    result = step(
        TCPAccess.model_validate(FORGEJO), xr=forgejo_xr(name),
        observed={"tcp-claim-10003": forgejo_claim(name)},
        available=[gateway(1, pool="forgejo"), *services], desired={name: release(name)},
    )  # fmt: skip
    assert f"{name}-ssh-tcproute" not in result.resources
    [condition] = result.conditions
    assert condition.reason == "BackendMissing" and "2 Services match" in condition.message


def test_a_forgejo_takeover_keeps_ssh_on_while_it_claims_the_webhooks_port():
    # AppCat's step no longer sets the SSH values once this function allocates: the claim
    # reconcile must set them for the port the XR serves, or SSH goes off until it is held.
    name = "codey-5fz3w"
    xls = appcat_xls(10005, gateway_name="forgejo-1", name=f"{name}-ssh")
    xls["metadata"]["namespace"] = f"vshn-forgejo-{name}"
    observed = {f"{name}-ssh-xls": wrapped(xls, f"{name}-ssh-xls")}
    result = step(
        TCPAccess.model_validate(FORGEJO), xr=forgejo_xr(name), observed=observed,
        available=[gateway(1, pool="forgejo"), *chart_services(name)],
        desired={name: release(name)},
    )  # fmt: skip
    assert [k for k in result.resources if k.startswith("tcp-claim-")] == ["tcp-claim-10005"]
    assert (
        result.resources[f"{name}-ssh-xls"].resource["spec"] == observed[f"{name}-ssh-xls"]["spec"]
    )
    server = result.resources[name].resource["spec"]["forProvider"]["values"]["gitea"]
    assert server["config"]["server"]["SSH_PORT"] == 10005
    assert server["config"]["server"]["DISABLE_SSH"] is False
    assert result.connection["FORGEJO_SSH_PORT"] == b"10005"
    assert result.composite == {"status.sshPort": 10005}
    assert result.conditions[0].reason == "Claiming"


def test_a_selector_value_no_label_can_hold_is_one_fatal_naming_it():
    long_name = "a" * 70  # a valid XR name, too long for a label value
    one_namespace = {**FORGEJO, "backend": {**FORGEJO["backend"], "namespace": "forgejo"}}
    result = step(TCPAccess.model_validate(one_namespace), xr=forgejo_xr(long_name))
    [fatal] = result.results
    assert fatal.severity == "Fatal"
    assert "backend.serviceSelector.app.kubernetes.io/instance" in fatal.message


def test_forgejo_without_ssh_composes_nothing():
    xr = forgejo_xr("codey-5fz3w")
    xr["spec"]["parameters"]["service"]["ssh"]["enabled"] = False
    result = step(TCPAccess.model_validate(FORGEJO), xr=xr, available=[gateway(1, pool="forgejo")])
    assert result.resources == {} and result.conditions[0].reason == "Disabled"


assert labels.POOL  # labels used by the factories
