"""A composition engine that runs a function pipeline the way Crossplane does.

Sources this reproduces (crossplane/crossplane):

* ``internal/controller/apiextensions/composite/composition_functions.go``
  (``FunctionComposer.Compose``, v1.17-v1.20 and v2): observe composed resources from the
  XR's resource refs, skipping objects another XR controls; start every reconcile from an
  EMPTY desired state (``d := &fnv1.State{}``: the first step's ``desired`` is present but
  has no composite) and an empty context; pass desired state and context from step to
  step; stop at the first Fatal result; render names/metadata; garbage collect observed
  resources that are no longer desired (refusing ones another XR controls); persist the
  resource refs of EVERY desired resource before applying; server-side apply each
  desired resource with ForceOwnership and a per-XR field manager, iterating a Go map
  (random order); treat a 422 (``kerrors.IsInvalid``) as "not synced" and carry on, any
  other apply error ends the reconcile; server-side apply the desired composite's status
  with field manager ``apiextensions.crossplane.io/composite``.
* ``extra_resources.go`` (v1.17-v1.20) / ``internal/xfn/required_resources.go`` (v2):
  the requirements loop. ``for i := 0; i <= MaxRequirementsIterations; i++`` with
  ``MaxRequirementsIterations = 5``, so a step is called at most 6 times; it returns at
  once on a Fatal result, returns when the requirements equal the previous call's
  (``reflect.DeepEqual``/``proto.Equal``; no requirements on the first call equals the
  initial nil), and otherwise fetches what was asked for, replaces the previous fetch,
  carries the returned context into the next call and calls again. After the 6th call
  it fails the reconcile: "requirements didn't stabilize after the maximum number of
  iterations (5)". A name lookup that finds nothing yields a nil ``Resources``, which is
  still a map entry: the key is present with no items. v1.20 only knows
  ``requirements.extra_resources`` (a selector without a match is an error); v2 also
  answers ``requirements.resources`` into ``required_resources``, honours the selector's
  ``namespace`` and lists everything of a kind when no match is given.
* ``reconciler.go``: conditions the pipeline returned are merged into the XR by type
  (system types Ready/Synced/Healthy are refused); ``Synced`` is ReconcileSuccess, or
  ReconcileError with "Invalid resources: ..." (v2: "Unsynced resources: ...") when an
  apply got a 422; ``Ready`` is Available when every composed resource was marked
  READY_TRUE by the pipeline, else Creating "Unready resources: ..."; v2 lets the desired
  composite's ``ready`` override that. On a failed reconcile ``Synced`` becomes
  ReconcileError, conditions returned before a Fatal result are still set, and custom
  conditions the failed pipeline did not return become Unknown/FatalError.
* v1 connection details (``APIFilteredSecretPublisher`` with ``APIPatchingApplicator``):
  the desired composite's connection details are written to the XR's
  ``spec.writeConnectionSecretToRef`` Secret with a JSON merge patch, so keys the
  pipeline stops returning are NOT removed. v2 XRs have no connection secret.
* v2 namespaced XRs (``RenderComposedResourceMetadata``): a composed resource's
  namespace is overwritten with the XR's (with a warning event if it differed), and a
  cluster-scoped composed resource fails the reconcile.

Simplifications (deliberate):

* v1 mode refuses namespaced composed resources with :class:`NamespacedCompositionError`
  instead of reproducing what v1.20 really does (the refs schema drops the namespace, so
  the object is created but never observed again): a function must never do it.
* The function's requirements are not remembered across reconciles (v2's optional
  RequirementsRecorder is off by default upstream too). Required schemas are answered
  with an empty ``Schema``. Credentials, environment configs, TTL caching and claims
  are not modelled. Composed resources' own connection details are not fetched.
* Status conditions inside the desired composite's ``status`` are ignored (Crossplane
  owns ``status.conditions``); only ``status`` of the desired composite is applied.
* XR deletion is immediate; composed resources go by the cluster's owner-reference
  garbage collection.
* The request's ``meta.tag`` is a sha256 of the request in v2 mode and empty in v1 mode.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from google.protobuf import struct_pb2

from .cluster import ApiError, Cluster, ClusterView, Reader
from .objects import (
    ANNOTATION_RESOURCE_NAME,
    LABEL_CLAIM_NAME,
    LABEL_CLAIM_NAMESPACE,
    LABEL_COMPOSITE,
    Obj,
    annotations_of,
    controller_of,
    dict_to_struct,
    fast_copy,
    get_path,
    group_of,
    struct_to_dict,
)
from .transport import Transport, as_transport

Mode = Literal["v1", "v2"]

MAX_REQUIREMENTS_ITERATIONS = 5  # Crossplane's MaxRequirementsIterations: 6 calls at most.
FIELD_OWNER_XR = "apiextensions.crossplane.io/composite"
FIELD_OWNER_COMPOSED_PREFIX = "apiextensions.crossplane.io/composed"
FIELD_OWNER_RECONCILER = "crossplane"
SYSTEM_CONDITION_TYPES = frozenset({"Ready", "Synced", "Healthy"})
REASON_FATAL_ERROR = "FatalError"
# k8s.io/apimachinery/pkg/util/rand alphabet, used by the API server's generateName.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
CONNECTION_SECRET_TYPE = "connection.crossplane.io/v1alpha1"
V2_CAPABILITIES = (
    fnv1.CAPABILITY_CAPABILITIES,
    fnv1.CAPABILITY_REQUIRED_RESOURCES,
    fnv1.CAPABILITY_CREDENTIALS,
    fnv1.CAPABILITY_CONDITIONS,
    fnv1.CAPABILITY_REQUIRED_SCHEMAS,
)
_SEVERITY = {
    fnv1.SEVERITY_FATAL: "Fatal",
    fnv1.SEVERITY_WARNING: "Warning",
    fnv1.SEVERITY_NORMAL: "Normal",
    fnv1.SEVERITY_UNSPECIFIED: "Warning",  # Crossplane assumes warning for unknown severities
}
_STATUS = {
    fnv1.STATUS_CONDITION_TRUE: "True",
    fnv1.STATUS_CONDITION_FALSE: "False",
    fnv1.STATUS_CONDITION_UNKNOWN: "Unknown",
    fnv1.STATUS_CONDITION_UNSPECIFIED: "Unknown",
}


class SimulatorError(Exception):
    """The simulated system was used in a way the simulator refuses to model."""


class NamespacedCompositionError(SimulatorError):
    """A v1-mode pipeline returned a namespaced composed resource."""


class _ComposeError(Exception):
    """Composition failed the way Crossplane's Compose returns an error."""


