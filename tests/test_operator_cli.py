"""The `tcp-access` CLI, run for real: click's runner invokes the real command, which talks
through the official `kubernetes` client to a small HTTP API server (tests/fakekube.py)
serving the simulator's in-memory cluster.

The pool under test (exoscale sizing: 10 listeners per shard, 9 tenant slots):

    shard 1  postgresql-1  10000-10009  claims 10000 10001 10002  listeners 10000 (x2) 10001 10005
    shard 2  postgresql-2  10010-10019  claims 10010              listeners 10010
    shard 3  postgresql-3  malformed ports annotation

so port 10002 is claimed but not listened on, 10005 listened on but not claimed, and 10000
has two listeners (a conflict). Another pool (redis) shares the namespace and must not leak
in; a wrapped pool (forgejo) has its claims in provider-kubernetes Objects.
"""

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from function import claims as claimlib
from function import labels, pool, resting
from function.builders.gateway import shard_gateway
from function.builders.lease import ticket as build_ticket
from function.builders.listenerset import listener_set
from function.builders.object import wrap
from function.flavours import FLAVOURS
from function.inputs import GatewayPool
from function.operator import assignments as assigning
from function.operator import report as reporting
from function.operator.cli import cli
from function.shards import ShardError, from_gateway
from function.step import StepRequest
from tests import factories
from tests.fakekube import LEASES, RESOURCES, X_LISTENER_SETS, FakeKube, closed_port_url
from tests.fakekube import write_kubeconfig as kubeconfig_for
from tests.simulator import Cluster

NS = factories.NS
POOL = "postgresql"
CAPACITY = 10


def shard(index: int, *, pool_name: str = POOL, programmed: bool = True) -> dict:
    start = 10000 + (index - 1) * CAPACITY
    gateway = shard_gateway(
        name=f"{pool_name}-{index}",
        namespace=NS,
        pool=pool_name,
        index=index,
        gateway_class="envoy-gateway",
        hostname=f"db{index}.example.ch",
        ports=(start, start + CAPACITY - 1),
        capacity=CAPACITY,
        used=0,
        accepting=True,
        allowed_listeners={"from": "All"},
        infrastructure={},
    )
    gateway["status"] = {
        "addresses": [{"type": "IPAddress", "value": f"203.0.113.{index}"}],
        "conditions": [{"type": "Programmed", "status": "True" if programmed else "False"}],
    }
    return gateway


def tenant_listener(name: str, namespace: str, gateway: str, port: int, api: str = "v1.6"):
    return listener_set(
        flavour=FLAVOURS[api],
        name=f"{name}-tcp-listenerset",
        namespace=namespace,
        labels={labels.POOL: POOL},
        gateway=gateway,
        gateway_namespace=NS,
        listener_name="postgresql",
        port=port,
    )


