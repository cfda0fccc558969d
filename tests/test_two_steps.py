"""Two TCPAccess steps in one pipeline: a primary and a replica endpoint of one service, on
the pipeline simulator. Each step gets its own port, keeps it, and never touches the other
step's resources; XRs composed before steps had keys of their own keep every key."""

import importlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from function.fn import FunctionRunner
from tests.render import KEY, render
from tests.simulator import Crossplane, Step
from tests.test_namespaced import NamespacedWorld
from tests.world import World

MODES = [pytest.param("v1", id="crossplane-v1.20"), pytest.param("v2", id="crossplane-v2")]
# The code before TCPAccess steps had keys of their own: every key was tcp-claim-<port>,
# tcp-ticket, tcp-listenerset, ...
BEFORE_PER_STEP_KEYS = "7b2716c926fef950ba6e567ce0637450e422e96d"
ROOT = Path(__file__).resolve().parent.parent


def replica_input(world: World, **changes) -> dict:
    """The replica endpoint: the same service's read-only Service, listener `replica`."""
    spec = {**world.input, **changes}
    spec["listenerName"] = "replica"
    spec["backend"] = {**spec["backend"], "service": "postgresql-ro"}
    spec["connectionDetails"] = {"host": "REPLICA_HOST", "port": "REPLICA_PORT"}
    if "connectionSecret" in spec:
        spec["connectionSecret"] = {"name": "{metadata.name}-tcp-access-replica"}
    return spec


def two_steps(world: World, primary_runner=None, **replica_changes) -> None:
    """Run the world's composition as a pipeline of two TCPAccess steps."""
    world.sim.close()
    world.sim = Crossplane(
        world.cluster,
        mode=world.mode,
        rng=world.rng,
        pipeline=[
            Step("primary", primary_runner or world.runner, world.input),
            Step("replica", world.runner, replica_input(world, **replica_changes)),
        ],
    )


def endpoints(world: World, name: str, pool: str = "postgresql") -> tuple:
    """The ports of the primary and the replica endpoint, as the XR's status says: the
    second step publishes at status.tcpAccess-<pool>-<listenerName> by default."""
    status = world.xr(name).get("status") or {}
    primary = (status.get("tcpAccess") or {}).get("port")
    return primary, (status.get(f"tcpAccess-{pool}-replica") or {}).get("port")


def served_by(world: World, port: int) -> str:
    """The backend Service the Gateway sends a port's traffic to."""
    [service] = [svc for (_, _, p), (_, svc, _) in world.traffic().items() if p == port]
    return service


def object_uids(world: World, name: str) -> dict[str, str]:
    """The XR's composed objects, key -> UID: a deleted and recreated object shows."""
    return {key: obj["metadata"]["uid"] for key, obj in world.composed(name).items()}


@pytest.fixture(params=MODES)
def world(request):
    w = World(mode=request.param)
    yield w
    w.close()


@pytest.mark.parametrize("replica_pool", ["postgresql", "postgresql-replica"])
def test_two_steps_give_each_xr_two_sticky_distinct_ports(world, replica_pool):
    world.add_shard(1, capacity=20)
    if replica_pool != "postgresql":
        world.add_shard(1, capacity=20, pool=replica_pool, ports="11000-11019")
    two_steps(world, pool=replica_pool)
    names = [f"pg-{i}" for i in range(1, 6)]
    for name in names:
        world.create_tenant(name)
    world.settle(5)

    ports = {name: endpoints(world, name, replica_pool) for name in names}
    for name, (primary, replica) in ports.items():
        assert primary and replica and primary != replica, (name, primary, replica)
        assert served_by(world, primary) == "postgresql-rw"
        assert served_by(world, replica) == "postgresql-ro"
        status = world.xr(name)["status"]
        kinds = {c["type"]: c["reason"] for c in status["conditions"]}
        assert kinds["TCPAccessReady"] == kinds["TCPAccessReady-" + replica_pool + "-replica"]
        assert kinds["TCPAccessReady"] == "Ready"
    every = [port for pair in ports.values() for port in pair]
    assert len(set(every)) == len(every)
    world.check()

    primary, replica = ports["pg-1"]
    prefix = f"tcp-{replica_pool}-replica"
    assert set(world.composed("pg-1")) == {
        f"tcp-claim-{primary}",
        "tcp-listenerset",
        "tcp-route",
        "tcp-networkpolicy",
        f"{prefix}-claim-{replica}",
        f"{prefix}-listenerset",
        f"{prefix}-route",
        f"{prefix}-networkpolicy",
    }

    objects = {name: object_uids(world, name) for name in names}
    world.settle(3)
    world.runner = FunctionRunner()  # a new function process: only the cluster remains
    two_steps(world, pool=replica_pool)
    world.settle(3)
    assert {name: endpoints(world, name, replica_pool) for name in names} == ports
    assert {name: object_uids(world, name) for name in names} == objects


