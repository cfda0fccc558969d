"""The protobuf adapter: what Crossplane sees on the wire."""

import asyncio
import datetime

import pytest
from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from function import fn
from tests.factories import NS, claim, gateway, gateway_report, ticket

INPUT = {
    "apiVersion": "tcp.fn.servala.io/v1alpha1",
    "kind": "TCPAccess",
    "pool": "postgresql",
    "gatewayNamespace": NS,
    "backend": {"namespace": "vshn-postgresql-{metadata.name}", "service": "pg", "port": 5432},
}
XR = {"apiVersion": "x.example.org/v1", "kind": "XDB", "metadata": {"name": "db", "uid": "u-db"}}


def request(input_=INPUT, xr=XR, observed=None) -> fnv1.RunFunctionRequest:
    req = fnv1.RunFunctionRequest(input=resource.dict_to_struct(input_))
    req.observed.composite.resource.update(xr)
    for key, obj in (observed or {}).items():
        req.observed.resources[key].resource.update(obj)
    return req


def call(req):
    return asyncio.run(fn.FunctionRunner().RunFunction(req, None))


def fatal_messages(rsp):
    return [r.message for r in rsp.results if r.severity == fnv1.Severity.SEVERITY_FATAL]


FIRST_LOOKUPS = {"tcp-gateways-accepting", "tcp-tickets", "tcp-claims-own"}


def test_requirements_are_written_to_both_fields():
    rsp = call(request())
    assert set(rsp.requirements.resources) == FIRST_LOOKUPS
    assert rsp.requirements.resources == rsp.requirements.extra_resources
    selector = rsp.requirements.resources["tcp-gateways-accepting"]
    assert selector.namespace == NS
    assert dict(selector.match_labels.labels)["tcp.fn.servala.io/accepting"] == "true"


@pytest.mark.parametrize("field", ["extra_resources", "required_resources"])
def test_lookups_are_read_from_either_field(field):
    req = request()
    getattr(req, field)["tcp-gateways-accepting"].items.add().resource.update(gateway(1))
    getattr(req, field)["tcp-claims-shard-1"].SetInParent()  # resolved, nothing found
    getattr(req, field)["tcp-placed-shard-1"].SetInParent()
    getattr(req, field)["tcp-claims-own"].SetInParent()
    getattr(req, field)["tcp-tickets"].SetInParent()
    rsp = call(req)
    [key] = [k for k in rsp.desired.resources if k != "tcp-ticket"]
    assert key.startswith("tcp-claim-")
    assert rsp.desired.resources[key].ready == fnv1.Ready.READY_FALSE


def test_struct_floats_become_ints_in_what_we_emit():
    observed = {"tcp-claim-10003": claim(10003, holder="u-db")}
    req = request(observed=observed)
    req.required_resources["tcp-gateway-shard-1"].items.add().resource.update(gateway(1))
    rsp = call(req)
    # The next reconcile, once the Gateway accepted the listener set: its port is published.
    listener_set = resource.struct_to_dict(rsp.desired.resources["tcp-listenerset"].resource)
    observed["tcp-listenerset"] = gateway_report(listener_set)
    req = request(observed=observed)
    req.required_resources["tcp-gateway-shard-1"].items.add().resource.update(gateway(1))
    rsp = call(req)
    ls = resource.struct_to_dict(rsp.desired.resources["tcp-listenerset"].resource)
    assert ls["spec"]["listeners"][0]["port"] == 10003
    status = resource.struct_to_dict(rsp.desired.composite.resource)["status"]["tcpAccess"]
    assert status["port"] == 10003 and status["host"] == "db1.example.ch"
    assert rsp.desired.composite.connection_details == {}