def xr_owner(kind: str, name: str, api: str = "vshn.appcat.vshn.io/v1") -> dict:
    """The controller reference Crossplane puts on what an XR composes."""
    return {"apiVersion": api, "kind": kind, "name": name, "uid": f"uid-{name}",
            "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def reported(listener_set: dict, state: str) -> dict:
    """A listener set as its Gateway reports it: Programmed, or refused for `state`."""
    ok = state == "Programmed"
    listener_set["status"] = {
        "conditions": [
            {"type": "Accepted", "status": "True" if ok else "False", "reason": state},
            {"type": "Programmed", "status": "True" if ok else "False", "reason": state},
        ]
    }
    return listener_set


def populate(cluster: Cluster) -> Cluster:
    cluster.create(shard(1))
    cluster.create(shard(2, programmed=False))
    broken = shard(3)
    broken["metadata"]["annotations"][labels.PORTS] = "not-a-range"
    cluster.create(broken)
    for port, index in ((10000, 1), (10001, 1), (10002, 1), (10010, 2)):
        held = factories.claim(port, index, holder=f"uid-{port}")
        held["metadata"]["ownerReferences"] = [xr_owner("XVSHNPostgreSQL", f"pg-{port}")]
        cluster.create(held)
    cluster.create(tenant_listener("a", "vshn-a", "postgresql-1", 10000))
    cluster.create(
        reported(tenant_listener("b", "vshn-b", "postgresql-1", 10001, api="v1.4"), "Programmed")
    )
    # A Namespaced XR's listener: no claim; its XR controls it.
    stray = tenant_listener("stray", "vshn-stray", "postgresql-1", 10005)
    stray["metadata"]["ownerReferences"] = [xr_owner("PostgreSQL", "stray", api="v1")]
    cluster.create(stray)
    cluster.create(tenant_listener("twin", "vshn-twin", "postgresql-1", 10000))
    # Placement Gateway: in the gateway namespace, parentRef without a namespace.
    same_namespace = reported(tenant_listener("c", NS, "postgresql-2", 10010), "Conflicted")
    del same_namespace["spec"]["parentRef"]["namespace"]
    cluster.create(same_namespace)
    # Not this pool's: another Gateway, and another pool in the same namespace.
    cluster.create(tenant_listener("elsewhere", "vshn-x", "some-other-gateway", 10003))
    cluster.create(shard(1, pool_name="redis"))
    cluster.create(factories.claim(10004, 1, pool="redis"))
    # A wrapped pool: claims in Objects, plus a wrapped Gateway carrying the pool label too.
    cluster.create(shard(1, pool_name="forgejo"))
    for port in (10000, 10001):
        obj = factories.claim(port, 1, pool="forgejo", wrapped=True)
        obj["metadata"]["ownerReferences"] = [xr_owner("XVSHNForgejo", f"git-{port}")]
        obj["status"] = {"atProvider": {"manifest": _live(obj)}}
        cluster.create(obj)
    cluster.create(wrap(shard(1, pool_name="forgejo"), provider_config="kubernetes"))
    return cluster


def _live(obj: dict) -> dict:
    """What provider-kubernetes reports for the wrapped object: server metadata included."""
    manifest = json.loads(json.dumps(claimlib.inner_manifest(obj)))
    manifest["metadata"].update(uid="inner-uid", resourceVersion="7", managedFields=[{}])
    return manifest


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No proxy, no ambient kubeconfig, no in-cluster config: each test says what it uses."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "TCP_ACCESS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return populate(Cluster(seed=1))


@pytest.fixture
def api(cluster):
    with FakeKube(cluster) as server:
        yield server


@pytest.fixture
def kubeconfig(api, tmp_path) -> Path:
    return api.write_kubeconfig(tmp_path / "kubeconfig")


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert "Traceback" not in result.output
    return result


def report_json(kubeconfig: Path, *extra: str, pool_name: str = POOL) -> dict:
    result = run(
        "report", "-p", pool_name, "-n", NS, "--kubeconfig", str(kubeconfig), "-o", "json", *extra
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# -- snapshot --------------------------------------------------------------------------------


def test_snapshot_round_trips_through_the_functions_parsers(api, kubeconfig):
    result = run("snapshot", "--pool", POOL, "--namespace", NS, "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))

    gateways = [d for d in docs if d["kind"] == "Gateway"]
    leases = [d for d in docs if d["kind"] == "Lease"]
    assert len(docs) == len(gateways) + len(leases)
    assert [from_gateway(g).index for g in gateways[:2]] == [1, 2]
    assert from_gateway(gateways[0]).address == "203.0.113.1"
    with pytest.raises(ShardError, match=labels.PORTS):
        from_gateway(gateways[2])  # the malformed shard is there for render to skip
    assert [claimlib.parse(c).port for c in leases] == [10000, 10001, 10002, 10010]
    assert {claimlib.parse(c).holder for c in leases} == {
        f"uid-{p}" for p in (10000, 10001, 10002, 10010)
    }

    for doc in docs:
        assert doc["apiVersion"] in ("gateway.networking.k8s.io/v1", "coordination.k8s.io/v1")
        assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}
        assert doc["metadata"]["labels"][labels.POOL] == POOL  # no other pool leaks in
    selector = f"labelSelector={labels.POOL}%3D{POOL}"
    assert all(selector in request for request in api.requests)


def test_snapshot_wrapped_lists_the_pools_objects(api, kubeconfig):
    result = run(
        "snapshot", "-p", "forgejo", "-n", NS, "--wrapped", "--kubeconfig", str(kubeconfig)
    )
    assert result.exit_code == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))

    assert [d["kind"] for d in docs] == ["Gateway", "Object", "Object", "Object"]
    claims = [claimlib.parse(d) for d in docs if d["kind"] == "Object"]
    assert [c.port for c in claims if c] == [10000, 10001]
    objects = [d for d in docs if d["kind"] == "Object"]
    assert all("namespace" not in d["metadata"] for d in objects)  # cluster-scoped
    live = [d["status"]["atProvider"]["manifest"] for d in objects if "status" in d]
    assert live and all("uid" not in m["metadata"] for m in live)
    assert any(
        r.startswith("/apis/kubernetes.crossplane.io/v1alpha2/objects?") for r in api.requests
    )


