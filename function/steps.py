"""Several TCPAccess steps in one pipeline (say a primary and a replica endpoint): what
sets each step's resources apart from the others'.

Crossplane binds a composed object's name to its desired-resource key for good, and deletes
what a step stops returning, so a step's keys must never change under an XR that has
resources. The first TCPAccess step of a pipeline therefore keeps the keys a lone step has
always had (`tcp-claim-<port>`, `tcp-ticket`, `tcp-listenerset`, ...), its status path and
its condition; every later step prefixes its keys with `tcp-<pool>-<listenerName>` (its
default object names end in `-<pool>-<listenerName>`), holds its claims and ticket as
`<XR UID>/<prefix>`, publishes at `status.tcpAccess-<pool>-<listenerName>` and reports
condition `TCPAccessReady-<pool>-<listenerName>`. A step learns its place from the pipeline
context, which Crossplane hands from each step (and each call of a step) to the next.
"""

import hashlib
import weakref
from dataclasses import dataclass

FIRST_PREFIX = "tcp"
FIRST_STATUS_PATH = "status.tcpAccess"  # the input's default
FIRST_CONDITION = "TCPAccessReady"
CONTEXT_KEY = "tcp.fn.servala.io/steps"  # [{input, keyPrefix, statusPath}] in pipeline order
ROLE_SUFFIXES = {
    "listenerSet": "listenerset",
    "route": "route",
    "networkPolicy": "networkpolicy",
    "referenceGrant": "referencegrant",
    "securityPolicy": "securitypolicy",
}


class StepConflict(ValueError):
    """Two TCPAccess steps of one pipeline would share keys or a status path."""


@dataclass(frozen=True)
class Scope:
    """One TCPAccess step's share of the XR."""

    prefix: str  # of its desired-resource keys and default object names
    status_path: str
    condition: str
    first: bool  # the pipeline's first TCPAccess step: a lone step's keys and identity
    earlier: tuple[str, ...] = ()  # key prefixes of the TCPAccess steps before this one

    @property
    def ticket_key(self) -> str:
        return f"{self.prefix}-ticket"

    @property
    def secret_key(self) -> str:
        return f"{self.prefix}-connection-secret"

    @property
    def claim_key_prefix(self) -> str:
        return f"{self.prefix}-claim-"

    def claim_key(self, port: int) -> str:
        # The claim's name carries the port and a name is bound to its key for good: so the
        # key carries the port too.
        return f"{self.claim_key_prefix}{port}"

    @property
    def probe_key_prefix(self) -> str:
        return f"{self.prefix}-probe-"

    def probe_key(self, port: int) -> str:
        """A blocked claim's probe: a listener set on its port that tells when it is free."""
        return f"{self.probe_key_prefix}{port}"

    def is_probe_key(self, key: str) -> bool:
        rest = key.removeprefix(self.probe_key_prefix)
        return rest != key and rest.isdigit()

    def is_claim_key(self, key: str) -> bool:
        return key.startswith(self.claim_key_prefix) and key[len(self.claim_key_prefix) :].isdigit()

    def placed_earlier(self, key: str) -> bool:
        """A claim (or a Namespaced XR's listener set) an earlier TCPAccess step of this
        pipeline returns: its port is taken for this step, even before it is applied."""
        for prefix in self.earlier:
            for role in ("claim", "listenerset"):
                rest = key.removeprefix(f"{prefix}-{role}-")
                if rest != key and rest.isdigit():
                    return True
        return False

    def resource(self, spec, role: str) -> tuple[str, str, str | None]:
        """(key, name, objectName) templates of a data-path role: as the input gives them,
        else this step's defaults."""
        if "resources" in spec.model_fields_set and role in spec.resources.model_fields_set:
            given = getattr(spec.resources, role)
            return given.key, given.name, given.objectName
        suffix = ROLE_SUFFIXES[role]
        # The step's tag goes after the role, never between XR name and role: a tenant could
        # otherwise pick an XR name (`<victim>-tcp-<pool>`) whose first-step names equal a
        # later step's names of another XR (Object names are cluster-wide).
        name = f"{{metadata.name}}-{FIRST_PREFIX}-{suffix}"
        if self.prefix != FIRST_PREFIX:
            name += f"-{self.prefix.removeprefix(FIRST_PREFIX + '-')}"
        return f"{self.prefix}-{suffix}", name, None

    def identity(self, xr_identity: str) -> str:
        """The holder of this step's claims and ticket: the XR's UID for the first step (as a
        lone step always held them), qualified for the others, so that two steps of one XR
        in one pool never take each other's claims for their own."""
        return xr_identity if self.first else f"{xr_identity}/{self.prefix}"


_FINGERPRINTS: dict[int, tuple[weakref.ref, str]] = {}


def fingerprint(spec) -> str:
    """Identifies a step's input among the pipeline's steps (and its own earlier calls).
    Validated inputs are cached and shared by every call of a step: so is this."""
    cached = _FINGERPRINTS.get(id(spec))
    if cached is not None and cached[0]() is spec:
        return cached[1]
    value = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]
    if len(_FINGERPRINTS) >= 256:
        _FINGERPRINTS.clear()
    _FINGERPRINTS[id(spec)] = (weakref.ref(spec), value)
    return value


def resolve(spec, context: dict) -> tuple[Scope, list[dict]]:
    """This step's scope, and the context entries to hand on. Raises StepConflict when an
    earlier TCPAccess step already uses the same keys or status path."""
    entries = context.get(CONTEXT_KEY)
    entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    own = fingerprint(spec)
    place = next((i for i, e in enumerate(entries) if e.get("input") == own), len(entries))
    first = place == 0
    derived = f"{FIRST_PREFIX}-{spec.pool}-{spec.listenerName}"
    prefix = spec.keyPrefix or (FIRST_PREFIX if first else derived)
    suffix = "" if first else f"-{spec.pool}-{spec.listenerName}"
    given_status = first or "statusPath" in spec.model_fields_set
    scope = Scope(
        prefix=prefix,
        status_path=spec.statusPath if given_status else FIRST_STATUS_PATH + suffix,
        condition=FIRST_CONDITION + suffix,
        first=first,
        earlier=tuple(str(e.get("keyPrefix")) for e in entries[:place]),
    )
    for earlier in entries[:place]:
        if earlier.get("keyPrefix") == scope.prefix:
            raise StepConflict(
                f"keyPrefix: {scope.prefix!r} is already the key prefix of an earlier "
                "TCPAccess step of this pipeline; give each step its own keyPrefix"
            )
        if earlier.get("statusPath") == scope.status_path:
            raise StepConflict(
                f"statusPath: {scope.status_path} is already written by an earlier TCPAccess "
                "step of this pipeline; give each step its own statusPath"
            )
    entry = {"input": own, "keyPrefix": scope.prefix, "statusPath": scope.status_path}
    if place == len(entries):
        entries.append(entry)
    return scope, entries
