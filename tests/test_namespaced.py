"""Crossplane v2 Namespaced XRs: no claim in the gateway namespace, optimistic placement,
and the Gateway API rule that the oldest listener on a port wins (the weaker guarantee)."""

import base64
import random

from function import allocation, labels, metrics
from function.fn import FunctionRunner
from tests.factories import NS
from tests.simulator import Crossplane, Step
from tests.world import LISTENER_NAMESPACE, XR_API, XR_KIND, World, tenant_input

NAMESPACED = {
    "backend": {
        "namespace": "{metadata.namespace}",
        "service": "postgresql-rw",
        "port": 5432,
        "podSelector": {"cnpg.io/cluster": "postgresql"},
    },
    "connectionSecret": {"name": "{metadata.name}-tcp-access"},
}


class NamespacedWorld(World):
    def __init__(self, **kwargs):
        super().__init__(mode="v2", wrap=False, **NAMESPACED, **kwargs)

    def create_tenant(self, name: str):
        namespace = f"team-{name}"
        self.cluster.ensure_namespace(namespace, LISTENER_NAMESPACE)  # as the platform does
        ref = self.sim.create_xr(XR_API, XR_KIND, name, namespace=namespace, spec={})
        self.tenants[name] = ref
        return ref

    def listener_sets(self, name: str) -> list[dict]:
        ns = f"team-{name}"
        return self.cluster.list("gateway.networking.k8s.io/v1", "ListenerSet", ns)


def test_namespaced_tenants_get_distinct_ports_without_claims():
    world = NamespacedWorld()
    world.add_shard(1)
    for name in ("a", "b", "c"):
        world.create_tenant(name)
    world.settle(4)
    assert world.claims() == []
    ports = world.ports()
    assert None not in ports.values() and len(set(ports.values())) == 3
    for name in ports:
        assert world.condition(name) == ("True", "Ready"), name
        [ls] = world.listener_sets(name)
        assert ls["metadata"]["name"].endswith(str(ports[name]))
    traffic = world.traffic()
    assert {backend[0] for backend in traffic.values()} == {"team-a", "team-b", "team-c"}
    world.check()


def test_a_race_is_settled_by_the_older_listener_and_the_loser_moves():
    world = NamespacedWorld()
    world.add_shard(1, capacity=10, ports="10000-10009", own_port=10009)
    a, b = _two_alike(world)
    counted = {result: claims_counted(result) for result in ("claimed", "lost")}
    world.round([a, b], same_snapshot=True)  # both place on the same port
    first = {n: world.listener_sets(n)[0]["spec"]["listeners"][0]["port"] for n in (a, b)}
    assert first[a] == first[b]
    older = min((a, b), key=lambda n: world.listener_sets(n)[0]["metadata"]["creationTimestamp"])
    newer = b if older == a else a
    world.settle(4, [a, b])
    assert world.port(older) == first[older]  # the older never moves
    assert world.port(newer) != first[older]
    assert world.condition(newer) == ("True", "Ready")
    world.check()
    # What the function process counted: three placements (two alike, the loser's move),
    # and the loss, counted once although the loser reconciled several times.
    assert claims_counted("claimed") - counted["claimed"] == 3
    assert claims_counted("lost") - counted["lost"] == 1


def claims_counted(result: str) -> float:
    """tcp_access_claims_total{result} of this test process's function (the simulator runs
    it in-process)."""
    return (
        metrics.REGISTRY.get_sample_value(
            "tcp_access_claims_total", {"pool": "postgresql", "result": result}
        )
        or 0.0
    )


def test_connection_secret_holds_the_details():
    world = NamespacedWorld()
    world.add_shard(1)
    world.create_tenant("a")
    world.settle(3)
    secret = world.cluster.get("v1", "Secret", "a-tcp-access", "team-a")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "POSTGRESQL_GATEWAY_HOST": "db1.example.ch",
        "POSTGRESQL_GATEWAY_PORT": str(world.port("a")),
    }


def test_a_namespaced_xr_must_keep_its_backend_in_its_namespace():
    world = World(mode="v2", wrap=False)
    world.add_shard(1)
    world.cluster.ensure_namespace("team-x", {})
    ref = world.sim.create_xr(XR_API, XR_KIND, "x", namespace="team-x", spec={})
    plan = world.sim.compute(ref)
    [fatal] = [r for r in plan.results if r.severity == "Fatal" or "FATAL" in str(r.severity)]
    assert "backend.namespace" in fatal.message


