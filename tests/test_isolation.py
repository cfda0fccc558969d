"""Isolation and least privilege, asserted on what the tenant step really emits.

Every platform test runs tenants through the pipeline simulator (Crossplane v1.20 wrapped in
provider-kubernetes Objects, v2 wrapped and direct; placements Backend and Gateway; Gateway
API flavours v1.4, v1.5, v1.6) and looks at the objects as the function returned them (the
manifest inside an Object) and as the cluster and the Gateway controller then treat them:

* a tenant's listener admits routes only from its own namespace and only `TCPRoute`s;
* its ReferenceGrant (placement Gateway) lets one namespace and one kind reach one Service;
* its NetworkPolicy admits only the data plane, only to the backend pods, only on the pod
  port, ingress only;
* every name is a DNS-1123 label of at most 63 characters, every label valid, and two XRs
  never share a name of one kind and namespace - for XR names and a pool name of 63
  characters too (hypothesis draws them, siblings that differ only after the 54th
  character or by a dot where the other has a dash included), and for an XR name picked to
  be another XR's object name or its name as an earlier version cut it (the attacker's
  table);
* the Gateway's data path sends each tenant's port to that tenant's Service and nowhere
  else, also with foreign routes and listener sets around.
"""

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from function import labels as labellib
from function import tenant
from function.builders.lease import claim as build_claim
from function.builders.object import wrap as build_wrap
from function.claims import claim_name
from function.inputs import TCPAccess
from function.names import LABEL_VALUE, digest, fit, is_dns_label, label_value
from tests import stats
from tests.factories import NS, gateway, run_tenant
from tests.test_pool_scenarios import PoolWorld
from tests.world import (
    LISTENER_NAMESPACE,
    TENANT_KINDS,
    XR_API,
    XR_KIND,
    World,
    controller_uid,
    object_key,
    published_port,
    tenant_input,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
NAMESPACE_NAME = "kubernetes.io/metadata.name"
DATA_PLANE = "envoy-gateway-system"
PROXY = {"app.kubernetes.io/name": "envoy-proxy"}
SERVICE, SERVICE_PORT, POD_PORT = "postgresql-rw", 5432, 5433
PODS = {"cnpg.io/cluster": "postgresql"}
TENANTS = ("alpha", "bravo", "charlie")
INTRUDER = "intruder"
MODES = [("v1", True), ("v2", True), ("v2", False)]
MODE_IDS = {("v1", True): "v1.20-wrapped", ("v2", True): "v2-wrapped", ("v2", False): "v2-direct"}
PLATFORMS = [
    pytest.param(
        (mode, wrap, placement, flavour), id=f"{MODE_IDS[mode, wrap]}-{placement}-{flavour}"
    )
    for mode, wrap in MODES
    for placement in ("Backend", "Gateway")
    for flavour in ("v1.4", "v1.5", "v1.6")
]
LISTENER_SET = {
    "v1.4": ("gateway.networking.x-k8s.io/v1alpha1", "XListenerSet"),
    "v1.5": (f"{GATEWAY_GROUP}/v1", "ListenerSet"),
    "v1.6": (f"{GATEWAY_GROUP}/v1", "ListenerSet"),
}
REFERENCE_GRANT_API = {
    "v1.4": f"{GATEWAY_GROUP}/v1beta1",
    "v1.5": f"{GATEWAY_GROUP}/v1beta1",
    "v1.6": f"{GATEWAY_GROUP}/v1",
}


def backend(namespace: str = "vshn-postgresql-{metadata.name}") -> dict:
    return {
        "namespace": namespace,
        "service": SERVICE,
        "port": SERVICE_PORT,
        "podPort": POD_PORT,
        "podSelector": PODS,
    }


class Platform:
    """Three tenants on two shards, settled; what the function emitted for each."""

    def __init__(self, mode: str, wrap: bool, placement: str, flavour: str, **extra_input):
        self.mode, self.wrap, self.placement, self.flavour = mode, wrap, placement, flavour
        extra_input.setdefault("backend", backend())
        self.world = World(
            mode=mode, wrap=wrap, flavour=flavour, placement=placement, seed=7, **extra_input
        )
        for index in (1, 2):
            self.world.add_shard(index, capacity=3)  # two tenants each
        for name in TENANTS:
            self.world.create_tenant(name)
            self.world.settle(3, [name])
        self.world.settle(2)
        stats.count("simulated reconciles", 3 * 3 + 2 * len(TENANTS))
        for name in TENANTS:
            assert self.world.condition(name) == ("True", "Ready"), (name, self.world.status(name))

    def close(self):
        self.world.close()

    def backend_namespace(self, name: str) -> str:
        return f"vshn-postgresql-{name}"

    def route_namespace(self, name: str) -> str:
        return self.backend_namespace(name) if self.placement == "Backend" else NS

    def emitted(self, name: str) -> dict[str, list[dict]]:
        """Kind -> the objects as the function returned them for this XR (unwrapped)."""
        out: dict[str, list[dict]] = {}
        for obj in self.world.composed(name).values():
            if obj["kind"] == "Object":
                assert self.wrap, f"{name} composed an Object without wrap"
                obj = obj["spec"]["forProvider"]["manifest"]
            else:
                assert not self.wrap, f"{name} composed a {obj['kind']} unwrapped on wrap"
            out.setdefault(obj["kind"], []).append(obj)
        return out

    def expected_traffic(self) -> dict:
        return {
            (NS, self.world.status(n)["gateway"], self.world.port(n)): (
                self.backend_namespace(n),
                SERVICE,
                SERVICE_PORT,
            )
            for n in TENANTS
        }


@pytest.fixture(params=PLATFORMS)
def platform(request):
    p = Platform(*request.param)
    yield p
    p.close()


def route_status(world: World, namespace: str, name: str) -> dict[str, dict[str, str]]:
    """Per parent of a TCPRoute: condition type -> (status, reason)."""
    route = world.cluster.get(f"{GATEWAY_GROUP}/v1", "TCPRoute", name, namespace)
    return {
        p["parentRef"]["name"]: {c["type"]: (c["status"], c["reason"]) for c in p["conditions"]}
        for p in (route.get("status") or {}).get("parents") or []
    }


def foreign_route(namespace: str, name: str, parent: dict, backend_ref: dict) -> dict:
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "TCPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [parent], "rules": [{"backendRefs": [backend_ref]}]},
    }