@dataclass(frozen=True)
class Step:
    """One pipeline step: ``runner`` is an SDK-style servicer or a :class:`Transport`."""

    name: str
    runner: Any
    input: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class XRRef:
    api_version: str
    kind: str
    name: str
    namespace: str = ""


@dataclass
class Call:
    """One RunFunction call as it went over the wire."""

    step: str
    iteration: int
    request: fnv1.RunFunctionRequest
    response: fnv1.RunFunctionResponse
    request_bytes: int
    response_bytes: int


@dataclass(frozen=True)
class Result:
    step: str
    severity: str  # Fatal | Warning | Normal
    message: str
    reason: str = ""


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # True | False | Unknown
    reason: str
    message: str = ""
    step: str = ""


@dataclass
class ApplyReport:
    """What applying a plan did to the live cluster."""

    skipped: bool = False  # the XR was gone (or replaced) when the plan was applied
    order: list[str] = field(default_factory=list)  # keys in the order applies were tried
    applied: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # key -> 422 message (not fatal)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (ns, name)
    garbage_collected: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # warning events Crossplane would emit
    error: str | None = None  # why the reconcile failed after the pipeline, if it did
    published: bool = False  # a v1 connection secret write happened


@dataclass
class Plan:
    """The outcome of running the pipeline for one XR against one view of the cluster.

    ``desired``/``desired_composite`` are JSON dicts as Crossplane will send them to the
    API server (integral numbers are ints again); ``desired_state`` is the raw final
    ``State`` exactly as the last step returned it (numbers are doubles).
    """

    xr: XRRef
    mode: Mode
    xr_uid: str = ""
    missing: bool = False  # the XR was not in the view: nothing ran
    observed: dict[str, Obj] = field(default_factory=dict)
    observed_composite: Obj = field(default_factory=dict)
    desired: dict[str, Obj] = field(default_factory=dict)
    readiness: dict[str, int] = field(default_factory=dict)  # key -> fnv1.Ready value
    desired_composite: Obj | None = None
    composite_ready: int = fnv1.READY_UNSPECIFIED
    composite_connection_details: dict[str, bytes] = field(default_factory=dict)
    desired_state: fnv1.State = field(default_factory=fnv1.State)
    results: list[Result] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)  # what Crossplane will set
    calls: list[Call] = field(default_factory=list)
    call_count: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    max_request_bytes: int = 0
    max_response_bytes: int = 0
    fatal: bool = False
    error: str | None = None  # why composition failed (Fatal, requirements, selector)
    context: Obj | None = None
    report: ApplyReport | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and self.error is None

    def calls_for(self, step: str) -> list[Call]:
        return [c for c in self.calls if c.step == step]


