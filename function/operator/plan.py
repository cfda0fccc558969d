"""Capacity planning with the function's own code: how many shards, public IPs and NodePorts
a number of tenants needs.

Nothing here re-implements the sizing rules. The plan builds a `GatewayPool` input (so bad
figures fail exactly as they would in a Composition), runs the real pool step on it, and adds
tenants one by one through the real tenant allocation (`allocation.decide`), resolving its
lookups the way Crossplane does, against an in-memory pool of Gateways and claims.

The pool step runs when it would act: at the start, whenever the free slots it last reported
minus the tenants placed since fall below the headroom (it would add a shard), whenever a
tenant finds no room (in production the tenant waits in PoolFull until the pool step's next
reconcile) and at the end. Running it after every tenant gives the same pool, because
tenants always take the lowest shard with room, but costs O(tenants²).
"""

import uuid
from dataclasses import asdict, dataclass, field

from pydantic import ValidationError

from function import allocation, labels, pool
from function.allocation import Decision, Phase, Pool, Requirement
from function.builders.lease import claim as build_claim
from function.claims import LEASE_API
from function.inputs import PROVIDER_CAPACITY, GatewayPool
from function.step import StepRequest, StepResult

POOL = "plan"
NAMESPACE = "plan"
NODE_PORT_RANGE = (30000, 32767)  # the Kubernetes default --service-node-port-range
NODE_PORTS = NODE_PORT_RANGE[1] - NODE_PORT_RANGE[0] + 1
REQUIREMENT_ROUNDS = 6  # Crossplane calls a step at most this often per reconcile
_UIDS = uuid.UUID("6f1c1c2e-6d1b-4c39-9a43-0a7d6b1f2a10")  # namespace for tenant UIDs

# GatewayPool field -> the CLI option that sets it, so errors name what the user typed.
OPTIONS = {
    "provider": "--provider",
    "capacity": "--capacity",
    "headroom": "--headroom",
    "minShards": "--min-shards",
    "maxShards": "--max-shards",
}


class PlanError(ValueError):
    """Figures the pool step would reject; one line per problem, naming the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class ShardUse:
    index: int
    ports: str
    used: int
    free: int


@dataclass
class Plan:
    tenants: int
    provider: str
    capacity: int  # listeners per shard (per public IP), the Gateway's own included
    tenantSlotsPerShard: int
    headroom: int
    minShards: int
    maxShards: int
    placed: int = 0
    shards: list[ShardUse] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unplacedPhase: str | None = None  # what the tenant step reports for the first unplaced

    @property
    def public_ips(self) -> int:
        return len(self.shards)  # one LoadBalancer Service, one IP, per shard

    @property
    def node_ports(self) -> int:
        # Every listener is a port of its shard's LoadBalancer Service: the Gateway's own
        # listener plus one per tenant.
        return len(self.shards) + sum(s.used for s in self.shards)

    @property
    def free(self) -> int:
        return sum(s.free for s in self.shards)


# -- the input -------------------------------------------------------------------------------


def pool_input(
    provider: str,
    capacity: int | None = None,
    headroom: int | None = None,
    min_shards: int | None = None,
    max_shards: int | None = None,
) -> GatewayPool:
    """The GatewayPool a Composition would carry; unset figures take the model's defaults."""
    figures = {
        "provider": provider,
        "capacity": capacity,
        "headroom": headroom,
        "minShards": min_shards,
        "maxShards": max_shards,
    }
    given = {k: v for k, v in figures.items() if v is not None}
    document = {
        "pool": POOL,
        "namespace": NAMESPACE,
        "gatewayClassName": "plan",
        "hostname": "shard{index}.plan.invalid",
        "ports": _port_range(provider, capacity, max_shards),
        **given,
    }
    try:
        return GatewayPool.model_validate(document)
    except ValidationError as err:
        raise PlanError([_problem(e) for e in err.errors()]) from None


