"""A platform running function-tcp-access on the pipeline simulator, with checks of the
promises the tenant step makes: one port per tenant, never two tenants on one port, never
a lost port."""

import base64
import random
from collections import Counter, defaultdict
from collections.abc import Iterable

from function import labels
from function.fn import FunctionRunner
from tests import stats
from tests.factories import NS, gateway
from tests.simulator import (
    Cluster,
    Crossplane,
    GatewayController,
    Grpc,
    ProviderKubernetes,
    Step,
    XRRef,
)

XR_API, XR_KIND = "vshn.appcat.vshn.io/v1", "XVSHNPostgreSQL"
POOL = "postgresql"
LISTENER_NAMESPACE = {labels.LISTENER_NAMESPACE: "true"}  # set by the platform, on a Namespace
LISTENER_SETS = (
    ("gateway.networking.k8s.io/v1", "ListenerSet"),
    ("gateway.networking.x-k8s.io/v1alpha1", "XListenerSet"),
)


def tenant_input(*, wrap: bool, flavour: str = "v1.6", placement: str = "Backend", **extra):
    spec = {
        "apiVersion": "tcp.fn.servala.io/v1alpha1",
        "kind": "TCPAccess",
        "pool": POOL,
        "gatewayNamespace": NS,
        "gatewayAPI": flavour,
        "placement": placement,
        "listenerName": "postgresql",
        "backend": {
            "namespace": "vshn-postgresql-{metadata.name}",
            "service": "postgresql-rw",
            "port": 5432,
            "podSelector": {"cnpg.io/cluster": "postgresql"},
        },
        "connectionDetails": {"host": "POSTGRESQL_GATEWAY_HOST", "port": "POSTGRESQL_GATEWAY_PORT"},
        **extra,
    }
    if wrap:
        spec["wrap"] = {"providerConfigName": "kubernetes"}
    return spec


