"""Envoy Gateway's policies on the simulated data plane: SecurityPolicy authorization on
TCPRoutes and ClientTrafficPolicy PROXY protocol on Gateways, and what a client at a given
address gets when it connects to a Gateway port.

Rules (Envoy Gateway v1.7.4+ for TCP routes, its API reference and CRDs v1.9.0):

* A SecurityPolicy applies to the TCPRoutes its ``targetRefs`` name in its own namespace.
  Its status gets one ancestor per Gateway of an accepted route parent, ``Accepted=True``,
  once the route exists and is attached; a policy whose route is absent or not attached
  gets no ancestor. A route attached through an ``XListenerSet`` gets none either unless
  ``reports_xlistenerset_status`` (Envoy Gateway up to v1.7 reports nothing there).
* Envoy Gateway acts on what it has translated: a policy is enforced from the
  :meth:`EnvoyGateway.reconcile` after it appears (or changes) on, while a route carries
  traffic as soon as the Gateway controller sees it. A route created together with its
  policy is therefore open until the next reconcile, as it would be in a cluster.
* A policy with a ``clientCIDRs`` entry Go's ``net.ParseCIDR`` rejects is invalid:
  ``Accepted=False`` and it is NOT enforced, so its route stays open (the hazard the
  function's validation exists for). Of several valid policies on one route the oldest
  applies.
* Authorization: the rules in order, the first whose ``clientCIDRs`` contain the client
  address decides (Allow or Deny); no match gives ``defaultAction`` (default Deny).
* The client address Envoy sees: the load balancer sends PROXY protocol when the Gateway's
  ``spec.infrastructure.annotations`` carry cloudscale's ``pool-protocol: proxy``; Envoy
  expects it when a ClientTrafficPolicy with ``proxyProtocol`` targets the Gateway. Both:
  the client's own address. One without the other: the connection fails. Neither: the
  client's address if the Gateway's Service has ``externalTrafficPolicy: Local`` (the
  Gateways in ``local``), else the node's address (SNAT).

Simplified: section names, target selectors, merge types, other principals (JWT, headers),
policy status beyond Accepted, and ClientTrafficPolicy status are not modelled.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from typing import Any

from .cluster import Cluster
from .controllers import GATEWAY, GATEWAY_GROUP, X_GATEWAY_GROUP, GatewayController
from .objects import Obj, get_path

API = "gateway.envoyproxy.io/v1alpha1"
SECURITY_POLICY = (API, "SecurityPolicy")
CLIENT_TRAFFIC_POLICY = (API, "ClientTrafficPolicy")
LB_PROXY = "k8s.cloudscale.ch/loadbalancer-pool-protocol"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"


def go_parse_cidr(text: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """What Go's net.ParseCIDR accepts (an address with a prefix; no zones, no leading
    zeros in IPv4 octets), as the network it means; None when Go rejects it."""
    if not isinstance(text, str) or text.count("/") != 1 or "%" in text:
        return None
    address, prefix = text.split("/")
    if not prefix.isascii() or not prefix.isdigit():
        return None
    try:
        parsed = ipaddress.ip_address(address)  # rejects IPv4 leading zeros, as Go does
    except ValueError:
        return None
    if int(prefix) > parsed.max_prefixlen:
        return None
    return ipaddress.ip_network((parsed, int(prefix)), strict=False)


class EnvoyGateway:
    def __init__(
        self,
        cluster: Cluster,
        *,
        local: Iterable[str] = (),
        node_address: str = "10.0.0.1",
        reports_xlistenerset_status: bool = False,
    ) -> None:
        self.cluster = cluster
        self.gateways = GatewayController(cluster)
        self.local = set(local)  # Gateway names whose Service keeps the client's address
        self.node_address = node_address
        self.reports_xlistenerset_status = reports_xlistenerset_status
        self._enforced: list[Obj] = []  # the policies as last translated

    # -- status -------------------------------------------------------------------------

    def reconcile(self) -> int:
        writes = 0
        self._enforced = [copy.deepcopy(p) for p in self.cluster.list_raw(*SECURITY_POLICY)]
        for policy in self.cluster.list_raw(*SECURITY_POLICY):
            status = {"ancestors": self._ancestors(policy)}
            if status != (policy.get("status") or {"ancestors": []}):
                md = policy["metadata"]
                self.cluster.update_status(*SECURITY_POLICY, md["name"], md["namespace"], status)
                writes += 1
        return writes

    def _ancestors(self, policy: Obj) -> list[Obj]:
        ancestors = []
        valid = _valid(policy)
        for route in self._targets(policy):
            for parent in get_path(route, ("status", "parents"), []) or []:
                ref = parent.get("parentRef") or {}
                accepted = any(
                    c.get("type") == "Accepted" and c.get("status") == "True"
                    for c in parent.get("conditions") or []
                )
                if not accepted:
                    continue
                if ref.get("group") == X_GATEWAY_GROUP and not self.reports_xlistenerset_status:
                    continue
                condition = {
                    "type": "Accepted",
                    "status": "True" if valid else "False",
                    "reason": "Accepted" if valid else "Invalid",
                    "observedGeneration": policy["metadata"].get("generation", 1),
                }
                ancestors.append(
                    {
                        "ancestorRef": dict(ref),
                        "controllerName": CONTROLLER,
                        "conditions": [condition],
                    }
                )
        return ancestors

    def _targets(self, policy: Obj) -> list[Obj]:
        ns = policy["metadata"]["namespace"]
        routes = []
        for ref in get_path(policy, ("spec", "targetRefs"), []) or []:
            if ref.get("group") != GATEWAY_GROUP or ref.get("kind") != "TCPRoute":
                continue
            route = self.cluster.get(f"{GATEWAY_GROUP}/v1", "TCPRoute", ref.get("name"), ns)
            if route is not None:
                routes.append(route)
        return routes

    # -- the data path --------------------------------------------------------------------

    def connect(self, client: str, gateway_ns: str, gateway: str, port: int):
        """The backend (ns, service, port) a client at `client` reaches on a Gateway port,
        or None when nothing answers or the connection is refused."""
        served = self.gateways.serving().get((gateway_ns, gateway, port))
        if served is None:
            return None
        (route_ns, route_name), backend = served
        seen = self.seen_address(client, gateway_ns, gateway)
        if seen is None:
            return None
        policy = self._policy(route_ns, route_name)
        if policy is None:
            return backend
        authorization = get_path(policy, ("spec", "authorization"), None)
        if authorization is None:
            return backend  # a policy without authorization filters nothing
        address = ipaddress.ip_address(seen)
        for rule in authorization.get("rules") or []:
            cidrs = [go_parse_cidr(c) for c in get_path(rule, ("principal", "clientCIDRs"), [])]
            if any(n is not None and address in n for n in cidrs):
                return backend if rule.get("action") == "Allow" else None
        return backend if authorization.get("defaultAction", "Deny") == "Allow" else None

    def seen_address(self, client: str, gateway_ns: str, gateway: str) -> str | None:
        obj = self.cluster.get(*GATEWAY, gateway, gateway_ns) or {}
        annotations = get_path(obj, ("spec", "infrastructure", "annotations"), {}) or {}
        lb_proxy = annotations.get(LB_PROXY) == "proxy"
        envoy_proxy = any(
            "proxyProtocol" in (p.get("spec") or {})
            and any(
                r.get("kind") == "Gateway" and r.get("name") == gateway
                for r in get_path(p, ("spec", "targetRefs"), []) or []
            )
            for p in self.cluster.list_raw(*CLIENT_TRAFFIC_POLICY)
            if p["metadata"].get("namespace") == gateway_ns
        )
        if lb_proxy != envoy_proxy:
            return None  # a PROXY header Envoy does not expect, or one missing
        if lb_proxy or gateway in self.local:
            return client
        return self.node_address

    def _policy(self, ns: str, route: str) -> Obj | None:
        candidates = [
            p
            for p in self._enforced
            if p["metadata"]["namespace"] == ns
            and _valid(p)
            and any(
                r.get("group") == GATEWAY_GROUP
                and r.get("kind") == "TCPRoute"
                and r.get("name") == route
                for r in get_path(p, ("spec", "targetRefs"), []) or []
            )
        ]
        if not candidates:
            return None
        return min(
            candidates,
            key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]),
        )


def _valid(policy: Obj) -> bool:
    for rule in get_path(policy, ("spec", "authorization", "rules"), []) or []:
        for cidr in get_path(rule, ("principal", "clientCIDRs"), []) or []:
            if go_parse_cidr(cidr) is None:
                return False
    return True