def test_an_edited_listener_set_is_put_back_and_the_established_tenant_stays():
    world = NamespacedWorld(seed=3)
    world.add_shard(1, capacity=10, ports="10000-10009", own_port=10009)
    for name in ("mallory", "victim"):
        world.create_tenant(name)
        world.settle(3, [name])
    mallory, victim = world.port("mallory"), world.port("victim")
    assert world.condition("victim") == ("True", "Ready")
    # The tenant edits its own, older listener set onto the victim's port, and binds a
    # route of its own to it: the Gateway gives the port to the older listener.
    [stolen] = world.listener_sets("mallory")
    stolen["spec"]["listeners"][0]["port"] = victim
    world.cluster.update(stolen)
    world.cluster.create(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "TCPRoute",
            "metadata": {"name": "steal", "namespace": "team-mallory"},
            "spec": {
                "parentRefs": [
                    {
                        "group": "gateway.networking.k8s.io",
                        "kind": "ListenerSet",
                        "name": stolen["metadata"]["name"],
                        "sectionName": "postgresql",
                    }
                ],
                "rules": [{"backendRefs": [{"name": "fake-postgres", "port": 5432}]}],
            },
        }
    )
    world.controllers()
    assert world.traffic()[(NS, "postgresql-1", victim)][0] == "team-mallory"
    world.settle(4)
    assert world.ports() == {"mallory": mallory, "victim": victim}  # nobody moved
    assert world.condition("victim") == ("True", "Ready")
    assert world.traffic()[(NS, "postgresql-1", victim)] == ("team-victim", "postgresql-rw", 5432)
    assert [ls["spec"]["listeners"][0]["port"] for ls in world.listener_sets("mallory")] == [
        mallory
    ]
    world.check()


def test_an_inert_labelled_listener_set_does_not_fill_the_pool():
    world = NamespacedWorld(seed=4)
    world.add_shard(1, capacity=10, ports="10000-10009", own_port=10009)
    world.cluster.ensure_namespace("team-mallory", {})
    # Labelled for the shard, every port, but its parent is a Gateway of that name in the
    # tenant's own namespace: no shard Gateway carries it.
    world.cluster.create(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "ListenerSet",
            "metadata": {
                "name": "decoy",
                "namespace": "team-mallory",
                "labels": {labels.POOL: "postgresql", labels.SHARD: "1"},
            },
            "spec": {
                "parentRef": {"name": "postgresql-1", "namespace": "team-mallory"},
                "listeners": [
                    {"name": f"l{p}", "port": p, "protocol": "TCP"} for p in range(10000, 10009)
                ],
            },
        }
    )
    world.controllers()
    world.create_tenant("newcomer")
    world.settle(4, ["newcomer"])
    assert world.condition("newcomer") == ("True", "Ready")
    port = world.port("newcomer")
    assert world.traffic() == {(NS, "postgresql-1", port): ("team-newcomer", "postgresql-rw", 5432)}


def test_a_cluster_scoped_tenant_never_claims_a_port_a_namespaced_tenant_listens_on():
    world = NamespacedWorld(seed=5)
    world.add_shard(1, capacity=3, ports="10000-10002", own_port=10002)  # two tenant slots
    for name in ("a", "b"):
        world.create_tenant(name)
    world.settle(4)
    namespaced = {world.port("a"), world.port("b")}
    assert None not in namespaced and len(namespaced) == 2
    # A cluster-scoped XR of another kind and composition shares the pool: it has claims.
    cluster = Crossplane(
        world.cluster,
        mode="v2",
        pipeline=[Step("tcp-access", FunctionRunner(), tenant_input(wrap=False))],
        rng=random.Random(5),
    )
    world.cluster.ensure_namespace("vshn-postgresql-c", LISTENER_NAMESPACE)
    ref = cluster.create_xr(XR_API, "XVSHNRedis", "c", spec={"parameters": {}})

    def rounds(count: int):
        for _ in range(count):
            cluster.reconcile(ref)
            world.round()

    rounds(3)
    assert {int(c["metadata"]["labels"][labels.PORT]) for c in world.claims()} == set()
    conditions = cluster.get_xr(ref)["status"]["conditions"]
    assert ("TCPAccessReady", "PoolFull") in {(c["type"], c["reason"]) for c in conditions}
    world.add_shard(2, capacity=3, ports="10003-10005", own_port=10005)
    rounds(3)
    [held] = world.claims()
    assert int(held["metadata"]["labels"][labels.SHARD]) == 2
    assert cluster.get_xr(ref)["status"]["tcpAccess"]["phase"] == "Ready"
    assert {world.port("a"), world.port("b")} == namespaced
    world.check()
    cluster.close()


