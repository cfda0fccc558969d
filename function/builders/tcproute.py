"""The tenant's TCPRoute, bound to its own listener by sectionName."""

from function.builders import metadata
from function.flavours import Flavour


def tcp_route(
    *,
    flavour: Flavour,
    name: str,
    namespace: str,
    labels: dict,
    listener_set: str,
    section: str,
    backend_namespace: str,
    service: str,
    port: int,
) -> dict:
    backend = {"group": "", "kind": "Service", "name": service, "port": port}
    if backend_namespace != namespace:
        backend["namespace"] = backend_namespace
    return {
        "apiVersion": flavour.tcproute_api,
        "kind": "TCPRoute",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "parentRefs": [
                {
                    "group": flavour.listenerset_group,
                    "kind": flavour.listenerset_kind,
                    "name": listener_set,
                    "namespace": namespace,
                    "sectionName": section,
                }
            ],
            "rules": [{"backendRefs": [backend]}],
        },
    }
