"""Listener drift: what each shard's Gateway reports, against the pool's claims and the
tenant listener sets the pool step reads (DESIGN §6, the pool's status).

Per shard:

* `attached`: the Gateway's own count, `status.attachedListenerSets` (absent until its
  controller reports one; Gateway API v1.5 and later).
* `foreign`: listener sets the Gateway counts as attached beyond the pool's accepted tenant
  listener sets: someone else's listener on a shard (a squatter, or one made by hand).
* `unclaimed`: accepted tenant listener sets none of whose ports a claim holds, other than a
  Namespaced XR's (which holds no claim): a listener left behind by a tenant that is gone.
* `unattached`: claims older than `UNATTACHED_AFTER` whose port no accepted tenant listener
  set of the shard listens on: a tenant that claimed and never got its listener through.
* `refused`: tenant listener sets the Gateway refused (a port conflict, not allowed).
* `noAddress`: the Gateway reports no address (its load balancer has none yet).

Reporting only: nothing here changes which Gateways the pool step returns. Labels and
names of listener sets are the tenants' to set; what counts is what the Gateway reports.
"""

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from function import fieldpath, labels
from function.claims import Claim
from function.listeners import TenantListeners, gateway_parent
from function.shards import first_address
from function.tickets import parse_time

# A claim's listener normally follows within a reconcile or two; this long without one is
# drift, not a tenant on its way.
UNATTACHED_AFTER = datetime.timedelta(minutes=10)

COUNTS = ("foreign", "unclaimed", "unattached", "refused")


@dataclass(frozen=True)
class SeenClaim:
    """What drift needs of one claim: its port, whether it is in use, and when it was
    made (read only for a claim without a listener: the pool step reads every claim of
    the shards it audits)."""

    port: int
    blocked: bool
    created: object  # metadata.creationTimestamp as found

    @classmethod
    def of(cls, claim: Claim, obj: dict) -> "SeenClaim":
        metadata = obj.get("metadata")
        created = metadata.get("creationTimestamp") if isinstance(metadata, dict) else None
        return cls(port=claim.port, blocked=claim.blocked is not None, created=created)

    def older_than(self, bound: datetime.timedelta, now: datetime.datetime) -> bool:
        created = parse_time(self.created)
        return created is not None and now - created >= bound


class Drift:
    """The pool's tenant listener sets, by the Gateway they name, judged at `now`."""

    def __init__(
        self,
        listener_sets: Iterable[TenantListeners],
        claimed_ports: set[int],
        now: datetime.datetime,
    ):
        self.by_parent: dict[tuple[str, str, str, str], list[TenantListeners]] = {}
        for listener_set in listener_sets:
            self.by_parent.setdefault(listener_set.parent, []).append(listener_set)
        self.claimed_ports = claimed_ports
        self.now = now

    def shard(
        self, namespace: str, gateway: str, live: dict | None, claims: Iterable[SeenClaim]
    ) -> dict:
        """The drift of one shard: its Gateway as the cluster has it (None: not there yet)
        and the claims naming it."""
        on_shard = self.by_parent.get(gateway_parent(namespace, gateway), [])
        accepted = [ls for ls in on_shard if ls.accepted is True]
        listening = {port for ls in accepted for port in ls.ports}
        reported = _count(fieldpath.get(live or {}, "status.attachedListenerSets", None))
        drift: dict = {}
        if reported is not None:
            drift["attached"] = reported
        drift["foreign"] = max(0, reported - len(accepted)) if reported is not None else 0
        drift["unclaimed"] = sum(
            1
            for ls in accepted
            if ls.role != labels.PLACED_ROLE and not ls.ports & self.claimed_ports
        )
        drift["unattached"] = sum(
            1
            for claim in claims
            if not claim.blocked  # a blocked claim keeps its slot, never a listener
            and claim.port not in listening
            and claim.older_than(UNATTACHED_AFTER, self.now)
        )
        drift["refused"] = sum(1 for ls in on_shard if ls.refused)
        drift["noAddress"] = first_address(live or {}) is None
        return drift


def carried(previous: object, live: dict | None) -> dict:
    """The drift of a shard whose listener sets were not all read in this reconcile: the
    counts found when they last were, with what its Gateway reports now."""
    counts = previous if isinstance(previous, dict) else {}
    drift: dict = {}
    reported = _count(fieldpath.get(live or {}, "status.attachedListenerSets", None))
    if reported is not None:
        drift["attached"] = reported
    for name in COUNTS:
        drift[name] = _count(counts.get(name)) or 0
    drift["noAddress"] = first_address(live or {}) is None
    return drift


def totals(shards: list[dict]) -> dict:
    """The pool's drift: every shard's counts summed, and the shards without an address."""
    drifts = [shard["listenerDrift"] for shard in shards]
    summed = {name: sum(drift[name] for drift in drifts) for name in COUNTS}
    summed["shardsWithoutAddress"] = sum(1 for drift in drifts if drift["noAddress"])
    return summed


def _count(value: object) -> int | None:
    # Protobuf numbers are floats; anything else is no report.
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None
