"""Small builders for the objects tests feed the function: shard Gateways, claims and
tickets."""

from function import labels
from function.builders.lease import claim as build_claim
from function.builders.lease import ticket as build_ticket
from function.builders.listenerset import listener_set as build_listener_set
from function.builders.object import wrap
from function.flavours import FLAVOURS
from function.tickets import DEFAULT_TTL, micro_time, parse_time, ticket_name

NS = "tcp-gateways"


def gateway(
    index: int,
    *,
    pool: str = "postgresql",
    ports: str | None = None,
    capacity: int = 10,
    used: int | None = None,
    accepting: bool | None = True,
    hostname: str | None = "auto",
    own_port: int | None = None,
    name: str | None = None,
    namespace: str = NS,
    address: str | None = None,
) -> dict:
    """A shard Gateway as the pool step (or a person) makes it: slice `index` of 10000+."""
    start = 10000 + (index - 1) * capacity
    ports = ports or f"{start}-{start + capacity - 1}"
    own = own_port if own_port is not None else int(ports.split("-")[1])
    meta_labels = {labels.POOL: pool, labels.SHARD: str(index)}
    if accepting is not None:
        meta_labels[labels.ACCEPTING] = "true" if accepting else "false"
    annotations = {labels.PORTS: ports, labels.CAPACITY: str(capacity)}
    if hostname:
        annotations[labels.HOSTNAME] = f"db{index}.example.ch" if hostname == "auto" else hostname
    if used is not None:
        annotations[labels.USED] = str(used)
    obj = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name or f"{pool}-{index}",
            "namespace": namespace,
            "labels": meta_labels,
            "annotations": annotations,
        },
        "spec": {
            "gatewayClassName": "envoy-gateway",
            "listeners": [{"name": "shard", "port": own, "protocol": "TCP"}],
        },
    }
    if address:
        obj["status"] = {"addresses": [{"type": "IPAddress", "value": address}]}
    return obj


def claim(
    port: int,
    shard: int = 1,
    *,
    holder: str = "someone-else",
    pool: str = "postgresql",
    owner: str = "other",
    wrapped: bool = False,
) -> dict:
    lease = build_claim(
        name=f"tcp-{pool}-{port}",
        namespace=NS,
        pool=pool,
        shard=shard,
        port=port,
        gateway=f"{pool}-{shard}",
        hostname=f"db{shard}.example.ch",
        owner=owner,
        holder=holder,
    )
    return wrap(lease, provider_config="kubernetes") if wrapped else lease


def tenant_listener_set(
    port: int,
    shard: int = 1,
    *,
    namespace: str = "team-a",
    name: str | None = None,
    pool: str = "postgresql",
    parent: dict | None = None,
    accepted: bool | None = None,
    flavour: str = "v1.6",
) -> dict:
    """A tenant's ListenerSet as the tenant step makes it (labels pool, shard, port),
    attached to shard Gateway `<pool>-<shard>`; `parent` replaces fields of its parentRef,
    `accepted` sets the Accepted condition its Gateway reports (None: no status yet)."""
    obj = build_listener_set(
        flavour=FLAVOURS[flavour],
        name=name or f"{namespace}-tcp-listenerset-{port}",
        namespace=namespace,
        labels={labels.POOL: pool, labels.SHARD: str(shard), labels.PORT: str(port)},
        gateway=f"{pool}-{shard}",
        gateway_namespace=NS,
        listener_name="postgresql",
        port=port,
    )
    obj["spec"]["parentRef"].update(parent or {})
    if accepted is not None:
        status = "True" if accepted else "False"
        reason = "Accepted" if accepted else "NotAllowed"
        obj["status"] = {"conditions": [{"type": "Accepted", "status": status, "reason": reason}]}
    return obj


def ticket(
    holder: str,
    created: str,
    *,
    pool: str = "postgresql",
    wrapped: bool = False,
    renewed: str | None = None,
    ttl: int = DEFAULT_TTL,
) -> dict:
    """A waiting tenant's ticket as a lookup returns it, created at `created` and last
    renewed at `renewed` (default: when it was created)."""
    lease = build_ticket(
        name=ticket_name(pool, holder),
        namespace=NS,
        pool=pool,
        owner=holder,
        holder=holder,
        renewed=renewed or micro_time(parse_time(created)),
        ttl=ttl,
    )
    obj = wrap(lease, provider_config="kubernetes") if wrapped else lease
    obj["metadata"]["creationTimestamp"] = created
    return obj


def gateway_report(listener_set: dict, listener: str = "postgresql") -> dict:
    """A listener set (or an Object wrapping one) as observed once its Gateway accepted and
    programmed it, its listener without a conflict."""
    if listener_set.get("kind") == "Object":
        inner = gateway_report(listener_set["spec"]["forProvider"]["manifest"], listener)
        return {**listener_set, "status": {"atProvider": {"manifest": inner}}}

    def condition(kind: str, status: str, reason: str) -> dict:
        at = "2026-11-20T08:16:00Z"
        return {"type": kind, "status": status, "reason": reason, "message": "",
                "lastTransitionTime": at}  # fmt: skip

    conditions = [condition("Accepted", "True", "Accepted"),
                  condition("Programmed", "True", "Programmed")]  # fmt: skip
    entry = {
        "name": listener,
        "attachedRoutes": 1,
        "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}],
        "conditions": [*conditions, condition("Conflicted", "False", "NoConflicts")],
    }
    return {**listener_set, "status": {"conditions": conditions, "listeners": [entry]}}


def accepted_view(resources: dict) -> dict[str, dict]:
    """What a step returned (key -> Desired), as the next reconcile observes it once the
    Gateway accepted its listener sets."""
    observed = {}
    for key, desired in resources.items():
        obj = desired.resource
        inner = obj["spec"]["forProvider"]["manifest"] if obj["kind"] == "Object" else obj
        is_listener_set = inner["kind"] in ("ListenerSet", "XListenerSet")
        observed[key] = gateway_report(obj) if is_listener_set else obj
    return observed


def run_tenant(spec, *, xr: dict, observed: dict, candidates: list[dict]):
    """The tenant step through Crossplane's requirement loop (no Fatal allowed), each
    requirement answered with the `candidates` it matches; the last result."""
    from function import tenant
    from function.step import StepRequest

    lookups: dict = {}
    previous = None
    for _ in range(6):
        result = tenant.run(spec, StepRequest(xr=xr, observed=observed, lookups=lookups))
        assert not result.fatal, result.results
        if result.requirements == previous:
            break
        previous = result.requirements
        lookups = {r.name: [o for o in candidates if r.matches(o)] for r in result.requirements}
    return result
