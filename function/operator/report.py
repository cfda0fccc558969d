"""A pool's utilisation and drift, from plain dicts: shard Gateways, claims, ListenerSets.

Shards and claims are read with the function's own parsers, so the report sees the pool the
way the function does. Drift compares the claims (who owns which port) with the listeners
actually attached to each shard's Gateway (what the data plane serves).
"""

import datetime
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from function import claims as claimlib
from function import fieldpath, labels, resting
from function.readiness import conditions
from function.shards import Shard, ShardError, from_gateway

GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass
class ShardRow:
    index: int
    gateway: str
    hostname: str
    address: str
    ports: str
    capacity: int
    slots: int  # tenant slots: capacity minus the Gateway's own listeners
    used: int  # claims on this shard (distinct ports)
    free: int  # tenant slots left
    programmed: bool
    accepting: bool | None
    listeners: int  # the Gateway's own plus every attached ListenerSet listener
    nodePorts: int  # the Gateway's own listeners plus its claims


@dataclass(frozen=True)
class Listener:
    """One listener of a ListenerSet/XListenerSet, and the Gateway it attaches to."""

    kind: str
    namespace: str
    name: str
    listener: str
    port: int
    gateway_namespace: str
    gateway: str

    @property
    def source(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass
class Drift:
    shard: int
    gateway: str
    port: int
    claim: str | None = None  # claimed, not listened on
    listeners: list[str] = field(default_factory=list)  # listened on, not claimed


@dataclass
class Conflict:
    """A port more than one listener of a shard uses: all but the oldest are Conflicted."""

    shard: int
    gateway: str
    port: int
    listeners: list[str]


@dataclass
class Resting:
    """A freed port that no tenant may claim yet (function/resting.py)."""

    shard: int
    gateway: str
    port: int
    # Seconds of rest left; None: freed since the pool step last looked (it rests a whole
    # portRest from the pool step's next run).
    secondsLeft: int | None


@dataclass
class Skipped:
    gateway: str
    reason: str


@dataclass
class Report:
    pool: str
    namespace: str
    claimKind: str
    shards: list[ShardRow] = field(default_factory=list)
    claimedNotListening: list[Drift] = field(default_factory=list)
    listeningNotClaimed: list[Drift] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    skippedShards: list[Skipped] = field(default_factory=list)
    orphanedClaims: list[str] = field(default_factory=list)  # name no readable shard
    claimsOutsideSlice: list[str] = field(default_factory=list)
    unreadableClaims: list[str] = field(default_factory=list)  # name no port
    waiting: list[str] = field(default_factory=list)  # tickets: tenants waiting for a port
    missingKinds: list[str] = field(default_factory=list)  # CRDs not installed
    resting: list[Resting] = field(default_factory=list)
    unreadableRecords: list[str] = field(default_factory=list)  # shards offering no port

    @property
    def totals(self) -> dict:
        return {
            "shards": len(self.shards),
            "capacity": sum(s.capacity for s in self.shards),
            "slots": sum(s.slots for s in self.shards),
            "used": sum(s.used for s in self.shards),
            "free": sum(s.free for s in self.shards),
            "listeners": sum(s.listeners for s in self.shards),
        }

    @property
    def node_ports(self) -> int:
        return sum(s.nodePorts for s in self.shards)

    @property
    def drifted(self) -> bool:
        return bool(self.claimedNotListening or self.listeningNotClaimed or self.conflicts)


# -- building --------------------------------------------------------------------------------


def build(
    pool: str,
    namespace: str,
    gateways: list[dict],
    claims: list[dict],
    listener_sets: list[dict],
    *,
    claim_kind: str = "Lease",
    missing_kinds: list[str] | None = None,
    now: datetime.datetime | None = None,
) -> Report:
    report = Report(pool, namespace, claim_kind, missingKinds=list(missing_kinds or []))
    read = _shards(gateways, namespace, report)
    shards = {index: shard for index, (shard, _) in read.items()}
    held = _claims(claims, shards, report)
    attached = _attached(listeners(listener_sets), shards)
    for index, (shard, gateway) in read.items():
        report.shards.append(_row(shard, gateway, held[index], attached[index]))
        _drift(shard, held[index], attached[index], report)
        _resting(shard, held[index].keys() | attached[index].keys(), now, report)
    return report


def _resting(shard: Shard, taken: set[int], now: datetime.datetime | None, report: Report):
    if shard.record_error is not None:
        message = f"shard {shard.index} ({shard.gateway}): {shard.record_error}"
        report.unreadableRecords.append(message)
    if shard.record is None:
        return
    clock = None if now is None else int(now.timestamp())
    for port, until in sorted(resting.resting(shard.record, taken, now).items()):
        left = None if until is None or clock is None else until - clock
        report.resting.append(Resting(shard.index, shard.gateway, port, left))


def _shards(gateways: list[dict], namespace: str, report: Report):
    """Readable shards by index, each with its Gateway; the others are reported skipped."""
    shards: dict[int, tuple[Shard, dict]] = {}
    for gateway in gateways:
        name = f"{namespace}/{fieldpath.text(gateway, 'metadata.name') or '?'}"
        try:
            shard = from_gateway(gateway)
        except ShardError as err:
            report.skippedShards.append(Skipped(name, str(err)))
            continue
        if shard.index in shards:
            other = shards[shard.index][0].gateway
            report.skippedShards.append(Skipped(name, f"shard index {shard.index} is also {other}"))
            continue
        shards[shard.index] = (shard, gateway)
    return dict(sorted(shards.items()))


def _claims(objects: list[dict], shards: dict[int, Shard], report: Report):
    """Claims per shard index: port -> claim name."""
    held: dict[int, dict[int, str]] = defaultdict(dict)
    for obj in objects:
        if _wraps_other_kind(obj):
            continue  # a wrapped Gateway, ListenerSet... carries the pool label too
        name = fieldpath.text(obj, "metadata.name") or "?"
        if fieldpath.mapping(obj, "metadata.labels").get(labels.ROLE) == labels.TICKET_ROLE:
            report.waiting.append(name)
            continue
        claim = claimlib.parse(obj)
        if claim is None:
            report.unreadableClaims.append(name)
        elif claim.shard not in shards:
            report.orphanedClaims.append(name)
        else:
            shard = shards[claim.shard]
            held[shard.index][claim.port] = claim.name
            if not shard.port_start <= claim.port <= shard.port_end:
                report.claimsOutsideSlice.append(name)
    for names in (
        report.unreadableClaims,
        report.orphanedClaims,
        report.claimsOutsideSlice,
        report.waiting,
    ):
        names.sort()
    return held


def _wraps_other_kind(obj: dict) -> bool:
    return obj.get("kind") == "Object" and claimlib.inner_manifest(obj).get("kind") != "Lease"


def _targets_gateway(ref: dict) -> bool:
    # group and kind default to a Gateway of the standard API group.
    return ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP and ref.get("kind", "Gateway") == (
        "Gateway"
    )


def listeners(listener_sets: list[dict]) -> list[Listener]:
    """Every listener of ListenerSets whose parentRef is a Gateway."""
    found = []
    for listener_set in listener_sets:
        ref = fieldpath.mapping(listener_set, "spec.parentRef")
        if not _targets_gateway(ref):
            continue
        namespace = fieldpath.text(listener_set, "metadata.namespace") or ""
        name = fieldpath.text(listener_set, "metadata.name") or "?"
        # parentRef.namespace defaults to the ListenerSet's own namespace.
        gateway_namespace = ref.get("namespace") or namespace
        for item in fieldpath.items(listener_set, "spec.listeners"):
            port = _port(item.get("port") if isinstance(item, dict) else None)
            if port is None:
                continue
            found.append(
                Listener(
                    kind=str(listener_set.get("kind", "ListenerSet")),
                    namespace=namespace,
                    name=name,
                    listener=str(item.get("name", "")),
                    port=port,
                    gateway_namespace=str(gateway_namespace),
                    gateway=str(ref.get("name", "")),
                )
            )
    return found


def _port(value: object) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == int(value):
        return int(value)
    return None


def _attached(found: list[Listener], shards: dict[int, Shard]):
    """Listeners per shard index: port -> listeners on it."""
    index = {(s.namespace, s.gateway): s.index for s in shards.values()}
    attached: dict[int, dict[int, list[Listener]]] = defaultdict(lambda: defaultdict(list))
    for listener in found:
        shard = index.get((listener.gateway_namespace, listener.gateway))
        if shard is not None:
            attached[shard][listener.port].append(listener)
    return attached


def _row(shard: Shard, gateway: dict, held: dict, attached: dict) -> ShardRow:
    used = len(held)
    return ShardRow(
        index=shard.index,
        gateway=shard.gateway,
        hostname=shard.hostname or "",
        address=shard.address or "",
        ports=f"{shard.port_start}-{shard.port_end}",
        capacity=shard.capacity,
        slots=shard.tenant_slots,
        used=used,
        free=max(0, shard.tenant_slots - used),
        programmed=conditions(fieldpath.mapping(gateway, "status")).get("Programmed") == "True",
        accepting=shard.accepting,
        listeners=shard.own_listeners + sum(len(items) for items in attached.values()),
        # Every listener is a port of the shard's LoadBalancer Service, hence a NodePort.
        nodePorts=shard.own_listeners + used,
    )


def _drift(shard: Shard, held: dict[int, str], attached: dict, report: Report) -> None:
    for port in sorted(held.keys() - attached.keys()):
        report.claimedNotListening.append(Drift(shard.index, shard.gateway, port, claim=held[port]))
    for port in sorted(attached.keys() - held.keys()):
        sources = [listener.source for listener in attached[port]]
        report.listeningNotClaimed.append(
            Drift(shard.index, shard.gateway, port, listeners=sources)
        )
    for port in sorted(attached):
        sources = [listener.source for listener in attached[port]]
        if port in shard.own_ports:
            sources.insert(0, f"Gateway {shard.namespace}/{shard.gateway}")
        if len(sources) > 1:
            report.conflicts.append(Conflict(shard.index, shard.gateway, port, sources))


# -- rendering -------------------------------------------------------------------------------


def to_dict(report: Report) -> dict:
    data = asdict(report)
    data["totals"] = report.totals
    data["nodePorts"] = report.node_ports
    for drift in data["claimedNotListening"]:
        del drift["listeners"]
    for drift in data["listeningNotClaimed"]:
        del drift["claim"]
    return data


def render_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"


def table(headers: list[str], rows: list[list[object]]) -> str:
    """Left-aligned columns separated by two spaces, like kubectl's."""
    cells = [headers, *[[_cell(v) for v in row] + [""] * (len(headers) - len(row)) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else str(value)


def _cells(s: ShardRow) -> list[object]:
    hostname, address = s.hostname or None, s.address or None  # shown as "-"
    return [s.index, s.gateway, hostname, address, s.ports, s.capacity, s.used, s.free,
            s.accepting, s.programmed]  # fmt: skip


def render_table(report: Report) -> str:
    headers = ["SHARD", "GATEWAY", "HOSTNAME", "ADDRESS", "PORTS", "CAPACITY", "USED", "FREE"]
    headers += ["ACCEPTING", "PROGRAMMED"]
    rows: list[list[object]] = [_cells(s) for s in report.shards]
    totals = report.totals
    rows.append(["TOTAL", "", "", "", "", totals["capacity"], totals["used"], totals["free"]])
    own = report.node_ports - totals["used"]
    lines = [
        f"Pool {report.pool} in namespace {report.namespace} (claims: {report.claimKind}s)",
        "",
        table(headers, rows),
        "",
        f"Shards: {totals['shards']} (one public IP each)   Tenant slots: {totals['slots']}   "
        f"Used: {totals['used']}   Free: {totals['free']}",
        f"NodePorts: {report.node_ports} ({own} shard listeners + {totals['used']} claims; "
        f"{totals['listeners']} listeners attached now)",
    ]
    lines += _problems(report)
    return "\n".join(lines) + "\n"


def _duration(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m")) if n) + (
        f"{seconds}s" if seconds or not (hours or minutes) else ""
    )


def _problems(report: Report) -> list[str]:
    lines = [""]
    if not report.drifted:
        lines.append("Drift: none")
    for d in report.claimedNotListening:
        lines.append(
            f"Drift: port {d.port} on shard {d.shard} ({d.gateway}) is claimed by {d.claim} "
            "but no listener uses it"
        )
    for d in report.listeningNotClaimed:
        lines.append(
            f"Drift: port {d.port} on shard {d.shard} ({d.gateway}) is listened on by "
            f"{', '.join(d.listeners)} but not claimed"
        )
    for c in report.conflicts:
        lines.append(
            f"Conflict: port {c.port} on shard {c.shard} ({c.gateway}) is used by "
            f"{', '.join(c.listeners)}"
        )
    for s in report.skippedShards:
        lines.append(f"Skipped shard: Gateway {s.gateway}: {s.reason}")
    for r in report.resting:
        left = (
            "freed since the pool step last looked"
            if r.secondsLeft is None
            else f"{_duration(r.secondsLeft)} left"
        )
        lines.append(f"Resting: port {r.port} on shard {r.shard} ({r.gateway}), {left}")
    for message in report.unreadableRecords:
        lines.append(f"Unreadable resting record, no port offered: {message}")
    notes = [
        ("Claims naming no shard of the pool", report.orphanedClaims),
        ("Claims outside their shard's port range", report.claimsOutsideSlice),
        ("Claims naming no port", report.unreadableClaims),
        ("Tenants waiting for a port (tickets)", report.waiting),
        ("Not installed (no such API)", report.missingKinds),
    ]
    lines += [f"{title}: {', '.join(names)}" for title, names in notes if names]
    return lines
