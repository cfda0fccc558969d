"""Source-address allowlists (AppCat `ipFilter`): CIDRs as Envoy Gateway will read them.

This parsing is the security boundary of a tenant's allowlist. Envoy Gateway's CRD pattern
for `clientCIDRs` is not anchored (it admits `300.1.1.1/8`); Envoy Gateway then parses each
entry with Go's `net.ParseCIDR`, marks a policy with a bad entry invalid and leaves its route
open. So every entry is checked here, stricter than Go where in doubt, and emitted in one
canonical form that Go parses to the same network.

What Go's `net.ParseCIDR` rejects, and so does this: IPv4 octets with leading zeros
(`010.0.0.1`), zone ids (`fe80::1%eth0`), netmask or hostmask suffixes (`/255.255.255.0`),
a prefix longer than the address, signs and spaces. What Python's `ipaddress` would accept
beyond Go is refused before it gets there. On top of Go: a bare address means one host
(/32 or /128), host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`), an IPv4-mapped IPv6
address is refused (a client connecting over IPv4 never matches it: write the IPv4 form).
"""

import ipaddress
import re
from dataclasses import dataclass

MAX_ENTRIES = 256
# The longest entry Go could accept: a full IPv6 address with an embedded IPv4 and /128.
MAX_ENTRY_LENGTH = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128")
# Only hex digits, the separators and one optional prefix: no spaces, signs, zones or masks.
_SHAPE = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?")

EVERYONE_V4 = ipaddress.IPv4Network("0.0.0.0/0")
EVERYONE_V6 = ipaddress.IPv6Network("::/0")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidSourceRange(ValueError):
    """An allowlist Envoy Gateway must not be given; the message names the entry."""


@dataclass(frozen=True)
class SourceRanges:
    """A parsed allowlist: canonical, without duplicates, IPv4 before IPv6."""

    networks: tuple[Network, ...]

    @property
    def cidrs(self) -> list[str]:
        return [str(n) for n in self.networks]

    @property
    def admits_everyone(self) -> bool:
        """`0.0.0.0/0`, with `::/0` or no IPv6 entry: no policy is needed. An empty list
        admits everyone as well (as an empty `loadBalancerSourceRanges` does)."""
        if not self.networks:
            return True
        has_v6 = any(n.version == 6 for n in self.networks)
        return EVERYONE_V4 in self.networks and (not has_v6 or EVERYONE_V6 in self.networks)

    def admits(self, address: str) -> bool:
        """Whether a client at `address` is let through by this list alone."""
        client = ipaddress.ip_address(address)
        return self.admits_everyone or any(client in n for n in self.networks)


def parse_entry(entry: object) -> Network:
    """One allowlist entry, as Go's `net.ParseCIDR` would read it (bare address = one
    host); raise InvalidSourceRange saying what is wrong."""
    if not isinstance(entry, str):
        raise InvalidSourceRange(f"{_shown(entry)} is not a string")
    if not entry:
        raise InvalidSourceRange("an empty string is not a CIDR")
    if len(entry) > MAX_ENTRY_LENGTH or not _SHAPE.fullmatch(entry):
        raise InvalidSourceRange(f"{_shown(entry)} is not an IPv4 or IPv6 address or CIDR")
    address, _, prefix = entry.partition("/")
    try:
        # ip_address, not ip_network: the latter reads masks and is lenient about hosts.
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidSourceRange(
            f"{_shown(entry)}: {address!r} is not an IPv4 or IPv6 address"
        ) from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        raise InvalidSourceRange(
            f"{_shown(entry)} is an IPv4-mapped IPv6 address, which IPv4 clients never "
            f"match; write {parsed.ipv4_mapped}"
        )
    length = parsed.max_prefixlen if not prefix else int(prefix)
    if length > parsed.max_prefixlen:
        raise InvalidSourceRange(
            f"{_shown(entry)}: prefix /{length} is longer than the address "
            f"(at most /{parsed.max_prefixlen})"
        )
    return ipaddress.ip_network((parsed, length), strict=False)


def parse(entries: object) -> SourceRanges:
    """A whole allowlist; raise InvalidSourceRange naming the first bad entry by index."""
    if not isinstance(entries, list):
        raise InvalidSourceRange(f"{_shown(entries)} is not a list of CIDRs")
    if len(entries) > MAX_ENTRIES:
        raise InvalidSourceRange(f"{len(entries)} entries, at most {MAX_ENTRIES} are allowed")
    networks: list[Network] = []
    for index, entry in enumerate(entries):
        try:
            networks.append(parse_entry(entry))
        except InvalidSourceRange as err:
            raise InvalidSourceRange(f"entry {index}: {err}") from None
    unique = sorted(set(networks), key=lambda n: (n.version, n.network_address, n.prefixlen))
    return SourceRanges(tuple(unique))


def _shown(value: object) -> str:
    """A tenant's value in a message: quoted, and never long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