class World:
    """Hand-made shards, tenant XRs, Crossplane, provider-kubernetes and a Gateway controller."""

    def __init__(
        self,
        *,
        mode: str = "v2",
        wrap: bool | None = None,
        flavour: str = "v1.6",
        placement: str = "Backend",
        seed: int = 0,
        grpc: bool = False,
        **extra_input,
    ):
        self.mode = mode
        self.wrap = (mode == "v1") if wrap is None else wrap
        self.cluster = Cluster(seed=seed)
        self.rng = random.Random(seed)
        # The function tells the time by the cluster's clock (tickets expire by it).
        self._grpc = Grpc(FunctionRunner(clock=self.cluster.time)) if grpc else None
        self.runner = self._grpc or FunctionRunner(clock=self.cluster.time)
        self.input = tenant_input(
            wrap=self.wrap, flavour=flavour, placement=placement, **extra_input
        )
        self.sim = self._crossplane()
        self.provider = ProviderKubernetes(self.cluster)
        self.gateways = GatewayController(self.cluster)
        self.tenants: dict[str, XRRef] = {}
        self.capacity: dict[str, int] = {}  # gateway name -> listeners allowed
        # The platform labels the namespaces tenant listener sets live in (the gateway
        # namespace for placement Gateway): shards the pool step makes admit only those.
        self.cluster.ensure_namespace(NS, LISTENER_NAMESPACE)

    def _crossplane(self) -> Crossplane:
        return Crossplane(
            self.cluster,
            mode=self.mode,
            pipeline=[Step("tcp-access", self.runner, self.input)],
            rng=self.rng,
        )

    def close(self):
        self.sim.close()
        if self._grpc is not None:
            self._grpc.close()

    def restart_function(self):
        """A new function process: nothing survives but the cluster."""
        xrs = dict(self.tenants)
        self.sim.close()
        self.runner = FunctionRunner(clock=self.cluster.time) if self._grpc is None else self.runner
        self.sim = self._crossplane()
        for name in xrs:
            self.sim._xrs[("", name)] = xrs[name]

    # -- the pool -------------------------------------------------------------------------

    def add_shard(self, index: int, *, capacity: int = 10, **kwargs) -> dict:
        obj = gateway(index, capacity=capacity, **kwargs)
        obj["spec"]["allowedListeners"] = {"namespaces": {"from": "All"}}
        self.cluster.create(obj)
        self.capacity[obj["metadata"]["name"]] = capacity
        return obj

    def remove_shard(self, name: str):
        self.cluster.delete("gateway.networking.k8s.io/v1", "Gateway", name, NS)

    # -- tenants --------------------------------------------------------------------------

    def create_tenant(self, name: str) -> XRRef:
        self.cluster.ensure_namespace(f"vshn-postgresql-{name}", LISTENER_NAMESPACE)
        ref = self.sim.create_xr(XR_API, XR_KIND, name, spec={"parameters": {}})
        self.tenants[name] = ref
        return ref

    def delete_tenant(self, name: str):
        self.sim.delete_xr(self.tenants.pop(name))
        self.controllers()

    def reconcile(self, names=None, *, same_snapshot: bool = False):
        refs = [self.tenants[n] for n in (names or list(self.tenants))]
        if same_snapshot:
            plans = self.sim.reconcile_all(refs, same_snapshot=True)
        else:
            plans = [self.sim.reconcile(ref) for ref in refs]
        stats.count("simulated reconciles", len(plans))
        for plan in plans:
            assert not plan.fatal, plan.results
            assert plan.report is None or plan.report.error is None, plan.report.error
        return plans

    def controllers(self):
        self.provider.reconcile()
        self.gateways.reconcile()
        self.provider.reconcile()  # carry the new status into the Objects

    def round(self, names=None, *, same_snapshot: bool = False):
        plans = self.reconcile(names, same_snapshot=same_snapshot)
        self.controllers()
        return plans

    def settle(self, rounds: int = 6, names=None):
        for _ in range(rounds):
            self.round(names)

    # -- what a user would look at ----------------------------------------------------------

    def xr(self, name: str) -> dict:
        return self.sim.get_xr(self.tenants[name])

    def status(self, name: str) -> dict:
        return (self.xr(name).get("status") or {}).get("tcpAccess") or {}

    def condition(self, name: str) -> tuple[str, str]:
        for c in (self.xr(name).get("status") or {}).get("conditions") or []:
            if c["type"] == "TCPAccessReady":
                return c["status"], c.get("reason", "")
        return "Unknown", ""

    def port(self, name: str) -> int | None:
        return self.status(name).get("port")

    def ports(self) -> dict[str, int | None]:
        return {name: self.port(name) for name in self.tenants}

    def claims(self) -> list[dict]:
        """Claims as stored: Leases (the wrapped ones are created by provider-kubernetes)."""
        match = {labels.POOL: POOL, labels.ROLE: labels.CLAIM_ROLE}  # not the tickets
        return self.cluster.list("coordination.k8s.io/v1", "Lease", NS, match)

    def composed(self, name: str) -> dict[str, dict]:
        """The XR's composed objects by key, as the cluster has them."""
        xr = self.xr(name)
        out = {}
        for ref in self.sim.resource_refs(xr):
            obj = self.cluster.get(
                ref["apiVersion"], ref["kind"], ref["name"], ref.get("namespace")
            )
            if obj is not None:
                key = (obj["metadata"].get("annotations") or {}).get(
                    "crossplane.io/composition-resource-name"
                )
                out[key] = obj
        return out

    def traffic(self) -> dict:
        return self.gateways.traffic()

    # -- the promises ---------------------------------------------------------------------

    def check(self):
        """One port per tenant, never two tenants on one port, no shard over capacity."""
        holders: dict[int, set[str]] = defaultdict(set)
        for lease in self.claims():
            holders[int(lease["metadata"]["labels"][labels.PORT])].add(
                lease["spec"]["holderIdentity"]
            )
        assert all(len(h) == 1 for h in holders.values()), holders

        per_gateway: dict[str, Counter] = defaultdict(Counter)
        for g in self.cluster.list("gateway.networking.k8s.io/v1", "Gateway", NS):
            for listener in g["spec"].get("listeners") or []:
                per_gateway[g["metadata"]["name"]][listener["port"]] += 1
        for api_version, kind in LISTENER_SETS:
            for ls in self.cluster.list(api_version, kind):
                if refused_probe(ls) or not_admitted(ls):
                    continue
                parent = ls["spec"]["parentRef"]["name"]
                for listener in ls["spec"]["listeners"]:
                    per_gateway[parent][listener["port"]] += 1
        for name, ports in per_gateway.items():
            doubled = {p: n for p, n in ports.items() if n > 1}
            assert not doubled, f"ports listened on twice behind {name}: {doubled}"
            if name in self.capacity:
                assert sum(ports.values()) <= self.capacity[name], name

        seen: dict[int, str] = {}
        for tenant in self.tenants:
            port = self.port(tenant)
            if port is None:
                continue
            assert port not in seen, f"{tenant} and {seen[port]} both report port {port}"
            seen[port] = tenant


def refused_probe(listener_set: dict) -> bool:
    """A tenant's probe of a blocked port that the Gateway refuses: it listens nowhere (it
    asks the Gateway whether the port is free again, and hears no)."""
    role = (listener_set["metadata"].get("labels") or {}).get(labels.ROLE)
    if role != labels.PROBE_ROLE:
        return False
    return any(
        c.get("type") == "Conflicted" and c.get("status") == "True"
        for listener in (listener_set.get("status") or {}).get("listeners") or []
        for c in listener.get("conditions") or []
    )


