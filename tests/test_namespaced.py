"""Crossplane v2 Namespaced XRs: no claim in the gateway namespace, optimistic placement,
and the Gateway API rule that the oldest listener on a port wins (the weaker guarantee)."""

import base64

from function import allocation
from tests.world import XR_API, XR_KIND, World

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
        self.cluster.ensure_namespace(namespace, {})
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
