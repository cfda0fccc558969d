"""The tenant step (`TCPAccess`): from one request to the resources, status and conditions.

The protocol itself lives in `allocation.py`; this module reads the request, applies the
first rule of the codebase (never return less than the XR already has because a lookup is
incomplete), and builds the data path once the claim is held.
"""

import base64
import dataclasses
import math
from dataclasses import dataclass, field

from function import (
    allocation,
    backends,
    fieldpath,
    publish,
    readiness,
    shards,
    sourcepolicy,
    steps,
    tickets,
)
from function import claims as claimlib
from function import labels as labellib
from function.allocation import Adoption, Decision, Phase
from function.builders.lease import claim as build_claim
from function.builders.lease import ticket as build_ticket
from function.builders.listenerset import listener_set
from function.builders.networkpolicy import network_policy
from function.builders.object import wrap
from function.builders.referencegrant import reference_grant
from function.builders.tcproute import tcp_route
from function.flavours import FLAVOURS
from function.inputs import SERVICE_NAME_RULE, Patch, TCPAccess
from function.names import (
    is_dns_1035_label,
    is_dns_label,
    is_dns_subdomain,
    is_label_value,
    label_value,
    owned,
)
from function.observed import keep, live
from function.requirement import Requirement
from function.step import (
    ADOPTED,
    CLAIMED,
    LOST,
    RELEASED,
    WARNING,
    Condition,
    Desired,
    Result,
    StepRequest,
    StepResult,
    fatal,
)

# The keys and condition of a pipeline's first (or only) TCPAccess step; later steps have
# their own (function/steps.py), and input `resources` may change the data path's.
CONDITION = steps.FIRST_CONDITION
CLAIM_KEY_PREFIX = "tcp-claim-"
# Blocked claims one XR may hold (DESIGN §4 rule 8): each keeps a squatted port taken; past
# this many the XR stops claiming (reason Blocked) instead of hoarding the pool's ports.
MAX_BLOCKED = 3
LISTENERSET_KEY = "tcp-listenerset"
ROUTE_KEY = "tcp-route"
REFERENCEGRANT_KEY = "tcp-referencegrant"
NETWORKPOLICY_KEY = "tcp-networkpolicy"
SECURITYPOLICY_KEY = "tcp-securitypolicy"
DATA_PATH_KEYS = (
    LISTENERSET_KEY,
    ROUTE_KEY,
    REFERENCEGRANT_KEY,
    NETWORKPOLICY_KEY,
    SECURITYPOLICY_KEY,
)
ROLES = ("listenerSet", "route", "networkPolicy", "referenceGrant", "securityPolicy")


FIRST = steps.Scope(steps.FIRST_PREFIX, steps.FIRST_STATUS_PATH, CONDITION, first=True)


def claim_key(port: int) -> str:
    return FIRST.claim_key(port)


def probe_key(port: int) -> str:
    return FIRST.probe_key(port)


class InputError(ValueError):
    """Input that is valid on its own but not for this XR; the message names the field."""


@dataclass(frozen=True)
class Backend:
    namespace: str
    service: str | None  # None: found by its labels (lookup)
    pod_selector: dict[str, str]
    lookup: Requirement | None = None


@dataclass(frozen=True)
class Named:
    """Where one data-path object lives for this XR."""

    key: str  # desired-resource key
    name: str  # the object's name
    object_name: str  # the provider-kubernetes Object's name, when wrapped


@dataclass(frozen=True)
class Tenant:
    """Who the XR is, as the tenant step needs it."""

    name: str
    identity: str  # the claim holder: the XR's UID (qualified for later steps, steps.py)
    provider_config: str | None
    backend: Backend
    objects: dict[str, Named]  # role -> where
    namespace: str | None = None  # set for a Crossplane v2 Namespaced XR
    warnings: tuple[str, ...] = ()  # about the input, for this XR (see _tenant)
    scope: steps.Scope = FIRST  # this step's keys among the pipeline's TCPAccess steps
    existing: dict[str, Named] = field(default_factory=dict)  # key -> names it has now
    patches: tuple[Patch, ...] = ()  # the input's, with their resource keys rendered

    def place(self, key: str, name: str, object_name: str, *, shorten: bool = False) -> Named:
        """Where the object under `key` lives: where it is, if the XR composes it already
        (a new name is a delete and a create: a listener would lose its port), else under
        names no other XR can get (names.owned)."""
        if key in self.existing:
            return self.existing[key]
        uid = self.identity
        inner = owned(name, uid, key, shorten=shorten)
        return Named(key, inner, owned(object_name, uid, key, shorten=shorten))

    def listener_set(self, port: int) -> Named:
        """A Namespaced XR's listener set carries its port: a new port is a new object, so
        its age never beats a tenant that was there first."""
        named = self.objects["listenerSet"]
        if self.namespace is None:
            return named
        return self.place(f"{named.key}-{port}", f"{named.name}-{port}", named.object_name)

    def probe(self, port: int) -> Named:
        """A blocked claim's probe. Always hashed: `<listener set>-probe-<port>` could be
        the very name another XR's template renders for its own listener set."""
        named = self.objects["listenerSet"]
        key = self.scope.probe_key(port)
        suffix = f"-probe-{port}"
        return self.place(key, named.name + suffix, named.object_name + suffix, shorten=True)

    def key(self, role: str) -> str:
        return self.objects[role].key

    def is_ours(self, key: str) -> bool:
        return (
            self.scope.is_claim_key(key)
            or self.scope.is_probe_key(key)
            or key in (self.scope.secret_key, self.scope.ticket_key)
            or any(n.key == key for n in self.objects.values())
            or self.is_listener_set(key)
        )

    def is_listener_set(self, key: str) -> bool:
        base = self.objects["listenerSet"].key
        if self.namespace is None:
            return key == base
        suffix = key.removeprefix(f"{base}-")
        return key != suffix and suffix.isdigit()


