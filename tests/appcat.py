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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Service:
    """One service's settings of AppCat's TCP gateway helper (its TCPRouteConfig) and the
    connection detail keys it publishes. AppCat's code configures PostgreSQL and Forgejo;
    Redis and MariaDB are its helper applied the same way (see examples/appcat)."""

    kind: str  # vshn-<kind>-<xr> is the instance namespace
    resource: str  # ResourceName, {xr} the XR's name
    listener: str
    backend_port: int
    pod_port: int
    pod_selector: dict
    host_key: str
    port_key: str

    def resource_name(self, xr: str) -> str:
        return self.resource.format(xr=xr)

    def backend(self, xr: str) -> str:
        if self.kind == "forgejo":
            # The chart's fullname rule, as AppCat's helmFullname.
            return f"{xr if 'forgejo' in xr else xr + '-forgejo'}-ssh"
        return {"postgresql": "postgresql-rw", "redis": "redis-headless"}.get(self.kind, self.kind)

    def selector(self, xr: str) -> dict:
        return {k: v.format(xr=xr) for k, v in self.pod_selector.items()}


SERVICES = {
    "postgresql": Service("postgresql", "{xr}", "postgresql", 5432, 5432,
                          {"cnpg.io/cluster": "postgresql"},
                          "POSTGRESQL_GATEWAY_HOST", "POSTGRESQL_GATEWAY_PORT"),
    "redis": Service("redis", "{xr}", "redis", 6379, 6379, {"app.kubernetes.io/name": "redis"},
                     "REDIS_GATEWAY_HOST", "REDIS_GATEWAY_PORT"),
    "mariadb": Service("mariadb", "{xr}", "mariadb", 3306, 3306, {"app": "mariadb"},
                       "MARIADB_GATEWAY_HOST", "MARIADB_GATEWAY_PORT"),
    "forgejo": Service("forgejo", "{xr}-ssh", "ssh", 22, 2222,
                       {"app.kubernetes.io/name": "forgejo", "app.kubernetes.io/instance": "{xr}"},
                       "FORGEJO_SSH_HOST", "FORGEJO_SSH_PORT"),
}  # fmt: skip


def tcp_objects(
    service: Service, xr: str, gateway: str, port: int, gateway_namespace: str = NS
) -> dict[str, dict]:
    """What AppCat's tcproute.AddTCPRoute composes for one XR, by desired-resource key: an
    XListenerSet, a TCPRoute and a NetworkPolicy named <resource>, each wrapped in an
    Object named like its key."""
    name = service.resource_name(xr)
    namespace = f"vshn-{service.kind}-{xr}"
    xls = {
        "apiVersion": XLS_API,
        "kind": "XListenerSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"appcat.vshn.io/tcpgateway": "true"},
        },
        "spec": {
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                          "namespace": gateway_namespace, "name": gateway},
            "listeners": [{
                "name": service.listener, "port": port, "protocol": "TCP",
                "allowedRoutes": {
                    "namespaces": {"from": "Same"},
                    "kinds": [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}],
                },
            }],
        },
    }  # fmt: skip
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TCPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.x-k8s.io", "kind": "XListenerSet",
                            "name": name, "sectionName": service.listener}],
            "rules": [{"backendRefs": [{"group": "", "kind": "Service",
                                        "name": service.backend(xr), "namespace": namespace,
                                        "port": service.backend_port}]}],
        },
    }  # fmt: skip
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "policyTypes": ["Ingress"],
            "podSelector": {"matchLabels": service.selector(xr)},
            "ingress": [{
                "from": [{"namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": gateway_namespace}}}],
                "ports": [{"protocol": "TCP", "port": service.pod_port}],
            }],
        },
    }  # fmt: skip
    objects = {}
    for suffix, inner in (("xls", xls), ("tcproute", route), ("gw-netpol", policy)):
        key = f"{name}-{suffix}"
        objects[key] = {
            "apiVersion": "kubernetes.crossplane.io/v1alpha2",
            "kind": "Object",
            "metadata": {"name": key},
            "spec": {
                "forProvider": {"manifest": inner},
                "providerConfigRef": {"name": "kubernetes"},
            },
        }
    return objects


def ssh_values(values: dict, host: str | None, port: int) -> dict:
    """AppCat's enableSSHInRelease: the Forgejo Release values once a port is held."""
    values = copy.deepcopy(values)
    server = values.setdefault("gitea", {}).setdefault("config", {}).setdefault("server", {})
    server.update({"DISABLE_SSH": False, "START_SSH_SERVER": True})
    if host:
        server["SSH_DOMAIN"] = host
    server["SSH_PORT"] = port
    return values


class AppCatFunction:
    """AppCat's function for one service: it keeps the port it observes in the live
    XListenerSet, and composes port 0 (for the webhook to fill in) while there is none."""

    def __init__(self, gateway: str = "postgresql-1", service: Service = SERVICES["postgresql"]):
        self.gateway, self.service = gateway, service

    async def RunFunction(self, req: fnv1.RunFunctionRequest, _=None):
        rsp = response.to(req)
        name = req.observed.composite.resource["metadata"]["name"]
        key = f"{self.service.resource_name(name)}-xls"
        port = self._observed_port(req, key) or 0
        for key, obj in tcp_objects(self.service, name, self.gateway, port).items():
            resource.update(rsp.desired.resources[key], obj)
            rsp.desired.resources[key].ready = fnv1.Ready.READY_TRUE
        if port:
            details = rsp.desired.composite.connection_details
            details[self.service.host_key] = b"db1.example.ch"
            details[self.service.port_key] = str(port).encode()
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
