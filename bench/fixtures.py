"""In-memory pools and Crossplane's requirement loop, for the benchmarks.

* `Store` holds Kubernetes objects as the API server would return them (server metadata,
  owner references, Crossplane's labels and annotations, Gateway status) and answers
  Crossplane resource selectors with `function.allocation.Requirement.matches`.
* `fill_pool` spreads N tenants' claims over cloudscale-like shards (capacity 100: 99
  tenant slots, the Gateway's own listener on the slice's last port), lowest shard first,
  with the Gateways the pool step would write for them (`shard_gateway`).
* `first_request` asks the pipeline simulator (tests/simulator) for the exact first
  RunFunctionRequest Crossplane sends for a settled tenant (sticky) or a new one.
* `requirement_loop` then plays Crossplane's requirement loop against a `Store`: call,
  resolve the returned requirements, call again until they repeat (at most 6 calls).
"""

from __future__ import annotations

import datetime
import itertools
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from bench.common import call
from function import labels
from function.allocation import Requirement
from function.builders.gateway import shard_gateway
from function.builders.lease import claim as build_claim
from function.builders.lease import ticket as build_ticket
from function.builders.listenerset import listener_set
from function.builders.object import wrap
from function.flavours import FLAVOURS
from function.names import label_value
from function.tickets import DEFAULT_TTL, micro_time, ticket_name
from tests import world as world_module
from tests.factories import NS
from tests.simulator import dict_to_struct
from tests.world import XR_API, XR_KIND, World

POOL = world_module.POOL  # the tenants' pool in tests/world.py: "postgresql"
CAPACITY = 100  # cloudscale: listeners per load balancer IP, the Gateway's own included
SLOTS = CAPACITY - 1
HEADROOM = 5  # the pool step's default
FIRST_PORT = 10000
MAX_CALLS = 6  # Crossplane: MaxRequirementsIterations = 5, so 6 calls at most
GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_CLASS = "envoy-gateway"

# What an AppCat PostgreSQL XR carries in spec.parameters (trimmed, but of a real size).
XR_PARAMETERS = {
    "service": {
        "majorVersion": "16",
        "serviceLevel": "besteffort",
        "pgSettings": {
            "max_connections": "200",
            "shared_buffers": "1GB",
            "work_mem": "16MB",
            "timezone": "Europe/Zurich",
            "log_min_duration_statement": "500",
        },
        "extensions": [{"name": "pg_stat_statements"}, {"name": "postgis"}],
        "repackEnabled": True,
        "vacuumEnabled": True,
    },
    "size": {"cpu": "600m", "memory": "3500Mi", "disk": "20Gi", "plan": "standard-4"},
    "scheduling": {"nodeSelector": {"appuio.ch/node-class": "flex"}},
    "backup": {"schedule": "30 23 * * *", "retention": 6, "deletionProtection": True},
    "maintenance": {"dayOfWeek": "tuesday", "timeOfDay": "22:30:00"},
    "network": {"ipFilter": ["0.0.0.0/0"], "serviceType": "TCPGateway"},
    "security": {"deletionProtection": True, "allowAllNamespaces": False},
    "monitoring": {"email": "ops@example.ch", "alertmanagerConfigRef": "alerts"},
    "instances": 1,
}

_serial = itertools.count(1_000_000)


# -- objects as the API server returns them ----------------------------------------------


def _uid(n: int) -> str:
    return str(uuid.UUID(int=n, version=4))