def test_namespaced_xrs_place_each_endpoint_on_its_own_port():
    world = NamespacedWorld()
    world.add_shard(1, capacity=20)
    two_steps(world)
    names = ["a", "b", "c"]
    for name in names:
        world.create_tenant(name)
    world.settle(5)
    ports = {name: endpoints(world, name) for name in names}
    every = [port for pair in ports.values() for port in pair]
    assert None not in every and len(set(every)) == len(every), ports
    for primary, replica in ports.values():
        assert served_by(world, primary) == "postgresql-rw"
        assert served_by(world, replica) == "postgresql-ro"
    world.settle(3)
    assert {name: endpoints(world, name) for name in names} == ports
    world.check()


def code_before_per_step_keys(tmp_path: Path):
    """The function as it was before steps had keys of their own, loaded next to this one."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_PER_STEP_KEYS, "function"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {BEFORE_PER_STEP_KEYS} is not in this checkout's history")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp_path, filter="data")
    current = {k: m for k, m in sys.modules.items() if k == "function" or k.startswith("function.")}
    for name in current:
        del sys.modules[name]
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module("function.fn").FunctionRunner()
    finally:
        sys.path.remove(str(tmp_path))
        for name in [k for k in sys.modules if k == "function" or k.startswith("function.")]:
            del sys.modules[name]
        sys.modules.update(current)


def test_an_xr_composed_before_keeps_every_key_name_and_port_when_a_second_step_joins(
    world, tmp_path
):
    old = code_before_per_step_keys(tmp_path)
    world.add_shard(1, capacity=20)
    world.sim.close()
    world.sim = Crossplane(
        world.cluster,
        mode=world.mode,
        rng=world.rng,
        pipeline=[Step("tcp-access", old, world.input)],
    )
    names = ["pg-1", "pg-2", "pg-3"]
    for name in names:
        world.create_tenant(name)
    world.settle(4)
    before = {name: world.composed(name) for name in names}
    ports = {name: world.port(name) for name in names}
    assert all(ports.values()) and "tcp-listenerset" in before["pg-1"]

    two_steps(world)  # the new code, with a replica endpoint added after the primary
    world.settle(5)
    for name in names:
        now = world.composed(name)
        for key, obj in before[name].items():
            if key == "tcp-ticket":
                continue  # a waiting tenant's place in line, gone once it has its port
            assert key in now, (name, key)
            assert now[key]["metadata"]["uid"] == obj["metadata"]["uid"], (name, key)
            assert now[key]["metadata"]["name"] == obj["metadata"]["name"], (name, key)
        primary, replica = endpoints(world, name)
        assert primary == ports[name]
        assert replica and replica != primary
        assert served_by(world, primary) == "postgresql-rw"
        assert served_by(world, replica) == "postgresql-ro"
    world.check()


def test_the_two_steps_example_renders_both_endpoints_apart():
    docs = render(ROOT / "examples" / "two-steps", mode="v2")
    [xr] = [d for d in docs if d["kind"] == "XVSHNPostgreSQL"]
    assert xr["status"]["tcpAccess"]["port"] == 10083
    assert xr["status"]["tcpAccess-postgresql-replica"]["port"] == 10047
    composed = [d for d in docs if KEY in d.get("metadata", {}).get("annotations", {})]
    by_key = {d["metadata"]["annotations"][KEY]: d for d in composed}
    assert set(by_key) == {
        "tcp-claim-10083",
        "tcp-listenerset",
        "tcp-route",
        "tcp-networkpolicy",
        "tcp-postgresql-replica-claim-10047",
        "tcp-postgresql-replica-listenerset",
        "tcp-postgresql-replica-route",
        "tcp-postgresql-replica-networkpolicy",
    }
    names = [
        (d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in by_key.values()
    ]
    assert len(set(names)) == len(names)
    route = by_key["tcp-postgresql-replica-route"]["spec"]
    assert route["parentRefs"][0]["name"] == "pg-abc12-tcp-listenerset-postgresql-replica"
    assert route["parentRefs"][0]["sectionName"] == "replica"
    assert route["rules"][0]["backendRefs"][0]["name"] == "postgresql-ro"
    [details] = [d["data"] for d in docs if d["kind"] == "ConnectionDetails"]
    assert details["POSTGRESQL_GATEWAY_PORT"] == "10083"
    assert details["POSTGRESQL_REPLICA_GATEWAY_PORT"] == "10047"
    assert all(d["kind"] != "Result" for d in docs)  # no warning, no fatal
