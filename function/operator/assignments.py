"""Per-service assignments of a pool: which tenant holds each port, from plain dicts.

A port's tenant is the XR that controls its claim (the claim's controller owner reference;
Crossplane composes the claim, or the provider-kubernetes Object wrapping it), or, for a
Namespaced XR that holds no claim, the XR that controls its listener set. Its listener is
the ListenerSet/XListenerSet on that port attached to the port's shard Gateway, with the
state its Gateway reports. Listener sets live in tenants' namespaces: their owner
references and names are shown as found, never trusted for anything else.
"""

import datetime
import json
from collections import defaultdict
from dataclasses import asdict, dataclass

from function import claims as claimlib
from function import fieldpath, labels
from function.operator import report as reporting
from function.readiness import conditions
from function.shards import ShardError, from_gateway
from function.tickets import parse_time


@dataclass
class Assignment:
    shard: int
    gateway: str
    port: int
    xr: str  # Kind/name of the XR that controls the claim (or listener set); "" unknown
    namespace: str  # of its listener set (the service's namespace); "" with none
    claim: str  # the claim's name; "" for a Namespaced XR's listener without a claim
    holder: str  # the claim's holder (the XR's UID); ""
    since: str  # when the claim (else the listener set) was created, RFC 3339; ""
    ageSeconds: int | None
    listener: str  # Programmed, Accepted, Pending, NotAccepted (reason), none, or several


def build(
    namespace: str,
    gateways: list[dict],
    claims: list[dict],
    listener_sets: list[dict],
    now: datetime.datetime,
) -> list[Assignment]:
    """Every claimed or listened port of the pool's readable shards, by shard and port."""
    shards = {}
    for gateway in gateways:
        try:
            shard = from_gateway(gateway)
        except ShardError:
            continue  # `tcp-access report` names the shards it cannot read
        shards.setdefault(shard.index, shard)
    held: dict[tuple[int, int], dict] = {}
    for obj in claims:
        claim = claimlib.parse(obj) if claimlib.lease_of(obj) else None
        if claim is None or claim.shard not in shards or _is_ticket(obj):
            continue
        held[(claim.shard, claim.port)] = obj
    by_gateway = {(s.namespace, s.gateway): s.index for s in shards.values()}
    listening: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for listener_set in listener_sets:
        for listener in reporting.listeners([listener_set]):
            index = by_gateway.get((listener.gateway_namespace, listener.gateway))
            if index is not None:
                listening[(index, listener.port)].append(listener_set)
    rows = []
    for index, port in sorted(held.keys() | listening.keys()):
        obj, found = held.get((index, port)), listening.get((index, port), [])
        listener_set = found[0] if found else {}
        # The claim says since when the port is the tenant's; without one, its listener.
        created = fieldpath.text(obj or listener_set, "metadata.creationTimestamp") or ""
        when = parse_time(created)
        claim = claimlib.parse(obj) if obj else None
        rows.append(
            Assignment(
                shard=index,
                gateway=shards[index].gateway,
                port=port,
                xr=_controller(obj) or _controller(listener_set),
                namespace=fieldpath.text(listener_set, "metadata.namespace") or "",
                claim=claim.name if claim else "",
                holder=(claim.holder or "") if claim else "",
                since=when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "",
                ageSeconds=max(0, int((now - when).total_seconds())) if when else None,
                listener=_state(claim, found),
            )
        )
    return rows


def _is_ticket(obj: dict) -> bool:
    lease = claimlib.lease_of(obj) or {}
    return fieldpath.mapping(lease, "metadata.labels").get(labels.ROLE) == labels.TICKET_ROLE


def _controller(obj: dict | None) -> str:
    for ref in fieldpath.items(obj or {}, "metadata.ownerReferences"):
        if isinstance(ref, dict) and ref.get("controller") is True:
            return f"{ref.get('kind', '?')}/{ref.get('name', '?')}"
    return ""


def _state(claim: claimlib.Claim | None, found: list[dict]) -> str:
    if claim is not None and claim.blocked:
        return f"Blocked ({claim.blocked})"
    if not found:
        return "none"
    if len(found) > 1:
        return f"several ({len(found)})"
    reported = conditions(fieldpath.mapping(found[0], "status"))
    if reported.get("Accepted") == "False":
        return f"NotAccepted ({_reason(found[0], 'Accepted')})"
    if reported.get("Programmed") == "True":
        return "Programmed"
    return "Accepted" if reported.get("Accepted") == "True" else "Pending"


def _reason(obj: dict, kind: str) -> str:
    for condition in fieldpath.items(obj, "status.conditions"):
        if isinstance(condition, dict) and condition.get("type") == kind:
            return str(condition.get("reason") or "?")
    return "?"


def age(seconds: int | None) -> str:
    """kubectl's short age: 45s, 12m, 5h, 3d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_json(pool: str, namespace: str, rows: list[Assignment]) -> str:
    data = {"pool": pool, "namespace": namespace, "assignments": [asdict(r) for r in rows]}
    return json.dumps(data, indent=2) + "\n"


def render_table(pool: str, namespace: str, rows: list[Assignment]) -> str:
    headers = ["SHARD", "PORT", "XR", "NAMESPACE", "AGE", "LISTENER", "CLAIM"]
    cells = [
        [r.shard, r.port, r.xr or None, r.namespace or None, age(r.ageSeconds), r.listener,
         r.claim or None]
        for r in rows
    ]  # fmt: skip
    title = f"Pool {pool} in namespace {namespace}: {len(rows)} ports assigned"
    return f"{title}\n\n{reporting.table(headers, cells)}\n"