def served(obj: dict, *, owner: tuple[str, str] | None = None, key: str | None = None) -> dict:
    """`obj` with the metadata the API server (and Crossplane, for composed objects) adds."""
    n = next(_serial)
    md = dict(obj["metadata"])
    md["uid"] = _uid(n)
    md["resourceVersion"] = str(n)
    md["generation"] = 1
    md["creationTimestamp"] = "2025-01-01T00:00:00Z"
    if owner is not None:
        owner_name, owner_uid = owner
        md["labels"] = {**md.get("labels", {}), "crossplane.io/composite": owner_name}
        md["ownerReferences"] = [
            {
                "apiVersion": XR_API,
                "kind": XR_KIND,
                "name": owner_name,
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    if key is not None:
        md["annotations"] = {
            **md.get("annotations", {}),
            "crossplane.io/composition-resource-name": key,
        }
    return {**obj, "metadata": md}


def _condition(kind: str, status: str = "True", reason: str | None = None) -> dict:
    return {
        "type": kind,
        "status": status,
        "reason": reason or kind,
        "message": "",
        "observedGeneration": 1,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }


def gateway_object(pool: str, index: int, used: int, accepting: bool) -> dict:
    """A shard Gateway as the pool step writes it, as the API server returns it."""
    start = FIRST_PORT + (index - 1) * CAPACITY
    end = start + CAPACITY - 1
    name = f"{pool}-{index}"
    hostname = f"{pool}{index}.example.ch"
    obj = shard_gateway(
        name=name,
        namespace=NS,
        pool=pool,
        index=index,
        gateway_class=GATEWAY_CLASS,
        hostname=hostname,
        ports=(start, end),
        capacity=CAPACITY,
        used=used,
        accepting=accepting,
        allowed_listeners={"from": "All"},
        infrastructure={
            "annotations": {
                "k8s.cloudscale.ch/loadbalancer-name": name,
                "external-dns.alpha.kubernetes.io/hostname": hostname,
            }
        },
    )
    obj = served(obj, owner=(f"{pool}-pool", _uid(7)), key=f"gateway-{index}")
    obj["status"] = gateway_status(index, used)
    return obj


def gateway_status(index: int, attached: int) -> dict:
    """A shard Gateway's status as the Gateway controller writes it: its address, conditions,
    its own listener, and `attached` tenant listener sets."""
    return {
        "addresses": [{"type": "IPAddress", "value": f"203.0.{index // 250}.{index % 250 + 1}"}],
        "conditions": [_condition("Accepted"), _condition("Programmed")],
        "listeners": [
            {
                "name": "shard",
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}],
                "attachedRoutes": 0,
                "conditions": [
                    _condition("Conflicted", "False", "NoConflicts"),
                    _condition("Accepted"),
                    _condition("Programmed"),
                    _condition("ResolvedRefs"),
                ],
            }
        ],
        "attachedListenerSets": attached,
    }


def claim_object(pool: str, index: int, port: int, tenant: int, mode: str) -> dict:
    """One tenant's claim: a Lease (v2), or the provider-kubernetes Object wrapping it
    (v1.20), as the API server returns it."""
    owner = tenant_name(pool, tenant)
    owner_uid = _uid(tenant + 1)
    lease = build_claim(
        name=f"tcp-{pool}-{port}",
        namespace=NS,
        pool=pool,
        shard=index,
        port=port,
        gateway=f"{pool}-{index}",
        hostname=f"{pool}{index}.example.ch",
        owner=owner,
        holder=owner_uid,
    )
    obj = stored(lease, mode, owner=(owner, owner_uid), key=f"tcp-claim-{port}")
    if mode != "v2":
        obj["metadata"]["finalizers"] = ["finalizer.managedresource.crossplane.io"]
        obj["status"]["conditions"] = [
            _condition("Synced", reason="ReconcileSuccess"),
            _condition("Ready", reason="Available"),
        ]
    return obj