def _port_range(provider: str, capacity: int | None, max_shards: int | None) -> str:
    """A range that holds maxShards x capacity ports: the plan does not care which ports."""
    size = capacity or PROVIDER_CAPACITY.get(provider) or 2
    shards = max_shards or GatewayPool.model_fields["maxShards"].default
    needed = max(1, shards) * max(1, size)
    start = min(10000, max(1, 65536 - needed))
    return f"{start}-{min(65535, start + needed - 1)}"


def _problem(error: dict) -> str:
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    where = ".".join(str(part) for part in error.get("loc", ()))
    if where:
        option = OPTIONS.get(where)
        message = f"{where}{f' ({option})' if option else ''}: {message}"
    if message.startswith("ports:"):
        message += " (a pool's ports must fit in 1-65535: lower --max-shards or --capacity)"
    return message


# -- the simulation --------------------------------------------------------------------------


class _Pool:
    """The pool's Gateways and claims, kept as the pool step and the tenants write them."""

    def __init__(self, spec: GatewayPool) -> None:
        self.spec = spec
        self.ref = Pool(name=spec.pool, namespace=spec.namespace, wrapped=False)
        self.claims: dict[int, list[dict]] = {}  # shard index -> claims (the lookup's index)
        self.ports: set[int] = set()
        self.observed: dict[str, dict] = {}
        self.status: dict = {}
        self.warnings: list[str] = []
        self.placed_since_reconcile = 0

    def all_claims(self) -> list[dict]:
        return [c for index in sorted(self.claims) for c in self.claims[index]]

    def reconcile(self) -> None:
        """One pool step reconcile; its Gateways become the observed (and looked-up) ones."""
        request = StepRequest(
            xr={"apiVersion": "plan/v1", "kind": "XGatewayPool", "metadata": {"name": POOL}},
            observed=self.observed,
            # The plan's tenants are cluster-scoped: their claims are their slots; nobody waits.
            lookups={
                pool.CLAIMS: self.all_claims(),
                pool.LISTENER_SETS: [],
                allocation.TICKETS: [],
            },
        )
        result: StepResult = pool.run(self.spec, request)
        if result.fatal:
            raise PlanError([r.message for r in result.results])
        self.observed = {key: desired.resource for key, desired in result.resources.items()}
        self.status = result.status or {}
        self.warnings = [r.message for r in result.results]
        self.placed_since_reconcile = 0

    def would_grow(self) -> bool:
        free = self.status.get("totals", {}).get("free", 0) - self.placed_since_reconcile
        shards = self.status.get("totals", {}).get("shards", 0)
        return free < self.spec.headroom and shards < self.spec.maxShards

    def place(self, identity: str) -> Decision:
        """One tenant's claim-first reconcile; a claim it picks is written at once."""
        decision = self._decide(identity)
        if decision.phase is Phase.CLAIM:
            alloc = decision.allocation
            if alloc.port in self.ports:  # the protocol never picks a taken port
                raise RuntimeError(f"allocation picked port {alloc.port}, which is claimed")
            self.ports.add(alloc.port)
            self.claims.setdefault(alloc.shard, []).append(
                build_claim(
                    name=alloc.claim_name,
                    namespace=self.spec.namespace,
                    pool=self.spec.pool,
                    shard=alloc.shard,
                    port=alloc.port,
                    gateway=alloc.gateway,
                    hostname=alloc.hostname,
                    owner=identity,
                    holder=identity,
                )
            )
            self.placed_since_reconcile += 1
        return decision

    def _decide(self, identity: str) -> Decision:
        # Crossplane's requirement loop: resolve what the step asked for, call it again,
        # until it asks for nothing new.
        lookups: dict[str, list[dict]] = {}
        for _ in range(REQUIREMENT_ROUNDS):
            decision = allocation.decide(self.ref, identity, None, lookups)
            missing = [r for r in decision.requirements if r.name not in lookups]
            if not missing:
                return decision
            for requirement in missing:
                lookups[requirement.name] = self._select(requirement)
        return allocation.decide(self.ref, identity, None, lookups)

    def _select(self, requirement: Requirement) -> list[dict]:
        if requirement.api_version == LEASE_API and requirement.kind == "Lease":
            shard = requirement.match_labels.get(labels.SHARD)
            candidates = self.claims.get(int(shard), []) if shard is not None else self.all_claims()
        else:
            candidates = list(self.observed.values())
        return [o for o in candidates if requirement.matches(o)]