class Crossplane:
    """Crossplane's XR reconciler for one composition (pipeline), v1.20 or v2 flavour.

    ``rng`` drives everything Crossplane leaves to chance (apply order, generated names,
    v1 list order, the order of ``reconcile_all``), so a seed makes runs repeatable.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        mode: Mode,
        pipeline: Sequence[Step],
        rng: random.Random,
        write_connection_secrets_to_namespace: str | None = "crossplane-system",
        connection_secret_keys: Iterable[str] | None = None,
        advertise_capabilities: bool = True,
        shuffle_v1_lists: bool = True,
        record_calls: bool = True,
    ) -> None:
        if mode not in ("v1", "v2"):
            raise ValueError(f"mode must be 'v1' or 'v2', got {mode!r}")
        self.cluster = cluster
        self.mode: Mode = mode
        self.rng = rng
        self.pipeline = list(pipeline)
        self.write_connection_secrets_to_namespace = write_connection_secrets_to_namespace
        self.connection_secret_keys = (
            frozenset(connection_secret_keys) if connection_secret_keys else None
        )
        self.advertise_capabilities = advertise_capabilities
        self.shuffle_v1_lists = shuffle_v1_lists
        self.record_calls = record_calls
        self._transports: list[Transport] = []
        self._owned: list[Transport] = []
        for step in self.pipeline:
            t, owned = as_transport(step.runner)
            self._transports.append(t)
            if owned:
                self._owned.append(t)
        self._inputs = [dict_to_struct(s.input) if s.input is not None else None for s in pipeline]
        self._structs: dict[tuple, tuple[str | None, struct_pb2.Struct]] = {}
        self._xrs: dict[tuple[str, str], XRRef] = {}

    # -- lifecycle ------------------------------------------------------------------

    def edit_input(self, step_name: str, new_input: Mapping[str, Any]) -> None:
        """The platform team edits a step's input in the Composition."""
        for position, step in enumerate(self.pipeline):
            if step.name == step_name:
                self.pipeline[position] = Step(step.name, step.runner, new_input)
                self._inputs[position] = dict_to_struct(new_input)
                return
        raise KeyError(step_name)

    def close(self) -> None:
        """Close the transports this engine created for raw runners."""
        for t in self._owned:
            t.close()
        self._owned.clear()

    def __enter__(self) -> Crossplane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- XRs -------------------------------------------------------------------------

    def create_xr(
        self,
        api_version: str,
        kind: str,
        name: str,
        *,
        spec: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> XRRef:
        """Create an XR: cluster-scoped, or a v2 Namespaced XR when ``namespace`` is set.

        Like Crossplane's configurators it labels the XR ``crossplane.io/composite: <name>``
        and, in v1 mode, points ``spec.writeConnectionSecretToRef`` at
        ``<write_connection_secrets_to_namespace>/<uid>`` unless the spec sets one.
        """
        if namespace and self.mode == "v1":
            raise SimulatorError("Crossplane v1.20 XRs are cluster-scoped (claims not modelled)")
        self.cluster.register_kind(group_of(api_version), kind, namespaced=bool(namespace))
        md: Obj = {"name": name, "labels": {LABEL_COMPOSITE: name, **(labels or {})}}
        if namespace:
            md["namespace"] = namespace
        if annotations:
            md["annotations"] = dict(annotations)
        obj = {"apiVersion": api_version, "kind": kind, "metadata": md, "spec": dict(spec or {})}
        created = self.cluster.create(obj, manager="sim")
        ns = self.write_connection_secrets_to_namespace
        if self.mode == "v1" and ns and "writeConnectionSecretToRef" not in obj["spec"]:
            created["spec"]["writeConnectionSecretToRef"] = {
                "name": created["metadata"]["uid"],
                "namespace": ns,
            }
            self.cluster.update(created)
        ref = XRRef(api_version, kind, name, namespace or "")
        self._xrs[(ref.namespace, name)] = ref
        return ref

    def delete_xr(self, name: str | XRRef, namespace: str | None = None) -> bool:
        """Delete the XR; everything it composed goes by owner-reference cascade."""
        ref = name if isinstance(name, XRRef) else self._xrs.get((namespace or "", name))
        if ref is None:
            raise KeyError(f"unknown XR {namespace or ''}/{name}")
        self._xrs.pop((ref.namespace, ref.name), None)
        return self.cluster.delete(ref.api_version, ref.kind, ref.name, ref.namespace)

    def get_xr(self, xr: XRRef) -> Obj | None:
        return self.cluster.get(xr.api_version, xr.kind, xr.name, xr.namespace)

    def resource_refs(self, xr_obj: Mapping[str, Any]) -> list[Obj]:
        return list(get_path(xr_obj, self._refs_path(), []) or [])

    def _refs_path(self) -> tuple[str, ...]:
        return (
            ("spec", "resourceRefs")
            if self.mode == "v1"
            else ("spec", "crossplane", "resourceRefs")
        )

    # -- reconcile -------------------------------------------------------------------

    def reconcile(self, xr: XRRef) -> Plan:
        """Compute against the live cluster and apply."""
        plan = self.compute(xr)
        self.apply(plan)
        return plan

    def reconcile_all(self, xrs: Sequence[XRRef], *, same_snapshot: bool = True) -> list[Plan]:
        """Compute every plan (from one snapshot if ``same_snapshot``), apply in random order.

        This is N Crossplane workers racing: each saw the same (stale) cache, and their
        writes land in an order nobody controls. Plans are returned in ``xrs`` order.
        """
        view = self.cluster.snapshot() if same_snapshot else None
        plans = [self.compute(x, view=view) for x in xrs]
        order = list(range(len(plans)))
        self.rng.shuffle(order)
        for i in order:
            self.apply(plans[i])
        return plans

    def compute(self, xr: XRRef, view: Reader | None = None) -> Plan:
        """Run the pipeline for ``xr`` against ``view`` (default: the live cluster)."""
        view = view if view is not None else self.cluster
        plan = Plan(xr=xr, mode=self.mode)
        xr_obj = view.get_raw(xr.api_version, xr.kind, xr.name, xr.namespace)
        if xr_obj is None:
            plan.missing = True
            plan.error = "composite resource not found in the view"
            return plan
        plan.xr_uid = xr_obj["metadata"]["uid"]
        plan.observed_composite = xr_obj
        try:
            plan.observed = self._observe(view, xr_obj)
        except _ComposeError as e:
            plan.error = f"cannot get existing composed resources: {e}"
            return plan
        observed = self._observed_state(view, xr, xr_obj, plan)
        self._run_pipeline(plan, observed, view)
        if plan.error is None:
            self._check_v1_scope(plan)
        return plan

    # -- observe ----------------------------------------------------------------------

    def _observe(self, view: Reader, xr_obj: Obj) -> dict[str, Obj]:
        """ExistingComposedResourceObserver: refs -> existing objects this XR controls."""
        uid = xr_obj["metadata"]["uid"]
        xr_ns = xr_obj["metadata"].get("namespace") or ""
        out: dict[str, Obj] = {}
        for ref in self.resource_refs(xr_obj):
            name = ref.get("name")
            if not name:
                continue
            obj = view.get_raw(ref["apiVersion"], ref["kind"], name, ref.get("namespace") or xr_ns)
            if obj is None:
                continue  # we believe we created it, but it doesn't exist
            c = controller_of(obj)
            if c is not None and c.get("uid") != uid:
                continue  # someone else controls it: pretend it doesn't exist
            key = annotations_of(obj).get(ANNOTATION_RESOURCE_NAME, "")
            if not key:
                raise _ComposeError(
                    f'encountered composed resource without required "{ANNOTATION_RESOURCE_NAME}"'
                    " annotation"
                )
            if ref["apiVersion"] != obj.get("apiVersion"):
                obj = {**obj, "apiVersion": ref["apiVersion"]}
            out[key] = obj
        return out

    def _observed_state(self, view: Reader, xr: XRRef, xr_obj: Obj, plan: Plan) -> fnv1.State:
        state = fnv1.State()
        state.composite.resource.CopyFrom(self._struct(xr_obj, xr.api_version))
        if self.mode == "v1":
            for k, v in self._published(view, xr_obj).items():
                state.composite.connection_details[k] = v
        for key, obj in plan.observed.items():
            state.resources[key].resource.CopyFrom(self._struct(obj, obj["apiVersion"]))
        return state

    def _published(self, view: Reader, xr_obj: Obj) -> dict[str, bytes]:
        ref = get_path(xr_obj, ("spec", "writeConnectionSecretToRef"))
        if not ref:
            return {}
        secret = view.get_raw("v1", "Secret", ref.get("name", ""), ref.get("namespace"))
        data = (secret or {}).get("data") or {}
        return {k: base64.b64decode(v) for k, v in data.items()}

    def _struct(self, obj: Obj, api_version: str) -> struct_pb2.Struct:
        """Struct for a stored object, cached per object for its latest resourceVersion.

        Stored objects are copy-on-write, so (object, resourceVersion) identifies content;
        keeping one version per object bounds the cache by the number of objects.
        """
        md = obj["metadata"]
        key = (api_version, obj["kind"], md.get("namespace"), md["name"])
        rv = md.get("resourceVersion")
        hit = self._structs.get(key)
        if hit is not None and hit[0] == rv:
            return hit[1]
        src = obj if obj.get("apiVersion") == api_version else {**obj, "apiVersion": api_version}
        s = dict_to_struct(src)
        self._structs[key] = (rv, s)
        return s

    # -- pipeline ---------------------------------------------------------------------

    def _run_pipeline(self, plan: Plan, observed: fnv1.State, view: Reader) -> None:
        desired: fnv1.State | None = fnv1.State()  # Crossplane: d := &fnv1.State{}
        context: struct_pb2.Struct | None = struct_pb2.Struct()
        for i, step in enumerate(self.pipeline):
            req = fnv1.RunFunctionRequest()
            req.observed.CopyFrom(observed)
            if desired is not None:
                req.desired.CopyFrom(desired)
            if self._inputs[i] is not None:
                req.input.CopyFrom(self._inputs[i])
            if context is not None:
                req.context.CopyFrom(context)
            if self.mode == "v2":
                req.meta.tag = hashlib.sha256(req.SerializeToString(deterministic=True)).hexdigest()
                if self.advertise_capabilities:
                    req.meta.capabilities.extend(V2_CAPABILITIES)
            try:
                rsp = self._run_step(plan, step, self._transports[i], req, view)
            except _ComposeError as e:
                # Compose returns CompositionResult{}: no conditions survive this error.
                plan.error = f'cannot run Composition pipeline step "{step.name}": {e}'
                plan.conditions = []
                return
            desired = rsp.desired if rsp.HasField("desired") else None
            context = rsp.context if rsp.HasField("context") else None
            for c in rsp.conditions:
                plan.conditions.append(
                    Condition(c.type, _STATUS[c.status], c.reason, c.message, step.name)
                )
            for r in rsp.results:
                plan.results.append(Result(step.name, _SEVERITY[r.severity], r.message, r.reason))
            fatal = [r for r in rsp.results if r.severity == fnv1.SEVERITY_FATAL]
            if fatal:
                plan.fatal = True
                plan.error = (
                    f'pipeline step "{step.name}" returned a fatal result: {fatal[0].message}'
                )
                return
        self._load_desired(plan, desired, context)

    def _run_step(
        self,
        plan: Plan,
        step: Step,
        transport: Transport,
        req: fnv1.RunFunctionRequest,
        view: Reader,
    ) -> fnv1.RunFunctionResponse:
        """The FetchingFunctionRunner loop (see module docstring)."""
        previous: fnv1.Requirements | None = None
        for i in range(MAX_REQUIREMENTS_ITERATIONS + 1):
            sent = fnv1.RunFunctionRequest()
            sent.CopyFrom(req)  # the function gets a private copy, as over the wire
            rsp = transport.RunFunction(sent)
            self._record(plan, step.name, i, sent, rsp)
            if any(r.severity == fnv1.SEVERITY_FATAL for r in rsp.results):
                return rsp
            current = rsp.requirements if rsp.HasField("requirements") else None
            if _same_requirements(current, previous):
                return rsp
            if current is None:
                previous = None
            else:
                previous = fnv1.Requirements()
                previous.CopyFrom(current)
            self._satisfy(req, current, view)
            if rsp.HasField("context"):
                req.context.CopyFrom(rsp.context)
            else:
                req.ClearField("context")
        raise _ComposeError(
            "requirements didn't stabilize after the maximum number of iterations "
            f"({MAX_REQUIREMENTS_ITERATIONS})"
        )

    def _record(
        self,
        plan: Plan,
        step: str,
        i: int,
        req: fnv1.RunFunctionRequest,
        rsp: fnv1.RunFunctionResponse,
    ) -> None:
        qb, sb = req.ByteSize(), rsp.ByteSize()
        plan.call_count += 1
        plan.request_bytes += qb
        plan.response_bytes += sb
        plan.max_request_bytes = max(plan.max_request_bytes, qb)
        plan.max_response_bytes = max(plan.max_response_bytes, sb)
        if self.record_calls:
            plan.calls.append(Call(step, i, req, rsp, qb, sb))

    def _satisfy(
        self, req: fnv1.RunFunctionRequest, reqs: fnv1.Requirements | None, view: Reader
    ) -> None:
        """Replace the previous iteration's fetched resources with what ``reqs`` asks for."""
        req.ClearField("extra_resources")
        if self.mode == "v2":
            req.ClearField("required_resources")
            req.ClearField("required_schemas")
        if reqs is None:
            return
        for name in sorted(reqs.extra_resources):
            req.extra_resources[name].CopyFrom(self._fetch(reqs.extra_resources[name], view))
        if self.mode == "v1":
            return  # v1.20 does not know requirements.resources or .schemas
        for name in sorted(reqs.resources):
            req.required_resources[name].CopyFrom(self._fetch(reqs.resources[name], view))
        for name in sorted(reqs.schemas):
            req.required_schemas[name].SetInParent()  # no OpenAPI schemas in the simulator

    def _fetch(self, sel: fnv1.ResourceSelector, view: Reader) -> fnv1.Resources:
        """Existing{Extra,Required}ResourcesFetcher against the (possibly stale) view."""
        api, kind = sel.api_version, sel.kind
        ns = sel.namespace if self.mode == "v2" and sel.HasField("namespace") else ""
        match = sel.WhichOneof("match")
        out = fnv1.Resources()
        if match == "match_name":
            obj = view.get_raw(api, kind, sel.match_name, ns)
            objs = [obj] if obj is not None else []
        elif match == "match_labels":
            objs = view.list_raw(api, kind, ns or None, dict(sel.match_labels.labels))
        elif self.mode == "v2":
            objs = view.list_raw(api, kind, ns or None)
        else:
            raise _ComposeError("cannot get extra resource by name: unknown resource selector type")
        if self.mode == "v1" and self.shuffle_v1_lists and len(objs) > 1:
            objs = list(objs)
            self.rng.shuffle(objs)  # v1.20 returns the informer cache's (unordered) list
        for obj in objs:
            out.items.add().resource.CopyFrom(self._struct(obj, api))
        return out

    def _load_desired(
        self, plan: Plan, desired: fnv1.State | None, context: struct_pb2.Struct | None
    ) -> None:
        state = fnv1.State()
        if desired is not None:
            state.CopyFrom(desired)
        plan.desired_state = state
        for key, r in state.resources.items():
            plan.desired[key] = struct_to_dict(r.resource)
            plan.readiness[key] = r.ready
        if state.HasField("composite"):
            plan.desired_composite = struct_to_dict(state.composite.resource)
            plan.composite_ready = state.composite.ready
            plan.composite_connection_details = dict(state.composite.connection_details)
        plan.context = struct_to_dict(context, integral_floats_to_int=False) if context else None

    def _check_v1_scope(self, plan: Plan) -> None:
        if self.mode != "v1":
            return
        for key, obj in plan.desired.items():
            api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
            if self.cluster.is_namespaced(api, kind):
                raise NamespacedCompositionError(
                    f"desired resource {key!r} is a namespaced {kind} ({api}): Crossplane v1.20 "
                    "cannot compose namespaced objects; wrap it in a provider-kubernetes Object"
                )

    # -- apply ------------------------------------------------------------------------

    def apply(self, plan: Plan) -> ApplyReport:
        """Apply a computed plan to the LIVE cluster (everything after the pipeline)."""
        report = ApplyReport()
        plan.report = report
        xr = plan.xr
        live = self.cluster.get_raw(xr.api_version, xr.kind, xr.name, xr.namespace)
        if plan.missing or live is None or live["metadata"]["uid"] != plan.xr_uid:
            report.skipped = True
            return report
        if plan.error is not None:
            report.error = plan.error
            self._set_failed_conditions(plan, plan.error, plan.conditions)
            return report
        try:
            rendered = self._render(plan, live, report)
            self._garbage_collect(plan, rendered, report)
            self._write_refs(plan, rendered)
            self._apply_composed(plan, live, rendered, report)
            self._apply_xr_status(plan)
        except _ComposeError as e:
            report.error = str(e)
            self._set_failed_conditions(plan, str(e), [])
            return report
        try:
            self._publish(plan, report)
        except _ComposeError as e:  # the reconciler sets only Synced on a publish error
            report.error = str(e)
            synced = _cond(
                "Synced", "False", "ReconcileError", f"cannot publish connection details: {e}"
            )
            self._write_conditions(plan.xr, [synced])
            return report
        self._set_conditions(plan, rendered, report)
        return report

    def _render(self, plan: Plan, live: Obj, report: ApplyReport) -> dict[str, Obj]:
        """Name, namespace and Crossplane metadata for each desired resource."""
        xr_md = live["metadata"]
        xr_ns = xr_md.get("namespace") or ""
        xr_labels = xr_md.get("labels") or {}
        rendered: dict[str, Obj] = {}
        for key in sorted(plan.desired):
            cd = fast_copy(plan.desired[key])
            md = cd.setdefault("metadata", {})
            api, kind = cd.get("apiVersion", ""), cd.get("kind", "")
            obs = plan.observed.get(key)
            if obs is not None:  # a name (and namespace) sticks to its key once observed
                md["name"] = obs["metadata"]["name"]
                if obs["metadata"].get("namespace"):
                    md["namespace"] = obs["metadata"]["namespace"]
                else:
                    md.pop("namespace", None)
            if xr_ns:
                if not md.get("namespace") and not self.cluster.is_namespaced(api, kind):
                    raise _ComposeError(
                        f'cannot apply cluster scoped composed resource "{key}" (a {kind} named '
                        f"{md.get('name', '')}) for a namespaced composite resource."
                    )
                if md.get("namespace") and md["namespace"] != xr_ns:
                    report.events.append(
                        f'cannot create composed resource "{key}" in namespace '
                        f'"{md["namespace"]}", using XR namespace "{xr_ns}" instead'
                    )
                md["namespace"] = xr_ns
            self._render_metadata(cd, key, live, xr_labels)
            if not md.get("name"):
                md["name"] = self._generate_name(
                    xr_labels.get(LABEL_COMPOSITE) or xr_md["name"], cd
                )
            rendered[key] = cd
            report.names[key] = (md.get("namespace") or "", md["name"])
        return rendered

    def _render_metadata(self, cd: Obj, key: str, live: Obj, xr_labels: Mapping[str, str]) -> None:
        """RenderComposedResourceMetadata: labels, annotation, controller reference."""
        md = cd["metadata"]
        labels = md.setdefault("labels", {})
        labels[LABEL_COMPOSITE] = xr_labels.get(LABEL_COMPOSITE) or live["metadata"]["name"]
        for k in (LABEL_CLAIM_NAME, LABEL_CLAIM_NAMESPACE):
            if xr_labels.get(k):
                labels[k] = xr_labels[k]
        md.setdefault("annotations", {})[ANNOTATION_RESOURCE_NAME] = key
        uid = live["metadata"]["uid"]
        refs = [r for r in md.get("ownerReferences") or [] if r.get("uid") != uid]
        if any(r.get("controller") for r in refs):
            raise _ComposeError(f'cannot set controller reference on composed resource "{key}"')
        refs.append(
            {
                "apiVersion": live["apiVersion"],
                "kind": live["kind"],
                "name": live["metadata"]["name"],
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        )
        md["ownerReferences"] = refs

    def _generate_name(self, prefix: str, cd: Obj) -> str:
        md = cd["metadata"]
        while True:
            name = f"{prefix}-" + "".join(self.rng.choice(NAME_ALPHABET) for _ in range(5))
            if (
                self.cluster.get_raw(cd["apiVersion"], cd["kind"], name, md.get("namespace"))
                is None
            ):
                return name

    def _garbage_collect(
        self, plan: Plan, rendered: Mapping[str, Obj], report: ApplyReport
    ) -> None:
        """Delete observed resources no longer desired (by name, in the live cluster)."""
        for key in sorted(plan.observed):
            if key in rendered:
                continue
            obj = plan.observed[key]
            c = controller_of(obj)
            if c is not None and c.get("uid") != plan.xr_uid:
                raise _ComposeError(
                    f"refusing to delete composed resource {key!r} that is controlled by "
                    f"{c.get('kind')} {c.get('name')!r}"
                )
            md = obj["metadata"]
            self.cluster.delete(obj["apiVersion"], obj["kind"], md["name"], md.get("namespace"))
            report.garbage_collected.append(key)

    def _write_refs(self, plan: Plan, rendered: Mapping[str, Obj]) -> None:
        """Persist refs to every desired resource BEFORE applying any (no leaks)."""
        xr = plan.xr
        refs = []
        for cd in rendered.values():
            ref = {
                "apiVersion": cd["apiVersion"],
                "kind": cd["kind"],
                "name": cd["metadata"]["name"],
            }
            ns = cd["metadata"].get("namespace")
            if ns and self.mode == "v2" and not xr.namespace:
                ref["namespace"] = ns  # Namespaced XRs' refs have no namespace field
            refs.append(ref)
        refs.sort(key=lambda r: r["apiVersion"] + r["kind"] + r["name"])
        patch: Obj = {"apiVersion": xr.api_version, "kind": xr.kind, "metadata": {"name": xr.name}}
        if xr.namespace:
            patch["metadata"]["namespace"] = xr.namespace
        node = patch
        for k in self._refs_path()[:-1]:
            node = node.setdefault(k, {})
        node[self._refs_path()[-1]] = refs
        self.cluster.apply(patch, manager=FIELD_OWNER_XR)

    def _apply_composed(
        self, plan: Plan, live: Obj, rendered: Mapping[str, Obj], report: ApplyReport
    ) -> None:
        order = sorted(rendered)
        self.rng.shuffle(order)  # Go map iteration order
        manager = self._composed_field_owner(live)
        for key in order:
            report.order.append(key)
            try:
                self.cluster.apply(rendered[key], manager=manager)
            except ApiError as e:
                if e.status == 422:  # kerrors.IsInvalid: warn, mark unsynced, carry on
                    report.failed[key] = e.message
                    report.events.append(f'cannot apply composed resource "{key}": {e}')
                    continue
                raise _ComposeError(f'cannot apply composed resource "{key}": {e}') from e
            report.applied.append(key)

    def _composed_field_owner(self, live: Obj) -> str:
        """ComposedFieldOwnerName: one field manager per XR (name + GroupKind)."""
        md = live["metadata"]
        gk = f"{live['kind']}.{group_of(live['apiVersion'])}"
        ident = (
            md["name"] + gk if self.mode == "v1" else (md.get("namespace") or "") + md["name"] + gk
        )
        return f"{FIELD_OWNER_COMPOSED_PREFIX}/{hashlib.sha256(ident.encode()).hexdigest()}"

    def _apply_xr_status(self, plan: Plan) -> None:
        xr = plan.xr
        status = fast_copy((plan.desired_composite or {}).get("status") or {})
        status.pop("conditions", None)  # Crossplane owns conditions
        patch: Obj = {"apiVersion": xr.api_version, "kind": xr.kind, "metadata": {"name": xr.name}}
        if xr.namespace:
            patch["metadata"]["namespace"] = xr.namespace
        patch["status"] = status
        self.cluster.apply_status(patch, manager=FIELD_OWNER_XR)

    def _publish(self, plan: Plan, report: ApplyReport) -> None:
        """v1: merge the desired composite's connection details into the XR's Secret."""
        if self.mode != "v1":
            return
        xr = plan.xr
        live = self.cluster.get_raw(xr.api_version, xr.kind, xr.name, xr.namespace)
        ref = get_path(live, ("spec", "writeConnectionSecretToRef"))
        if not ref:
            return
        name, ns = ref.get("name", ""), ref.get("namespace", "")
        data = {
            k: base64.b64encode(v).decode()
            for k, v in plan.composite_connection_details.items()
            if self.connection_secret_keys is None or k in self.connection_secret_keys
        }
        current = self.cluster.get_raw("v1", "Secret", name, ns)
        if current is not None:
            c = controller_of(current)
            if c is not None and c.get("uid") != plan.xr_uid:
                raise _ComposeError(
                    f"Secret {ns}/{name} is controlled by {c.get('kind')} {c.get('name')!r}"
                )
            existing = dict(current.get("data") or {})
            merged = {**existing, **data}  # JSON merge patch: absent keys are kept
            if merged == existing:
                return
            data = merged
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": CONNECTION_SECRET_TYPE,
            "metadata": {
                "name": name,
                "namespace": ns,
                "ownerReferences": [
                    {
                        "apiVersion": live["apiVersion"],
                        "kind": live["kind"],
                        "name": live["metadata"]["name"],
                        "uid": plan.xr_uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": data,
        }
        self.cluster.apply(secret, manager=FIELD_OWNER_RECONCILER)
        report.published = True

    # -- conditions -------------------------------------------------------------------

    def _set_conditions(self, plan: Plan, rendered: Mapping[str, Obj], report: ApplyReport) -> None:
        unsynced = sorted(report.failed)
        unready = sorted(k for k in rendered if plan.readiness.get(k) != fnv1.READY_TRUE)
        if unsynced:
            label = "Invalid resources" if self.mode == "v1" else "Unsynced resources"
            synced = _cond("Synced", "False", "ReconcileError", f"{label}: {_first_n(unsynced)}")
        else:
            synced = _cond("Synced", "True", "ReconcileSuccess")
        if unready:
            ready = _cond("Ready", "False", "Creating", f"Unready resources: {_first_n(unready)}")
        else:
            ready = _cond("Ready", "True", "Available")
        if self.mode == "v2" and plan.composite_ready != fnv1.READY_UNSPECIFIED:
            ok = plan.composite_ready == fnv1.READY_TRUE
            ready = (
                _cond("Ready", "True", "Available") if ok else _cond("Ready", "False", "Creating")
            )
        custom = _custom_conditions(plan.conditions)
        extra = None
        if report.published:
            extra = {"lastPublishedTime": self.cluster.now()}
        self._write_conditions(plan.xr, [*custom, synced, ready], connection_details=extra)

    def _set_failed_conditions(self, plan: Plan, message: str, seen: Sequence[Condition]) -> None:
        """A failed Compose: Synced=False; custom conditions not seen become Unknown."""
        synced = _cond("Synced", "False", "ReconcileError", f"cannot compose resources: {message}")
        conds = _custom_conditions(seen)
        seen_types = {c["type"] for c in conds}
        self._write_conditions(plan.xr, [*conds, synced], unknown_unless_seen=seen_types)

    def _write_conditions(
        self,
        xr: XRRef,
        conditions: Sequence[Obj],
        *,
        unknown_unless_seen: set[str] | None = None,
        connection_details: Obj | None = None,
    ) -> None:
        live = self.cluster.get_raw(xr.api_version, xr.kind, xr.name, xr.namespace)
        if live is None:
            return
        status = dict(live.get("status") or {})
        current = [dict(c) for c in status.get("conditions") or []]
        for c in conditions:
            _set_condition(current, c, self.cluster.now())
        if unknown_unless_seen is not None:
            for c in list(current):
                if c["type"] in SYSTEM_CONDITION_TYPES or c["type"] in unknown_unless_seen:
                    continue
                _set_condition(
                    current,
                    _cond(
                        c["type"],
                        "Unknown",
                        REASON_FATAL_ERROR,
                        "A fatal error occurred before the status of this condition could be "
                        "determined.",
                    ),
                    self.cluster.now(),
                )
        status["conditions"] = current
        if connection_details is not None:
            status["connectionDetails"] = connection_details
        self.cluster.update_status(xr.api_version, xr.kind, xr.name, xr.namespace, status)


def _same_requirements(a: fnv1.Requirements | None, b: fnv1.Requirements | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == b


def _custom_conditions(conditions: Sequence[Condition]) -> list[Obj]:
    """Pipeline conditions Crossplane accepts: system types are refused."""
    return [
        _cond(c.type, c.status, c.reason, c.message)
        for c in conditions
        if c.type not in SYSTEM_CONDITION_TYPES
    ]


def _cond(type_: str, status: str, reason: str, message: str = "") -> Obj:
    c = {"type": type_, "status": status, "reason": reason}
    if message:
        c["message"] = message
    return c


def _set_condition(conditions: list[Obj], new: Obj, now: str) -> None:
    """crossplane-runtime SetConditions: replace by type unless equal ignoring the time."""
    for i, c in enumerate(conditions):
        if c["type"] != new["type"]:
            continue
        same = all(c.get(k, "") == new.get(k, "") for k in ("status", "reason", "message"))
        if not same:
            conditions[i] = {**new, "lastTransitionTime": now}
        return
    conditions.append({**new, "lastTransitionTime": now})


def _first_n(names: Sequence[str], n: int = 3) -> str:
    """resource.StableNAndSomeMore: sorted, first n, then "and N more"."""
    names = sorted(names)
    if len(names) <= n:
        return ", ".join(names)
    return ", ".join(names[:n]) + f", and {len(names) - n} more"


__all__ = [
    "MAX_REQUIREMENTS_ITERATIONS",
    "ApplyReport",
    "Call",
    "ClusterView",
    "Condition",
    "Crossplane",
    "NamespacedCompositionError",
    "Plan",
    "Result",
    "SimulatorError",
    "Step",
    "XRRef",
]