def not_admitted(listener_set: dict) -> bool:
    """A listener set its Gateway does not admit (allowedListeners): it is not attached, so
    it listens nowhere."""
    return any(
        c.get("type") == "Accepted"
        and c.get("status") == "False"
        and c.get("reason") == "NotAllowed"
        for c in (listener_set.get("status") or {}).get("conditions") or []
    )


# -- helpers for the property and isolation tests ---------------------------------------
# (tests/test_properties.py, tests/test_isolation.py; appended, nothing above depends on them)

CLAIM_LEASE = ("coordination.k8s.io/v1", "Lease")
CLAIM_OBJECT = ("kubernetes.crossplane.io/v1alpha2", "Object")
# Every kind the tenant step composes (directly or wrapped), plus v1's connection Secret.
TENANT_KINDS = (
    CLAIM_LEASE,
    CLAIM_OBJECT,
    ("gateway.networking.k8s.io/v1", "ListenerSet"),
    ("gateway.networking.x-k8s.io/v1alpha1", "XListenerSet"),
    ("gateway.networking.k8s.io/v1", "TCPRoute"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "Secret"),
)


class LaggingLookups:
    """A view for `Crossplane.compute`: the XR and its composed resources are read live, the
    label lookups (Gateways, claims) come from an older snapshot - a lagging informer."""

    def __init__(self, live, old):
        self.live, self.old = live, old

    def get_raw(self, *args, **kwargs):
        return self.live.get_raw(*args, **kwargs)

    def list_raw(self, *args, **kwargs):
        return self.old.list_raw(*args, **kwargs)

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        return self.live.is_namespaced(api_version, kind)


class StaleXR(LaggingLookups):
    """The opposite skew: the XR and its composed resources are read from an older snapshot
    (the XR informer lags), the label lookups live (the Lease/Object informer is current)."""

    def get_raw(self, *args, **kwargs):
        return self.old.get_raw(*args, **kwargs)

    def list_raw(self, *args, **kwargs):
        return self.live.list_raw(*args, **kwargs)


def object_key(obj: dict) -> tuple[str, str, str, str]:
    md = obj["metadata"]
    return (obj["apiVersion"].rpartition("/")[0], obj["kind"], md.get("namespace", ""), md["name"])


def controller_uid(obj: dict) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def claim_holder(obj: dict) -> str | None:
    """The holder of a claim Lease, or of the Lease a claim Object wraps. None for a blocked
    claim (annotation tcp.fn.servala.io/blocked): its XR keeps it only so that nobody is given
    a port an older foreign listener took; it is no allocation, so it is held by nobody."""
    if obj.get("kind") == "Object":
        obj = ((obj.get("spec") or {}).get("forProvider") or {}).get("manifest") or {}
    if labels.BLOCKED in ((obj.get("metadata") or {}).get("annotations") or {}):
        return None
    return (obj.get("spec") or {}).get("holderIdentity")


def claim_locks(world: World) -> list[dict]:
    """The objects whose names lock ports: claim Objects when wrapped, else claim Leases."""
    api_version, kind = CLAIM_OBJECT if world.wrap else CLAIM_LEASE
    match = {labels.POOL: POOL, labels.ROLE: labels.CLAIM_ROLE}
    return world.cluster.list(api_version, kind, None if world.wrap else NS, match)


def tenant_objects(world: World, name: str, uid: str, *, tickets: bool = True) -> dict[tuple, str]:
    """Everything in the cluster that belongs to one tenant XR, key -> object UID: objects it
    controls, objects labelled with it as owner (what provider-kubernetes made from its
    Objects) and Leases it holds. `tickets=False` leaves out its place in the queue, which
    by design goes once it has its port."""
    from function.names import label_value

    owner = label_value(name)
    out = {}
    for api_version, kind in TENANT_KINDS:
        for obj in world.cluster.list_raw(api_version, kind):
            md = obj["metadata"]
            if not tickets and (md.get("labels") or {}).get(labels.ROLE) == labels.TICKET_ROLE:
                continue
            mine = (
                controller_uid(obj) == uid
                or (md.get("labels") or {}).get(labels.OWNER) == owner
                or (kind == "Lease" and claim_holder(obj) == uid)
            )
            if mine:
                out[object_key({**obj, "apiVersion": api_version})] = md["uid"]
    return out


def shard_gateways(world: World) -> list[dict]:
    return world.cluster.list("gateway.networking.k8s.io/v1", "Gateway", NS, {labels.POOL: POOL})


def tenant_slots(gateway_obj: dict) -> int:
    """Tenant listeners a shard Gateway allows: its capacity minus its own listeners."""
    capacity = int(gateway_obj["metadata"]["annotations"][labels.CAPACITY])
    return max(0, capacity - max(1, len(gateway_obj["spec"].get("listeners") or [])))