def squat(world: World, name: str, port: int, gateway: str = "postgresql-1") -> None:
    """A listener set from outside the pool on `port` behind `gateway`, with a route of its
    own: what anyone may attach to a Gateway that admits listener sets from everywhere."""
    world.cluster.ensure_namespace(INTRUDER, {})
    world.cluster.create(
        {
            "apiVersion": f"{GATEWAY_GROUP}/v1",
            "kind": "ListenerSet",
            "metadata": {"name": name, "namespace": INTRUDER},
            "spec": {
                "parentRef": {"name": gateway, "namespace": NS},
                "listeners": [{"name": "x", "port": port, "protocol": "TCP"}],
            },
        }
    )
    parent = {"group": GATEWAY_GROUP, "kind": "ListenerSet", "name": name, "sectionName": "x"}
    world.cluster.create(foreign_route(INTRUDER, name, parent, {"name": "evil", "port": 1}))


# -- the listener ---------------------------------------------------------------------------


def test_a_listener_admits_only_tcproutes_from_its_own_namespace(platform):
    api_version, kind = LISTENER_SET[platform.flavour]
    for name in TENANTS:
        emitted = platform.emitted(name)
        assert len(emitted[kind]) == 1, emitted.keys()
        assert not {"ListenerSet", "XListenerSet"} - {kind} & emitted.keys()
        listener_set = emitted[kind][0]
        status = platform.world.status(name)
        assert listener_set["apiVersion"] == api_version
        assert listener_set["metadata"]["namespace"] == platform.route_namespace(name)
        assert listener_set["spec"]["parentRef"] == {
            "group": GATEWAY_GROUP,
            "kind": "Gateway",
            "name": status["gateway"],
            "namespace": NS,
        }
        assert listener_set["spec"]["listeners"] == [
            {
                "name": "postgresql",
                "port": status["port"],
                "protocol": "TCP",
                "allowedRoutes": {
                    "namespaces": {"from": "Same"},
                    "kinds": [{"group": GATEWAY_GROUP, "kind": "TCPRoute"}],
                },
            }
        ]
        # Its own route binds to it by sectionName, and is the only one that can.
        (route,) = emitted["TCPRoute"]
        assert route["spec"]["parentRefs"] == [
            {
                "group": api_version.split("/")[0],
                "kind": kind,
                "name": listener_set["metadata"]["name"],
                "namespace": listener_set["metadata"]["namespace"],
                "sectionName": "postgresql",
            }
        ]

    # Another tenant's namespace tries to bind a route of its own to alpha's listener.
    world = platform.world
    (alpha_set,) = platform.emitted("alpha")[kind]
    intruder_ns = platform.backend_namespace("bravo")
    parent = {
        "group": api_version.split("/")[0],
        "kind": kind,
        "name": alpha_set["metadata"]["name"],
        "namespace": alpha_set["metadata"]["namespace"],
        "sectionName": "postgresql",
    }
    world.cluster.create(
        foreign_route(intruder_ns, "steal", parent, {"name": "evil", "port": SERVICE_PORT})
    )
    world.controllers()
    verdict = route_status(world, intruder_ns, "steal")[alpha_set["metadata"]["name"]]
    assert verdict["Accepted"] == ("False", "NotAllowedByListeners")
    assert world.traffic() == platform.expected_traffic()


# -- the ReferenceGrant -----------------------------------------------------------------------


def test_the_reference_grant_lets_one_namespace_reach_one_service(platform):
    world = platform.world
    grants = {name: platform.emitted(name).get("ReferenceGrant", []) for name in TENANTS}
    if platform.placement == "Backend":
        # Route and Service share a namespace: no grant at all.
        assert grants == {name: [] for name in TENANTS}
        assert world.cluster.list(REFERENCE_GRANT_API["v1.6"], "ReferenceGrant") == []
    else:
        for name, found in grants.items():
            assert len(found) == 1, (name, found)
            grant = found[0]
            assert grant["apiVersion"] == REFERENCE_GRANT_API[platform.flavour]
            assert grant["metadata"]["namespace"] == platform.backend_namespace(name)
            assert grant["spec"] == {
                "from": [{"group": GATEWAY_GROUP, "kind": "TCPRoute", "namespace": NS}],
                "to": [{"group": "", "kind": "Service", "name": SERVICE}],
            }

    # Another tenant's namespace routes to alpha's Service: not permitted.
    alpha_ns = platform.backend_namespace("alpha")
    (bravo_set,) = platform.emitted("bravo")[LISTENER_SET[platform.flavour][1]]
    bravo_ns = platform.backend_namespace("bravo")
    parent = {"name": bravo_set["metadata"]["name"], "sectionName": "postgresql"}
    steal = {"namespace": alpha_ns, "name": SERVICE, "port": SERVICE_PORT}
    world.cluster.create(foreign_route(bravo_ns, "cross", parent, steal))
    if platform.placement == "Gateway":
        # Even the gateway namespace reaches only the one Service the grant names.
        other = {"namespace": alpha_ns, "name": "postgresql-superuser", "port": SERVICE_PORT}
        world.cluster.create(foreign_route(NS, "other-service", parent, other))
    world.controllers()
    for namespace, name in [(bravo_ns, "cross"), (NS, "other-service")]:
        if world.cluster.get(f"{GATEWAY_GROUP}/v1", "TCPRoute", name, namespace) is None:
            continue
        verdicts = route_status(world, namespace, name)
        assert verdicts, f"the Gateway controller never looked at {namespace}/{name}"
        for verdict in verdicts.values():
            assert verdict["ResolvedRefs"] == ("False", "RefNotPermitted"), (name, verdict)
    assert world.traffic() == platform.expected_traffic()


# -- the NetworkPolicy ------------------------------------------------------------------------


def test_the_network_policy_admits_only_the_data_plane_on_the_pod_port():
    for mode, wrap in MODES:
        for placement in ("Backend", "Gateway"):
            p = Platform(
                mode,
                wrap,
                placement,
                "v1.6",
                dataPlane={"namespace": DATA_PLANE, "podSelector": PROXY},
            )
            try:
                for name in TENANTS:
                    (policy,) = p.emitted(name)["NetworkPolicy"]
                    assert policy["metadata"]["namespace"] == p.backend_namespace(name)
                    assert policy["spec"] == {
                        "podSelector": {"matchLabels": PODS},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {
                                            "matchLabels": {
                                                "kubernetes.io/metadata.name": DATA_PLANE
                                            }
                                        },
                                        "podSelector": {"matchLabels": PROXY},
                                    }
                                ],
                                "ports": [{"protocol": "TCP", "port": POD_PORT}],
                            }
                        ],
                    }
            finally:
                p.close()