def tenant_uid(number: int) -> str:
    """A stable UID per tenant: the hashed start offset makes plans reproducible."""
    return str(uuid.uuid5(_UIDS, str(number)))


def plan(
    tenants: int,
    provider: str,
    capacity: int | None = None,
    headroom: int | None = None,
    min_shards: int | None = None,
    max_shards: int | None = None,
) -> Plan:
    spec = pool_input(provider, capacity, headroom, min_shards, max_shards)
    state = _Pool(spec)
    state.reconcile()
    result = Plan(
        tenants=tenants,
        provider=spec.provider,
        capacity=spec.shard_capacity,
        tenantSlotsPerShard=spec.shard_capacity - 1,
        headroom=spec.headroom,
        minShards=spec.minShards,
        maxShards=spec.maxShards,
    )
    for number in range(tenants):
        identity = tenant_uid(number)
        decision = state.place(identity)
        if decision.phase is not Phase.CLAIM:
            state.reconcile()  # the tenant waits for the pool step, then tries again
            decision = state.place(identity)
        if decision.phase is not Phase.CLAIM:
            result.unplacedPhase = decision.phase.value
            break  # nothing changes for the next tenant either
        result.placed += 1
        if state.would_grow():
            state.reconcile()
    state.reconcile()
    result.shards = [
        ShardUse(s["index"], s["ports"], s["used"], s["free"]) for s in state.status["shards"]
    ]
    result.warnings = state.warnings
    if result.placed < tenants and spec.headroom == 0 and len(result.shards) < spec.maxShards:
        result.warnings.append(
            "with headroom 0 the pool step never adds a shard for tenants waiting on a full "
            "pool: set a headroom of at least 1"
        )
    if result.node_ports > NODE_PORTS:
        result.warnings.append(
            f"the pool needs {result.node_ports} NodePorts, more than the {NODE_PORTS} of the "
            f"default Service NodePort range {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}, "
            "which every LoadBalancer Service of the cluster shares"
        )
    return result


# -- rendering -------------------------------------------------------------------------------


def to_dict(result: Plan) -> dict:
    data = asdict(result)
    data.update(
        publicIPs=result.public_ips,
        nodePorts=result.node_ports,
        nodePortRange=f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}",
        nodePortsAvailable=NODE_PORTS,
        free=result.free,
        unplaced=result.tenants - result.placed,
    )
    return data


def render_text(result: Plan) -> str:
    share = 100 * result.node_ports / NODE_PORTS
    lines = [
        f"Plan for {result.tenants} tenants on {result.provider}: {result.capacity} listeners "
        f"per IP ({result.tenantSlotsPerShard} tenant slots per shard), headroom "
        f"{result.headroom}, {result.minShards}-{result.maxShards} shards",
        "",
        f"Shards:          {len(result.shards)}",
        f"Public IPs:      {result.public_ips}",
        f"Tenants placed:  {result.placed} of {result.tenants}",
        f"Free slots:      {result.free}",
        f"NodePorts:       {result.node_ports} ({len(result.shards)} shard listeners + "
        f"{result.placed} tenants; {share:.1f}% of the default range "
        f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]})",
    ]
    if result.placed < result.tenants:
        lines.append(
            f"Does not fit: {result.tenants - result.placed} tenants get no port "
            f"(the tenant step reports {result.unplacedPhase})"
        )
    lines += [f"Warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"
