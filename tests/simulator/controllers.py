"""The other controllers of the simulated cluster: provider-kubernetes and a Gateway API
implementation, plus :func:`settle` to run everything until the cluster stops changing.

Each controller's ``reconcile()`` reads the live cluster, writes what changed and returns
how many objects it wrote (0 means it had nothing to do).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .cluster import ApiError, Cluster
from .crossplane import Crossplane, Plan, XRRef
from .objects import Obj, fast_copy, get_path, group_of, match_label_selector

# --------------------------------------------------------------------------------------
# provider-kubernetes
# --------------------------------------------------------------------------------------

OBJECT_KINDS = (
    ("kubernetes.crossplane.io/v1alpha2", "Object"),  # cluster-scoped (v1alpha1 shares it)
    ("kubernetes.m.crossplane.io/v1alpha1", "Object"),  # namespaced (Crossplane v2 MRs)
)
MANAGED_FINALIZER = "finalizer.managedresource.crossplane.io"


class ProviderKubernetes:
    """crossplane-contrib/provider-kubernetes' Object controller (internal/controller/object).

    For every Object: add the managed-resource finalizer, apply ``spec.forProvider.manifest``
    (name defaults to the Object's name; a namespaced Object's manifest defaults to its
    namespace) with field manager ``provider-kubernetes/<object name>``, then publish the
    current inner object, status included, in ``status.atProvider.manifest`` and set
    Ready (readiness policy SuccessfulCreate by default; DeriveFromObject and AllTrue are
    honoured) and Synced. Like the real provider it never checks who else manages the
    inner object: two Objects wrapping the same inner name overwrite each other, and
    deleting either (deletionPolicy Delete, the default) deletes the inner object.

    Simplified: management policies other than the default, references, connection
    details, watches and remote clusters are not modelled; applies go to the same
    cluster.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._synced: dict[tuple[str, str, str], tuple[str, str]] = {}

    def reconcile(self) -> int:
        writes = 0
        for api_version, kind in OBJECT_KINDS:
            for obj in self.cluster.list_raw(api_version, kind):
                writes += self._reconcile_one(api_version, obj)
        return writes

    def _reconcile_one(self, api_version: str, obj: Obj) -> int:
        md = obj["metadata"]
        name, ns = md["name"], md.get("namespace") or ""
        manifest = self._manifest(obj)
        if md.get("deletionTimestamp"):
            return self._finalize(api_version, obj, manifest)
        if MANAGED_FINALIZER not in (md.get("finalizers") or []):
            self.cluster.set_finalizers(
                api_version, "Object", name, ns, [*(md.get("finalizers") or []), MANAGED_FINALIZER]
            )
            obj = self.cluster.get_raw(api_version, "Object", name, ns)
        inner = self._current_inner(manifest)
        memo_key = (group_of(api_version), ns, name)
        state = (
            obj["metadata"]["resourceVersion"],
            (inner or {}).get("metadata", {}).get("resourceVersion", ""),
        )
        if self._synced.get(memo_key) == state:
            return 0  # nothing changed since we last synced this Object
        writes = 0
        error = None
        before = self.cluster.resource_version
        try:
            self.cluster.apply(manifest, manager=f"provider-kubernetes/{name}")
        except ApiError as e:
            error = e
        if self.cluster.resource_version != before:
            writes += 1
        inner = self._current_inner(manifest)
        status = self._status(obj, inner, error)
        if status != obj.get("status"):
            self.cluster.update_status(api_version, "Object", name, ns, status)
            writes += 1
        obj = self.cluster.get_raw(api_version, "Object", name, ns)
        inner = self._current_inner(manifest)
        self._synced[memo_key] = (
            obj["metadata"]["resourceVersion"],
            (inner or {}).get("metadata", {}).get("resourceVersion", ""),
        )
        return writes

    def _manifest(self, obj: Obj) -> Obj:
        manifest = fast_copy(get_path(obj, ("spec", "forProvider", "manifest"), {}) or {})
        md = manifest.setdefault("metadata", {})
        md.setdefault("name", obj["metadata"]["name"])
        if obj["metadata"].get("namespace") and not md.get("namespace"):
            md["namespace"] = obj["metadata"]["namespace"]
        return manifest

    def _current_inner(self, manifest: Obj) -> Obj | None:
        md = manifest.get("metadata", {})
        return self.cluster.get_raw(
            manifest.get("apiVersion", ""),
            manifest.get("kind", ""),
            md.get("name", ""),
            md.get("namespace"),
        )

    def _status(self, obj: Obj, inner: Obj | None, error: ApiError | None) -> Obj:
        old = obj.get("status") or {}
        now = self.cluster.now()
        conds = [dict(c) for c in old.get("conditions") or []]
        if error is not None:
            _set_cond(
                conds, "Synced", "False", "ReconcileError", f"cannot apply object: {error}", now
            )
        else:
            _set_cond(conds, "Synced", "True", "ReconcileSuccess", "", now)
        ready = inner is not None and error is None and self._ready(obj, inner)
        if ready:
            _set_cond(conds, "Ready", "True", "Available", "", now)
        else:
            _set_cond(conds, "Ready", "False", "Unavailable", "", now)
        status = {k: v for k, v in old.items() if k not in ("atProvider", "conditions")}
        if inner is not None:
            status["atProvider"] = {"manifest": inner}
        status["conditions"] = conds
        return status

    @staticmethod
    def _ready(obj: Obj, inner: Obj) -> bool:
        policy = get_path(obj, ("spec", "readiness", "policy")) or "SuccessfulCreate"
        conds = get_path(inner, ("status", "conditions")) or []
        if policy == "DeriveFromObject":
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        if policy == "AllTrue":
            return bool(conds) and all(c.get("status") == "True" for c in conds)
        return True

    def _finalize(self, api_version: str, obj: Obj, manifest: Obj) -> int:
        md = obj["metadata"]
        policy = get_path(obj, ("spec", "deletionPolicy")) or "Delete"
        writes = 0
        if policy == "Delete":
            imd = manifest.get("metadata", {})
            if self.cluster.delete(
                manifest.get("apiVersion", ""),
                manifest.get("kind", ""),
                imd.get("name", ""),
                imd.get("namespace"),
            ):
                writes += 1
        finalizers = [f for f in md.get("finalizers") or [] if f != MANAGED_FINALIZER]
        self.cluster.set_finalizers(
            api_version, "Object", md["name"], md.get("namespace"), finalizers
        )
        self._synced.pop((group_of(api_version), md.get("namespace") or "", md["name"]), None)
        return writes + 1


