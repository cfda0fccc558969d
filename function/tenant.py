"""The tenant step (`TCPAccess`): from one request to the resources, status and conditions.

The protocol itself lives in `allocation.py`; this module reads the request, applies the
first rule of the codebase (never return less than the XR already has because a lookup is
incomplete), and builds the data path once the claim is held.
"""

from dataclasses import dataclass

from function import allocation, fieldpath, readiness, shards
from function import claims as claimlib
from function import labels as labellib
from function.allocation import Decision, Phase
from function.builders.lease import claim as build_claim
from function.builders.listenerset import listener_set
from function.builders.networkpolicy import network_policy
from function.builders.object import wrap
from function.builders.referencegrant import reference_grant
from function.builders.tcproute import tcp_route
from function.flavours import FLAVOURS
from function.inputs import TCPAccess
from function.names import fit, is_dns_label, label_value
from function.observed import keep, live
from function.step import WARNING, Condition, Desired, Result, StepRequest, StepResult, fatal

CONDITION = "TCPAccessReady"
CLAIM_KEY_PREFIX = "tcp-claim-"
LISTENERSET_KEY = "tcp-listenerset"
ROUTE_KEY = "tcp-route"
REFERENCEGRANT_KEY = "tcp-referencegrant"
NETWORKPOLICY_KEY = "tcp-networkpolicy"
DATA_PATH_KEYS = (LISTENERSET_KEY, ROUTE_KEY, REFERENCEGRANT_KEY, NETWORKPOLICY_KEY)


def claim_key(port: int) -> str:
    # Crossplane binds an object's name to its key for good, and the claim's name carries
    # the port: so the key must carry the port too.
    return f"{CLAIM_KEY_PREFIX}{port}"


def is_ours(key: str) -> bool:
    return key.startswith(CLAIM_KEY_PREFIX) or key in DATA_PATH_KEYS


class InputError(ValueError):
    """Input that is valid on its own but not for this XR; the message names the field."""


@dataclass(frozen=True)
class Backend:
    namespace: str
    service: str
    pod_selector: dict[str, str]


@dataclass(frozen=True)
class Tenant:
    """Who the XR is, as the tenant step needs it."""

    name: str
    identity: str  # the XR's UID: the claim holder
    provider_config: str | None
    backend: Backend


def run(spec: TCPAccess, request: StepRequest) -> StepResult:
    if not enabled(spec, request):
        return _disabled(spec)
    try:
        tenant = _tenant(spec, request)
    except InputError as err:
        return fatal(str(err))

    wrapped = spec.wrap is not None
    pool = allocation.Pool(
        name=spec.pool,
        namespace=spec.gatewayNamespace,
        wrapped=wrapped,
        static_shards=(
            None
            if spec.gateways is None
            else shards.from_static(spec.gateways, spec.gatewayNamespace)
        ),
    )
    held, not_held = _observed_claims(request, tenant, wrapped)
    decision = allocation.decide(
        pool, tenant.identity, held, request.lookups, claim_attempt(spec, request)
    )

    result = StepResult(status_path=spec.statusPath, requirements=decision.requirements)
    result.results.extend(Result(WARNING, w) for w in decision.warnings)
    # Rule 6 and its corollaries: whatever the XR has of ours is returned unchanged unless
    # we deliberately build it anew below.
    for key, obj in request.observed.items():
        if is_ours(key):
            result.resources[key] = Desired(keep(obj), _ready(key, obj, tenant, wrapped))

    if decision.phase is Phase.STICKY:
        for stale in held_but_unused(request, tenant, wrapped, decision):
            # A second claim can only come from an interrupted earlier reconcile; release it.
            result.resources.pop(stale, None)
        _use(spec, request, tenant, decision, result)
    else:
        _not_yet(spec, request, tenant, decision, result)
    for key in not_held:
        result.results.append(
            Result(WARNING, f"claim {key} is composed by this XR but held by someone else")
        )
    return result


def claim_attempt(spec: TCPAccess, request: StepRequest) -> int:
    """Which claim in a row this is: the XR's status remembers a claim that never came back
    as held (another XR got that port first)."""
    previous = fieldpath.mapping(request.xr, spec.statusPath)
    tried = previous.get("claimAttempts")
    if previous.get("phase") != "Claiming" or not isinstance(tried, int | float):
        return 1
    return max(1, min(int(tried), 1000)) + 1


def enabled(spec: TCPAccess, request: StepRequest) -> bool:
    if not spec.enabled:
        return False
    if spec.enabledFromFieldPath is None:
        return True
    value = fieldpath.get(request.xr, spec.enabledFromFieldPath, None)
    if value is None:
        value = fieldpath.get(request.desired_xr, spec.enabledFromFieldPath, None)
    if spec.enabledValue is not None:
        return value is not None and fieldpath.render("{v}", {"v": value}) == spec.enabledValue
    return bool(value) and value not in ("false", "False", "0")


