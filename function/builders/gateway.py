"""A shard Gateway: one load balancer IP, one DNS name, one slice of the pool's ports."""

from function import labels
from function.builders import metadata


def shard_gateway(
    *,
    name: str,
    namespace: str,
    pool: str,
    index: int,
    gateway_class: str,
    hostname: str,
    ports: tuple[int, int],
    capacity: int,
    used: int,
    accepting: bool,
    allowed_listeners: dict,
    infrastructure: dict,
    held_elsewhere: str = "",
    extra_annotations: dict[str, str] | None = None,
    client_address: str | None = None,
) -> dict:
    start, end = ports
    gateway_labels = {
        labels.POOL: pool,
        labels.SHARD: str(index),
        labels.ACCEPTING: "true" if accepting else "false",
    }
    annotations = {
        labels.HOSTNAME: hostname,
        labels.PORTS: f"{start}-{end}",
        labels.CAPACITY: str(capacity),
        labels.USED: str(used),
    }
    if held_elsewhere:
        annotations[labels.HELD_ELSEWHERE] = held_elsewhere
    annotations.update(extra_annotations or {})  # the resting record (function/resting.py)
    if client_address:
        # Tenants read it: a source allowlist is enforced only where the address is kept.
        annotations[labels.CLIENT_ADDRESS] = client_address
    spec: dict = {
        "gatewayClassName": gateway_class,
        # A Gateway needs one listener of its own. It takes the slice's last port, which is
        # therefore never given to a tenant. Tenant routes bind to their own ListenerSets.
        "listeners": [
            {
                "name": "shard",
                "port": end,
                "protocol": "TCP",
                "allowedRoutes": {"namespaces": {"from": "Same"}, "kinds": [{"kind": "TCPRoute"}]},
            }
        ],
        "allowedListeners": {"namespaces": allowed_listeners},
    }
    if infrastructure:
        spec["infrastructure"] = infrastructure
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": metadata(name, namespace, gateway_labels, annotations),
        "spec": spec,
    }
