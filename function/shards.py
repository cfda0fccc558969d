"""Shards: Gateways of a pool, read from labels and annotations, or given statically."""

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from function import fieldpath, labels, resting
from function.inputs import StaticGateway, parse_port_range


@dataclass(frozen=True)
class Shard:
    index: int
    gateway: str
    namespace: str
    hostname: str | None
    port_start: int
    port_end: int
    capacity: int  # listeners behind the Gateway's IP, its own included
    own_ports: frozenset[int]  # ports of the Gateway's own spec.listeners
    held_elsewhere: frozenset[int] = frozenset()  # slice ports claims of other shards hold
    used_hint: int | None = None
    accepting: bool | None = None
    address: str | None = None
    # The resting record's annotations as written, read only where a port is chosen.
    record_annotations: tuple[tuple[str, str], ...] = ()
    client_address: str | None = None  # annotation CLIENT_ADDRESS; None: not said

    @property
    def own_listeners(self) -> int:
        # A Gateway needs at least one listener of its own; unknown ones still take a slot.
        return max(1, len(self.own_ports))

    @property
    def tenant_slots(self) -> int:
        return max(0, self.capacity - self.own_listeners)

    @property
    def hinted_free(self) -> bool:
        return self.used_hint is None or self.used_hint < self.tenant_slots

    def ports(self) -> range:
        return range(self.port_start, self.port_end + 1)

    @functools.cached_property
    def _record(self) -> tuple[resting.Record | None, str | None]:
        width = self.port_end - self.port_start + 1
        try:
            return resting.read(dict(self.record_annotations), self.port_start, width), None
        except resting.RecordError as err:
            return None, str(err)

    @property
    def record(self) -> resting.Record | None:
        """Freed ports that rest (function/resting.py); None: resting is off."""
        return self._record[0]

    @property
    def record_error(self) -> str | None:
        """Why the record cannot be read: then the shard offers no port."""
        return self._record[1]


class ShardError(ValueError):
    """A Gateway that cannot be used as a shard; the message names the field."""


def _int(value: object, field: str) -> int:
    try:
        number = float(value) if isinstance(value, int | float) else int(str(value).strip())
    except (TypeError, ValueError):
        raise ShardError(f"{field} {value!r} is not a whole number") from None
    if number != int(number):
        raise ShardError(f"{field} {value!r} is not a whole number")
    return int(number)


def from_gateway(gateway: dict) -> Shard:
    """Read one shard from a Gateway object; raise ShardError naming the bad field."""
    metadata = fieldpath.mapping(gateway, "metadata")
    meta_labels = fieldpath.mapping(metadata, "labels")
    annotations = fieldpath.mapping(metadata, "annotations")

    index = _int(meta_labels.get(labels.SHARD), f"label {labels.SHARD}")
    if index < 1:
        raise ShardError(f"label {labels.SHARD} must be >= 1, got {index}")
    ports_text = annotations.get(labels.PORTS)
    if not isinstance(ports_text, str):
        raise ShardError(f"annotation {labels.PORTS} is missing")
    try:
        start, end = parse_port_range(ports_text)
    except ValueError as err:
        raise ShardError(f"annotation {labels.PORTS}: {err}") from None
    capacity = _int(annotations.get(labels.CAPACITY), f"annotation {labels.CAPACITY}")
    if capacity < 1:
        raise ShardError(f"annotation {labels.CAPACITY} must be >= 1, got {capacity}")
    used = annotations.get(labels.USED)
    try:
        used_hint = None if used is None else _int(used, f"annotation {labels.USED}")
    except ShardError:
        used_hint = None  # only a hint: a bad one means "unknown", never "full"
    accepting = meta_labels.get(labels.ACCEPTING)
    hostname = annotations.get(labels.HOSTNAME)
    name, namespace = metadata.get("name"), metadata.get("namespace")
    # Anything but a string is no record the pool step wrote: kept so that it is refused.
    record = tuple(
        (key, value if isinstance(value, str) else f"<{type(value).__name__}>")
        for key, value in annotations.items()
        if key in resting.ANNOTATIONS
    )

    return Shard(
        index=index,
        gateway=name if isinstance(name, str) else "",
        namespace=namespace if isinstance(namespace, str) else "",
        hostname=hostname if isinstance(hostname, str) and hostname else None,
        port_start=start,
        port_end=end,
        capacity=capacity,
        own_ports=frozenset(_own_ports(gateway)),
        held_elsewhere=frozenset(parse_ports(annotations.get(labels.HELD_ELSEWHERE))),
        used_hint=used_hint,
        accepting=None if accepting is None else accepting == "true",
        address=first_address(gateway),
        record_annotations=record,
        client_address=_text(annotations.get(labels.CLIENT_ADDRESS)),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_ports(text: object) -> list[int]:
    """Ports listed as `10012,10013`; anything else is skipped (the list only ever keeps
    tenants off ports, so a damaged entry costs at most a retry)."""
    if not isinstance(text, str):
        return []
    ports = []
    for entry in text.split(","):
        entry = entry.strip()
        if entry.isdigit() and 1 <= int(entry) <= 65535:
            ports.append(int(entry))
    return ports


def format_ports(ports: Iterable[int]) -> str:
    return ",".join(str(port) for port in sorted(set(ports)))


def _own_ports(gateway: dict) -> list[int]:
    ports = []
    for listener in fieldpath.items(gateway, "spec.listeners"):
        port = listener.get("port") if isinstance(listener, dict) else None
        if isinstance(port, int | float) and not isinstance(port, bool) and port == int(port):
            ports.append(int(port))
    return ports


def first_address(gateway: dict) -> str | None:
    for address in fieldpath.items(gateway, "status.addresses"):
        value = address.get("value") if isinstance(address, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def from_static(gateways: list[StaticGateway], namespace: str) -> list[Shard]:
    """Static shards are indexed from 1 in list order, for the search order and new claims'
    shard label only: a static shard is identified by its Gateway's name (the claims'
    gateway label), so reordering the list moves nobody."""
    shards = []
    for position, gateway in enumerate(gateways, start=1):
        start, end = gateway.port_range
        shards.append(
            Shard(
                index=position,
                gateway=gateway.name,
                namespace=namespace,
                hostname=gateway.hostname,
                port_start=start,
                port_end=end,
                capacity=gateway.capacity,
                own_ports=frozenset(gateway.listenerPorts),
            )
        )
    return shards
