"""A stand-in for AppCat's TCP gateway support as it runs today: its composition function
(XListenerSet with the port it observed, TCPRoute, NetworkPolicy, all wrapped in
provider-kubernetes Objects keyed `<xr>-xls`, `<xr>-tcproute`, `<xr>-gw-netpol`) and its
mutating webhook (first free port of one global range, reserved by a Lease `tcp-port-<port>`
whose holder is the XListenerSet's `namespace/name`).

As in AppCat, the function composes port 0 until it observes one, and reads it from the
Object's `status.atProvider.manifest` only; the webhook writes the port when the
XListenerSet is created. provider-kubernetes compares its manifest with the one it last
applied, so the webhook's port stays in the live object while the Object still says 0.
"""

import copy

from crossplane.function import resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from tests.factories import NS
from tests.simulator import Cluster

XLS_API = "gateway.networking.x-k8s.io/v1alpha1"
LEASE_LABELS = {"app.kubernetes.io/managed-by": "tcpgateway-port-allocator"}


class Webhook:
    """AppCat's port allocator: scans every XListenerSet, then creates a Lease per port."""

    def __init__(self, cluster: Cluster, start: int = 10000, end: int = 10999):
        self.cluster, self.start, self.end = cluster, start, end
        self._last_applied: dict[tuple, dict] = {}

    def install(self) -> "Webhook":
        """Admit every XListenerSet applied to the cluster through this webhook."""
        apply = self.cluster.apply

        def admitted(obj, *, manager):
            if obj.get("kind") != "XListenerSet":
                return apply(obj, manager=manager)
            meta = obj["metadata"]
            where = (meta["namespace"], meta["name"])
            current = self.cluster.get_raw(XLS_API, "XListenerSet", meta["name"], where[0])
            if current is not None and self._last_applied.get(where) == obj:
                return current  # up to date with what was last applied: nothing is sent
            self._last_applied[where] = copy.deepcopy(obj)
            if current is None:  # the webhook mutates creations only
                obj = self.admit(obj)
            return apply(obj, manager=manager)

        self.cluster.apply = admitted
        return self

    def admit(self, xls: dict) -> dict:
        xls = copy.deepcopy(xls)
        holder = f"{xls['metadata']['namespace']}/{xls['metadata']['name']}"
        for listener in xls["spec"].get("listeners") or []:
            if not listener.get("port"):
                listener["port"] = self.allocate(holder)
        return xls

    def allocate(self, holder: str) -> int:
        used = {
            listener["port"]
            for xls in self.cluster.list(XLS_API, "XListenerSet")
            for listener in xls["spec"].get("listeners") or []
        }
        for port in range(self.start, self.end + 1):
            if port in used or self.cluster.get(
                "coordination.k8s.io/v1", "Lease", f"tcp-port-{port}", NS
            ):
                continue
            self.cluster.create(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": f"tcp-port-{port}",
                        "namespace": NS,
                        "labels": dict(LEASE_LABELS),
                    },
                    "spec": {"holderIdentity": holder},
                }
            )
            return port
        raise RuntimeError("webhook: port range exhausted")


class AppCatFunction:
    """AppCat's function for one service: it keeps the port it observes in the live
    XListenerSet, and composes port 0 (for the webhook to fill in) while there is none."""

    def __init__(self, gateway: str = "postgresql-1"):
        self.gateway = gateway

    async def RunFunction(self, req: fnv1.RunFunctionRequest, _=None):
        rsp = response.to(req)
        name = req.observed.composite.resource["metadata"]["name"]
        namespace = f"vshn-postgresql-{name}"
        port = self._observed_port(req, f"{name}-xls") or 0
        xls = {
            "apiVersion": XLS_API,
            "kind": "XListenerSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"appcat.vshn.io/tcpgateway": "true"},
            },
            "spec": {
                "parentRef": {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "namespace": NS,
                    "name": self.gateway,
                },
                "listeners": [
                    {
                        "name": "postgresql",
                        "port": port,
                        "protocol": "TCP",
                        "allowedRoutes": {
                            "namespaces": {"from": "Same"},
                            "kinds": [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}],
                        },
                    }
                ],
            },
        }
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TCPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "parentRefs": [
                    {
                        "group": "gateway.networking.x-k8s.io",
                        "kind": "XListenerSet",
                        "name": name,
                        "sectionName": "postgresql",
                    }
                ],
                "rules": [
                    {
                        "backendRefs": [
                            {
                                "group": "",
                                "kind": "Service",
                                "name": "postgresql-rw",
                                "namespace": namespace,
                                "port": 5432,
                            }
                        ]
                    }
                ],
            },
        }
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "policyTypes": ["Ingress"],
                "podSelector": {"matchLabels": {"cnpg.io/cluster": "postgresql"}},
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": NS}
                                }
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": 5432}],
                    }
                ],
            },
        }
        for key, inner in (
            (f"{name}-xls", xls),
            (f"{name}-tcproute", route),
            (f"{name}-gw-netpol", policy),
        ):
            obj = {
                "apiVersion": "kubernetes.crossplane.io/v1alpha2",
                "kind": "Object",
                "metadata": {"name": key},
                "spec": {
                    "forProvider": {"manifest": inner},
                    "providerConfigRef": {"name": "kubernetes"},
                },
            }
            resource.update(rsp.desired.resources[key], obj)
            rsp.desired.resources[key].ready = fnv1.Ready.READY_TRUE
        if port:
            rsp.desired.composite.connection_details["POSTGRESQL_GATEWAY_HOST"] = b"db1.example.ch"
            rsp.desired.composite.connection_details["POSTGRESQL_GATEWAY_PORT"] = str(port).encode()
        return rsp

    @staticmethod
    def _observed_port(req, key: str) -> int | None:
        if key not in req.observed.resources:
            return None
        obj = resource.struct_to_dict(req.observed.resources[key].resource)
        live = (obj.get("status") or {}).get("atProvider", {}).get("manifest")
        if not live:
            return None
        port = int(live["spec"]["listeners"][0]["port"])
        return port or None