def test_desired_resources_of_earlier_steps_pass_through():
    req = request()
    req.desired.resources["release"].resource.update({"apiVersion": "v1", "kind": "ConfigMap"})
    rsp = call(req)
    assert "release" in rsp.desired.resources


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"pool": None}, "pool"),
        ({"gatewayAPI": "v1.3"}, "gatewayAPI"),
        ({"backend": {**INPUT["backend"], "podPort": 0}}, "backend.podPort"),
        ({"backend": {**INPUT["backend"], "port": 5432.5}}, "backend.port"),
        ({"gatewayNamespace": "Not_A_Namespace"}, "gatewayNamespace"),
        ({"gateways": [{"name": "db-1", "ports": "10-5", "capacity": 10}]}, "gateways.0.ports"),
        ({"listnerName": "typo"}, "listnerName"),
        ({"kind": "Something"}, "kind"),
        # The wrong type anywhere: refused, never converted, never an internal error.
        ({"kind": ["TCPAccess"]}, "kind"),
        ({"kind": {"name": "TCPAccess"}}, "kind"),
        ({"backend": {**INPUT["backend"], "port": True}}, "backend.port"),
        ({"enabled": 0}, "enabled"),
        ({"respectLegacyAllocations": "yes"}, "respectLegacyAllocations"),
        # Kubernetes Service names are DNS-1035 labels: a leading digit is refused.
        ({"backend": {**INPUT["backend"], "service": "5432-svc"}}, "backend.service"),
        # A patch of the XR must not land inside (or around) the status the step replaces.
        ({"patches": [{"fieldPath": "status.tcpAccess.port", "value": "port"}]}, "patches.0"),
        ({"patches": [{"fieldPath": "status", "value": "port"}]}, "patches.0"),
    ],
)
def test_bad_input_is_one_fatal_naming_the_field(change, named):
    bad = {k: v for k, v in {**INPUT, **change}.items() if v is not None}
    rsp = call(request(bad))
    [message] = fatal_messages(rsp)
    assert named in message
    assert not rsp.requirements.resources
    assert not rsp.desired.resources


POOL_INPUT = {
    "apiVersion": "tcp.fn.servala.io/v1alpha1",
    "kind": "GatewayPool",
    "pool": "postgresql",
    "namespace": NS,
    "gatewayClassName": "envoy-gateway",
    "provider": "exoscale",
    "ports": "10000-10499",
    "hostname": "db{index}.example.ch",
}


@pytest.mark.parametrize(
    ("input_", "xr", "desired_xr", "named"),
    [
        # Another step left a value of another type where this step writes its status.
        (INPUT, XR, {"status": {"tcpAccess": "legacy-string"}}, "statusPath"),
        (INPUT, XR, {"status": ["x"]}, "statusPath"),
        (POOL_INPUT, XR, {"status": {"pool": 3}}, "statusPath"),
        (
            {**INPUT, "patches": [{"fieldPath": "status.ssh.port", "value": "port"}]},
            XR,
            {"status": {"ssh": "22"}},
            "patches.0.fieldPath",
        ),
        # A tenant's XR field holding an object where the step reads a value.
        (
            {**INPUT, "enabledFromFieldPath": "spec.tcp", "enabledValue": "on"},
            {**XR, "spec": {"tcp": {"nested": 1}}},
            {},
            "enabledFromFieldPath",
        ),
        (
            {**INPUT, "enabledFromFieldPath": "spec.tcp"},
            {**XR, "spec": {"tcp": ["on"]}},
            {},
            "enabledFromFieldPath",
        ),
        (
            {
                **INPUT,
                "templatesReadTenantFields": True,
                "backend": {**INPUT["backend"], "service": "{spec.service}"},
            },
            {**XR, "spec": {"service": {"name": "pg"}}},
            {},
            "backend.service",
        ),
        # A rendered Service name is a DNS-1035 label too.
        (
            {
                **INPUT,
                "templatesReadTenantFields": True,
                "backend": {**INPUT["backend"], "service": "{spec.service}"},
            },
            {**XR, "spec": {"service": "5432-svc"}},
            {},
            "backend.service",
        ),
    ],
)
def test_a_field_of_the_wrong_type_in_the_xr_is_one_fatal_naming_the_field(
    input_, xr, desired_xr, named
):
    req = request(input_, xr=xr, observed={"tcp-claim-10003": claim(10003, holder="u-db")})
    req.desired.composite.resource.update({**XR, **desired_xr})
    rsp = call(req)
    [message] = fatal_messages(rsp)
    assert message.startswith(named) and "internal error" not in message, message
    assert not rsp.desired.resources