def test_snapshot_follows_continue_tokens(cluster, tmp_path):
    with FakeKube(cluster, page_size=1) as server:
        config = server.write_kubeconfig(tmp_path / "kubeconfig")
        result = run("snapshot", "-p", POOL, "-n", NS, "--kubeconfig", str(config))
    assert result.exit_code == 0, result.stderr
    assert len(list(yaml.safe_load_all(result.stdout))) == 3 + 4
    assert any("continue=" in request for request in server.requests)


# -- report ----------------------------------------------------------------------------------


def test_report_counts_per_shard_and_totals(kubeconfig):
    data = report_json(kubeconfig)

    first, second = data["shards"]
    assert first == {
        "index": 1,
        "gateway": "postgresql-1",
        "hostname": "db1.example.ch",
        "address": "203.0.113.1",
        "ports": "10000-10009",
        "capacity": 10,
        "slots": 9,
        "used": 3,
        "free": 6,
        "programmed": True,
        "accepting": True,
        "listeners": 1 + 4,
        "nodePorts": 1 + 3,
    }
    assert (second["used"], second["free"], second["programmed"], second["nodePorts"]) == (
        1,
        8,
        False,
        2,
    )
    assert data["totals"] == {
        "shards": 2,
        "capacity": 20,
        "slots": 18,
        "used": 4,
        "free": 14,
        "listeners": 5 + 2,
    }
    assert data["nodePorts"] == 6
    [skipped] = data["skippedShards"]
    assert skipped["gateway"] == f"{NS}/postgresql-3" and labels.PORTS in skipped["reason"]
    assert data["missingKinds"] == []


def test_report_finds_drift_both_ways_and_conflicts(kubeconfig):
    data = report_json(kubeconfig)

    assert data["claimedNotListening"] == [
        {"shard": 1, "gateway": "postgresql-1", "port": 10002, "claim": "tcp-postgresql-10002"}
    ]
    assert data["listeningNotClaimed"] == [
        {
            "shard": 1,
            "gateway": "postgresql-1",
            "port": 10005,
            "listeners": ["ListenerSet vshn-stray/stray-tcp-listenerset"],
        }
    ]
    [conflict] = data["conflicts"]
    assert conflict["port"] == 10000 and len(conflict["listeners"]) == 2


