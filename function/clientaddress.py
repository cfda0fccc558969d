"""How a shard keeps the client's address (DESIGN §8): the pool's `clientAddress`.

- ProxyProtocol: the load balancer prepends a PROXY header (cloudscale: pool protocol
  `proxy`), and a ClientTrafficPolicy makes Envoy read it.
- Local: the platform runs Envoy's Service with `externalTrafficPolicy: Local` (Envoy
  Gateway's default for its EnvoyProxy), so the node does not SNAT.
- Unknown: neither is known to hold; a tenant's source allowlist cannot be enforced.

A shard's mode is fixed once it exists: switching a cloudscale LB to PROXY protocol
recreates its pools (a short outage for every tenant of the shard), and switching Envoy
without the LB (or the reverse) drops every connection. So a live shard keeps the mode it
was made with (its annotation) when PROXY protocol is switched on or off, unless the input
explicitly applies the new mode to it; Local and Unknown only declare what the platform
did, and follow the input.
"""

from function import fieldpath, labels

PROXY_PROTOCOL, LOCAL, UNKNOWN = "ProxyProtocol", "Local", "Unknown"
MODES = (PROXY_PROTOCOL, LOCAL, UNKNOWN)
KEEPS_CLIENT_ADDRESS = (PROXY_PROTOCOL, LOCAL)

# The provider's Service annotation that makes its load balancer speak PROXY protocol.
# Exoscale has none (its pools cannot); custom providers set theirs in infrastructure.
PROXY_ANNOTATIONS: dict[str, dict[str, str] | None] = {
    "cloudscale": {"k8s.cloudscale.ch/loadbalancer-pool-protocol": "proxy"},
    "exoscale": None,
    "custom": {},
}


def recorded(gateway: dict) -> str:
    """The mode a shard Gateway was made with (its annotation, as the step wrote it); a
    shard from before the annotation, or with a value not understood, is Unknown."""
    value = fieldpath.mapping(gateway, "metadata.annotations").get(labels.CLIENT_ADDRESS)
    return value if value in MODES else UNKNOWN


def shard_modes(
    wanted: str, existing: dict[int, dict], apply_to_existing: bool
) -> tuple[dict[int, str], list[int]]:
    """(mode per existing shard, the shards left as they were although the input asks
    for another mode). Shards not in `existing` (new ones) take `wanted`."""
    modes, left = {}, []
    for index, gateway in sorted(existing.items()):
        mode = recorded(gateway)
        # Only PROXY protocol changes the data path; Local and Unknown only declare it.
        disruptive = PROXY_PROTOCOL in (mode, wanted)
        if mode != wanted and (apply_to_existing or not disruptive):
            mode = wanted
        elif mode != wanted:
            left.append(index)
        modes[index] = mode
    return modes, left
