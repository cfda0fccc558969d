"""The tenant's ListenerSet (XListenerSet before v1.5): one TCP listener on the shard."""

from function.builders import metadata
from function.flavours import Flavour


def listener_set(
    *,
    flavour: Flavour,
    name: str,
    namespace: str,
    labels: dict,
    gateway: str,
    gateway_namespace: str,
    listener_name: str,
    port: int,
    annotations: dict | None = None,
) -> dict:
    return {
        "apiVersion": flavour.listenerset_api,
        "kind": flavour.listenerset_kind,
        "metadata": metadata(name, namespace, labels, annotations),
        "spec": {
            "parentRef": {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": gateway,
                "namespace": gateway_namespace,
            },
            "listeners": [
                {
                    "name": listener_name,
                    "port": port,
                    "protocol": "TCP",
                    # Only this tenant's own TCPRoute may bind: same namespace, TCPRoute only.
                    "allowedRoutes": {
                        "namespaces": {"from": "Same"},
                        "kinds": [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}],
                    },
                }
            ],
        },
    }
