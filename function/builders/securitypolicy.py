"""Envoy Gateway SecurityPolicy on the tenant's TCPRoute: its source-address allowlist.

`defaultAction: Deny` with one Allow rule of the tenant's CIDRs; no CIDRs means no rule,
so everyone is denied (Envoy Gateway evaluates the rules in order and falls back to the
default action).
"""

from function.builders import metadata

API = "gateway.envoyproxy.io/v1alpha1"


def security_policy(
    *, name: str, namespace: str, labels: dict, route: str, cidrs: list[str]
) -> dict:
    authorization: dict = {"defaultAction": "Deny"}
    if cidrs:
        authorization["rules"] = [
            {"name": "source-ranges", "action": "Allow", "principal": {"clientCIDRs": list(cidrs)}}
        ]
    return {
        "apiVersion": API,
        "kind": "SecurityPolicy",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            # Exactly the tenant's route: never its listener set or the shard's Gateway.
            "targetRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "TCPRoute", "name": route}
            ],
            "authorization": authorization,
        },
    }
