"""A tenant's source-address allowlist on the shared IP: which SecurityPolicy to compose,
whether its route may be returned, and whether the filter is in force (DESIGN §8).

Fail closed, from the first second on: a route the XR does not have yet is returned only
once its policy is observed, so Envoy Gateway never sees the route without it; the tenant is
Ready, and its endpoint published, only once Envoy Gateway reports the policy Accepted. A
route the XR already has is never withheld (the first rule: Crossplane would delete it):
a live tenant that gains a filter was open before, and its policy narrows it in place.
"""

from dataclasses import dataclass

from function import fieldpath, readiness, sourceranges
from function.builders.securitypolicy import security_policy
from function.clientaddress import KEEPS_CLIENT_ADDRESS, UNKNOWN
from function.inputs import SourceRanges as SourceRangesInput
from function.observed import live

INVALID = "InvalidSourceRanges"
NOT_PRESERVED = "ClientAddressNotPreserved"
PENDING = "SourceRangesPending"
UNREPORTED = "SourceRangesUnreported"
REJECTED = "SourceRangesRejected"


@dataclass(frozen=True)
class Shard:
    """What the tenant step knows of its shard for the filter."""

    name: str
    read: bool  # its Gateway (or static entry) was read in this request
    client_address: str | None  # its annotation tcp.fn.servala.io/client-address


@dataclass
class Guard:
    policy: dict | None  # the SecurityPolicy to compose (unwrapped); None: no filter
    route_allowed: bool  # a route the XR does not have yet may be returned
    in_force: bool  # no filter is needed, or Envoy Gateway applies the desired one
    reason: str | None = None  # why the tenant is not Ready, when it is the filter
    message: str | None = None
    warning: bool = False  # the reason is also a Warning result (the tenant must act)


def requested(config: SourceRangesInput, xr: dict) -> sourceranges.SourceRanges:
    """The ranges the tenant asks for; raise InvalidSourceRange naming the field."""
    value = None
    if config.fromFieldPath is not None:
        # The tenant's own field (its claim's spec): parsed here, the security boundary.
        value = fieldpath.get(xr, config.fromFieldPath, None)
    if value is None:
        value = config.default
    try:
        return sourceranges.parse(value)
    except sourceranges.InvalidSourceRange as err:
        where = config.fromFieldPath or "sourceRanges.default"
        raise sourceranges.InvalidSourceRange(f"{where}: {err}") from None


def guard(
    config: SourceRangesInput | None,
    *,
    xr: dict,
    observed_policy: dict | None,
    wrapped: bool,
    shard: Shard,
    name: str,
    namespace: str,
    labels: dict,
    route: str,
    unreported_hint: str,
) -> Guard:
    """`observed_policy` is the XR's composed policy as observed (a wrapped one's Object);
    `unreported_hint` says why Envoy Gateway may report no status for it."""
    if config is None:
        return Guard(policy=None, route_allowed=True, in_force=True)
    invalid = None
    try:
        ranges = requested(config, xr)
    except sourceranges.InvalidSourceRange as err:
        invalid = str(err)
        ranges = None
    if ranges is not None and ranges.admits_everyone:
        return Guard(policy=None, route_allowed=True, in_force=True)

    current = live(observed_policy, wrapped)
    kept = _cidrs(_desired(observed_policy, wrapped)) if observed_policy else None
    reason = message = None
    keeps_address = shard.client_address in KEEPS_CLIENT_ADDRESS
    if invalid is not None:
        # A bad entry never widens: the policy in place stays, or nobody is admitted.
        cidrs = kept if kept is not None else []
        reason = INVALID
        message = (
            f"{invalid}; the SecurityPolicy keeps its previous ranges"
            if kept is not None
            else f"{invalid}; the SecurityPolicy admits nobody"
        )
    elif not shard.read:
        cidrs = kept if kept is not None else []  # a partial view changes nothing
    elif not keeps_address:
        cidrs = []  # behind SNAT every client has a node's address: admit nobody
        reason = NOT_PRESERVED
        message = (
            f"shard {shard.name} does not keep the client's address (annotation "
            f"tcp.fn.servala.io/client-address: {shard.client_address or UNKNOWN}), so a "
            "source allowlist cannot be enforced there; the port admits nobody. The platform "
            "sets GatewayPool clientAddress to ProxyProtocol or Local"
        )
    else:
        cidrs = ranges.cidrs

    policy = security_policy(
        name=name, namespace=namespace, labels=labels, route=route, cidrs=cidrs
    )
    route_allowed = current is not None and reason != NOT_PRESERVED
    in_force, why = _in_force(current, cidrs, config.trustUnreportedPolicy)
    if reason is None and not in_force:
        reason, message = _waiting(why, name, unreported_hint)
    return Guard(
        policy=policy,
        route_allowed=route_allowed,
        in_force=in_force and reason is None,
        reason=reason,
        message=message,
        warning=reason in (INVALID, NOT_PRESERVED, REJECTED),
    )