def listener_set_object(
    pool: str, index: int, port: int, tenant: int, mode: str, gateway_api: str = "v1.6"
) -> dict:
    """One tenant's ListenerSet on shard `index`, as the API server returns it: labelled as
    the tenant step labels it (pool, owner, shard, port; a cluster-scoped tenant's carries
    no role), its Gateway's report in its status (Accepted, Programmed, its one listener
    with its route attached) and the managedFields of its two writers (the applier of its
    spec, the Gateway controller of its status). v2: composed by Crossplane (its owner
    reference, labels and annotation); v1.20: the manifest provider-kubernetes applied."""
    owner = tenant_name(pool, tenant)
    flavour = FLAVOURS[gateway_api]
    obj = listener_set(
        flavour=flavour,
        name=f"{owner}-tcp-listenerset",
        namespace=tenant_namespace(owner),
        labels={
            labels.POOL: pool,
            labels.OWNER: label_value(owner),
            labels.SHARD: str(index),
            labels.PORT: str(port),
        },
        annotations={labels.HOSTNAME: f"{pool}{index}.example.ch"},
        gateway=f"{pool}-{index}",
        gateway_namespace=NS,
        listener_name="postgresql",
        port=port,
    )
    if mode == "v2":
        obj = served(obj, owner=(owner, _uid(tenant + 1)), key="tcp-listenerset")
        manager = "apiextensions.crossplane.io/composed/" + _uid(tenant + 1).replace("-", "")
    else:
        obj = served(obj)
        manager = "provider-kubernetes"
    kinds = [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}]
    obj["status"] = {
        "conditions": [_condition("Accepted"), _condition("Programmed")],
        "listeners": [
            {
                "name": "postgresql",
                "port": port,
                "supportedKinds": kinds,
                "attachedRoutes": 1,
                "conditions": [
                    _condition("Conflicted", "False", "NoConflicts"),
                    _condition("Accepted"),
                    _condition("Programmed"),
                    _condition("ResolvedRefs"),
                ],
            }
        ],
    }
    md = obj["metadata"]
    shape = (mode, gateway_api)
    if shape not in _LISTENER_SET_FIELDS:  # the same field sets on every tenant's
        applied = {
            "metadata": {key: md[key] for key in ("labels", "annotations") if key in md},
            "spec": obj["spec"],
        }
        _LISTENER_SET_FIELDS[shape] = (
            managed_fields(obj, "", "Apply", applied),
            managed_fields(obj, "envoy-gateway", "Update", {"status": obj["status"]}, "status"),
        )
    spec_fields, status_fields = _LISTENER_SET_FIELDS[shape]
    spec_fields = {**spec_fields, "manager": manager}
    if "ownerReferences" in md:  # its owner's, keyed by uid
        owned = _fields_v1({"metadata": {"ownerReferences": md["ownerReferences"]}})
        spec_fields["fieldsV1"] = {
            **spec_fields["fieldsV1"],
            "f:metadata": {**spec_fields["fieldsV1"]["f:metadata"], **owned["f:metadata"]},
        }
    md["managedFields"] = [spec_fields, status_fields]
    return obj


_LISTENER_SET_FIELDS: dict[tuple[str, str], tuple[dict, dict]] = {}


def managed_fields(
    obj: dict, manager: str, operation: str, fields: dict, subresource: str | None = None
) -> dict:
    """One metadata.managedFields entry as the API server records it (fieldsV1)."""
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": obj["apiVersion"],
        "time": "2025-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": _fields_v1(fields),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _fields_v1(value: object) -> dict:
    """The field set of `value` in the API server's FieldsV1 notation: `f:` for a field,
    `k:` for a list item keyed by its name (type, uid), `.` for the item itself."""
    if isinstance(value, dict):
        return {f"f:{key}": _fields_v1(item) for key, item in value.items()}
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        out: dict = {}
        for item in value:
            key = next((k for k in ("uid", "type", "name") if k in item), None)
            if key is None:
                return {}  # an atomic list
            out[f"k:{json.dumps({key: item[key]}, separators=(',', ':'))}"] = {
                ".": {},
                **_fields_v1({k: v for k, v in item.items() if k != key}),
            }
        return out
    return {}


def tenant_name(pool: str, tenant: int) -> str:
    return f"{pool}-t{tenant}"


def tenant_namespace(owner: str) -> str:
    return f"vshn-postgresql-{owner}"