def run(spec: TCPAccess, request: StepRequest) -> StepResult:
    try:
        scope, entries = steps.resolve(spec, request.context)
    except steps.StepConflict as err:
        return fatal(str(err))
    if scope.status_path != spec.statusPath:
        spec = spec.model_copy(update={"statusPath": scope.status_path})
    result = _run(spec, request, scope)
    result.context[steps.CONTEXT_KEY] = entries  # later TCPAccess steps learn their place
    return result


def _run(spec: TCPAccess, request: StepRequest, scope: steps.Scope) -> StepResult:
    try:
        _check_writes(spec, request)
        if not enabled(spec, request):
            return _disabled(spec, scope)
        tenant = _tenant(spec, request, scope)
    except InputError as err:
        return fatal(str(err))

    wrapped = spec.wrap is not None
    flavour = FLAVOURS[spec.gatewayAPI]
    pool = allocation.Pool(
        name=spec.pool,
        namespace=spec.gatewayNamespace,
        wrapped=wrapped,
        static_shards=(
            None
            if spec.gateways is None
            else shards.from_static(spec.gateways, spec.gatewayNamespace)
        ),
        respect_legacy=spec.respectLegacyAllocations,
        legacy_lease_namespace=spec.legacyLeaseNamespace,
        listener_sets=(flavour.listenerset_api, flavour.listenerset_kind),
    )
    held, mine, released = None, ObservedClaims(), []
    lost = False  # the port the XR tried or listened on last went to another
    if tenant.namespace is not None:
        current, warning = _placed(spec, request, tenant)
        lost = current is not None and current.conflicted
        decision = allocation.place(
            pool,
            tenant.identity,
            current,
            request.lookups,
            attempt=claim_attempt(spec, request),
            pending=_placed_earlier(request, scope),
            now=request.now,
        )
        if warning:
            decision.warnings.append(warning)
    else:
        mine = _observed_claims(request, tenant, spec.pool)
        released = _released(spec, request, tenant, mine.blocked)
        mine.blocked = [b for b in mine.blocked if b not in released]
        held = _in_use(mine, request, tenant, wrapped)
        decision = allocation.decide(
            pool,
            tenant.identity,
            held,
            request.lookups,
            attempt=claim_attempt(spec, request),
            adopt=None if held else _adoption(request, tenant, wrapped, mine.blocked),
            owner=label_value(tenant.name),
            searching=_last_phase(spec, request) in NO_SLOT,
            avoid=frozenset(tried_ports(spec, request)[:-1]),
            now=request.now,
            pending=_placed_earlier(request, scope),
        )
        _moving(decision, mine.blocked)
        _bounded(decision, mine.blocked)
        lost = _claim_lost(spec, request)

    result = StepResult(status_path=spec.statusPath, requirements=decision.requirements)
    if tenant.backend.lookup is not None:
        result.requirements.append(tenant.backend.lookup)
    if lost and decision.phase not in (Phase.STICKY, Phase.PENDING):
        result.claims.append(LOST)
    result.timed = decision.timed
    result.results.extend(Result(WARNING, w) for w in (*tenant.warnings, *decision.warnings))
    # Rule 6 and its corollaries: whatever the XR has of ours is returned unchanged unless
    # we deliberately build it anew below.
    for key, obj in request.observed.items():
        if not tenant.is_ours(key):
            continue
        if key in mine.foreign and key in request.desired:
            continue  # another pool's claim an earlier step returns: its version stands
        # Another pool's claim no earlier step returns (a later step's, or one left from
        # before the input's `pool` changed) is kept too: Crossplane would delete it.
        result.resources[key] = Desired(keep(obj), _ready(key, obj, tenant, wrapped))
    if tenant.namespace is None:
        for key, _ in released:  # the Gateway gave the port back: nobody else has it
            result.resources.pop(key, None)
            result.claims.append(RELEASED)
        probed = {tenant.scope.probe_key(claim.port): claim for _, claim in mine.blocked}
        for key in [k for k in result.resources if tenant.scope.is_probe_key(k)]:
            if key not in probed:  # its claim is released (or gone): nothing to watch
                result.resources.pop(key)
        for key, claim in probed.items():
            probe = _probe(spec, tenant, claim)
            if probe is not None:
                result.resources[key] = Desired(probe, True)

    if decision.phase is Phase.STICKY:
        if held is None and tenant.namespace is None:
            # The XR as read lags behind its claim, and may not refer to its ticket yet:
            # Crossplane deletes only what the XR refers to, so the ticket stays until the
            # XR shows the claim (or it would be left behind).
            _queue(spec, request, tenant, result)
        else:
            result.resources.pop(scope.ticket_key, None)  # it has its port: it leaves the queue
        chosen = decision.allocation.claim_name
        for key, claim in mine.held:
            if claim.name != chosen:
                # A second claim can only come from an interrupted earlier reconcile: release
                # it (a blocked one is not among these: its port stays taken).
                result.resources.pop(key, None)
                result.claims.append(RELEASED)
        _use(spec, request, tenant, decision, result)
    elif decision.phase is Phase.CLAIM and tenant.namespace is not None:
        _use(spec, request, tenant, decision, result)  # its listener is its claim
        result.claims.append(CLAIMED)
    else:
        _not_yet(spec, request, tenant, decision, result, [c for _, c in mine.blocked])
    for key in mine.not_held:
        result.results.append(
            Result(WARNING, f"claim {key} is composed by this XR but held by someone else")
        )
    return result


def _placed_earlier(request: StepRequest, scope: steps.Scope) -> list[dict]:
    """The claims (and Namespaced XRs' listener sets) earlier TCPAccess steps of this
    pipeline return for the XR: ports taken before they are applied. Only their keys are
    read (earlier steps' resources are converted only when named)."""
    return [request.desired[key] for key in request.desired if scope.placed_earlier(key)]


def claim_attempt(spec: TCPAccess, request: StepRequest) -> int:
    """Which try in a row this is: the XR's status remembers a claim that never came back
    as held (another XR got that port first), or a search that found no slot."""
    previous = fieldpath.mapping(request.xr, spec.statusPath)
    tried = previous.get("claimAttempts")
    if previous.get("phase") not in SEARCHING or not isinstance(tried, int | float):
        return 1
    return max(0, int(tried)) % 1000 + 1  # wraps: a long search keeps moving


