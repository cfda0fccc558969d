"""NetworkPolicy in the backend namespace: only the gateway data plane, only the pod port."""

from function import labels as labellib
from function.builders import metadata


def network_policy(
    *,
    name: str,
    namespace: str,
    labels: dict,
    pod_selector: dict[str, str],
    pod_port: int,
    from_namespace: str,
    from_pod_selector: dict[str, str],
) -> dict:
    peer: dict = {"namespaceSelector": {"matchLabels": {labellib.NAMESPACE_NAME: from_namespace}}}
    if from_pod_selector:
        peer["podSelector"] = {"matchLabels": dict(from_pod_selector)}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "podSelector": {"matchLabels": dict(pod_selector)} if pod_selector else {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [peer], "ports": [{"protocol": "TCP", "port": pod_port}]}],
        },
    }