def test_the_network_policy_admits_the_gateway_namespace_when_no_data_plane_is_given(platform):
    for name in TENANTS:
        (policy,) = platform.emitted(name)["NetworkPolicy"]
        assert policy["metadata"]["namespace"] == platform.backend_namespace(name)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["podSelector"] == {"matchLabels": PODS}
        assert policy["spec"]["ingress"] == [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}}}
                ],
                "ports": [{"protocol": "TCP", "port": POD_PORT}],
            }
        ]
        assert "egress" not in policy["spec"]


# -- the data path ----------------------------------------------------------------------------


def test_each_port_carries_traffic_to_its_own_tenant_only(platform):
    world = platform.world
    expected = platform.expected_traffic()
    assert len(set(expected)) == len(TENANTS)
    assert world.traffic() == expected

    # A listener set from elsewhere on alpha's port behind alpha's Gateway: the older
    # listener (alpha's) keeps the port.
    status = world.status("alpha")
    squat(world, "squat", status["port"], status["gateway"])
    world.settle(2)
    stats.count("simulated reconciles", 2 * len(TENANTS))
    assert world.traffic() == expected
    assert world.condition("alpha") == ("True", "Ready")


@pytest.mark.parametrize(("mode", "wrap"), MODES, ids=[MODE_IDS[m] for m in MODES])
def test_a_port_squatted_by_a_foreign_listener_set_is_published_to_the_tenant(mode, wrap):
    world = World(mode=mode, wrap=wrap, seed=1)
    try:
        world.add_shard(1, capacity=3, ports="10000-10002", own_port=10002)  # two slots
        world.create_tenant("alpha")
        world.settle(3, ["alpha"])
        free = ({10000, 10001} - {world.port("alpha")}).pop()
        squat(world, "squat", free)
        world.controllers()
        world.create_tenant("bravo")
        world.settle(4)
        stats.count("simulated reconciles", 3 + 4 * 2)
        traffic = world.traffic()
        for name in ("alpha", "bravo"):
            port = world.port(name)
            if port is None:
                continue  # nothing published: nobody is sent elsewhere
            reaches = traffic.get((NS, world.status(name)["gateway"], port))
            assert reaches in (None, (f"vshn-postgresql-{name}", SERVICE, SERVICE_PORT)), (
                f"{name} publishes port {port}, which reaches {reaches}; "
                f"condition {world.condition(name)}"
            )
    finally:
        world.close()


def claimed(world: World, port: int) -> dict | None:
    """The claim Lease of a port, as stored."""
    return next(
        (c for c in world.claims() if c["metadata"]["labels"][labellib.PORT] == str(port)), None
    )


def message(world: World, name: str) -> str:
    for c in (world.xr(name).get("status") or {}).get("conditions") or []:
        if c["type"] == "TCPAccessReady":
            return c.get("message", "")
    return ""


@pytest.mark.parametrize(("mode", "wrap"), MODES, ids=[MODE_IDS[m] for m in MODES])
def test_a_tenant_squatted_before_its_listener_moves_and_never_gives_the_port_away(mode, wrap):
    """A listener set from elsewhere takes the port a tenant has claimed before the tenant's
    own listener exists: the tenant never carried traffic there, so it claims another port
    and moves; the squatted port stays claimed (blocked), so no later tenant is given it; and
    a tenant that was Ready on its port when a squatter comes never moves."""
    world = World(mode=mode, wrap=wrap, seed=1)
    try:
        world.add_shard(1, capacity=4, ports="10000-10003", own_port=10003)  # three slots
        world.create_tenant("alpha")
        world.settle(3, ["alpha"])
        world.create_tenant("bravo")
        world.round(["bravo"])  # bravo claims a port ...
        uid = world.xr("bravo")["metadata"]["uid"]
        [squatted] = [
            int(c["metadata"]["labels"][labellib.PORT])
            for c in world.claims()
            if c["spec"]["holderIdentity"] == uid
        ]
        squat(world, "squat", squatted)  # ... and a foreign listener takes it first
        world.controllers()
        conditions = []
        for _ in range(6):
            world.round(["bravo"])
            conditions.append(world.condition("bravo"))
            if conditions[-1] == ("False", "Conflicted"):
                assert f"port {squatted} behind postgresql-1" in message(world, "bravo")
            if ("False", "Conflicted") in conditions:
                # Once the Gateway has said so, the squatted port is never published.
                assert world.port("bravo") != squatted, world.status("bravo")
        stats.count("simulated reconciles", 3 + 1 + 6)
        assert ("False", "Conflicted") in conditions, conditions
        assert world.condition("bravo") == ("True", "Ready"), world.status("bravo")
        moved = world.port("bravo")
        assert moved not in (None, squatted, world.port("alpha"))
        traffic = world.traffic()
        assert traffic[(NS, "postgresql-1", moved)] == (
            "vshn-postgresql-bravo",
            SERVICE,
            SERVICE_PORT,
        )
        assert traffic[(NS, "postgresql-1", squatted)] == (INTRUDER, "evil", 1)
        if mode == "v1":
            ref = world.xr("bravo")["spec"]["writeConnectionSecretToRef"]
            secret = world.cluster.get("v1", "Secret", ref["name"], ref["namespace"])
            published = base64.b64decode(secret["data"]["POSTGRESQL_GATEWAY_PORT"]).decode()
            assert published == str(moved)

        # The squatted port stays claimed by bravo, marked blocked, and counts against the
        # shard's capacity: the squatter really has a listener there.
        lease = claimed(world, squatted)
        assert lease is not None and lease["spec"]["holderIdentity"] == uid
        assert labellib.BLOCKED in lease["metadata"]["annotations"]
        world.check()
        world.create_tenant("charlie")
        world.settle(4)
        stats.count("simulated reconciles", 4 * 3)
        assert world.condition("charlie") == ("False", "PoolFull"), world.status("charlie")
        assert claimed(world, squatted)["spec"]["holderIdentity"] == uid
        assert world.port("charlie") is None

        # Tenants Ready on their ports never move, whoever comes later.
        before = {name: world.port(name) for name in ("alpha", "bravo")}
        for name, port in before.items():
            squat(world, f"late-{name}", port)
        world.settle(3)
        stats.count("simulated reconciles", 3 * 3)
        traffic = world.traffic()
        for name, port in before.items():
            assert world.condition(name) == ("True", "Ready"), (name, world.status(name))
            assert world.port(name) == port
            assert traffic[(NS, "postgresql-1", port)] == (
                f"vshn-postgresql-{name}",
                SERVICE,
                SERVICE_PORT,
            )
    finally:
        world.close()


