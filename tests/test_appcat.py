"""AppCat drop-in on plain data: its names and keys, adoption of webhook-allocated ports,
coexistence with the webhook, connection-detail templates and patches."""

from function import labels, tenant
from function.inputs import TCPAccess
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


def step(spec_, *, observed=None, available=None, desired=None, connection=None):
    lookups: dict = {}
    previous = None
    for _ in range(6):
        request = StepRequest(
            xr=XR,
            observed=observed or {},
            lookups=lookups,
            desired=desired or {},
            desired_connection=connection or {},
        )
        result = tenant.run(spec_, request)
        if result.fatal or result.requirements == previous:
            return result
        previous = result.requirements
        lookups = {
            r.name: [o for o in available or [] if r.matches(o)] for r in result.requirements
        }
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


assert labels.POOL  # labels used by the factories