# --------------------------------------------------------------------------------------
# Gateway API
# --------------------------------------------------------------------------------------

GATEWAY_GROUP = "gateway.networking.k8s.io"
X_GATEWAY_GROUP = "gateway.networking.x-k8s.io"
GATEWAY = (f"{GATEWAY_GROUP}/v1", "Gateway")
LISTENER_SETS = (
    (f"{GATEWAY_GROUP}/v1", "ListenerSet"),
    (f"{X_GATEWAY_GROUP}/v1alpha1", "XListenerSet"),
)
TCP_ROUTE = (f"{GATEWAY_GROUP}/v1", "TCPRoute")  # v1alpha2 shares the storage
REFERENCE_GRANT = (f"{GATEWAY_GROUP}/v1beta1", "ReferenceGrant")
CONTROLLER_NAME = "sim.example.com/gateway-controller"
# Route kinds a listener supports, by protocol (all in the gateway.networking.k8s.io group).
PROTOCOL_KINDS = {
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
    "TLS": ("TLSRoute",),
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
}


@dataclass
class _Listener:
    parent_group: str
    parent_kind: str
    parent_ns: str
    parent_name: str
    name: str
    port: int
    protocol: str
    allowed_routes: Mapping[str, Any]
    gateway: tuple[str, str]  # (ns, name) of the Gateway it lands on
    conflict: str = ""  # "" or HostnameConflict / ProtocolConflict
    unsupported_port: bool = False
    routes: list[tuple[str, str, str]] = field(default_factory=list)  # (created, ns, name)

    @property
    def usable(self) -> bool:
        return not self.conflict and not self.unsupported_port


@dataclass
class _Model:
    gateways: dict[tuple[str, str], Obj]
    listeners: dict[tuple[str, str, str, str], list[_Listener]]  # parent (g, k, ns, name)
    set_state: dict[tuple[str, str, str, str], tuple[str, str]]  # (accepted reason, message)
    routes: dict[tuple[str, str], tuple[Obj, list[Obj]]]  # (ns, name) -> (route, parents)
    backends: dict[tuple[str, str], Any]  # route -> first backend tuple or None