def probes(world: World) -> list[dict]:
    """The probe listener sets of blocked ports, as stored."""
    return [
        ls
        for api_version, kind in LISTENER_SET.values()
        for ls in world.cluster.list(api_version, kind)
        if (ls["metadata"].get("labels") or {}).get(labellib.ROLE) == labellib.PROBE_ROLE
    ]


def blocked_ports(world: World, name: str) -> list[int]:
    uid = world.xr(name)["metadata"]["uid"]
    return sorted(
        int(c["metadata"]["labels"][labellib.PORT])
        for c in world.claims()
        if c["spec"]["holderIdentity"] == uid
        and labellib.BLOCKED in (c["metadata"].get("annotations") or {})
    )


@pytest.mark.parametrize(("mode", "wrap"), MODES, ids=[MODE_IDS[m] for m in MODES])
def test_a_blocked_port_is_released_once_the_listener_that_took_it_is_gone(mode, wrap):
    """A listener that lingers a moment (a deleted tenant's, a squatter's) takes a port a
    tenant claimed: the tenant moves, and its blocked claim comes back to the pool once
    that listener is gone; the tenant stays on the port it moved to."""
    world = World(mode=mode, wrap=wrap, seed=1)
    try:
        world.add_shard(1, capacity=4, ports="10000-10003", own_port=10003)  # three slots
        world.create_tenant("alpha")
        world.settle(3, ["alpha"])
        world.create_tenant("bravo")
        world.round(["bravo"])
        [squatted] = blocked_ports(world, "bravo") or [
            int(c["metadata"]["labels"][labellib.PORT])
            for c in world.claims()
            if c["spec"]["holderIdentity"] == world.xr("bravo")["metadata"]["uid"]
        ]
        squat(world, "lingering", squatted)
        world.controllers()
        world.settle(6, ["bravo"])
        moved = world.port("bravo")
        assert world.condition("bravo") == ("True", "Ready") and moved != squatted
        assert blocked_ports(world, "bravo") == [squatted]
        world.check()

        world.cluster.delete(f"{GATEWAY_GROUP}/v1", "ListenerSet", "lingering", INTRUDER)
        world.controllers()
        world.settle(3, ["alpha", "bravo"])
        assert blocked_ports(world, "bravo") == []
        assert claimed(world, squatted) is None and probes(world) == []
        assert world.condition("bravo") == ("True", "Ready") and world.port("bravo") == moved
        world.create_tenant("charlie")  # the port is the pool's again
        world.settle(4)
        stats.count("simulated reconciles", 3 + 1 + 6 + 3 * 2 + 4 * 3)
        assert world.condition("charlie") == ("True", "Ready"), world.status("charlie")
        assert world.port("charlie") == squatted
        assert world.traffic()[(NS, "postgresql-1", squatted)][0] == "vshn-postgresql-charlie"
        world.check()
    finally:
        world.close()


@pytest.mark.parametrize(("mode", "wrap"), MODES, ids=[MODE_IDS[m] for m in MODES])
def test_a_tenant_on_a_squatted_shard_holds_at_most_three_blocked_claims(mode, wrap):
    """Squatters on every free port: the tenant gives up each port it finds taken, holds
    at most three blocked claims, then reports Blocked instead of claiming the shard away;
    it is never served, and ends with no port published."""
    world = World(mode=mode, wrap=wrap, seed=1)
    try:
        world.add_shard(1, capacity=10, ports="10000-10009", own_port=10009)  # nine slots
        world.create_tenant("alpha")
        world.settle(3, ["alpha"])
        for port in range(10000, 10009):
            if port != world.port("alpha"):
                squat(world, f"squat-{port}", port)
        world.controllers()
        world.create_tenant("bravo")
        for _ in range(16):
            world.round(["bravo"])
            assert len(blocked_ports(world, "bravo")) <= tenant.MAX_BLOCKED
            served = {backend[0] for backend in world.traffic().values()}
            assert "vshn-postgresql-bravo" not in served
        stats.count("simulated reconciles", 3 + 16)
        assert world.condition("bravo") == ("False", "Blocked"), world.status("bravo")
        assert world.port("bravo") is None
        assert len(blocked_ports(world, "bravo")) == tenant.MAX_BLOCKED
        assert "allowedListenerNamespaces" in message(world, "bravo")
        uid = world.xr("bravo")["metadata"]["uid"]
        assert [c for c in world.claims() if c["spec"]["holderIdentity"] == uid] != []
        assert world.condition("alpha") == ("True", "Ready")
        world.check()
    finally:
        world.close()


@pytest.mark.parametrize(("mode", "wrap"), MODES, ids=[MODE_IDS[m] for m in MODES])
def test_a_squatted_port_is_published_at_no_reconcile(mode, wrap):
    """Squatters on every free port of a Gateway that admits listener sets from everywhere:
    whatever port the tenant claims, no reconcile ever tells its clients that port, in its
    status or its connection secret, and it ends Blocked with nothing published."""
    world = World(mode=mode, wrap=wrap, seed=1)
    try:
        world.add_shard(1, capacity=10, ports="10000-10009", own_port=10009)  # nine slots
        world.create_tenant("alpha")
        world.settle(3, ["alpha"])
        squatted = [p for p in range(10000, 10009) if p != world.port("alpha")]
        for port in squatted:
            squat(world, f"squat-{port}", port)
        world.controllers()
        world.create_tenant("bravo")
        for _ in range(14):
            world.round(["bravo"])
            assert published_port(world, "bravo") not in squatted, world.status("bravo")
            assert world.status("bravo").get("port") not in squatted
        stats.count("simulated reconciles", 3 + 14)
        assert world.condition("bravo") == ("False", "Blocked"), world.status("bravo")
        assert published_port(world, "bravo") is None
    finally:
        world.close()