TRIED_PORTS = 8  # claim attempts the XR's status remembers


def tried_ports(spec: TCPAccess, request: StepRequest) -> list[int]:
    """The ports of the XR's latest claim attempts that never came back as held, oldest
    first (status `triedPorts`). All but the last are avoided: the last may only lag."""
    previous = fieldpath.mapping(request.xr, spec.statusPath)
    if previous.get("phase") not in SEARCHING:
        return []
    tried = previous.get("triedPorts")
    if not isinstance(tried, list):
        return []
    return [
        int(port)
        for port in tried[-TRIED_PORTS:]
        if isinstance(port, int | float) and not isinstance(port, bool) and port == int(port)
    ]


def _claim_lost(spec: TCPAccess, request: StepRequest) -> bool:
    """The XR's last reconcile issued a claim (its status says Claiming, with the port):
    unless that claim now comes back as held, another XR took the port."""
    previous = fieldpath.mapping(request.xr, spec.statusPath)
    return previous.get("phase") in ("Claiming", "Conflicted") and bool(tried_ports(spec, request))


NO_SLOT = ("PoolFull", "Queued")  # phases of an XR whose last search found no slot
SEARCHING = ("Claiming", "Conflicted", *NO_SLOT)  # phases of a portless XR


def _last_phase(spec: TCPAccess, request: StepRequest) -> object:
    return fieldpath.mapping(request.xr, spec.statusPath).get("phase")


def enabled(spec: TCPAccess, request: StepRequest) -> bool:
    if not spec.enabled:
        return False
    if spec.enabledFromFieldPath is None:
        return True
    value = fieldpath.get(request.xr, spec.enabledFromFieldPath, None)
    if value is None:
        value = fieldpath.get(request.desired_xr, spec.enabledFromFieldPath, None)
    if isinstance(value, dict | list):
        raise InputError(
            f"enabledFromFieldPath: XR field {spec.enabledFromFieldPath} is "
            f"{fieldpath.kind_of(value)}, not a value"
        )
    if spec.enabledValue is not None:
        return value is not None and fieldpath.render("{v}", {"v": value}) == spec.enabledValue
    return bool(value) and value not in ("false", "False", "0")


def _check_writes(spec: TCPAccess, request: StepRequest) -> None:
    """The step replaces its status object and patched fields on the desired XR: a value of
    another type on the way there (another step's) is a clash, not something to overwrite."""
    writes = [("statusPath", spec.statusPath)]
    for number, patch in enumerate(spec.patches):
        if patch.resource is None:  # the patched field itself may hold anything
            writes.append((f"patches.{number}.fieldPath", patch.fieldPath.rpartition(".")[0]))
    for where, path in writes:
        problem = fieldpath.clash(request.desired_xr, path)
        if problem:
            raise InputError(f"{where}: in the desired XR, {problem}")


def _disabled(spec: TCPAccess, scope: steps.Scope) -> StepResult:
    # The one case where resources go away: the user turned the feature off.
    return StepResult(
        status_path=spec.statusPath,
        status={"phase": "Disabled"},
        conditions=[Condition(scope.condition, "False", "Disabled", "TCP access is turned off")],
    )