class GatewayController:
    """A Gateway API implementation for Gateways, ListenerSets/XListenerSets and TCPRoutes.

    Rules (Gateway API v1.4-v1.6 types and GEP-1713):

    * Gateway: Accepted/Programmed True, ``status.addresses`` = one deterministic fake
      IPAddress per Gateway, ``status.listeners`` for its own listeners,
      ``status.attachedListenerSets``.
    * A ListenerSet attaches to its ``spec.parentRef`` Gateway only if the Gateway's
      ``spec.allowedListeners.namespaces.from`` admits its namespace (Same, All, Selector
      over Namespace labels; unset means None). Otherwise Accepted/Programmed False,
      reason NotAllowed.
    * Ports: one port, one listener per Gateway. The Gateway's own listeners come first,
      then attached ListenerSets oldest first (creationTimestamp, then namespace/name);
      a later listener on a used port gets ``Conflicted=True`` (HostnameConflict for the
      same protocol, ProtocolConflict otherwise), ``Accepted=False/PortUnavailable`` and
      ``Programmed=False/Invalid``. Port 0 (dynamic) is refused: Accepted=False,
      UnsupportedPort. A ListenerSet with no usable listener is Accepted/Programmed False
      (ListenersNotValid); with some, True (reason ListenersNotValid if any is not).
    * TCPRoute ``status.parents``, one entry per parentRef: Accepted when the parent
      exists and is attached, a listener matches ``sectionName`` (and ``port``), the
      listener is usable and its ``allowedRoutes`` admit the route (namespaces
      Same/All/Selector; kinds). Else Accepted=False with NoMatchingParent or
      NotAllowedByListeners. ResolvedRefs=False/RefNotPermitted for a cross-namespace
      backendRef without a ReferenceGrant in the backend namespace allowing TCPRoute from
      the route's namespace to that Service (by name, or any Service when the grant's
      ``to`` has no name).
    * :meth:`traffic`: per Gateway port, the backend of the OLDEST accepted route on that
      listener; other routes on the same listener are Accepted but get nothing.

    Simplified: GatewayClasses, addresses requested in spec, TLS, hostnames beyond the
    conflict rule, backend existence (BackendNotFound) and route kinds other than
    TCPRoute are not modelled.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # -- public -----------------------------------------------------------------------

    def reconcile(self) -> int:
        model = self._model()
        writes = 0
        for (ns, name), gw in sorted(model.gateways.items()):
            writes += self._write(
                GATEWAY[0], "Gateway", gw, self._gateway_status(gw, model, ns, name)
            )
        for api_version, kind in LISTENER_SETS:
            for ls in self.cluster.list_raw(api_version, kind):
                writes += self._write(api_version, kind, ls, self._listener_set_status(ls, model))
        for (_ns, _name), (route, parents) in sorted(model.routes.items()):
            status = {**(route.get("status") or {}), "parents": parents}
            writes += self._write(TCP_ROUTE[0], "TCPRoute", route, status)
        return writes

    def traffic(self) -> dict[tuple[str, str, int], tuple[str, str, int]]:
        """The data path: (gateway ns, gateway name, port) -> (backend ns, service, port)."""
        return {where: backend for where, (_, backend) in self.serving().items()}

    def serving(
        self,
    ) -> dict[tuple[str, str, int], tuple[tuple[str, str], tuple[str, str, int]]]:
        """(gateway ns, gateway name, port) -> ((route ns, route name), backend): the route
        that gets a listener's connections (the oldest accepted one) and where they go."""
        model = self._model()
        out: dict[tuple[str, str, int], tuple[tuple[str, str], tuple[str, str, int]]] = {}
        for listeners in model.listeners.values():
            for lst in listeners:
                if not lst.usable or not lst.routes:
                    continue
                _, rns, rname = min(lst.routes)
                backend = model.backends.get((rns, rname))
                if backend is not None:
                    out[(lst.gateway[0], lst.gateway[1], lst.port)] = ((rns, rname), backend)
        return out

    # -- model ------------------------------------------------------------------------

    def _model(self) -> _Model:
        c = self.cluster
        gateways = {
            (g["metadata"]["namespace"], g["metadata"]["name"]): g for g in c.list_raw(*GATEWAY)
        }
        listeners: dict[tuple[str, str, str, str], list[_Listener]] = {}
        set_state: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        attached: dict[tuple[str, str], list[tuple[str, str, str, str, Obj]]] = {}
        for api_version, kind in LISTENER_SETS:
            group = group_of(api_version)
            for ls in c.list_raw(api_version, kind):
                md = ls["metadata"]
                pkey = (group, kind, md["namespace"], md["name"])
                gw_key, reason, message = self._listener_set_parent(ls, gateways)
                set_state[pkey] = (reason, message)
                if gw_key is not None:
                    attached.setdefault(gw_key, []).append(
                        (md["creationTimestamp"], md["namespace"], md["name"], kind, ls)
                    )
        for gw_key, gw in gateways.items():
            used: dict[int, str] = {}
            own = self._listeners(GATEWAY_GROUP, "Gateway", gw, gw_key, used)
            listeners[(GATEWAY_GROUP, "Gateway", *gw_key)] = own
            for _, ns, name, kind, ls in sorted(attached.get(gw_key, []), key=lambda t: t[:3]):
                group = GATEWAY_GROUP if kind == "ListenerSet" else X_GATEWAY_GROUP
                lst = self._listeners(group, kind, ls, gw_key, used)
                listeners[(group, kind, ns, name)] = lst
        model = _Model(gateways, listeners, set_state, {}, {})
        grants = self._grants()
        for route in c.list_raw(*TCP_ROUTE):
            self._route(route, model, grants)
        return model

    def _listener_set_parent(
        self, ls: Obj, gateways: Mapping[tuple[str, str], Obj]
    ) -> tuple[tuple[str, str] | None, str, str]:
        ref = get_path(ls, ("spec", "parentRef")) or {}
        ns = ref.get("namespace") or ls["metadata"]["namespace"]
        if (ref.get("group") or GATEWAY_GROUP) != GATEWAY_GROUP or (
            ref.get("kind") or "Gateway"
        ) != "Gateway":
            return None, "ParentNotAccepted", "parentRef is not a Gateway"
        gw = gateways.get((ns, ref.get("name", "")))
        if gw is None:
            return None, "ParentNotAccepted", f"Gateway {ns}/{ref.get('name', '')} not found"
        allowed = get_path(gw, ("spec", "allowedListeners", "namespaces")) or {}
        frm = allowed.get("from") or "None"
        ls_ns = ls["metadata"]["namespace"]
        ok = (
            frm == "All"
            or (frm == "Same" and ls_ns == ns)
            or (
                frm == "Selector"
                and bool(allowed.get("selector"))
                and match_label_selector(
                    allowed.get("selector"), self.cluster.namespace_labels(ls_ns)
                )
            )
        )
        if not ok:
            return (
                None,
                "NotAllowed",
                "ListenerSet is not allowed by the Gateway's allowedListeners",
            )
        return (ns, gw["metadata"]["name"]), "Accepted", ""

    def _listeners(
        self, group: str, kind: str, parent: Obj, gw_key: tuple[str, str], used: dict[int, str]
    ) -> list[_Listener]:
        md = parent["metadata"]
        out = []
        for spec in get_path(parent, ("spec", "listeners")) or []:
            lst = _Listener(
                parent_group=group,
                parent_kind=kind,
                parent_ns=md["namespace"],
                parent_name=md["name"],
                name=spec.get("name", ""),
                port=int(spec.get("port") or 0),
                protocol=spec.get("protocol", ""),
                allowed_routes=spec.get("allowedRoutes") or {"namespaces": {"from": "Same"}},
                gateway=gw_key,
            )
            if lst.port == 0:
                lst.unsupported_port = True
            elif lst.port in used:
                same = used[lst.port] == lst.protocol
                lst.conflict = "HostnameConflict" if same else "ProtocolConflict"
            else:
                used[lst.port] = lst.protocol
            out.append(lst)
        return out

    def _grants(self) -> dict[str, list[Obj]]:
        grants: dict[str, list[Obj]] = {}
        for g in self.cluster.list_raw(*REFERENCE_GRANT):
            grants.setdefault(g["metadata"]["namespace"], []).append(g)
        return grants

    def _route(self, route: Obj, model: _Model, grants: Mapping[str, list[Obj]]) -> None:
        md = route["metadata"]
        rns, rname = md["namespace"], md["name"]
        resolved, backend, message = self._resolve_backends(route, grants)
        parents = []
        for ref in get_path(route, ("spec", "parentRefs")) or []:
            accepted, reason, msg, hits = self._attach(route, ref, model)
            for lst in hits:
                lst.routes.append((md["creationTimestamp"], rns, rname))
            gen = md.get("generation", 1)
            old = _old_parent_conditions(route, ref)
            now = self.cluster.now()
            conds: list[Obj] = []
            _set_cond(
                conds, "Accepted", "True" if accepted else "False", reason, msg, now, gen, old
            )
            _set_cond(
                conds,
                "ResolvedRefs",
                "True" if resolved else "False",
                "ResolvedRefs" if resolved else "RefNotPermitted",
                message,
                now,
                gen,
                old,
            )
            parents.append(
                {"parentRef": dict(ref), "controllerName": CONTROLLER_NAME, "conditions": conds}
            )
        model.routes[(rns, rname)] = (route, parents)
        model.backends[(rns, rname)] = backend if resolved else None

    def _attach(
        self, route: Obj, ref: Mapping[str, Any], model: _Model
    ) -> tuple[bool, str, str, list[_Listener]]:
        rns = route["metadata"]["namespace"]
        group = ref.get("group") or GATEWAY_GROUP
        kind = ref.get("kind") or "Gateway"
        pkey = (group, kind, ref.get("namespace") or rns, ref.get("name", ""))
        listeners = model.listeners.get(pkey)
        if listeners is None:
            if pkey in model.set_state:
                reason, message = model.set_state[pkey]
                return (
                    False,
                    "NoMatchingParent",
                    f"{kind} is not attached: {reason} {message}".strip(),
                    [],
                )
            return False, "NoMatchingParent", f"{kind} {pkey[2]}/{pkey[3]} not found", []
        section = ref.get("sectionName")
        port = ref.get("port")
        candidates = [
            lst
            for lst in listeners
            if (not section or lst.name == section) and (not port or lst.port == int(port))
        ]
        if not candidates:
            return False, "NoMatchingParent", f"no listener matches sectionName {section!r}", []
        usable = [lst for lst in candidates if lst.usable]
        if not usable:
            why = candidates[0].conflict or "UnsupportedPort"
            return False, "NotAllowedByListeners", f"listener {candidates[0].name!r} is {why}", []
        admitted = [lst for lst in usable if self._admits(lst, rns)]
        if not admitted:
            return (
                False,
                "NotAllowedByListeners",
                "the listener's allowedRoutes do not admit this route",
                [],
            )
        return True, "Accepted", "", admitted

    def _admits(self, lst: _Listener, route_ns: str) -> bool:
        kinds = lst.allowed_routes.get("kinds")
        if kinds:
            ok_kind = any(
                (k.get("group") or GATEWAY_GROUP) == GATEWAY_GROUP and k.get("kind") == "TCPRoute"
                for k in kinds
            )
        else:
            ok_kind = "TCPRoute" in PROTOCOL_KINDS.get(lst.protocol, ())
        if not ok_kind:
            return False
        ns_rule = lst.allowed_routes.get("namespaces") or {}
        frm = ns_rule.get("from") or "Same"
        if frm == "All":
            return True
        if frm == "Same":
            return route_ns == lst.parent_ns
        if frm == "Selector":
            sel = ns_rule.get("selector")
            return bool(sel) and match_label_selector(sel, self.cluster.namespace_labels(route_ns))
        return False

    @staticmethod
    def _resolve_backends(
        route: Obj, grants: Mapping[str, list[Obj]]
    ) -> tuple[bool, tuple[str, str, int] | None, str]:
        rns = route["metadata"]["namespace"]
        first: tuple[str, str, int] | None = None
        for rule in get_path(route, ("spec", "rules")) or []:
            for b in rule.get("backendRefs") or []:
                bns = b.get("namespace") or rns
                name = b.get("name", "")
                if bns != rns and not _granted(grants.get(bns, []), rns, name):
                    return (
                        False,
                        None,
                        f"backendRef {bns}/{name} not permitted by any ReferenceGrant",
                    )
                if first is None and b.get("weight", 1) != 0:
                    first = (bns, name, int(b.get("port") or 0))
        return True, first, ""

    # -- status -----------------------------------------------------------------------

    def _gateway_status(self, gw: Obj, model: _Model, ns: str, name: str) -> Obj:
        old = gw.get("status") or {}
        gen = gw["metadata"].get("generation", 1)
        now = self.cluster.now()
        conds = [dict(c) for c in old.get("conditions") or []]
        _set_cond(conds, "Accepted", "True", "Accepted", "", now, gen)
        _set_cond(conds, "Programmed", "True", "Programmed", "", now, gen)
        own = model.listeners.get((GATEWAY_GROUP, "Gateway", ns, name), [])
        attached = sum(
            1
            for key, lsts in model.listeners.items()
            if key[1] != "Gateway"
            and lsts
            and lsts[0].gateway == (ns, name)
            and any(x.usable for x in lsts)
        )
        return {
            **old,
            "addresses": [{"type": "IPAddress", "value": _fake_ip(ns, name)}],
            "conditions": conds,
            "listeners": [self._listener_status(lst, old.get("listeners"), gen) for lst in own],
            "attachedListenerSets": attached,
        }

    def _listener_set_status(self, ls: Obj, model: _Model) -> Obj:
        md = ls["metadata"]
        group = group_of(ls["apiVersion"])
        pkey = (group, ls["kind"], md["namespace"], md["name"])
        old = ls.get("status") or {}
        gen = md.get("generation", 1)
        now = self.cluster.now()
        conds = [dict(c) for c in old.get("conditions") or []]
        lsts = model.listeners.get(pkey)
        if lsts is None:
            reason, message = model.set_state.get(pkey, ("NotAllowed", ""))
            _set_cond(conds, "Accepted", "False", reason, message, now, gen)
            programmed_reason = "ParentNotProgrammed" if reason == "ParentNotAccepted" else reason
            _set_cond(conds, "Programmed", "False", programmed_reason, message, now, gen)
            return {**{k: v for k, v in old.items() if k != "listeners"}, "conditions": conds}
        usable = [x for x in lsts if x.usable]
        if not usable:
            for t in ("Accepted", "Programmed"):
                _set_cond(
                    conds,
                    t,
                    "False",
                    "ListenersNotValid",
                    "ListenerSet has no valid listeners",
                    now,
                    gen,
                )
        else:
            all_ok = len(usable) == len(lsts)
            _set_cond(
                conds,
                "Accepted",
                "True",
                "Accepted" if all_ok else "ListenersNotValid",
                "",
                now,
                gen,
            )
            _set_cond(conds, "Programmed", "True", "Programmed", "", now, gen)
        return {
            **old,
            "conditions": conds,
            "listeners": [
                self._listener_status(x, old.get("listeners"), gen, with_port=True) for x in lsts
            ],
        }

    def _listener_status(
        self, lst: _Listener, old_listeners: Any, gen: int, *, with_port: bool = False
    ) -> Obj:
        old = next((x for x in old_listeners or [] if x.get("name") == lst.name), {})
        conds = [dict(c) for c in old.get("conditions") or []]
        now = self.cluster.now()
        if lst.conflict:
            _set_cond(
                conds,
                "Conflicted",
                "True",
                lst.conflict,
                f"port {lst.port} is already in use",
                now,
                gen,
            )
            _set_cond(
                conds,
                "Accepted",
                "False",
                "PortUnavailable",
                f"port {lst.port} is already in use",
                now,
                gen,
            )
            _set_cond(conds, "Programmed", "False", "Invalid", "listener is conflicted", now, gen)
        elif lst.unsupported_port:
            _set_cond(conds, "Conflicted", "False", "NoConflicts", "", now, gen)
            _set_cond(
                conds,
                "Accepted",
                "False",
                "UnsupportedPort",
                "dynamic ports are not supported",
                now,
                gen,
            )
            _set_cond(conds, "Programmed", "False", "Invalid", "listener is not accepted", now, gen)
        else:
            _set_cond(conds, "Conflicted", "False", "NoConflicts", "", now, gen)
            _set_cond(conds, "Accepted", "True", "Accepted", "", now, gen)
            _set_cond(conds, "Programmed", "True", "Programmed", "", now, gen)
        _set_cond(conds, "ResolvedRefs", "True", "ResolvedRefs", "", now, gen)
        status: Obj = {
            "name": lst.name,
            "supportedKinds": [
                {"group": GATEWAY_GROUP, "kind": k} for k in PROTOCOL_KINDS.get(lst.protocol, ())
            ],
            "attachedRoutes": len(lst.routes),
            "conditions": conds,
        }
        if with_port:
            status["port"] = lst.port
        return status

    def _write(self, api_version: str, kind: str, obj: Obj, status: Obj) -> int:
        if status == obj.get("status"):
            return 0
        md = obj["metadata"]
        self.cluster.update_status(api_version, kind, md["name"], md.get("namespace"), status)
        return 1