def accepted_condition(obj: dict) -> tuple[str, str]:
    found = next(c for c in obj["status"]["conditions"] if c["type"] == "Accepted")
    return found["status"], found["reason"]


@pytest.mark.parametrize(("mode", "wrap"), [("v1", True), ("v2", False)], ids=["v1.20", "v2"])
def test_under_the_pools_default_a_squatter_from_a_foreign_namespace_cannot_attach(mode, wrap):
    """The pool step's shard admits ListenerSets only from namespaces the platform labelled:
    ListenerSets on every free port from an unlabelled namespace are refused (NotAllowed),
    take no port, carry no traffic, and the next tenant gets its first claim, Ready."""
    world = PoolWorld(mode=mode, provider="exoscale", capacity=10, headroom=1)
    try:
        world.reconcile_pool()
        [shard] = world.shards().values()
        assert shard["spec"]["allowedListeners"]["namespaces"]["from"] == "Selector"
        world.create_tenant("alpha")
        world.until_everyone_holds_a_port(["alpha"])
        squatted = [p for p in range(10000, 10009) if p != world.port("alpha")]
        for port in squatted:
            squat(world, f"squat-{port}", port)
        world.controllers()
        for port in squatted:
            listener_set = world.cluster.get(
                f"{GATEWAY_GROUP}/v1", "ListenerSet", f"squat-{port}", INTRUDER
            )
            assert accepted_condition(listener_set) == ("False", "NotAllowed")
        world.create_tenant("bravo")
        world.settle(4, ["bravo"])
        stats.count("simulated reconciles", 4 + 4)
        assert world.condition("bravo") == ("True", "Ready"), world.status("bravo")
        port = world.port("bravo")
        assert port in squatted and blocked_ports(world, "bravo") == []
        assert published_port(world, "bravo") == port
        traffic = world.traffic()
        assert traffic[(NS, "postgresql-1", port)][0] == "vshn-postgresql-bravo"
        assert INTRUDER not in {backend[0] for backend in traffic.values()}
        world.check()
    finally:
        world.close()


def test_a_tenant_in_a_namespace_the_platform_has_not_labelled_waits_and_says_why():
    """A shard made under the default refuses the listener set of an unlabelled namespace:
    the tenant keeps its claim and publishes nothing, reporting NotAllowed; once the
    platform labels the namespace, it is Ready on the same port."""
    world = PoolWorld(mode="v2", provider="exoscale", capacity=10, headroom=1)
    try:
        world.reconcile_pool()
        world.cluster.ensure_namespace("vshn-postgresql-late", {})
        world.tenants["late"] = world.sim.create_xr(
            "vshn.appcat.vshn.io/v1", "XVSHNPostgreSQL", "late", spec={"parameters": {}}
        )
        world.settle(3, ["late"])
        assert world.condition("late") == ("False", "NotAllowed"), world.status("late")
        assert labellib.LISTENER_NAMESPACE in message(world, "late")
        assert published_port(world, "late") is None and world.traffic() == {}
        [lease] = world.claims()
        world.cluster.ensure_namespace(
            "vshn-postgresql-late", {labellib.LISTENER_NAMESPACE: "true"}
        )
        world.controllers()
        world.settle(2, ["late"])
        stats.count("simulated reconciles", 5)
        assert world.condition("late") == ("True", "Ready"), world.status("late")
        assert world.port("late") == int(lease["metadata"]["labels"][labellib.PORT])
        world.check()
    finally:
        world.close()


# -- names ----------------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


@st.composite
def dns_subdomains(draw, min_size: int = 1, max_size: int = 63) -> str:
    """A valid Kubernetes object name (DNS-1123 subdomain) of min_size..max_size characters:
    lowercase alphanumerics, '-' and '.', alphanumeric at both ends and around each dot."""
    size = draw(st.integers(min_size, max_size))
    chars = [draw(st.sampled_from(ALNUM))]
    while len(chars) < size:
        last_ok = chars[-1] in ALNUM and len(chars) < size - 1
        choice = draw(st.sampled_from(ALNUM + "--." if last_ok else ALNUM))
        chars.append(choice)
    name = "".join(chars)
    assert len(name) == size
    return name


def siblings(name: str) -> list[str]:
    """Names that `fit` cleans or cuts to the same head as `name`."""
    out = []
    if "." in name:
        out.append(name.replace(".", "-"))
    if "-" in name[1:-1]:
        i = name.index("-", 1)
        if name[i - 1] in ALNUM and name[i + 1] in ALNUM:
            out.append(f"{name[:i]}.{name[i + 1 :]}")
    last = "a" if name[-1] != "a" else "b"
    out.append(name[:-1] + last)  # differs only after the cut
    return [n for n in out if n != name]


xr_names = st.one_of(dns_subdomains(50, 63), dns_subdomains(1, 20), st.just("a" * 63))
pools = st.one_of(st.just("postgresql"), st.just("p" * 63), dns_subdomains(63, 63).map(
    lambda s: s.replace(".", "-")
))  # fmt: skip
LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"  # noqa: E501


def check_metadata(obj: dict):
    """Names, namespaces, label keys and values as the API server validates them."""
    import re

    md = obj["metadata"]
    where = f"{obj['kind']} {md.get('namespace', '')}/{md['name']}"
    assert is_dns_label(md["name"]), f"{where}: name is not a DNS-1123 label of <= 63 chars"
    if md.get("namespace"):
        assert is_dns_label(md["namespace"]), f"{where}: bad namespace"
    for key, value in (md.get("labels") or {}).items():
        assert re.match(LABEL_KEY, key) and len(key.split("/")[-1]) <= 63, f"{where}: {key}"
        assert isinstance(value, str) and len(value) <= 63, f"{where}: {key}={value!r}"
        assert LABEL_VALUE.match(value), f"{where}: {key}={value!r}"
    for key in md.get("annotations") or {}:
        assert re.match(LABEL_KEY, key), f"{where}: annotation {key}"