def _tenant(spec: TCPAccess, request: StepRequest, scope: steps.Scope) -> Tenant:
    metadata = fieldpath.mapping(request.xr, "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("metadata.name: the observed XR has no name")
    uid = metadata.get("uid")
    # `crossplane render` XRs often have no UID; the name then stands in for it.
    identity = scope.identity(uid if isinstance(uid, str) and uid else name)

    sources = (request.xr, request.desired_xr)
    warnings: list[str] = []  # about input the XR makes us ignore, or that opens too much
    namespace = _render("backend.namespace", spec.backend.namespace, sources)
    if not is_dns_label(namespace):
        raise InputError(f"backend.namespace: {namespace!r} is not a DNS-1123 label")
    service, lookup = None, None
    if spec.backend.service is not None:
        service = _render("backend.service", spec.backend.service, sources)
        if not is_dns_1035_label(service):
            raise InputError(f"backend.service: {service!r} {SERVICE_NAME_RULE}")
    else:
        wanted = {
            key: _render(f"backend.serviceSelector.{key}", value, sources)
            for key, value in (spec.backend.serviceSelector or {}).items()
        }
        for key, value in wanted.items():
            if not is_label_value(value):  # a selector may ask for no other
                raise InputError(f"backend.serviceSelector.{key}: {value!r} is not a label value")
        lookup = backends.requirement(scope.prefix, namespace, wanted)
    selector = {
        key: _render(f"backend.podSelector.{key}", value, sources)
        for key, value in spec.backend.podSelector.items()
    }
    if not selector:
        warnings.append(
            f"backend.podSelector is empty: the NetworkPolicy admits the data plane to every "
            f"pod of namespace {namespace}; give the service's pod labels"
        )

    provider_config = None
    if spec.wrap is not None:
        # The XR's labels are the tenant's: the platform's list decides (inputs.Wrap).
        provider_config, warning = spec.wrap.provider_config(fieldpath.mapping(metadata, "labels"))
        warnings += [warning] if warning else []
    xr_namespace = metadata.get("namespace")
    if isinstance(xr_namespace, str) and xr_namespace:
        _check_namespaced(spec, xr_namespace, namespace)
    else:
        xr_namespace = None
    patches = tuple(
        patch
        if patch.resource is None
        else patch.model_copy(
            update={"resource": _render(f"patches.{n}.resource", patch.resource, sources)}
        )
        for n, patch in enumerate(spec.patches)
    )
    tenant = Tenant(
        name,
        identity,
        provider_config,
        Backend(namespace, service, selector, lookup),
        {},
        xr_namespace,
        tuple(warnings),
        scope,
        existing=_existing(request.observed, wrapped=spec.wrap is not None),
        patches=patches,
    )
    objects = {role: _named(spec, tenant, role, sources) for role in ROLES}
    tenant = dataclasses.replace(tenant, objects=objects)
    _check_distinct(tenant.objects, scope, wrapped=spec.wrap is not None)
    return tenant


def _existing(observed: dict, *, wrapped: bool) -> dict[str, Named]:
    """The names of what the XR composes, by key. Crossplane shows an XR only the objects it
    composed, and names cannot change, so these are names the XR holds, whoever can edit
    the objects (a Namespaced XR's tenant can edit its own)."""
    found = {}
    for key, obj in observed.items():
        name = fieldpath.get(obj, "metadata.name", None) if isinstance(obj, dict) else None
        inner = _manifest(obj, wrapped).get("metadata") if wrapped else {"name": name}
        inner = inner.get("name") if isinstance(inner, dict) else None
        if all(isinstance(n, str) and is_dns_subdomain(n) for n in (name, inner)):
            found[key] = Named(key, inner, name)
    return found


def _check_namespaced(spec: TCPAccess, xr_namespace: str, backend_namespace: str) -> None:
    """A Crossplane v2 Namespaced XR composes in its own namespace only."""
    if spec.wrap is not None:
        raise InputError("wrap: a Namespaced XR composes directly; wrap is for Crossplane v1.x")
    if spec.placement != "Backend":
        raise InputError(
            f"placement: a Namespaced XR cannot compose in {spec.gatewayNamespace}; use Backend"
        )
    if backend_namespace != xr_namespace:
        raise InputError(
            f"backend.namespace: {backend_namespace!r} is not the XR's namespace "
            f"{xr_namespace!r}, where a Namespaced XR composes"
        )


def _named(spec: TCPAccess, tenant: Tenant, role: str, sources: tuple[dict, ...]) -> Named:
    key, name_template, object_template = tenant.scope.resource(spec, role)
    at = f"resources.{role}"
    name = _render(f"{at}.name", name_template, sources)
    object_name = name
    if object_template is not None:
        object_name = _render(f"{at}.objectName", object_template, sources)
    return tenant.place(_render(f"{at}.key", key, sources), name, object_name)


def _check_distinct(objects: dict[str, Named], scope: steps.Scope, *, wrapped: bool) -> None:
    keys = [n.key for n in objects.values()]
    reserved = (
        scope.claim_key_prefix,
        scope.probe_key_prefix,
        scope.ticket_key,
        scope.secret_key,
    )
    if len(set(keys)) != len(keys) or any(k.startswith(reserved) for k in keys):
        raise InputError(
            f"resources: keys {keys} must be distinct and not start with "
            f"{scope.claim_key_prefix}, {scope.probe_key_prefix}, {scope.ticket_key} or "
            f"{scope.secret_key}"
        )
    if wrapped:
        names = [n.object_name for n in objects.values()]
        if len(set(names)) != len(names):
            raise InputError(
                f"resources: with wrap every Object needs its own name (objectName), got "
                f"{names}: Object names are cluster-wide"
            )


def _render(where: str, template: str, sources: tuple[dict, ...]) -> str:
    try:
        return fieldpath.render(template, *sources)
    except fieldpath.MissingField as err:
        raise InputError(
            f"{where}: {template!r} names XR field {err.path}, which is not set"
        ) from None
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None


def _manifest(observed: dict | None, wrapped: bool) -> dict:
    """What was desired for an observed object (a wrapped one's manifest)."""
    if not isinstance(observed, dict):
        return {}
    return claimlib.inner_manifest(observed) if wrapped else observed


@dataclass
class ObservedClaims:
    """The claims the XR shows, each parsed once."""

    held: list[tuple[str, claimlib.Claim]] = field(default_factory=list)  # (key, claim)
    # Held, never used (_moving): (key, claim).
    blocked: list[tuple[str, claimlib.Claim]] = field(default_factory=list)
    not_held: list[str] = field(default_factory=list)  # keys
    foreign: set[str] = field(default_factory=set)  # keys of another pool's claims


def _observed_claims(request: StepRequest, tenant: Tenant, pool: str) -> ObservedClaims:
    found = ObservedClaims()
    for key, obj in sorted(request.observed.items()):
        if not tenant.scope.is_claim_key(key):
            continue
        claim = claimlib.parse(obj)
        if claim is not None and _of_another_pool(claim, pool):
            found.foreign.add(key)  # another pool's: neither used nor rewritten
        elif claim is None or claim.holder != tenant.identity:
            found.not_held.append(key)
        elif claim.blocked is not None:
            found.blocked.append((key, claim))
        else:
            found.held.append((key, claim))
    return found


def _of_another_pool(claim: claimlib.Claim, pool: str) -> bool:
    """A claim labelled with another pool, unless its name (which no one edits: it is bound
    to its key) says it is this pool's."""
    return (
        claim.pool is not None
        and claim.pool != pool
        and claim.name != claimlib.claim_name(pool, claim.port)
    )


def _in_use(mine: ObservedClaims, request, tenant: Tenant, wrapped: bool):
    """The held claim that is the allocation: the one the data path already uses, then the
    lowest port (deterministic); None if the XR holds none."""
    if not mine.held:
        return None
    listener = _manifest(request.observed.get(tenant.key("listenerSet")), wrapped)
    in_use = readiness.listener_port(listener)
    return min((c for _, c in mine.held), key=lambda c: (c.port != in_use, c.port))


def _adoption(
    request: StepRequest,
    tenant: Tenant,
    wrapped: bool,
    blocked: list[tuple[str, claimlib.Claim]],
) -> Adoption | None:
    """The port the XR's listener set already has (from another allocator, or from a claim
    that was lost): claim that one first."""
    observed = request.observed.get(tenant.key("listenerSet"))
    listener = _manifest(observed, wrapped)
    port = readiness.listener_port(listener)
    if not port and wrapped:
        # AppCat composes port 0 and its webhook writes the port (and may move the
        # parentRef) at admission: until AppCat's next reconcile only the live object says
        # where the listener is. Whoever may edit the listener set (the platform, in the
        # instance namespace) could point this anywhere: _adopt takes no port that is held.
        listener = live(observed, wrapped) or {}
        port = readiness.listener_port(listener)
    gateway = fieldpath.text(listener, "spec.parentRef.name")
    if not port or gateway is None:
        return None
    if any(c.port == port for _, c in blocked):
        return None  # the port it gave up, not one to adopt: it is moving (_moving)
    where = (
        fieldpath.text(listener, "metadata.namespace") or "",
        fieldpath.text(listener, "metadata.name") or "",
    )
    return Adoption(gateway=gateway, port=port, listener_set=where)


def _placed(
    spec: TCPAccess, request: StepRequest, tenant: Tenant
) -> tuple[allocation.Placed | None, str | None]:
    """A Namespaced XR's placement, from its own record: the shard, gateway and port its
    status says (`listenerPort`), never the port its listener set says now (the tenant may
    edit that object; the step puts it back). Only an XR without a record (its first
    status write was lost, or an earlier version wrote it) reads its listener sets.
    Returns the placement and a warning about a record that could not be read."""
    record = fieldpath.mapping(request.xr, spec.statusPath)
    # An XR an earlier version placed published its port only (while it was not taken).
    field = "listenerPort" if "listenerPort" in record else "port"
    if record.get(field) is None:
        return _placed_as_observed(spec, request, tenant), None
    port, shard = _whole(record.get(field)), _whole(record.get("shard"))
    gateway, host = record.get("gateway"), record.get("host")
    if port is None or not 1 <= port <= 65535:
        warning = f"{spec.statusPath}.{field}: {record.get(field)!r} is not a port; ignored"
        return _placed_as_observed(spec, request, tenant), warning
    if shard is None or shard < 1 or not isinstance(gateway, str) or not gateway:
        warning = f"{spec.statusPath}: shard and gateway of port {port} are not recorded"
        return _placed_as_observed(spec, request, tenant), warning
    named = tenant.listener_set(port)
    listener = request.observed.get(named.key)
    served = _served(spec, request)
    return (
        allocation.Placed(
            shard=shard,
            port=port,
            gateway=gateway,
            hostname=host if isinstance(host, str) and host else None,
            # A tenant once Ready on its port never moves: an older listener cannot
            # appear after it, only a tenant's edit (put back below) can take it for a while.
            conflicted=served != port
            and readiness.listener_refused(listener, spec.listenerName, port),
            listener_set=(tenant.namespace or "", named.name),
        ),
        None,
    )


def _whole(value: object) -> int | None:
    """A whole number from a status field (protobuf numbers are floats)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value == int(value):
        return int(value)
    return None


def _placed_as_observed(
    spec: TCPAccess, request: StepRequest, tenant: Tenant
) -> allocation.Placed | None:
    """A Namespaced XR's current listener set, newest port first if there are two."""
    found = []
    for key, obj in request.observed.items():
        if not tenant.is_listener_set(key):
            continue
        port = readiness.listener_port(obj)
        gateway = fieldpath.text(obj, "spec.parentRef.name")
        shard = fieldpath.mapping(obj, "metadata.labels").get(labellib.SHARD, "")
        if not port or gateway is None or not str(shard).isdigit():
            continue
        conditions = readiness.listener_conditions(obj, spec.listenerName)
        hostname = fieldpath.mapping(obj, "metadata.annotations").get(labellib.HOSTNAME)
        found.append(
            allocation.Placed(
                shard=int(shard),
                port=port,
                gateway=gateway,
                hostname=hostname if isinstance(hostname, str) else None,
                conflicted=conditions.get("Conflicted") == "True",
                listener_set=(tenant.namespace or "", fieldpath.text(obj, "metadata.name") or ""),
            )
        )
    found.sort(key=lambda p: (p.conflicted, -p.port))
    return found[0] if found else None


def _moving(decision: Decision, blocked: list[tuple[str, claimlib.Claim]]) -> None:
    """A new claim while the XR holds a blocked one is a move away from a squatted port:
    say so (reason Conflicted) rather than Claiming."""
    if blocked and decision.phase is Phase.CLAIM and decision.conflict is None:
        decision.conflict = blocked[-1][1].blocked


def _bounded(decision: Decision, blocked: list[tuple[str, claimlib.Claim]]) -> None:
    """An XR holding MAX_BLOCKED blocked claims claims no more (nor waits in the queue):
    every further port could be squatted too, and each claim keeps a port from others."""
    searching = (Phase.CLAIM, Phase.QUEUED, Phase.POOL_FULL, Phase.NO_SHARDS)
    if len(blocked) >= MAX_BLOCKED and decision.phase in searching and not decision.adopted:
        decision.phase = Phase.BLOCKED
        decision.allocation = None
        decision.ticket = False


def _released(
    spec: TCPAccess, request: StepRequest, tenant: Tenant, blocked: list[tuple[str, claimlib.Claim]]
) -> list[tuple[str, claimlib.Claim]]:
    """The blocked claims whose port the Gateway gives back: their probe listener is
    programmed, so the older listener that took the port is gone. Never the port the XR's
    own listener set is still on (that listener, being older, would take it)."""
    wrapped = spec.wrap is not None
    listener = _manifest(request.observed.get(tenant.key("listenerSet")), wrapped)
    in_use = readiness.listener_port(listener)
    return [
        (key, claim)
        for key, claim in blocked
        if claim.port != in_use
        and readiness.listener_programmed(
            live(request.observed.get(tenant.scope.probe_key(claim.port)), wrapped),
            spec.listenerName,
            claim.port,
        )
    ]


def _probe(spec: TCPAccess, tenant: Tenant, claim: claimlib.Claim) -> dict | None:
    """A listener set on a blocked claim's port that no route binds to: the Gateway reports
    it Conflicted while the older listener is there, and programs it once that is gone.
    It is how a stateless step learns that a squatted port is free again."""
    if claim.gateway is None or claim.shard is None:
        return None  # a damaged claim names no Gateway to ask: its port stays blocked
    named = tenant.probe(claim.port)
    namespace = tenant.backend.namespace
    if spec.placement == "Gateway":
        namespace = spec.gatewayNamespace
    probe = listener_set(
        flavour=FLAVOURS[spec.gatewayAPI],
        name=named.name,
        namespace=namespace,
        labels={
            labellib.POOL: spec.pool,
            labellib.OWNER: label_value(tenant.name),
            labellib.SHARD: str(claim.shard),
            labellib.PORT: str(claim.port),
            labellib.ROLE: labellib.PROBE_ROLE,
        },
        gateway=claim.gateway,
        gateway_namespace=spec.gatewayNamespace,
        listener_name=spec.listenerName,
        port=claim.port,
    )
    if spec.wrap is None:
        return probe
    return wrap(probe, provider_config=tenant.provider_config, name=named.object_name)


def _claim_served(request: StepRequest, tenant: Tenant, alloc: allocation.Allocation) -> bool:
    """Whether the XR's claim of this port, as it is now (observed, else looked up: the XR
    as read may be older than its claim), says its port was published."""
    found = [request.observed.get(tenant.scope.claim_key(alloc.port))]
    found += request.lookups.get(allocation.OWN_CLAIMS) or []
    for obj in found:
        claim = claimlib.parse(obj) if isinstance(obj, dict) else None
        if claim and claim.name == alloc.claim_name and claim.holder == tenant.identity:
            return claim.served
    return False


def _served(spec: TCPAccess, request: StepRequest) -> int | None:
    """The port the tenant was Ready on (status `servedPort`): it never moves from it."""
    served = fieldpath.mapping(request.xr, spec.statusPath).get("servedPort")
    if isinstance(served, int | float) and not isinstance(served, bool):
        return int(served)
    return None


def _ready(key: str, observed: dict | None, tenant: Tenant, wrapped: bool) -> bool:
    """Readiness per DESIGN §5, from the observed object under the same key."""
    obj = live(observed, wrapped)
    if obj is None:
        return False
    if tenant.scope.is_claim_key(key):
        return fieldpath.get(obj, "spec.holderIdentity", None) == tenant.identity
    if key == tenant.key("listenerSet"):
        return readiness.listener_set_ready(obj)
    if key == tenant.key("route"):
        return readiness.route_ready(obj)
    return True


def _claim(
    spec: TCPAccess,
    tenant: Tenant,
    alloc: allocation.Allocation,
    blocked: str | None = None,
    served: bool = False,
) -> dict:
    return build_claim(
        name=alloc.claim_name,
        namespace=spec.gatewayNamespace,
        pool=spec.pool,
        shard=alloc.shard,
        port=alloc.port,
        gateway=alloc.gateway,
        hostname=alloc.hostname,
        owner=tenant.name,
        holder=tenant.identity,
        blocked=blocked,
        served=served,
    )


def _use(spec, request: StepRequest, tenant: Tenant, decision: Decision, result: StepResult):
    """Rule 3: the claim is held; build the data path on its shard and port."""
    alloc = decision.allocation
    shard = decision.shard
    wrapped = spec.wrap is not None
    flavour = FLAVOURS[spec.gatewayAPI]
    backend = tenant.backend
    route_namespace = backend.namespace if spec.placement == "Backend" else spec.gatewayNamespace
    common = {labellib.POOL: spec.pool, labellib.OWNER: label_value(tenant.name)}
    named = dict(tenant.objects)
    named["listenerSet"] = tenant.listener_set(alloc.port)
    if tenant.namespace is not None:
        # Namespaced XRs have no claim: drop the listener set of a port the Gateway refused
        # (never one that could not be read: rule 6).
        for key in [k for k in result.resources if tenant.is_listener_set(k)]:
            listener = request.observed.get(key)
            refused = readiness.listener_conditions(listener, spec.listenerName)
            if key != named["listenerSet"].key and refused.get("Conflicted") == "True":
                result.resources.pop(key)

    # The Gateway gave the port to an older listener: it is published nowhere.
    own = live(request.observed.get(named["listenerSet"].key), wrapped)
    taken = readiness.listener_refused(own, spec.listenerName, alloc.port)
    served = _served(spec, request)
    claim_served = _claim_served(request, tenant, alloc)
    if claim_served:
        served = alloc.port  # published once: it never moves, whatever the XR as read says
    # A port is published once the Gateway accepts the tenant's listener on it: before its
    # report it may be an older listener's. A port the tenant was Ready on stays published
    # whatever the status reads (a report pending after an edit says nothing new), unless
    # the Gateway reports it taken.
    accepted = not taken and readiness.listener_accepted(own, spec.listenerName, alloc.port)
    guard = _source_guard(spec, request, named, route_namespace, common, decision)
    # A first time, only once its allowlist (sourceRanges) is in force too.
    published = (accepted and guard.in_force) or (not taken and served == alloc.port)
    blocked = None
    if taken and tenant.namespace is None and served != alloc.port:
        # An older listener from outside the pool took the port before ours: it was never
        # this tenant's. Keep the claim (the port stays taken, its slot counted) but mark
        # it, so the next reconcile claims another port (ObservedClaims, decide).
        blocked = f"port {alloc.port} behind {alloc.gateway} is taken by an older listener"

    service, missing = backend.service, None
    if backend.lookup is not None:
        found = backends.find(backend.lookup, request.lookups, spec.backend.port)
        service, missing = found.service, found.problem

    objects = {
        # The claim remembers a published port: an XR read from before this reconcile
        # still publishes it.
        tenant.scope.claim_key(alloc.port): _claim(
            spec, tenant, alloc, blocked, claim_served or published
        ),
        named["listenerSet"].key: listener_set(
            flavour=flavour,
            name=named["listenerSet"].name,
            namespace=route_namespace,
            labels={
                **common,
                labellib.SHARD: str(alloc.shard),
                labellib.PORT: str(alloc.port),
                **({labellib.ROLE: labellib.PLACED_ROLE} if tenant.namespace else {}),
            },
            annotations={labellib.HOSTNAME: alloc.hostname} if alloc.hostname else None,
            gateway=alloc.gateway,
            gateway_namespace=spec.gatewayNamespace,
            listener_name=spec.listenerName,
            port=alloc.port,
        ),
        named["route"].key: tcp_route(
            flavour=flavour,
            name=named["route"].name,
            namespace=route_namespace,
            labels=common,
            listener_set=named["listenerSet"].name,
            section=spec.listenerName,
            backend_namespace=backend.namespace,
            service=service or "",
            port=spec.backend.port,
        ),
        named["networkPolicy"].key: network_policy(
            name=named["networkPolicy"].name,
            namespace=backend.namespace,
            labels=common,
            pod_selector=backend.pod_selector,
            pod_port=spec.pod_port,
            from_namespace=spec.data_plane_namespace,
            from_pod_selector=spec.dataPlane.podSelector,
        ),
    }
    if tenant.namespace is not None:
        del objects[tenant.scope.claim_key(alloc.port)]
    if service is None:
        # Which Service is not known (yet): the route and grant the XR has stay as they are.
        del objects[named["route"].key]
    elif route_namespace != backend.namespace:
        objects[named["referenceGrant"].key] = reference_grant(
            flavour=flavour,
            name=named["referenceGrant"].name,
            namespace=backend.namespace,
            labels=common,
            route_namespace=route_namespace,
            service=service,
        )
    else:
        result.resources.pop(named["referenceGrant"].key, None)  # placement changed
    policy_key = named["securityPolicy"].key
    if guard.policy is None:
        result.resources.pop(policy_key, None)  # no allowlist (any more)
    else:
        objects[policy_key] = guard.policy
        if not guard.route_allowed and named["route"].key not in request.observed:
            objects.pop(named["route"].key, None)  # not before its policy: fail closed

    object_names = {n.key: n.object_name for n in named.values()}
    for key, obj in objects.items():
        if wrapped:
            obj = wrap(obj, provider_config=tenant.provider_config, name=object_names.get(key))
        observed = request.observed.get(key)
        ready = guard.in_force if key == policy_key else _ready(key, observed, tenant, wrapped)
        result.resources[key] = Desired(obj, ready)

    address = shard.address if shard else None
    endpoint = publish.Endpoint(host=alloc.hostname or address, port=alloc.port)
    if published:
        _publish(spec, tenant, request, endpoint, result)
    elif taken and served != alloc.port:
        # What an earlier reconcile published for a port another listener got is withdrawn.
        # Only on the Gateway's word: a report not there yet (or an XR read from before it
        # was Ready) withdraws nothing.
        result.connection.update(
            publish.withdrawn_details(spec.connectionDetails, request.connection)
        )
    elif not taken:
        result.connection.update(publish.kept_details(spec.connectionDetails, request.connection))
    if spec.connectionSecret is not None:
        key = tenant.scope.secret_key
        sources = (request.xr, request.desired_xr)
        rendered = _render("connectionSecret.name", spec.connectionSecret.name, sources)
        named = tenant.place(key, rendered, rendered)
        secret = _connection_secret(spec, request, tenant, named.name, result.connection, common)
        if wrapped:
            secret = wrap(secret, provider_config=tenant.provider_config, name=named.object_name)
        result.resources[key] = Desired(secret, key in request.observed)
    result.status = {
        "host": endpoint.host,
        "port": alloc.port,
        "shard": alloc.shard,
        "gateway": alloc.gateway,
        "address": address,
    }
    if tenant.namespace is not None:
        result.status["listenerPort"] = alloc.port  # its record: it has no claim
    if not published:
        for key in ("host", "port", "address"):
            del result.status[key]

    where = f"{endpoint.host or alloc.gateway}:{alloc.port}"
    if decision.conflict:
        reason, message = "Conflicted", f"{decision.conflict}: moving to {where}"
        result.results.append(Result(WARNING, message, reason))
    elif blocked:
        reason = "Conflicted"
        message = f"{blocked}; the tenant never carried traffic on it and moves to another port"
        result.results.append(Result(WARNING, message, reason))
    elif taken:
        reason, message = "Conflicted", f"port {alloc.port} is already used behind {alloc.gateway}"
        result.results.append(Result(WARNING, f"listener {message}", reason))
    elif missing is not None:
        reason, message = "BackendMissing", f"port {where} is held; {missing}"
    elif guard.reason is not None:
        reason, message = guard.reason, guard.message or guard.reason
        if guard.warning:
            result.results.append(Result(WARNING, message, reason))
    elif published and all(d.ready for k, d in result.resources.items() if k in objects):
        reason, message = "Ready", f"TCP access at {where}"
    elif readiness.not_allowed(own):
        reason = "NotAllowed"
        message = (
            f"{alloc.gateway} does not admit ListenerSets from namespace {route_namespace} "
            f"(its allowedListeners): the platform labels that namespace "
            f'{labellib.LISTENER_NAMESPACE}: "true"'
        )
        result.results.append(Result(WARNING, message, reason))
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
    # Stickiness: a port the tenant was once Ready on is never given up (see `blocked`).
    result.status["servedPort"] = alloc.port if reason == "Ready" else served
    result.status = {k: v for k, v in result.status.items() if v is not None}
    status = "True" if reason == "Ready" else "False"
    result.conditions.append(Condition(tenant.scope.condition, status, reason, message))


def _source_guard(
    spec: TCPAccess,
    request: StepRequest,
    named: dict[str, Named],
    route_namespace: str,
    labels: dict,
    decision: Decision,
) -> sourcepolicy.Guard:
    """The tenant's source allowlist (input sourceRanges) on its route."""
    alloc, shard = decision.allocation, decision.shard
    unreported = ""
    if spec.gatewayAPI == "v1.4":
        unreported = (
            " (Envoy Gateway up to v1.7 reports none for a route attached through an XListenerSet)"
        )
    return sourcepolicy.guard(
        spec.sourceRanges,
        xr=request.xr,
        observed_policy=request.observed.get(named["securityPolicy"].key),
        wrapped=spec.wrap is not None,
        shard=sourcepolicy.Shard(
            name=alloc.gateway,
            read=shard is not None,
            client_address=shard.client_address if shard else None,
        ),
        name=named["securityPolicy"].name,
        namespace=route_namespace,
        labels=labels,
        route=named["route"].name,
        unreported_hint=unreported,
    )


def _connection_secret(
    spec, request, tenant: Tenant, name: str, details: dict, labels: dict
) -> dict:
    sources = (request.xr, request.desired_xr)
    given = spec.connectionSecret
    namespace = tenant.namespace or tenant.backend.namespace
    if given.namespace is not None:
        namespace = _render("connectionSecret.namespace", given.namespace, sources)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "type": "connection.crossplane.io/v1alpha1",
        # A withdrawn detail (empty) is left out: the Secret is replaced whole.
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(details.items()) if v},
    }