def _granted(grants: Iterable[Obj], from_ns: str, service: str) -> bool:
    for g in grants:
        spec = g.get("spec") or {}
        from_ok = any(
            f.get("group") == GATEWAY_GROUP
            and f.get("kind") == "TCPRoute"
            and f.get("namespace") == from_ns
            for f in spec.get("from") or []
        )
        to_ok = any(
            (t.get("group") or "") == ""
            and t.get("kind") == "Service"
            and (not t.get("name") or t["name"] == service)
            for t in spec.get("to") or []
        )
        if from_ok and to_ok:
            return True
    return False


def _old_parent_conditions(route: Obj, ref: Mapping[str, Any]) -> list[Obj]:
    for p in get_path(route, ("status", "parents")) or []:
        if p.get("parentRef") == ref:
            return p.get("conditions") or []
    return []


def _fake_ip(ns: str, name: str) -> str:
    h = hashlib.sha256(f"{ns}/{name}".encode()).digest()
    return f"10.{h[0]}.{h[1]}.{max(h[2], 1)}"


def _set_cond(
    conds: list[Obj],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    generation: int | None = None,
    previous: Sequence[Obj] | None = None,
) -> None:
    """Upsert a metav1.Condition, keeping lastTransitionTime while the status holds."""
    prior = next(
        (c for c in (previous if previous is not None else conds) if c.get("type") == type_), None
    )
    new: Obj = {"type": type_, "status": status, "reason": reason, "message": message}
    if generation is not None:
        new["observedGeneration"] = generation
    new["lastTransitionTime"] = (
        prior["lastTransitionTime"] if prior and prior.get("status") == status else now
    )
    for i, c in enumerate(conds):
        if c.get("type") == type_:
            conds[i] = new
            return
    conds.append(new)