def emit(spec: TCPAccess, xr_name: str, port: int, wrapped: bool, pool: str) -> dict[str, dict]:
    """The tenant step's desired resources for an XR that holds `port`, through Crossplane's
    requirement loop (the real builders, no simulator)."""
    uid = f"uid-{digest(xr_name, 16)}"
    xr = {
        "apiVersion": "vshn.appcat.vshn.io/v1",
        "kind": "XVSHNPostgreSQL",
        "metadata": {"name": xr_name, "uid": uid},
        "spec": {},
    }
    shard = gateway(1, pool=pool, name="shard-1", ports="10000-10099", capacity=100)
    lease = build_claim(
        name=claim_name(pool, port),
        namespace=NS,
        pool=pool,
        shard=1,
        port=port,
        gateway="shard-1",
        hostname="db1.example.ch",
        owner=xr_name,
        holder=uid,
    )
    observed = {
        tenant.claim_key(port): build_wrap(lease, provider_config="p") if wrapped else lease
    }
    result = run_tenant(spec, xr=xr, observed=observed, candidates=[shard])
    assert "tcp-listenerset" in result.resources, (result.status, result.results)
    return {key: d.resource for key, d in result.resources.items()}


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "direct"])
@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    name=xr_names,
    pool=pools,
    placement=st.sampled_from(["Backend", "Gateway"]),
    flavour=st.sampled_from(["v1.4", "v1.5", "v1.6"]),
    shared_namespace=st.booleans(),
    data=st.data(),
)
def test_names_are_valid_and_never_shared_by_two_xrs(
    wrapped, name, pool, placement, flavour, shared_namespace, data
):
    others = [*siblings(name), data.draw(xr_names, label="another XR")]
    names = list(dict.fromkeys([name, *others]))
    namespace = "tenants" if shared_namespace else "ns-{metadata.uid}"
    spec = TCPAccess.model_validate(
        tenant_input(
            wrap=wrapped,
            flavour=flavour,
            placement=placement,
            pool=pool,
            backend=backend(namespace),
        )
    )
    owners: dict[tuple, str] = {}
    for position, xr_name in enumerate(names):
        for obj in emit(spec, xr_name, 10000 + position, wrapped, pool).values():
            objects = [obj]
            if obj["kind"] == "Object":
                objects.append(obj["spec"]["forProvider"]["manifest"])
            for each in objects:
                check_metadata(each)
                key = object_key(each)
                assert owners.setdefault(key, xr_name) == xr_name, (
                    f"{key} is both {owners[key]}'s and {xr_name}'s"
                )
        assert label_value(xr_name) == xr_name or len(xr_name) > 63