def _publish(spec, tenant: Tenant, request: StepRequest, endpoint, result: StepResult) -> None:
    details, warnings = publish.connection_details(
        spec.connectionDetails, endpoint, request.desired_connection
    )
    result.connection.update(details)
    patched, composite, more = publish.apply_patches(tenant.patches, endpoint, request.desired)
    for key, obj in patched.items():
        result.resources[key] = Desired(obj)  # readiness stays as the earlier step said
    result.composite.update(composite)
    result.results.extend(Result(WARNING, w) for w in [*warnings, *more])


def _queue(spec: TCPAccess, request: StepRequest, tenant: Tenant, result: StepResult):
    """Compose the XR's ticket: its place in the queue of tenants waiting for a port,
    renewed once half of its time to live has passed."""
    had = _manifest(request.observed.get(tenant.scope.ticket_key), spec.wrap is not None)
    ticket = build_ticket(
        name=tickets.ticket_name(spec.pool, tenant.identity),
        namespace=spec.gatewayNamespace,
        pool=spec.pool,
        owner=tenant.name,
        holder=tenant.identity,
        renewed=tickets.renew_time(had, request.now, spec.ticketTTLSeconds),
        ttl=spec.ticketTTLSeconds,
    )
    result.timed = True  # whether it renews depends on the time
    if spec.wrap is not None:
        ticket = wrap(ticket, provider_config=tenant.provider_config)
    key = tenant.scope.ticket_key
    result.resources[key] = Desired(ticket, key in request.observed)