# --------------------------------------------------------------------------------------
# settling
# --------------------------------------------------------------------------------------


@dataclass
class Platform:
    """A cluster with Crossplane compositions and the controllers that act on their output."""

    cluster: Cluster
    crossplanes: list[tuple[Crossplane, list[XRRef]]] = field(default_factory=list)
    controllers: list[Any] = field(default_factory=list)

    @classmethod
    def standard(cls, cluster: Cluster) -> Platform:
        return cls(cluster, controllers=[ProviderKubernetes(cluster), GatewayController(cluster)])

    def add(self, sim: Crossplane, xrs: Iterable[XRRef]) -> None:
        for s, lst in self.crossplanes:
            if s is sim:
                lst.extend(xrs)
                return
        self.crossplanes.append((sim, list(xrs)))

    def round(self) -> list[Plan]:
        """Reconcile every XR once (live reads), then run every controller once."""
        plans = [sim.reconcile(x) for sim, xrs in self.crossplanes for x in xrs]
        for c in self.controllers:
            c.reconcile()
        return plans

    def settle(self, rounds: int = 10) -> int:
        """Alternate rounds until a round changes nothing; returns the rounds used.

        Raises :class:`NotSettledError` if the cluster still changes after ``rounds``.
        """
        for i in range(1, rounds + 1):
            before = self.cluster.resource_version
            self.round()
            if self.cluster.resource_version == before:
                return i
        raise NotSettledError(f"cluster still changing after {rounds} rounds")


class NotSettledError(AssertionError):
    """The platform did not reach a fixed point within the allowed rounds."""


def settle(
    sim: Crossplane,
    xrs: Iterable[XRRef],
    *,
    rounds: int = 10,
    controllers: Sequence[Any] | None = None,
) -> int:
    """Reconcile ``xrs`` and run the controllers (default: provider-kubernetes and the
    Gateway controller) until nothing changes. Returns the number of rounds used."""
    platform = Platform(
        sim.cluster,
        crossplanes=[(sim, list(xrs))],
        controllers=list(controllers)
        if controllers is not None
        else [ProviderKubernetes(sim.cluster), GatewayController(sim.cluster)],
    )
    return platform.settle(rounds)