@pytest.mark.parametrize(("mode", "wrap"), MODES, ids=[MODE_IDS[m] for m in MODES])
@settings(max_examples=12, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(name=xr_names, pool=pools, placement=st.sampled_from(["Backend", "Gateway"]), data=st.data())
def test_long_names_on_the_simulator_compose_apart(mode, wrap, name, pool, placement, data):
    """XRs of long, look-alike names, all with their backend in one namespace, in one pool
    of a 63-character name: each gets its port and its own objects, every name valid."""
    names = list(dict.fromkeys([name, *siblings(name)]))[:3]
    flavour = data.draw(st.sampled_from(["v1.4", "v1.5", "v1.6"]), label="flavour")
    world = World(
        mode=mode,
        wrap=wrap,
        flavour=flavour,
        placement=placement,
        seed=1,
        pool=pool,
        backend=backend("tenants"),
    )
    try:
        world.add_shard(1, capacity=10, pool=pool, name="shard-1")
        uids = {}
        for xr_name in names:
            uids[xr_name] = world.sim.get_xr(world.create_tenant(xr_name))["metadata"]["uid"]
            for _ in range(3):
                for plan in world.round([xr_name]):
                    assert not plan.report.failed, plan.report.failed
        for plan in world.round():
            assert not plan.report.failed, plan.report.failed
        ports = {n: world.port(n) for n in names}
        assert None not in ports.values() and len(set(ports.values())) == len(names), ports
        owners: dict[tuple, str] = {}
        for api_version, kind in TENANT_KINDS:
            for obj in world.cluster.list(api_version, kind):
                if kind == "Secret":
                    continue  # Crossplane's connection Secret (named by the XR's UID)
                check_metadata(obj)
                owner = next(
                    (n for n, u in uids.items() if controller_uid(obj) == u), None
                ) or next(
                    (
                        n
                        for n in names
                        if (obj["metadata"].get("labels") or {}).get(labellib.OWNER)
                        == label_value(n)
                    ),
                    None,
                )
                assert owner is not None, object_key(obj)
                owners[object_key(obj)] = owner
        per_owner = {n: sorted(k[1] for k, o in owners.items() if o == n) for n in names}
        kinds = {n: sorted(set(k)) for n, k in per_owner.items()}
        assert len({tuple(v) for v in per_owner.values()}) == 1, per_owner  # alike, complete
        assert "Lease" in kinds[name] and "TCPRoute" in kinds[name], kinds
        for xr_name in names:
            assert world.condition(xr_name) == ("True", "Ready"), world.status(xr_name)
    finally:
        world.close()


# -- the attacker's table: names ------------------------------------------------------------
# A tenant picks its XR's name (on Crossplane v1.x exactly, through its claim's
# spec.resourceRef) to land on another XR's objects. No row may give two XRs one name, at
# either level (the provider-kubernetes Object, the object inside), with the default
# templates or AppCat's (every inner object named like the XR), all of them in namespaces
# the two share (placement Gateway, one backend namespace).

APPCAT_NAMES = {
    role: {"key": f"{{metadata.name}}-{suffix}", "name": "{metadata.name}",
           "objectName": f"{{metadata.name}}-{suffix}"}
    for role, suffix in (("listenerSet", "xls"), ("route", "tcproute"),
                         ("networkPolicy", "gw-netpol"), ("referenceGrant", "refgrant"))
}  # fmt: skip
TEMPLATES = {"default": {}, "appcat": {"resources": APPCAT_NAMES}}
LONG_VICTIM = "analytics-production-postgresql-primary-eu-west-1-replica--x7k2p-q"  # 66
HELD, SQUATTED = 10003, 10007  # the victim's ports; an attacker's are 20 above


def settle(spec: TCPAccess, xr: dict, observed: dict) -> dict[str, dict]:
    """The step's desired resources, through Crossplane's requirement loop."""
    shard = gateway(1, name="shard-1", ports="10000-10099", capacity=100)
    result = run_tenant(spec, xr=xr, observed=observed, candidates=[shard])
    return {key: desired.resource for key, desired in result.resources.items()}


def lifetime(spec: TCPAccess, xr_name: str, uid: str, port: int) -> dict[tuple, str]:
    """Every object the step composes for an XR over its life, identity -> key: its ticket
    while it waits, its claim, a blocked claim and its probe, and its data path."""
    xr = {"metadata": {"name": xr_name, "uid": uid}}
    wrapped = spec.wrap is not None

    def claim(at: int, blocked: str | None = None) -> dict:
        lease = build_claim(name=claim_name(spec.pool, at), namespace=NS, pool=spec.pool,
                            shard=1, port=at, gateway="shard-1", hostname="db1.example.ch",
                            owner=xr_name, holder=uid, blocked=blocked)  # fmt: skip
        return build_wrap(lease, provider_config="p") if wrapped else lease

    waiting = settle(spec, xr, {})
    settled = settle(
        spec,
        xr,
        {
            tenant.claim_key(port): claim(port),
            tenant.claim_key(port + 4): claim(port + 4, blocked="squatted"),
        },
    )
    assert tenant.probe_key(port + 4) in settled and "tcp-ticket" in waiting
    composed = {**settled, "tcp-ticket": waiting["tcp-ticket"]}  # not its first pick's claim
    found = {}
    for key, obj in composed.items():
        found[object_key(obj)] = key
        if obj["kind"] == "Object":
            found[object_key(obj["spec"]["forProvider"]["manifest"])] = key
    return found


def name_attack_input(wrapped: bool, templates: str) -> TCPAccess:
    return TCPAccess.model_validate(
        tenant_input(wrap=wrapped, placement="Gateway", backend=backend("tenants"),
                     **TEMPLATES[templates])
    )  # fmt: skip


NAME_ATTACKS = [
    pytest.param(LONG_VICTIM, lambda victim, names: [fit(victim)],
                 id="the-victims-name-as-an-earlier-version-cut-it"),
    pytest.param(LONG_VICTIM, lambda victim, names: names,
                 id="each-name-of-a-long-named-victims-objects"),
    pytest.param("alpha", lambda victim, names: names, id="each-name-of-a-victims-objects"),
    pytest.param("alpha", lambda victim, names: [f"{victim}-probe-{SQUATTED}",
                                                 f"{victim}-tcp-listenerset-probe-{SQUATTED}"],
                 id="the-victims-probe-as-an-earlier-version-named-it"),
    pytest.param("alpha-db", lambda victim, names: ["alpha.db", "alpha--db", "alpha-db.1"],
                 id="a-dot-or-a-double-hyphen-for-a-hyphen"),
]  # fmt: skip


@pytest.mark.parametrize("templates", list(TEMPLATES))
@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "direct"])
@pytest.mark.parametrize(("victim", "attack"), NAME_ATTACKS)
def test_no_xr_name_lands_on_another_xrs_objects(victim, attack, wrapped, templates):
    spec = name_attack_input(wrapped, templates)
    theirs = lifetime(spec, victim, "uid-victim", HELD)
    names = sorted({identity[-1] for identity in theirs})
    attackers = [name for name in attack(victim, names) if name != victim]  # one XR a name
    assert attackers
    for number, attacker in enumerate(attackers):
        mine = lifetime(spec, attacker, f"uid-attacker-{number}", HELD + 20)
        shared = {identity: (theirs[identity], mine[identity]) for identity in theirs & mine.keys()}
        assert not shared, f"XR {attacker!r} composes {victim!r}'s {shared}"


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "direct"])
@settings(max_examples=40, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(victim=st.one_of(dns_subdomains(1, 253), dns_subdomains(60, 70)), data=st.data())
def test_two_xrs_never_compose_one_name_whatever_names_they_pick(wrapped, victim, data):
    """Random names of up to 253 characters, against the victim's name cut as an earlier
    version did, one of its objects' names, and look-alikes."""
    spec = name_attack_input(wrapped, data.draw(st.sampled_from(list(TEMPLATES))))
    theirs = lifetime(spec, victim, "uid-victim", HELD)
    names = sorted({identity[-1] for identity in theirs})
    attacker = data.draw(
        st.one_of(
            dns_subdomains(1, 253),
            st.sampled_from([fit(victim), *names, *siblings(victim)]),
        ),
        label="attacker",
    )
    if attacker == victim:
        return  # one name is one XR (of a kind) at a time
    mine = lifetime(spec, attacker, "uid-attacker", HELD + 20)
    assert not theirs.keys() & mine.keys(), (victim, attacker)


def test_connection_details_carry_only_the_tenants_own_endpoint():
    """v1 connection Secrets: each XR's holds its own shard host and port, nothing else."""
    p = Platform("v1", True, "Backend", "v1.6")
    try:
        world = p.world
        for name in TENANTS:
            xr = world.xr(name)
            ref = xr["spec"]["writeConnectionSecretToRef"]
            secret = world.cluster.get("v1", "Secret", ref["name"], ref["namespace"])
            data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            status = world.status(name)
            assert data == {
                "POSTGRESQL_GATEWAY_HOST": status["host"],
                "POSTGRESQL_GATEWAY_PORT": str(status["port"]),
            }
    finally:
        p.close()


# -- the attacker's table: whatever a tenant controls, against every rule ----------------------
# A tenant controls its claim's (or Namespaced XR's) name, labels, annotations and spec;
# Crossplane v1.x copies them to the XR. With write access to its own namespace it can also
# create objects there. Each row is one hostile tenant created beside an established victim.
# After it has reconciled, none of the README's isolation rules is crossed: the victim keeps
# its port, its objects and its traffic; the attacker's objects are its own (its own names,
# its own backend namespace, the platform's ProviderConfig); no port carries two tenants.

VICTIM = "victim-analytics-production-pg-primary-eu-x7k2p"  # 47: some names shortened
ATTACKER = "mallory-q9m4t"


def victim_names(world: World) -> list[str]:
    """Every name the victim's composed objects have, outer and inner."""
    names = []
    for obj in world.composed(VICTIM).values():
        names.append(obj["metadata"]["name"])
        inner = ((obj.get("spec") or {}).get("forProvider") or {}).get("manifest")
        if inner:
            names.append(inner["metadata"]["name"])
    return names


def victim_claim(world: World) -> dict:
    return claimed(world, world.port(VICTIM))


ATTACKS = {
    # name -> (who controls it, how the hostile XR is made: world -> create_xr arguments)
    "name: the victim's listener set name": lambda w: {"name": victim_names(w)[0][:63]},
    "name: the victim's shortened inner name": lambda w: {"name": victim_names(w)[-1][:63]},
    "labels: the victim's pool, shard, port, owner and role": lambda w: {
        "labels": {
            k: v
            for k, v in victim_claim(w)["metadata"]["labels"].items()
            if k.startswith(labellib.PREFIX)
        }
        | {"crossplane.io/composite": VICTIM, "crossplane.io/claim-name": VICTIM}
    },
    "annotations: the victim's claim annotations, holder UID included": lambda w: {
        "annotations": dict(victim_claim(w)["metadata"].get("annotations") or {})
        | {labellib.OWNER_UID: w.xr(VICTIM)["metadata"]["uid"]}
    },
    "spec: the victim's namespace, a filter that parses as nothing, deep nesting": lambda w: {
        "spec": {
            "parameters": {
                "instanceNamespace": f"vshn-postgresql-{VICTIM}",
                "service": {"serviceName": SERVICE, "namespace": f"vshn-postgresql-{VICTIM}"},
                "network": {"ipFilter": ["300.1.1.1/8", "0.0.0.0/0 "]},
                "deep": _nested(20),
            }
        }
    },
}


def _nested(depth: int) -> dict:
    value: dict = {"leaf": "x"}
    for _ in range(depth):
        value = {"n": value}
    return value


def forge_in_own_namespace(world: World, port: int) -> None:
    """What a tenant can create in its own (labelled) namespace: a Lease claiming the
    victim's port, named like the pool's claim, and a listener set on that port."""
    namespace = f"vshn-postgresql-{ATTACKER}"
    world.cluster.create(
        build_claim(
            name=claim_name(POOL_NAME, port),
            namespace=namespace,
            pool=POOL_NAME,
            shard=1,
            port=port,
            gateway="postgresql-1",
            hostname=None,
            owner=ATTACKER,
            holder="mallory",
        )
    )
    world.cluster.create(
        {
            "apiVersion": f"{GATEWAY_GROUP}/v1",
            "kind": "ListenerSet",
            "metadata": {"name": "mine", "namespace": namespace},
            "spec": {
                "parentRef": {"name": "postgresql-1", "namespace": NS},
                "listeners": [{"name": "x", "port": port, "protocol": "TCP"}],
            },
        }
    )
    world.controllers()


POOL_NAME = "postgresql"


@pytest.mark.parametrize(
    "attack", [*ATTACKS, "objects: a claim and a listener set in its namespace"]
)
@pytest.mark.parametrize(("mode", "wrap"), [("v1", True), ("v2", False)], ids=["v1.20", "v2"])
def test_nothing_a_tenant_controls_crosses_an_isolation_rule(mode, wrap, attack):
    world = World(mode=mode, wrap=wrap, seed=7)
    try:
        world.add_shard(1, capacity=6, ports="10000-10005", own_port=10005)
        world.create_tenant(VICTIM)
        world.settle(4, [VICTIM])
        port, uid = world.port(VICTIM), world.xr(VICTIM)["metadata"]["uid"]
        assert world.condition(VICTIM) == ("True", "Ready")
        objects = tenant_objects_of(world, uid)
        expected = (f"vshn-postgresql-{VICTIM}", SERVICE, SERVICE_PORT)
        gateway_name = world.status(VICTIM)["gateway"]
        assert world.traffic()[(NS, gateway_name, port)] == expected

        if attack in ATTACKS:
            made = {"name": ATTACKER, "spec": {"parameters": {}}, **ATTACKS[attack](world)}
            name = made.pop("name")
            world.cluster.ensure_namespace(f"vshn-postgresql-{name}", LISTENER_NAMESPACE)
            world.tenants[name] = world.sim.create_xr(XR_API, XR_KIND, name, **made)
        else:
            world.cluster.ensure_namespace(f"vshn-postgresql-{ATTACKER}", LISTENER_NAMESPACE)
            forge_in_own_namespace(world, port)
            world.create_tenant(ATTACKER)
            name = ATTACKER
        for _ in range(4):  # the attacker's own reconcile may fail (a Fatal): that is its own
            world.sim.reconcile(world.tenants[name])
            world.reconcile([VICTIM])
            world.controllers()
        stats.count("simulated reconciles", 4 + 4 * 2)

        if attack in ATTACKS:
            world.check()  # one port per tenant, one listener per port, shards in capacity
        else:  # the forged listener set is there, refused: the victim's is older
            forged = world.cluster.get(
                f"{GATEWAY_GROUP}/v1", "ListenerSet", "mine", f"vshn-postgresql-{ATTACKER}"
            )
            [listener] = forged["status"]["listeners"]
            conditions = {c["type"]: c["status"] for c in listener["conditions"]}
            assert conditions.get("Conflicted") == "True", forged["status"]
        assert (world.port(VICTIM), world.condition(VICTIM)) == (port, ("True", "Ready"))
        assert published_port(world, VICTIM) == port
        assert world.traffic()[(NS, gateway_name, port)] == expected
        assert objects.items() <= tenant_objects_of(world, uid).items(), "victim's objects"
        theirs = world.composed(name)
        assert not set(victim_names(world)) & {o["metadata"]["name"] for o in theirs.values()}
        for obj in theirs.values():
            inner = ((obj.get("spec") or {}).get("forProvider") or {}).get("manifest") or obj
            if inner.get("kind") == "TCPRoute":
                [ref] = inner["spec"]["rules"][0]["backendRefs"]
                assert ref.get("namespace", inner["metadata"]["namespace"]) == (
                    f"vshn-postgresql-{name}"
                )
            if obj.get("kind") == "Object":
                assert obj["spec"]["providerConfigRef"]["name"] == "kubernetes"
        attacker_port = world.port(name)
        if not attack.startswith("name"):  # the attack was played: the attacker has a port
            assert attacker_port not in (None, port), (attack, world.condition(name))
        if attacker_port is not None:
            reaches = world.traffic().get((NS, world.status(name)["gateway"], attacker_port))
            assert reaches in (None, (f"vshn-postgresql-{name}", SERVICE, SERVICE_PORT))
    finally:
        world.close()


def tenant_objects_of(world: World, uid: str) -> dict[tuple, str]:
    """The objects an XR controls, key -> UID (a replaced object has a new UID)."""
    out = {}
    for api_version, kind in TENANT_KINDS:
        for obj in world.cluster.list_raw(api_version, kind):
            if controller_uid(obj) == uid:
                out[object_key(obj)] = obj["metadata"]["uid"]
    return out