def test_report_table(kubeconfig):
    result = run("report", "-p", POOL, "-n", NS, "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].isdigit()}
    expected = ["postgresql-1", "db1.example.ch", "203.0.113.1", "10000-10009", "10", "3", "6"]
    assert rows["1"][1:8] == expected
    assert rows["1"][-2:] == ["yes", "yes"]  # accepting, programmed
    assert rows["2"][-1] == "no"  # not programmed
    assert "NodePorts: 6 (2 shard listeners + 4 claims" in out
    assert "port 10002 on shard 1 (postgresql-1) is claimed by tcp-postgresql-10002" in out
    assert "port 10005 on shard 1 (postgresql-1) is listened on by ListenerSet" in out
    assert "Skipped shard: Gateway tcp-gateways/postgresql-3" in out


def test_report_treats_an_uninstalled_kind_as_absent(cluster, tmp_path):
    served = tuple(r for r in RESOURCES if r != X_LISTENER_SETS)
    with FakeKube(cluster, served) as server:
        data = report_json(server.write_kubeconfig(tmp_path / "kubeconfig"))
    assert data["missingKinds"] == ["XListenerSet.gateway.networking.x-k8s.io"]
    # Tenant b's listener was an XListenerSet: now its claim looks unserved.
    assert [d["port"] for d in data["claimedNotListening"]] == [10001, 10002]


def test_report_wrapped_reads_claims_from_objects(kubeconfig):
    data = report_json(kubeconfig, "--wrapped", pool_name="forgejo")
    assert data["claimKind"] == "Object"
    assert data["totals"]["used"] == 2
    assert data["unreadableClaims"] == []  # the wrapped Gateway is not a claim
    assert [d["port"] for d in data["claimedNotListening"]] == [10000, 10001]


def assignments_json(kubeconfig: Path, *extra: str, pool_name: str = POOL) -> list[dict]:
    data = report_json(kubeconfig, "--assignments", *extra, pool_name=pool_name)
    assert (data["pool"], data["namespace"]) == (pool_name, NS)
    return data["assignments"]


def test_report_assignments_lists_every_port_with_its_tenant(cluster, kubeconfig):
    rows = {row["port"]: row for row in assignments_json(kubeconfig)}
    assert sorted(rows) == [10000, 10001, 10002, 10005, 10010]
    claimed = rows[10001]
    assert {k: claimed[k] for k in ("shard", "gateway", "xr", "namespace", "claim", "holder")} == {
        "shard": 1,
        "gateway": "postgresql-1",
        "xr": "XVSHNPostgreSQL/pg-10001",
        "namespace": "vshn-b",
        "claim": "tcp-postgresql-10001",
        "holder": "uid-10001",
    }
    lease = cluster.get("coordination.k8s.io/v1", "Lease", "tcp-postgresql-10001", NS)
    assert claimed["since"] == lease["metadata"]["creationTimestamp"]
    assert isinstance(claimed["ageSeconds"], int) and claimed["ageSeconds"] >= 0
    assert {port: row["listener"] for port, row in rows.items()} == {
        10000: "several (2)",  # tenant a's and a twin on its port
        10001: "Programmed",
        10002: "none",  # claimed, nobody listens
        10005: "Pending",  # no report from its Gateway yet
        10010: "NotAccepted (Conflicted)",
    }
    # A Namespaced XR holds no claim: its listener set names it.
    assert (rows[10005]["xr"], rows[10005]["claim"]) == ("PostgreSQL/stray", "")
    assert rows[10010]["namespace"] == NS  # placement Gateway


def test_report_assignments_table(kubeconfig):
    args = ["report", "-p", POOL, "-n", NS, "--kubeconfig", str(kubeconfig), "--assignments"]
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Pool {POOL} in namespace {NS}: 5 ports assigned"
    assert lines[2].split() == ["SHARD", "PORT", "XR", "NAMESPACE", "AGE", "LISTENER", "CLAIM"]
    rows = {line.split()[1]: line.split() for line in lines[3:]}
    assert rows["10001"][2:4] == ["XVSHNPostgreSQL/pg-10001", "vshn-b"]
    assert rows["10001"][5:] == ["Programmed", "tcp-postgresql-10001"]
    assert rows["10002"][3] == "-" and rows["10002"][5] == "none"


def test_report_assignments_wrapped_names_the_xr_of_each_object(kubeconfig):
    rows = assignments_json(kubeconfig, "--wrapped", pool_name="forgejo")
    assert [(r["port"], r["xr"], r["claim"]) for r in rows] == [
        (10000, "XVSHNForgejo/git-10000", "tcp-forgejo-10000"),
        (10001, "XVSHNForgejo/git-10001", "tcp-forgejo-10001"),
    ]


def test_assignment_ages_read_like_kubectls():
    now = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
    held = factories.claim(10003, 1)
    held["metadata"]["creationTimestamp"] = "2026-11-24T11:00:00Z"
    [row] = assigning.build(NS, [shard(1)], [held], [], now)
    assert (row.since, row.ageSeconds, row.listener) == ("2026-11-24T11:00:00Z", 176400, "none")
    ages = [assigning.age(s) for s in (None, 59, 61, 7200, 176400)]
    assert ages == ["-", "59s", "1m", "2h", "2d"]


# -- errors ----------------------------------------------------------------------------------


def test_missing_pool_exits_3(kubeconfig):
    result = run("report", "-p", "nope", "-n", NS, "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 3
    assert result.stderr.startswith(f"tcp-access: pool nope not found in namespace {NS}")
    assert result.stdout == ""


def test_unreachable_cluster_exits_2_with_one_line(tmp_path):
    url = closed_port_url()
    config = kubeconfig_for(tmp_path / "kubeconfig", {"fake": url})
    result = run("report", "-p", POOL, "-n", NS, "--kubeconfig", str(config))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"tcp-access: cannot reach the Kubernetes API at {url}: ")
    assert result.stderr.count("\n") == 1


def test_kubeconfig_env_and_context(api, tmp_path, monkeypatch):
    config = api.write_kubeconfig(tmp_path / "kubeconfig", down=closed_port_url())
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert run("snapshot", "-p", POOL, "-n", NS).exit_code == 0
    down = run("snapshot", "-p", POOL, "-n", NS, "--context", "down")
    assert down.exit_code == 2 and "cannot reach" in down.stderr
    unknown = run("snapshot", "-p", POOL, "-n", NS, "--context", "nowhere")
    assert unknown.exit_code == 2 and "cannot load kubeconfig" in unknown.stderr


def test_no_kubeconfig_exits_2():
    result = run("snapshot", "-p", POOL, "-n", NS)
    assert result.exit_code == 2
    assert result.stderr.startswith("tcp-access: no kubeconfig:")


def test_forbidden_list_exits_2(cluster, tmp_path):
    with FakeKube(cluster, forbidden=frozenset({LEASES.plural})) as server:
        config = server.write_kubeconfig(tmp_path / "kubeconfig")
        result = run("report", "-p", POOL, "-n", NS, "--kubeconfig", str(config))
    assert result.exit_code == 2
    assert "refused to list leases.coordination.k8s.io: 403 Forbidden" in result.stderr


def test_console_script_reports_unreachable_without_traceback(tmp_path):
    config = kubeconfig_for(tmp_path / "kubeconfig", {"fake": closed_port_url()})
    script = Path(sys.executable).with_name("tcp-access")
    done = subprocess.run(
        [str(script), "snapshot", "-p", POOL, "-n", NS, "--kubeconfig", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "tcp-access: cannot reach the Kubernetes API at http://127.0.0.1:"
    )
    assert "Traceback" not in done.stderr and done.stdout == ""


# -- plan ------------------------------------------------------------------------------------


def shards_the_pool_step_makes(provider: str, headroom: int, per_shard: list[int]) -> int:
    """Feed the pool step the plan's claims directly: the shard count it settles on."""
    spec = GatewayPool.model_validate(
        {
            "pool": POOL,
            "namespace": NS,
            "gatewayClassName": "envoy-gateway",
            "provider": provider,
            "ports": "10000-10499",
            "hostname": "db{index}.example.ch",
            "headroom": headroom,
        }
    )
    claims = [
        factories.claim(spec.slice(index)[0] + n, index)
        for index, used in enumerate(per_shard, start=1)
        for n in range(used)
    ]
    lookups = {pool.CLAIMS: claims, pool.LISTENER_SETS: [], pool.TICKETS: []}
    result = pool.run(spec, StepRequest(xr={}, lookups=lookups))
    return result.status["totals"]["shards"]


def test_plan_exoscale_matches_the_pool_step():
    args = ["plan", "--tenants", "100", "--provider", "exoscale", "--headroom", "3"]
    result = run(*args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["capacity"] == 10 and data["tenantSlotsPerShard"] == 9
    assert data["placed"] == 100 and data["unplaced"] == 0
    # 11 shards hold 99; the 100th tenant and a headroom of 3 need a 12th.
    assert data["publicIPs"] == len(data["shards"]) == 12
    assert data["nodePorts"] == 100 + 12
    assert data["free"] == 12 * 9 - 100 >= 3
    per_shard = [s["used"] for s in data["shards"]]
    assert per_shard == [9] * 11 + [1]  # lowest shard with room first
    assert shards_the_pool_step_makes("exoscale", 3, per_shard) == 12

    text = run(*args).stdout
    assert "Public IPs:      12" in text and "NodePorts:       112" in text


def test_plan_when_the_pool_cannot_hold_everyone():
    result = run(
        "plan", "--tenants", "20", "--provider", "exoscale", "--max-shards", "2", "-o", "json"
    )
    data = json.loads(result.stdout)
    assert (data["placed"], data["unplaced"], data["publicIPs"]) == (18, 2, 2)
    assert any("maxShards 2" in w for w in data["warnings"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--provider", "exoscale", "--capacity", "11"],
            "capacity: 11 exceeds the exoscale limit of 10",
        ),
        (["--provider", "custom"], "capacity: required when provider is custom"),
        (
            ["--provider", "cloudscale", "--headroom", "-1"],
            "headroom (--headroom): Input should be",
        ),
        (
            ["--provider", "exoscale", "--min-shards", "3", "--max-shards", "2"],
            "minShards: 3 is above",
        ),
    ],
)
def test_plan_rejects_bad_figures(args, message):
    result = run("plan", "--tenants", "10", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("tcp-access: invalid figures: ")
    assert message in result.stderr
    assert result.stdout == ""


# -- the pure report, on objects a cluster should not hold -------------------------------------


def test_report_build_flags_duplicates_orphans_and_strays():
    twin = shard(1)
    twin["metadata"]["name"] = "postgresql-1b"
    claims = [
        factories.claim(10003, 1),
        factories.claim(10050, 1),  # outside shard 1's 10000-10009
        factories.claim(10060, 7),  # no shard 7
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x"}},
        build_ticket(
            name="tcp-postgresql-wait-1",
            namespace=NS,
            pool=POOL,
            owner="a",
            holder="a",
            renewed="2026-11-26T10:00:00.000000Z",
            ttl=900,
        ),
    ]
    built = reporting.build(POOL, NS, [shard(1), twin], claims, [])
    assert [s.gateway for s in built.shards] == ["postgresql-1"]
    assert built.skippedShards[0].reason == "shard index 1 is also postgresql-1"
    assert built.claimsOutsideSlice == ["tcp-postgresql-10050"]
    assert built.orphanedClaims == ["tcp-postgresql-10060"]
    assert built.unreadableClaims == ["x"]
    assert built.waiting == ["tcp-postgresql-wait-1"]  # a ticket is no claim
    assert built.shards[0].used == 2 and built.node_ports == 3


def test_report_lists_resting_ports_with_their_time_left():
    freed_at = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)
    gateway = shard(1)
    record = resting.Record(
        3600, seen=frozenset({10003, 10004}), freed=((int(freed_at.timestamp()), (10001,)),)
    )
    gateway["metadata"]["annotations"].update(resting.annotations(record, 10000, 10))
    # 10003 is still claimed; 10004's claim went since the pool step looked.
    now = freed_at + datetime.timedelta(minutes=18, seconds=30)
    built = reporting.build(POOL, NS, [gateway], [factories.claim(10003, 1)], [], now=now)
    assert [(r.port, r.secondsLeft) for r in built.resting] == [(10001, 2490), (10004, None)]
    text = reporting.render_table(built)
    assert "Resting: port 10001 on shard 1 (postgresql-1), 41m30s left" in text
    assert "Resting: port 10004 on shard 1 (postgresql-1), freed since the pool step" in text
    gateway["metadata"]["annotations"][labels.PORTS_FREED] = "garbled"
    built = reporting.build(POOL, NS, [gateway], [], [], now=now)
    assert built.resting == [] and labels.PORTS_FREED in built.unreadableRecords[0]
