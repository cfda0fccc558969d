"""ReferenceGrant in the backend namespace: lets exactly one route namespace reach one Service."""

from function.builders import metadata
from function.flavours import Flavour


def reference_grant(
    *,
    flavour: Flavour,
    name: str,
    namespace: str,
    labels: dict,
    route_namespace: str,
    service: str,
) -> dict:
    return {
        "apiVersion": flavour.referencegrant_api,
        "kind": "ReferenceGrant",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "from": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "TCPRoute",
                    "namespace": route_namespace,
                }
            ],
            "to": [{"group": "", "kind": "Service", "name": service}],
        },
    }