def test_an_exception_in_the_core_is_a_fatal_result_not_a_grpc_error(monkeypatch):
    def boom(*_):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(fn.tenant, "run", boom)
    [message] = fatal_messages(call(request()))
    assert "kaboom" in message


def test_a_crossplane_that_reads_required_resources_is_not_asked_twice():
    req = request()
    req.meta.capabilities.append(fnv1.Capability.CAPABILITY_REQUIRED_RESOURCES)
    rsp = call(req)
    assert set(rsp.requirements.resources) == FIRST_LOOKUPS
    assert not rsp.requirements.extra_resources  # v2 would answer both: every lookup twice


def test_a_repeated_request_is_answered_from_the_cache_with_the_same_response():
    observed = {"tcp-claim-10003": claim(10003, holder="u-db")}
    req = request(observed=observed)
    req.required_resources["tcp-gateway-shard-1"].items.add().resource.update(gateway(1))
    runner = fn.FunctionRunner(cache_size=8)
    fresh = fn.FunctionRunner(cache_size=0)
    first = asyncio.run(runner.RunFunction(req, None))
    again = asyncio.run(runner.RunFunction(req, None))
    assert again == first == asyncio.run(fresh.RunFunction(req, None))
    assert len(runner.responses) == 1
    # A different request is computed, not served from the cache.
    req.observed.composite.resource["metadata"]["name"] = "other-db"
    other = asyncio.run(runner.RunFunction(req, None))
    assert other != first and len(runner.responses) == 2


def test_a_waiting_tenants_repeated_request_still_renews_its_ticket_when_due():
    # Queued on a full shard, with its ticket renewed at 10:00: the request stays the same
    # while it waits, but the answer changes with the time (the renewal falls due at 10:07:30).
    had = ticket("u-db", "2026-11-26T09:00:00Z", renewed="2026-11-26T10:00:00.000000Z")
    req = request(observed={"tcp-ticket": had})
    lookups = {
        "tcp-claims-own": [],
        "tcp-gateways-accepting": [gateway(1, capacity=2, ports="10000-10001")],
        "tcp-claims-shard-1": [claim(10000)],
        "tcp-placed-shard-1": [],
        "tcp-tickets": [had],
    }
    for name, objects in lookups.items():
        req.required_resources[name].SetInParent()
        for obj in objects:
            req.required_resources[name].items.add().resource.update(obj)
    clock = [datetime.datetime(2026, 11, 26, 10, 1, tzinfo=datetime.UTC)]
    runner = fn.FunctionRunner(cache_size=8, clock=lambda: clock[0])

    def renewed() -> str:
        rsp = asyncio.run(runner.RunFunction(req, None))
        [reason] = [c.reason for c in rsp.conditions if c.type == "TCPAccessReady"]
        assert reason == "PoolFull"
        return rsp.desired.resources["tcp-ticket"].resource["spec"]["renewTime"]

    assert renewed() == "2026-11-26T10:00:00.000000Z"
    clock[0] = datetime.datetime(2026, 11, 26, 10, 8, tzinfo=datetime.UTC)
    assert renewed() == "2026-11-26T10:08:00.000000Z"


def test_the_cache_is_bounded():
    runner = fn.FunctionRunner(cache_size=2)
    for name in ("a", "b", "c"):
        asyncio.run(runner.RunFunction(request(xr={**XR, "metadata": {"name": name}}), None))
    assert len(runner.responses) == 2


def large_request(name: str, size: int) -> fnv1.RunFunctionRequest:
    """A tenant request that carries `size` bytes of an earlier step's desired state: its
    response carries them too. The tenant chooses how much (its XR's spec)."""
    req = request(xr={**XR, "metadata": {"name": name}})
    blob = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    blob["data"] = {"payload": "x" * size}
    req.desired.resources["earlier-step"].resource.update(blob)
    return req