def claims_per_shard(world: World, ignore: Iterable[str] = ()) -> Counter:
    """Distinct claimed ports per shard index (as the claims' shard labels say), leaving out
    claims held by the XR UIDs in `ignore`."""
    ignored = set(ignore)
    ports: dict[int, set[int]] = defaultdict(set)
    for lock in claim_locks(world):
        if claim_holder(lock) in ignored:
            continue
        md_labels = lock["metadata"]["labels"]
        ports[int(md_labels[labels.SHARD])].add(int(md_labels[labels.PORT]))
    return Counter({shard: len(p) for shard, p in ports.items()})


def eligible_shards(world: World) -> list[dict]:
    """The shards a new tenant may be given, by the documented labels: those labelled
    accepting=true; where none is, every shard not labelled accepting=false."""
    gateways = shard_gateways(world)
    flag = {g["metadata"]["name"]: g["metadata"]["labels"].get(labels.ACCEPTING) for g in gateways}
    if any(v == "true" for v in flag.values()):
        return [g for g in gateways if flag[g["metadata"]["name"]] == "true"]
    return [g for g in gateways if flag[g["metadata"]["name"]] != "false"]


def free_slots(world: World, ignore: Iterable[str] = ()) -> int:
    """Free tenant slots on the eligible shards: capacity minus own listeners minus claims
    (claims held by the XR UIDs in `ignore` count as free)."""
    used = claims_per_shard(world, ignore)
    return sum(
        max(0, tenant_slots(g) - used[int(g["metadata"]["labels"][labels.SHARD])])
        for g in eligible_shards(world)
    )


def edit_gateway(world: World, name: str, *, labels_=None, annotations=None) -> None:
    """Change a shard Gateway's labels/annotations as a person would (None removes a key)."""
    obj = world.cluster.get("gateway.networking.k8s.io/v1", "Gateway", name, NS)
    if obj is None:
        return
    for field, changes in (("labels", labels_), ("annotations", annotations)):
        current = obj["metadata"].setdefault(field, {})
        for key, value in (changes or {}).items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
    world.cluster.update(obj)


def controlled_by(world: World, uid: str) -> set[tuple]:
    """Keys (group, kind, namespace, name) of the objects whose controller is this XR."""
    return {
        object_key({**obj, "apiVersion": api_version})
        for api_version, kind in TENANT_KINDS
        for obj in world.cluster.list_raw(api_version, kind)
        if controller_uid(obj) == uid
    }


def listeners_per_gateway(world: World) -> dict[str, dict[tuple, int]]:
    """Gateway name -> {(owner kind, namespace, name, listener name): port} for the Gateway's
    own listeners and every ListenerSet attached to it: those in the cluster and, when
    wrapped, those in provider-kubernetes Objects (the provider may not have run yet)."""
    sets: dict[tuple, dict] = {}
    for api_version, kind in LISTENER_SETS:
        for ls in world.cluster.list_raw(api_version, kind):
            sets[(kind, ls["metadata"]["namespace"], ls["metadata"]["name"])] = ls
    for obj in world.cluster.list_raw(*CLAIM_OBJECT):
        manifest = ((obj.get("spec") or {}).get("forProvider") or {}).get("manifest") or {}
        if manifest.get("kind") in ("ListenerSet", "XListenerSet"):
            md = manifest.get("metadata") or {}
            sets.setdefault((manifest["kind"], md.get("namespace", ""), md.get("name")), manifest)
    out: dict[str, dict[tuple, int]] = defaultdict(dict)
    for g in world.cluster.list_raw("gateway.networking.k8s.io/v1", "Gateway", NS):
        for listener in g["spec"].get("listeners") or []:
            out[g["metadata"]["name"]][("Gateway", NS, g["metadata"]["name"], listener["name"])] = (
                listener["port"]
            )
    for (kind, namespace, name), ls in sets.items():
        parent = ls["spec"]["parentRef"]["name"]
        for listener in ls["spec"]["listeners"]:
            out[parent][(kind, namespace, name, listener["name"])] = listener["port"]
    return out


def published_port(world: World, name: str) -> int | None:
    """The port a client of the tenant is told: the XR's connection secret (Crossplane
    v1.x; an emptied key tells nothing), else its status."""
    ref = world.xr(name)["spec"].get("writeConnectionSecretToRef")
    secret = world.cluster.get("v1", "Secret", ref["name"], ref["namespace"]) if ref else None
    value = ((secret or {}).get("data") or {}).get("POSTGRESQL_GATEWAY_PORT")
    if value is not None:
        return int(base64.b64decode(value)) if base64.b64decode(value) else None
    return world.port(name)
