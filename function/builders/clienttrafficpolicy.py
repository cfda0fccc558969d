"""Envoy Gateway ClientTrafficPolicy on a shard Gateway: its listeners expect PROXY
protocol, so Envoy sees each client's own address (behind the load balancer's)."""

from function.builders import metadata

API = "gateway.envoyproxy.io/v1alpha1"


def proxy_protocol_policy(*, name: str, namespace: str, labels: dict, gateway: str) -> dict:
    return {
        "apiVersion": API,
        "kind": "ClientTrafficPolicy",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            # The whole Gateway: its own listener and those of attached ListenerSets (a
            # ListenerSet-wide or per-listener policy would take precedence for those).
            "targetRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway}
            ],
            # Required, never `optional`: a connection without a PROXY header would show
            # the load balancer's address, which an allowlist might admit.
            "proxyProtocol": {},
        },
    }