def _desired(observed: dict, wrapped: bool) -> dict:
    """What was composed: a wrapped object's manifest, else the object itself."""
    if wrapped and observed.get("kind") == "Object":
        return fieldpath.mapping(observed, "spec.forProvider.manifest")
    return observed


def _cidrs(policy: dict) -> list[str] | None:
    """The ranges a policy this step composed admits ([] for none); None if it is not one
    of ours in a shape we can read back (then it is never kept)."""
    rules = fieldpath.get(policy, "spec.authorization.rules", None)
    if rules is None:
        return []
    if not isinstance(rules, list) or len(rules) != 1 or not isinstance(rules[0], dict):
        return None
    cidrs = fieldpath.get(rules[0], "principal.clientCIDRs", None)
    try:
        # Composed by this step from a validated list; checked again, never trusted blindly.
        return sourceranges.parse(cidrs).cidrs
    except sourceranges.InvalidSourceRange:
        return None


def _in_force(current: dict | None, cidrs: list[str], trust: bool) -> tuple[bool, str]:
    if current is None:
        return False, "absent"
    if _cidrs(current) != cidrs:
        return False, "changing"  # the cluster has not caught up with the desired ranges
    ancestors = fieldpath.get(current, "status.ancestors", None)
    ancestors = [a for a in ancestors if isinstance(a, dict)] if isinstance(ancestors, list) else []
    if not ancestors:
        return trust, "unreported"
    generation = fieldpath.get(current, "metadata.generation", None)
    for ancestor in ancestors:
        if readiness.conditions(ancestor).get("Accepted") != "True":
            return False, "rejected" if _refused(ancestor) else "pending"
        if not _current(ancestor, generation):
            return False, "pending"
    return True, ""


def _refused(ancestor: dict) -> bool:
    return readiness.conditions(ancestor).get("Accepted") == "False"


def _current(ancestor: dict, generation: object) -> bool:
    """The Accepted condition is about the policy's current spec (when both tell)."""
    for condition in ancestor.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Accepted":
            seen = condition.get("observedGeneration")
            if isinstance(seen, int | float) and isinstance(generation, int | float):
                return int(seen) >= int(generation)
    return True


def _waiting(why: str, name: str, unreported_hint: str) -> tuple[str, str]:
    if why == "absent":
        return PENDING, f"creating SecurityPolicy {name} before the route"
    if why == "unreported" and unreported_hint:
        return UNREPORTED, (
            f"Envoy Gateway reports no status for SecurityPolicy {name}{unreported_hint}; "
            "the port is not published until it does (input sourceRanges."
            "trustUnreportedPolicy takes an unreported policy as applied, at a risk)"
        )
    if why == "rejected":
        return REJECTED, f"Envoy Gateway did not accept SecurityPolicy {name}"
    return PENDING, f"waiting for Envoy Gateway to accept SecurityPolicy {name}"