def ticket_object(
    pool: str, tenant: int, mode: str, renewed: datetime.datetime | None = None
) -> dict:
    """A waiting tenant's ticket: a Lease (v2), or the Object wrapping it (v1.20), renewed
    at `renewed` (default: now, so that it is live while the bench runs)."""
    owner = f"{pool}-w{tenant}"
    owner_uid = _uid(1_000_000 + tenant)
    lease = build_ticket(
        name=ticket_name(pool, owner_uid),
        namespace=NS,
        pool=pool,
        owner=owner,
        holder=owner_uid,
        renewed=micro_time(renewed or datetime.datetime.now(datetime.UTC)),
        ttl=DEFAULT_TTL,
    )
    return stored(lease, mode, owner=(owner, owner_uid), key="tcp-ticket")


def stored(lease: dict, mode: str, *, owner: tuple[str, str], key: str) -> dict:
    """A tenant's Lease as the API server returns it: itself (v2), or the provider-kubernetes
    Object wrapping it, with the provider's copy in its status (v1.20)."""
    if mode == "v2":
        return served(lease, owner=owner, key=key)
    obj = served(wrap(lease, provider_config="kubernetes"), owner=owner, key=key)
    obj["status"] = {"atProvider": {"manifest": served(lease)}}
    return obj


def _role(obj: dict) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(labels.ROLE)


# -- the store ---------------------------------------------------------------------------