def test_the_cache_is_bounded_by_the_bytes_of_its_responses():
    runner = fn.FunctionRunner(cache_size=4096, cache_bytes=1 << 20)
    for n in range(40):
        asyncio.run(runner.RunFunction(large_request(f"db-{n}", 60_000), None))
        assert runner.responses.bytes <= 1 << 20
    assert 10 <= len(runner.responses) <= 17  # about 60 kB each in 1 MiB
    # The newest are kept: the same request again is a hit, the oldest is computed anew.
    again = asyncio.run(runner.RunFunction(large_request("db-39", 60_000), None))
    assert again is runner.responses.get_or_compute(large_request("db-39", 60_000), None)


def test_a_response_above_an_eighth_of_the_budget_is_never_kept():
    runner = fn.FunctionRunner(cache_size=4096, cache_bytes=1 << 20)
    asyncio.run(runner.RunFunction(large_request("db-big", 200_000), None))
    assert len(runner.responses) == 0 and runner.responses.bytes == 0


def test_tickets_are_read_with_only_the_fields_the_queue_needs():
    from function import tickets
    from function.builders.lease import ticket
    from function.builders.object import wrap

    lease = ticket(name="tcp-postgresql-wait-a", namespace=NS, pool="postgresql", owner="a",
                   holder="uid-a", renewed="2026-11-26T10:05:00.000000Z", ttl=600)  # fmt: skip
    obj = wrap(lease, provider_config="kubernetes")
    obj["metadata"].update(creationTimestamp="2026-11-26T10:00:00Z", managedFields=[{}] * 50)
    obj["status"] = {"atProvider": {"manifest": lease}}
    req = request()
    req.required_resources["tcp-tickets"].items.add().resource.update(obj)
    [read] = fn.read(req).lookups["tcp-tickets"]
    assert read == {
        "kind": "Object",
        "metadata": {"name": "tcp-postgresql-wait-a", "creationTimestamp": "2026-11-26T10:00:00Z"},
        "spec": {
            "forProvider": {
                "manifest": {
                    "kind": "Lease",
                    "spec": {
                        "holderIdentity": "uid-a",
                        "renewTime": "2026-11-26T10:05:00.000000Z",
                        "leaseDurationSeconds": 600.0,
                    },
                }
            }
        },
    }
    [read_ticket] = tickets.line([read], NS)
    assert read_ticket == tickets.Ticket("2026-11-26T10:00:00Z", "tcp-postgresql-wait-a", "uid-a")
    assert (read_ticket.renewed, read_ticket.ttl) == (
        tickets.parse_time("2026-11-26T10:05:00Z"),
        600,
    )
    # A path through a field of another type is skipped, not an error.
    req = request()
    req.required_resources["tcp-tickets"].items.add().resource.update(
        {"kind": "Lease", "spec": "junk", "metadata": {"name": 7}}
    )
    assert list(fn.read(req).lookups["tcp-tickets"]) == [
        {"kind": "Lease", "metadata": {"name": 7.0}}
    ]


def test_a_listener_set_its_gateway_refused_fills_no_slot_over_grpc():
    """Lookups keep what the Gateway reported: a listener set it refused holds no port."""
    from function import pool
    from tests.factories import tenant_listener_set

    pool_input = {**POOL_INPUT, "ports": "10000-10049", "maxShards": 5}
    observed = {"gateway-1": gateway(1)}
    req = request(input_=pool_input, xr={**XR, "kind": "XGatewayPool"}, observed=observed)
    req.required_resources[pool.CLAIMS].items.add().resource.update(claim(10000))
    req.required_resources[pool.TICKETS].SetInParent()
    found = req.required_resources[pool.LISTENER_SETS].items
    found.add().resource.update(tenant_listener_set(10000, accepted=True))
    found.add().resource.update(tenant_listener_set(10001, namespace="b", accepted=False))
    rsp = call(req)
    status = resource.struct_to_dict(rsp.desired.composite.resource)["status"]["pool"]
    assert status["shards"][0]["used"] == 1
