"""Freed ports rest before reuse, so a stale client never reaches the next tenant.

A client of a deleted service (an old connection string, an old SSH remote, a DNS cache)
keeps connecting to its port for a while. So a freed port rests for `portRest` before any
tenant may claim it, and among the ports that may be claimed, those free longest come
first (never used before all), so reuse is as late as the slice allows.

The pool step is the only writer of the record, three annotations on each shard Gateway it
composes (the function stays stateless: Kubernetes holds the record):

* `port-rest`: how long a freed port rests, in seconds (the pool's `portRest`);
* `ports-seen`: the ports taken (claimed or listened on) when the pool step last looked, a
  bitmap of the slice: a fixed width/6 characters whatever the pattern (167 for 1,000
  ports), where a list of numbers would grow with the tenants;
* `ports-freed`: the ports freed since, each with the time the pool step first saw it free,
  as groups `<epoch seconds, base 36>:<slice offsets>` in the order they were freed,
  oldest first. An offset is a fixed two characters (three for slices above 4,096 ports),
  so a thousand freed ports cost 2 KB; groups that have rested merge into one (keeping the
  order), so the groups are bounded by the pool-step runs within `portRest`.

A tenant treats as resting a port the pool step saw taken that no claim holds now (freed
since it looked: it rests from the first reconcile after the deletion, before the pool
step runs again), and a port freed less than `portRest` ago. A claim born and gone between
two pool-step runs left no record: its port is offered again at once.

Every choice is a function of the record and the claims in view; only which ports of the
offered window have finished resting depends on the clock, and resting ports come last in
the order, so tenants racing from one view still offer the same window (the claim locks it)
and never more ports than free slots.
"""

import base64
import datetime
import re
from collections.abc import Iterable, Set
from dataclasses import dataclass

from function import labels
from function.inputs import MAX_PORT_REST

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
_DIGIT = {c: i for i, c in enumerate(_ALPHABET)}
_GROUP = re.compile(r"^([0-9a-z]{1,8}):([0-9A-Za-z_-]*)$")
_BITMAP = re.compile(r"^[0-9A-Za-z_-]*$")
_BITS = [tuple(i for i in range(8) if byte & (0x80 >> i)) for byte in range(256)]
ANNOTATIONS = (labels.PORT_REST, labels.PORTS_SEEN, labels.PORTS_FREED)


class RecordError(ValueError):
    """A resting record that cannot be read; the message names the annotation."""


@dataclass(frozen=True)
class Record:
    """What the pool step last saw of one shard's ports."""

    rest: int  # seconds a freed port rests
    seen: frozenset[int] = frozenset()  # taken when the pool step last looked
    # (epoch second the pool step first saw them free, ports in the order freed), oldest first
    freed: tuple[tuple[int, tuple[int, ...]], ...] = ()


def resting(
    record: Record, taken: Set[int], now: datetime.datetime | None
) -> dict[int, int | None]:
    """The ports that rest, each with the epoch second its rest ends (None: unknown yet, it
    was freed since the pool step looked). `taken`: the ports claims or listeners hold now.
    Without a clock (an in-memory plan) every recorded port rests."""
    found: dict[int, int | None] = {port: None for port in record.seen if port not in taken}
    clock = None if now is None else int(now.timestamp())
    for time, group in record.freed:
        if clock is None or clock < time + record.rest:
            for port in group:
                if port not in taken:
                    found[port] = time + record.rest
    return found


def order(ports: Iterable[int], record: Record) -> list[int]:
    """Ports in the order they are offered: never used first (lowest first), then freed
    longest ago, then those freed since the pool step looked. Resting ports are thus a tail
    of the order, whatever the clock says."""
    rank = {}
    for i, (_, group) in enumerate(record.freed):
        for j, port in enumerate(group):
            rank[port] = (1, i, j)

    def key(port: int) -> tuple:
        if port in rank:
            return rank[port]
        return (2, port, 0) if port in record.seen else (0, port, 0)

    return sorted(ports, key=key)


def offer(ports: Iterable[int], room: int, record: Record | None, resting_now: Set[int]) -> list:
    """What a shard offers new tenants: the first `room` free ports in the order, less those
    still resting. The window never depends on the clock, so it is the same for every
    tenant that reads the same claims; a resting port costs a slot only once the shard has
    no other port to offer (a slice wider than the capacity has spares)."""
    if room <= 0:
        return []
    if record is None:
        return sorted(ports)[:room]
    return [port for port in order(ports, record)[:room] if port not in resting_now]


def advance(
    previous: Record | None, taken: Set[int], tenant_ports: range, now: datetime.datetime, rest: int
) -> Record:
    """The record the pool step writes after looking: ports taken now are seen; ports it saw
    taken last time and free now are freed now; a freed port taken again leaves the list
    (freed again later, it goes to the end)."""
    clock = int(now.timestamp())
    previous = previous or Record(rest)
    groups = []
    for time, group in previous.freed:
        kept = tuple(p for p in group if p not in taken and p in tenant_ports)
        if kept:
            groups.append((time, kept))
    listed = {port for _, group in groups for port in group}
    new = tuple(sorted(p for p in previous.seen if p not in taken and p not in listed))
    new = tuple(p for p in new if p in tenant_ports)
    if new:
        # Never before a recorded time (pool replicas' clocks differ): the order stays the
        # order of release, and a later time only rests longer.
        groups.append((max([clock, *(time for time, _ in groups)]), new))
    seen = frozenset(p for p in taken if p in tenant_ports)
    return Record(rest, seen, _merge_rested(groups, clock, rest))