def _not_yet(
    spec,
    request: StepRequest,
    tenant: Tenant,
    decision: Decision,
    result: StepResult,
    blocked: list[claimlib.Claim],
):
    """Claim first, or wait: nothing port-dependent is built; what the XR had is kept."""
    status = dict(fieldpath.mapping(request.xr, spec.statusPath))
    if blocked:
        # It is moving away from a port that was never its own: nothing published for that
        # port may stay (an earlier version published it while it was programmed).
        result.connection.update(
            publish.withdrawn_details(spec.connectionDetails, request.connection)
        )
        for key in ("host", "port", "address"):
            status.pop(key, None)
    else:
        result.connection.update(publish.kept_details(spec.connectionDetails, request.connection))
    if decision.ticket and decision.phase is not Phase.PENDING:
        _queue(spec, request, tenant, result)

    if decision.phase is Phase.CLAIM:
        alloc = decision.allocation
        claim = _claim(spec, tenant, alloc)
        if spec.wrap is not None:
            claim = wrap(claim, provider_config=tenant.provider_config)
        result.resources[tenant.scope.claim_key(alloc.port)] = Desired(claim, False)
        status["claimAttempts"] = claim_attempt(spec, request)
        status["triedPorts"] = [*tried_ports(spec, request), alloc.port][-TRIED_PORTS:]
        verb = "adopting" if decision.adopted else "claiming"
        result.claims.append(ADOPTED if decision.adopted else CLAIMED)
        if decision.adopted:
            # The XR serves this port already (the objects it has are kept as they are):
            # its clients and the earlier steps' resources keep being told so meanwhile.
            address = decision.shard.address if decision.shard else None
            endpoint = publish.Endpoint(host=alloc.hostname or address, port=alloc.port)
            _publish(spec, tenant, request, endpoint, result)
        reason = "Claiming"
        message = f"{verb} port {alloc.port} on shard {alloc.shard} ({alloc.gateway})"
        if decision.conflict:
            reason, message = "Conflicted", f"{decision.conflict}: {message}"
            result.results.append(Result(WARNING, decision.conflict, reason))
    elif decision.phase is Phase.POOL_FULL:
        status["claimAttempts"] = claim_attempt(spec, request)  # the next search looks further
        reason = "PoolFull"
        message = f"no free port in pool {spec.pool}; the pool step adds a shard"
        result.results.append(Result(WARNING, message, reason))
    elif decision.phase is Phase.QUEUED:
        status["claimAttempts"] = claim_attempt(spec, request)
        reason = "Queued"
        message = (
            f"{decision.ahead} tenant(s) ahead in the queue for the free ports of pool {spec.pool}"
        )
    elif decision.phase is Phase.BLOCKED:
        result.resources.pop(
            tenant.scope.ticket_key, None
        )  # it claims no more: it leaves the queue
        listener = _manifest(request.observed.get(tenant.key("listenerSet")), spec.wrap is not None)
        if readiness.listener_port(listener) in {c.port for c in blocked}:
            # Its listener is on a port it never served and the Gateway refused: it serves
            # nothing, so it keeps no listener there (the probe watches that port).
            for role in ("listenerSet", "route", "referenceGrant"):
                result.resources.pop(tenant.key(role), None)
        reason = "Blocked"
        ports = ", ".join(f"{c.port} behind {c.gateway}" for c in sorted(blocked))
        message = (
            f"ports {ports} are taken by older listeners from outside pool {spec.pool}; this "
            f"XR holds {MAX_BLOCKED} such claims, the most it may, and claims no more. Remove "
            "those ListenerSets, or let the pool's Gateways admit ListenerSets only from the "
            "platform's namespaces (GatewayPool allowedListenerNamespaces); a blocked port is "
            "released once its Gateway gives it back"
        )
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
    result.conditions.append(Condition(tenant.scope.condition, "False", reason, message))