@dataclass
class Store:
    """Objects by (apiVersion, kind) and name; answers Crossplane's selectors with
    `Requirement.matches` (over the objects carrying the selector's rarest label)."""

    mode: str  # "v2": selectors honour namespace; "v1" (v1.20): they have none
    objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    _index: dict | None = None
    _structs: dict[int, object] = field(default_factory=dict)

    def add(self, obj: dict) -> None:
        md = obj["metadata"]
        self.objects[(obj["apiVersion"], obj["kind"])][(md.get("namespace", ""), md["name"])] = obj
        self._index = None

    def remove(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.objects[(api_version, kind)].pop((namespace, name), None)
        self._index = None

    def remove_tickets(self) -> None:
        for objects in self.objects.values():
            for key in [k for k, o in objects.items() if _role(o) == labels.TICKET_ROLE]:
                del objects[key]
        self._index = None

    def fetch(self, name: str, selector: fnv1.ResourceSelector) -> fnv1.Resources:
        namespace = None
        if self.mode == "v2" and selector.HasField("namespace"):
            namespace = selector.namespace
        requirement = Requirement(
            name,
            selector.api_version,
            selector.kind,
            dict(selector.match_labels.labels),
            namespace,
        )
        out = fnv1.Resources()
        for obj in self._candidates(selector.api_version, selector.kind, requirement):
            if requirement.matches(obj):
                out.items.add().resource.CopyFrom(self._struct(obj))
        return out

    def _candidates(self, api_version: str, kind: str, requirement: Requirement):
        if self._index is None:
            self._index = {}
            for gk, objs in self.objects.items():
                by_label: dict = defaultdict(list)
                for obj in objs.values():
                    for pair in (obj["metadata"].get("labels") or {}).items():
                        by_label[pair].append(obj)
                self._index[gk] = by_label
        by_label = self._index.get((api_version, kind), {})
        lists = [by_label.get(pair, []) for pair in requirement.match_labels.items()]
        if not lists:
            return list(self.objects.get((api_version, kind), {}).values())
        return min(lists, key=len)

    def _struct(self, obj: dict):
        hit = self._structs.get(id(obj))
        if hit is None or hit[0] is not obj:
            hit = self._structs[id(obj)] = (obj, dict_to_struct(obj))
        return hit[1]


@dataclass
class PoolShape:
    """What `fill_pool` built: claims per shard, and the shard a new tenant should get."""

    pool: str
    tenants: int
    used: dict[int, int]
    stale: set[int]
    expected_shard: int | None  # where a new tenant's claim must land
    tenant_of: dict[int, int] = field(default_factory=dict)  # port -> tenant serial
    listener_sets: str | None = None  # their gatewayAPI when the store holds them

    @property
    def shards(self) -> int:
        return len(self.used)


def fill_pool(
    store: Store, pool: str, tenants: int, *, stale: int = 0, listener_sets: str | None = None
) -> PoolShape:
    """`tenants` claims, lowest shard first, 99 per shard, and the Gateways the pool step
    writes for them (see `label_shards` for `stale`). With `listener_sets` (a gatewayAPI:
    "v1.6"), each tenant's ListenerSet too."""
    used: dict[int, int] = {}
    left, index = tenants, 0
    while left > 0:
        index += 1
        used[index] = min(SLOTS, left)
        left -= used[index]
    free = sum(SLOTS - n for n in used.values())
    if not used or free < HEADROOM:  # the pool step keeps `headroom` free slots
        used[len(used) + 1] = 0
    serial = 0
    tenant_of = {}
    for index, count in sorted(used.items()):
        start = FIRST_PORT + (index - 1) * CAPACITY
        for port in range(start, start + count):
            serial += 1
            tenant_of[port] = serial
            store.add(claim_object(pool, index, port, serial, store.mode))
            if listener_sets is not None:
                store.add(listener_set_object(pool, index, port, serial, store.mode, listener_sets))
    shape = PoolShape(pool, tenants, used, set(), None, tenant_of, listener_sets)
    label_shards(store, shape, stale)
    return shape


def remove_tenant(store: Store, shape: PoolShape, port: int) -> None:
    """Delete the tenant on `port`: its claim and (when the store holds them) its
    ListenerSet."""
    tenant = shape.tenant_of.pop(port)
    kind = CLAIM_KINDS[store.mode]
    namespace = NS if store.mode == "v2" else ""
    store.remove(*kind, namespace, f"tcp-{shape.pool}-{port}")
    if shape.listener_sets is not None:
        flavour = FLAVOURS[shape.listener_sets]
        owner = tenant_name(shape.pool, tenant)
        store.remove(
            flavour.listenerset_api,
            flavour.listenerset_kind,
            tenant_namespace(owner),
            f"{owner}-tcp-listenerset",
        )
    index = (port - FIRST_PORT) // CAPACITY + 1
    shape.used[index] -= 1
    shape.tenants -= 1


CLAIM_KINDS = {
    "v2": ("coordination.k8s.io/v1", "Lease"),
    "v1": ("kubernetes.crossplane.io/v1alpha2", "Object"),
}


def trim_open_shard(store: Store, shape: PoolShape, keep: int = 1) -> None:
    """Leave `keep` claims on the partly filled shard, so that pools of every size show a
    new tenant the same shape (one claim there at 100 tenants, five at 50,000 otherwise)."""
    index = max(shape.used)
    if not 0 < keep < shape.used[index] < SLOTS:
        return
    kind = CLAIM_KINDS[store.mode]
    namespace = NS if store.mode == "v2" else ""
    start = FIRST_PORT + (index - 1) * CAPACITY
    for port in range(start + keep, start + shape.used[index]):
        store.remove(*kind, namespace, f"tcp-{shape.pool}-{port}")
    shape.tenants -= shape.used[index] - keep
    shape.used[index] = keep


def label_shards(store: Store, shape: PoolShape, stale: int) -> None:
    """(Re)write the pool's Gateways as the pool step labels them, except that the
    `stale` highest full shards still say `accepting: "true"` with `used: 98`: the pool
    step last ran before their last tenant came."""
    full = [i for i, n in sorted(shape.used.items()) if n == SLOTS]
    if len(full) < stale:
        raise ValueError(f"{shape.tenants} tenants fill only {len(full)} shards, {stale} asked")
    shape.stale = set(full[-stale:]) if stale else set()
    for index, count in sorted(shape.used.items()):
        accepting = count < SLOTS or index in shape.stale
        hint = SLOTS - 1 if index in shape.stale else count
        store.add(gateway_object(shape.pool, index, hint, accepting))
    shape.expected_shard = min((i for i, n in shape.used.items() if n < SLOTS), default=None)


# -- Crossplane's side -------------------------------------------------------------------


@dataclass
class Tenants:
    """The first request Crossplane sends for a settled tenant and for a new one."""

    mode: str
    sticky: fnv1.RunFunctionRequest
    new: fnv1.RunFunctionRequest
    sticky_port: int


def first_requests(mode: str) -> Tenants:
    """Settle one tenant on the pipeline simulator (a World with one cloudscale shard), and
    create a second; return the first request of each one's next reconcile."""
    world = World(mode=mode, seed=1)
    try:
        world.add_shard(1, capacity=CAPACITY)
        for name in ("pg-sticky", "pg-new"):
            world.cluster.ensure_namespace(f"vshn-postgresql-{name}", {})
            ref = world.sim.create_xr(XR_API, XR_KIND, name, spec={"parameters": XR_PARAMETERS})
            world.tenants[name] = ref
            if name == "pg-sticky":
                world.settle(4, [name])
                status = world.status(name)
                if status.get("phase") != "Ready":
                    raise RuntimeError(f"the sticky tenant did not settle: {status}")
        sticky = world.sim.compute(world.tenants["pg-sticky"]).calls[0].request
        new = world.sim.compute(world.tenants["pg-new"]).calls[0].request
        return Tenants(mode, _copy(sticky), _copy(new), int(world.port("pg-sticky")))
    finally:
        world.close()


def _copy(req: fnv1.RunFunctionRequest) -> fnv1.RunFunctionRequest:
    out = fnv1.RunFunctionRequest()
    out.CopyFrom(req)
    return out


@dataclass
class Loop:
    """One reconcile's calls of one step: each request as sent and its response."""

    requests: list[fnv1.RunFunctionRequest]
    responses: list[fnv1.RunFunctionResponse]
    stable: bool

    @property
    def sizes(self) -> list[int]:
        return [r.ByteSize() for r in self.requests]

    @property
    def final(self) -> fnv1.RunFunctionResponse:
        return self.responses[-1]


def requirement_loop(runner, first: fnv1.RunFunctionRequest, store: Store) -> Loop:
    """Crossplane's FetchingFunctionRunner: call, fetch what the requirements select,
    call again, until the requirements equal the previous call's. v2 answers both
    `requirements.resources` (into required_resources) and the deprecated
    `requirements.extra_resources` (into extra_resources); v1.20 only the latter."""
    req = _copy(first)
    previous: fnv1.Requirements | None = None
    loop = Loop([], [], stable=False)
    for _ in range(MAX_CALLS):
        sent = _copy(req)
        rsp = call(runner, sent)
        loop.requests.append(sent)
        loop.responses.append(rsp)
        if any(r.severity == fnv1.SEVERITY_FATAL for r in rsp.results):
            raise RuntimeError(f"fatal result: {rsp.results}")
        current = rsp.requirements if rsp.HasField("requirements") else None
        if (current is None and previous is None) or (
            current is not None and previous is not None and current == previous
        ):
            loop.stable = True
            return loop
        previous = None
        if current is not None:
            previous = fnv1.Requirements()
            previous.CopyFrom(current)
        req.ClearField("extra_resources")
        req.ClearField("required_resources")
        if current is not None:
            for name in sorted(current.extra_resources):
                req.extra_resources[name].CopyFrom(store.fetch(name, current.extra_resources[name]))
            if store.mode == "v2":
                for name in sorted(current.resources):
                    req.required_resources[name].CopyFrom(
                        store.fetch(name, current.resources[name])
                    )
        if rsp.HasField("context"):
            req.context.CopyFrom(rsp.context)
        else:
            req.ClearField("context")
    return loop


def condition_reason(rsp: fnv1.RunFunctionResponse, kind: str) -> str:
    for c in rsp.conditions:
        if c.type == kind:
            return c.reason
    return ""


def claimed_shard(rsp: fnv1.RunFunctionResponse) -> int | None:
    """The shard of the claim a Claiming response returns."""
    from crossplane.function import resource

    for key, desired in rsp.desired.resources.items():
        if key.startswith("tcp-claim-"):
            obj = resource.struct_to_dict(desired.resource)
            if obj.get("kind") == "Object":
                obj = obj["spec"]["forProvider"]["manifest"]
            return int(obj["metadata"]["labels"][labels.SHARD])
    return None