def _disabled(spec: TCPAccess) -> StepResult:
    # The one case where resources go away: the user turned the feature off.
    return StepResult(
        status_path=spec.statusPath,
        status={"phase": "Disabled"},
        conditions=[Condition(CONDITION, "False", "Disabled", "TCP access is turned off")],
    )


def _tenant(spec: TCPAccess, request: StepRequest) -> Tenant:
    metadata = fieldpath.mapping(request.xr, "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("metadata.name: the observed XR has no name")
    uid = metadata.get("uid")
    # `crossplane render` XRs often have no UID; the name then stands in for it.
    identity = uid if isinstance(uid, str) and uid else name

    sources = (request.xr, request.desired_xr)
    namespace = _render("backend.namespace", spec.backend.namespace, sources)
    if not is_dns_label(namespace):
        raise InputError(f"backend.namespace: {namespace!r} is not a DNS-1123 label")
    service = _render("backend.service", spec.backend.service, sources)
    if not is_dns_label(service):
        raise InputError(f"backend.service: {service!r} is not a DNS-1123 label")
    selector = {
        key: _render(f"backend.podSelector.{key}", value, sources)
        for key, value in spec.backend.podSelector.items()
    }

    provider_config = None
    if spec.wrap is not None:
        provider_config = spec.wrap.providerConfigName
        if spec.wrap.providerConfigFromLabel:
            value = fieldpath.mapping(metadata, "labels").get(spec.wrap.providerConfigFromLabel)
            if isinstance(value, str) and value:
                provider_config = value
    return Tenant(name, identity, provider_config, Backend(namespace, service, selector))


def _render(field: str, template: str, sources: tuple[dict, ...]) -> str:
    try:
        return fieldpath.render(template, *sources)
    except fieldpath.MissingField as err:
        raise InputError(
            f"{field}: {template!r} names XR field {err.path}, which is not set"
        ) from None
    except ValueError as err:
        raise InputError(f"{field}: {err}") from None


def _observed_claims(request: StepRequest, tenant: Tenant, wrapped: bool):
    """(the claim this XR holds, keys of observed claims it does not hold)."""
    held: list[claimlib.Claim] = []
    not_held: list[str] = []
    for key, obj in sorted(request.observed.items()):
        if not key.startswith(CLAIM_KEY_PREFIX):
            continue
        claim = claimlib.parse(obj)
        if claim is not None and claim.holder == tenant.identity:
            held.append(claim)
        else:
            not_held.append(key)
    if not held:
        return None, not_held
    # Prefer the claim the data path already uses, then the lowest port: deterministic.
    listener = request.observed.get(LISTENERSET_KEY) or {}
    in_use = readiness.listener_port(claimlib.inner_manifest(listener) if wrapped else listener)
    held.sort(key=lambda c: (c.port != in_use, c.port))
    return held[0], not_held


def held_but_unused(request, tenant: Tenant, wrapped: bool, decision: Decision) -> list[str]:
    chosen = decision.allocation.claim_name if decision.allocation else None
    stale = []
    for key, obj in request.observed.items():
        if key.startswith(CLAIM_KEY_PREFIX):
            claim = claimlib.parse(obj)
            if claim and claim.holder == tenant.identity and claim.name != chosen:
                stale.append(key)
    return stale


def _ready(key: str, observed: dict | None, tenant: Tenant, wrapped: bool) -> bool:
    """Readiness per DESIGN §5, from the observed object under the same key."""
    if observed is None:
        return False
    obj = live(observed, wrapped)
    if obj is None:
        return False
    if key.startswith(CLAIM_KEY_PREFIX):
        return fieldpath.get(obj, "spec.holderIdentity", None) == tenant.identity
    if key == LISTENERSET_KEY:
        return readiness.listener_set_ready(obj)
    if key == ROUTE_KEY:
        return readiness.route_ready(obj)
    return True


def _use(spec, request: StepRequest, tenant: Tenant, decision: Decision, result: StepResult):
    """Rule 3: the claim is held; build the data path on its shard and port."""
    alloc = decision.allocation
    shard = decision.shard
    wrapped = spec.wrap is not None
    flavour = FLAVOURS[spec.gatewayAPI]
    backend = tenant.backend
    route_namespace = backend.namespace if spec.placement == "Backend" else spec.gatewayNamespace
    common = {labellib.POOL: spec.pool, labellib.OWNER: label_value(tenant.name)}

    def name(suffix: str) -> str:
        return fit(f"{tenant.name}-tcp-{suffix}")

    objects = {
        claim_key(alloc.port): build_claim(
            name=alloc.claim_name,
            namespace=spec.gatewayNamespace,
            pool=spec.pool,
            shard=alloc.shard,
            port=alloc.port,
            gateway=alloc.gateway,
            hostname=alloc.hostname,
            owner=tenant.name,
            holder=tenant.identity,
        ),
        LISTENERSET_KEY: listener_set(
            flavour=flavour,
            name=name("listenerset"),
            namespace=route_namespace,
            labels=common,
            gateway=alloc.gateway,
            gateway_namespace=spec.gatewayNamespace,
            listener_name=spec.listenerName,
            port=alloc.port,
        ),
        ROUTE_KEY: tcp_route(
            flavour=flavour,
            name=name("route"),
            namespace=route_namespace,
            labels=common,
            listener_set=name("listenerset"),
            section=spec.listenerName,
            backend_namespace=backend.namespace,
            service=backend.service,
            port=spec.backend.port,
        ),
        NETWORKPOLICY_KEY: network_policy(
            name=name("networkpolicy"),
            namespace=backend.namespace,
            labels=common,
            pod_selector=backend.pod_selector,
            pod_port=spec.pod_port,
            from_namespace=spec.data_plane_namespace,
            from_pod_selector=spec.dataPlane.podSelector,
        ),
    }
    if route_namespace != backend.namespace:
        objects[REFERENCEGRANT_KEY] = reference_grant(
            flavour=flavour,
            name=name("referencegrant"),
            namespace=backend.namespace,
            labels=common,
            route_namespace=route_namespace,
            service=backend.service,
        )
    else:
        result.resources.pop(REFERENCEGRANT_KEY, None)  # placement changed: no grant needed

    for key, obj in objects.items():
        desired = wrap(obj, provider_config=tenant.provider_config) if wrapped else obj
        observed = request.observed.get(key)
        result.resources[key] = Desired(desired, _ready(key, observed, tenant, wrapped))

    address = shard.address if shard else None
    host = alloc.hostname or address
    result.status = {
        "host": host,
        "port": alloc.port,
        "shard": alloc.shard,
        "gateway": alloc.gateway,
        "address": address,
    }
    keys = spec.connectionDetails
    if keys.host and host:
        result.connection[keys.host] = host.encode()
    if keys.port:
        result.connection[keys.port] = str(alloc.port).encode()

    where = f"{host or alloc.gateway}:{alloc.port}"
    listener = live(request.observed.get(LISTENERSET_KEY), wrapped)
    if readiness.listener_conditions(listener, spec.listenerName).get("Conflicted") == "True":
        reason, message = "Conflicted", f"port {alloc.port} is already used behind {alloc.gateway}"
        result.results.append(Result(WARNING, f"listener {message}", reason))
    elif all(d.ready for k, d in result.resources.items() if k in objects):
        reason, message = "Ready", f"TCP access at {where}"
    else:
        reason, message = "Programming", f"waiting for the Gateway to program {where}"
    looked_up = allocation.shard_gateway_requirement(alloc.shard) in request.lookups
    if shard is None and spec.gateways is None and looked_up:
        message = (
            f"shard Gateway {alloc.gateway} (index {alloc.shard}) is gone; the tenant keeps "
            f"port {alloc.port} and its resources"
        )
        result.results.append(Result(WARNING, message, "ShardMissing"))
    result.status["phase"] = reason
    result.status = {k: v for k, v in result.status.items() if v is not None}
    status = "True" if reason == "Ready" else "False"
    result.conditions.append(Condition(CONDITION, status, reason, message))


def _not_yet(spec, request: StepRequest, tenant: Tenant, decision: Decision, result: StepResult):
    """Claim first, or wait: nothing port-dependent is built; what the XR had is kept."""
    previous = fieldpath.get(request.xr, spec.statusPath, None)
    status = dict(previous) if isinstance(previous, dict) else {}
    keys = spec.connectionDetails
    for key in (keys.host, keys.port):
        if key and key in request.connection:
            result.connection[key] = request.connection[key]

    if decision.phase is Phase.CLAIM:
        alloc = decision.allocation
        claim = build_claim(
            name=alloc.claim_name,
            namespace=spec.gatewayNamespace,
            pool=spec.pool,
            shard=alloc.shard,
            port=alloc.port,
            gateway=alloc.gateway,
            hostname=alloc.hostname,
            owner=tenant.name,
            holder=tenant.identity,
        )
        if spec.wrap is not None:
            claim = wrap(claim, provider_config=tenant.provider_config)
        result.resources[claim_key(alloc.port)] = Desired(claim, False)
        status["claimAttempts"] = claim_attempt(spec, request)
        reason = "Claiming"
        message = f"claiming port {alloc.port} on shard {alloc.shard} ({alloc.gateway})"
    elif decision.phase is Phase.POOL_FULL:
        reason = "PoolFull"
        message = f"no free port in pool {spec.pool}; the pool step adds a shard"
        result.results.append(Result(WARNING, message, reason))
    elif decision.phase is Phase.NO_SHARDS:
        reason = "NoShards"
        message = (
            f"no usable shard Gateway labelled {labellib.POOL}={spec.pool} "
            f"in namespace {spec.gatewayNamespace}"
        )
        result.results.append(Result(WARNING, message, reason))
    else:
        reason, message = "Claiming", "waiting for the pool's shards and claims to be read"
    status["phase"] = reason
    result.status = status
    result.conditions.append(Condition(CONDITION, "False", reason, message))