def test_a_damaged_port_record_is_a_warning_naming_the_field():
    world = NamespacedWorld()
    world.add_shard(1)
    world.create_tenant("a")
    world.settle(3)
    port = world.port("a")
    ref = world.tenants["a"]
    xr = world.xr("a")
    status = {**xr["status"], "tcpAccess": {**xr["status"]["tcpAccess"], "listenerPort": "x"}}
    world.cluster.update_status(ref.api_version, ref.kind, ref.name, ref.namespace, status)
    [plan] = world.reconcile(["a"])
    assert any("status.tcpAccess.listenerPort" in r.message for r in plan.results)
    world.controllers()
    assert world.port("a") == port and world.condition("a") == ("True", "Ready")
    assert world.status("a")["listenerPort"] == port  # written anew


def test_the_pool_step_grows_a_pool_of_namespaced_tenants_and_keeps_their_shards():
    world = NamespacedWorld(seed=6)
    pool_input = {
        "apiVersion": "tcp.fn.servala.io/v1alpha1",
        "kind": "GatewayPool",
        "pool": "postgresql",
        "namespace": NS,
        "gatewayClassName": "envoy-gateway",
        "provider": "exoscale",
        "ports": "10000-10999",
        "hostname": "db{index}.example.ch",
        "headroom": 3,
    }
    pool = Crossplane(
        world.cluster,
        mode="v2",
        pipeline=[Step("pool", FunctionRunner(), pool_input)],
        rng=random.Random(99),
    )
    pool_xr = pool.create_xr("tcp.example.org/v1", "XGatewayPool", "postgresql")

    def shards() -> set[str]:
        found = world.cluster.list("gateway.networking.k8s.io/v1", "Gateway", NS)
        return {g["metadata"]["name"] for g in found}

    def reconcile_pool():
        plan = pool.reconcile(pool_xr)
        assert not plan.fatal, plan.results
        world.controllers()

    reconcile_pool()
    names = [f"n{i:02d}" for i in range(12)]  # nine tenant slots per shard
    for name in names:
        world.create_tenant(name)
    for _ in range(8):
        world.round([n for n in names if world.port(n) is None])
        reconcile_pool()
    ports = world.ports()
    assert None not in ports.values(), ports
    assert shards() == {"postgresql-1", "postgresql-2"}
    pool_status = pool.get_xr(pool_xr)["status"]["pool"]
    assert pool_status["totals"]["used"] == 12
    # Tenants leave shard 1: shard 2 still carries listeners, so it stays.
    for name in [n for n in names if world.status(n)["shard"] == 1][:6]:
        world.delete_tenant(name)
    for _ in range(3):
        reconcile_pool()
        world.round()
    assert "postgresql-2" in shards()
    for name in world.tenants:
        assert world.port(name) == ports[name] and world.condition(name) == ("True", "Ready")
    world.check()
    pool.close()


def _two_alike(world: NamespacedWorld) -> tuple[str, str]:
    """Two tenants whose offsets into the shard's nine free ports are the same."""
    by_offset: dict[int, str] = {}
    for i in range(60):
        name = f"r{i}"
        ref = world.create_tenant(name)
        offset = allocation.start_offset(world.sim.get_xr(ref)["metadata"]["uid"], 9)
        if offset in by_offset:
            pair = (by_offset[offset], name)
            for other in [n for n in world.tenants if n not in pair]:
                world.sim.delete_xr(world.tenants.pop(other))
            return pair
        by_offset[offset] = name
    raise AssertionError("no two tenants start alike")