def restart(taken: Set[int], tenant_ports: range, now: datetime.datetime, rest: int) -> Record:
    """A record for a shard whose record could not be read: every port nobody holds rests
    from now (it may have been freed a moment ago)."""
    free = tuple(p for p in tenant_ports if p not in taken)
    seen = frozenset(p for p in taken if p in tenant_ports)
    return Record(rest, seen, ((int(now.timestamp()), free),) if free else ())


def _merge_rested(groups: list, clock: int, rest: int) -> tuple:
    """Groups that have all rested merge into one, in order, with the latest time (which
    has rested too): the record stays bounded by the runs within one rest."""
    rested = [g for g in groups if g[0] + rest <= clock]
    if len(rested) < 2:
        return tuple(groups)
    merged = (rested[-1][0], tuple(p for _, group in rested for p in group))
    return (merged, *groups[len(rested) :])


# -- the annotations ----------------------------------------------------------------------


def annotations(record: Record, start: int, width: int) -> dict[str, str]:
    """The record as the Gateway's annotations; `start`/`width`: the shard's slice."""
    found = {labels.PORT_REST: str(record.rest)}
    if record.seen:
        found[labels.PORTS_SEEN] = _bitmap(record.seen, start, width)
    if record.freed:
        digits = _digits(width)
        found[labels.PORTS_FREED] = ",".join(
            f"{_base36(time)}:{''.join(_offset(p - start, digits) for p in group)}"
            for time, group in record.freed
        )
    return found


def read(annotations_: dict, start: int, width: int) -> Record | None:
    """The record on a Gateway; None where it has none (resting is off, or a shard made by
    hand). Raise RecordError naming the annotation that cannot be read. Only the pool step
    and the platform's people write a shard Gateway; still, nothing in it may make a port
    claimable early: a record that cannot be read is refused whole."""
    rest_text = annotations_.get(labels.PORT_REST)
    if rest_text is None:
        return None
    if not isinstance(rest_text, str) or not rest_text.isdigit() or int(rest_text) > MAX_PORT_REST:
        raise RecordError(f"annotation {labels.PORT_REST} {rest_text!r} is no number of seconds")
    rest = int(rest_text)
    seen_text = annotations_.get(labels.PORTS_SEEN, "")
    seen = _read_bitmap(seen_text, start, width)
    if seen is None:
        raise RecordError(f"annotation {labels.PORTS_SEEN} is not a bitmap of the slice")
    freed = _read_freed(annotations_.get(labels.PORTS_FREED, ""), start, width)
    if freed is None:
        raise RecordError(f"annotation {labels.PORTS_FREED} cannot be read")
    return Record(rest, seen, freed)


def _digits(width: int) -> int:
    return 2 if width <= 64**2 else 3


def _offset(value: int, digits: int) -> str:
    out = ""
    for _ in range(digits):
        value, digit = divmod(value, 64)
        out = _ALPHABET[digit] + out
    return out


def _base36(value: int) -> str:
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = _ALPHABET[digit].lower() + out
        if not value:
            return out


def _bitmap(ports: Iterable[int], start: int, width: int) -> str:
    bits = bytearray((width + 7) // 8)
    for port in ports:
        offset = port - start
        if 0 <= offset < width:
            bits[offset // 8] |= 0x80 >> (offset % 8)
    return base64.urlsafe_b64encode(bytes(bits)).decode().rstrip("=")


def _read_bitmap(text: object, start: int, width: int) -> frozenset[int] | None:
    if not isinstance(text, str) or not _BITMAP.match(text):
        return None
    if not text:
        return frozenset()
    try:
        bits = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    if len(bits) != (width + 7) // 8:
        return None
    found = [start + 8 * k + i for k, byte in enumerate(bits) if byte for i in _BITS[byte]]
    if found and found[-1] >= start + width:
        return None  # a bit beyond the slice
    return frozenset(found)


def _read_freed(text: object, start: int, width: int):
    if not isinstance(text, str):
        return None
    if not text:
        return ()
    digits = _digits(width)
    groups = []
    listed: set[int] = set()
    last = -1
    for part in text.split(","):
        match = _GROUP.match(part)
        if match is None or len(match.group(2)) % digits:
            return None
        time = int(match.group(1), 36)
        if time < last:  # out of order: no record the pool step wrote
            return None
        last = time
        encoded = match.group(2)
        group = []
        for i in range(0, len(encoded), digits):
            offset = 0
            for char in encoded[i : i + digits]:
                offset = offset * 64 + _DIGIT[char]
            port = start + offset
            if offset >= width or port in listed:
                return None
            listed.add(port)
            group.append(port)
        if group:
            groups.append((time, tuple(group)))
    return tuple(groups)
