"""Tests of the pipeline simulator itself, driven by tiny toy functions.

Each toy is an SDK-style servicer whose body is a plain ``body(req, rsp)`` callable, so a
test reads as "this is what the function does, this is what Crossplane makes of it".
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from typing import Any

import pytest
from crossplane.function import request, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.resource import Condition

from tests.simulator import (
    ANNOTATION_RESOURCE_NAME,
    MAX_REQUIREMENTS_ITERATIONS,
    ApiError,
    Cluster,
    Crossplane,
    FunctionCallError,
    GatewayController,
    Grpc,
    InProcess,
    NamespacedCompositionError,
    ProviderKubernetes,
    Step,
    XRRef,
    settle,
    struct_to_dict,
)

XR_API, XR_KIND = "example.org/v1", "XTest"
OBJECT_API = "kubernetes.crossplane.io/v1alpha2"
GW_API = "gateway.networking.k8s.io/v1"

Body = Callable[[fnv1.RunFunctionRequest, fnv1.RunFunctionResponse], None]


class Toy:
    """A composition function whose logic is ``body(req, rsp)``; it records its requests."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.requests: list[fnv1.RunFunctionRequest] = []

    async def RunFunction(
        self, req: fnv1.RunFunctionRequest, context: Any
    ) -> fnv1.RunFunctionResponse:
        self.requests.append(req)
        rsp = response.to(req)
        self.body(req, rsp)
        return rsp


def make(mode: str, *bodies: Body, seed: int = 0, **kw: Any) -> tuple[Cluster, Crossplane]:
    cluster = Cluster(seed=seed)
    steps = [Step(f"step{i}", Toy(b)) for i, b in enumerate(bodies)]
    return cluster, Crossplane(cluster, mode=mode, pipeline=steps, rng=random.Random(seed), **kw)


def xr_of(req: fnv1.RunFunctionRequest) -> dict:
    return struct_to_dict(req.observed.composite.resource)


def compose(rsp: fnv1.RunFunctionResponse, key: str, obj: dict, ready: int = 0) -> None:
    rsp.desired.resources[key].resource.update(obj)
    rsp.desired.resources[key].ready = ready


def cm(name: str, ns: str, data: dict | None = None, labels: dict | None = None) -> dict:
    md: dict = {"name": name, "namespace": ns}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data or {}}


def wrapped(name: str, manifest: dict) -> dict:
    """A provider-kubernetes Object (how v1.x composes namespaced things)."""
    return {
        "apiVersion": OBJECT_API,
        "kind": "Object",
        "metadata": {"name": name},
        "spec": {"forProvider": {"manifest": manifest}, "providerConfigRef": {"name": "default"}},
    }


def _cond(typ: str, status: str, reason: str, message: str | None = None) -> Condition:
    return Condition(typ=typ, status=status, reason=reason, message=message)


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


# ------------------------------------------------------------------------------------
# API server
# ------------------------------------------------------------------------------------


def test_cluster_is_deterministic_and_orders_creation() -> None:
    def build() -> list[dict]:
        c = Cluster(seed=42)
        return [c.create(cm(f"c{i}", "ns")) for i in range(3)]

    a, b = build(), build()
    assert [o["metadata"]["uid"] for o in a] == [o["metadata"]["uid"] for o in b]
    stamps = [o["metadata"]["creationTimestamp"] for o in a]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert a[0]["metadata"]["generation"] == 1 and a[0]["metadata"]["resourceVersion"]


def test_cluster_server_side_apply_replaces_only_own_fields() -> None:
    c = Cluster()
    c.apply(cm("x", "ns", {"a": "1", "b": "2"}), manager="one")
    c.apply(
        {**cm("x", "ns", {"c": "3"}), "metadata": {"name": "x", "namespace": "ns"}}, manager="two"
    )
    c.apply(cm("x", "ns", {"a": "1"}), manager="one")
    assert c.get("v1", "ConfigMap", "x", "ns")["data"] == {"a": "1", "c": "3"}
    c.update_status("v1", "ConfigMap", "x", "ns", {"seen": True})
    c.apply({**cm("x", "ns", {"a": "2"}), "status": {"ignored": True}}, manager="one")
    assert c.get("v1", "ConfigMap", "x", "ns")["status"] == {"seen": True}


def test_cluster_scoping_and_namespace_labels() -> None:
    c = Cluster()
    with pytest.raises(ApiError) as e:
        c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert e.value.status == 400
    assert not c.is_namespaced(OBJECT_API, "Object") and c.is_namespaced("v1", "ConfigMap")
    assert c.namespace_labels("a") == {"kubernetes.io/metadata.name": "a"}
    c.ensure_namespace("b", {"team": "x"})
    assert c.namespace_labels("b") == {"team": "x", "kubernetes.io/metadata.name": "b"}


def test_cluster_garbage_collects_dependents_and_honours_finalizers() -> None:
    c = Cluster()
    owner = c.create(cm("owner", "ns"))
    other = c.create(cm("other", "ns"))

    def ref(o: dict) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"],
        }

    only = cm("only", "ns")
    only["metadata"]["ownerReferences"] = [ref(owner)]
    both = cm("both", "ns")
    both["metadata"]["ownerReferences"] = [ref(owner), ref(other)]
    held = cm("held", "ns")
    held["metadata"].update(ownerReferences=[ref(owner)], finalizers=["x/y"])
    for o in (only, both, held):
        c.create(o)
    c.delete("v1", "ConfigMap", "owner", "ns")
    assert c.get("v1", "ConfigMap", "only", "ns") is None
    assert [
        r["name"] for r in c.get("v1", "ConfigMap", "both", "ns")["metadata"]["ownerReferences"]
    ] == ["other"]
    assert c.get("v1", "ConfigMap", "held", "ns")["metadata"]["deletionTimestamp"]
    c.set_finalizers("v1", "ConfigMap", "held", "ns", [])
    assert c.get("v1", "ConfigMap", "held", "ns") is None


def test_snapshot_serves_stale_reads() -> None:
    c = Cluster()
    c.create(cm("a", "ns", labels={"app": "x"}))
    view = c.snapshot()
    c.create(cm("b", "ns", labels={"app": "x"}))
    c.delete("v1", "ConfigMap", "a", "ns")
    assert [o["metadata"]["name"] for o in view.list("v1", "ConfigMap", labels={"app": "x"})] == [
        "a"
    ]
    assert [o["metadata"]["name"] for o in c.list("v1", "ConfigMap", labels={"app": "x"})] == ["b"]


# ------------------------------------------------------------------------------------
# Crossplane: apply, ownership, names, garbage collection
# ------------------------------------------------------------------------------------


def lock_and_own(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
    """Every XR wants the same 'shared' ConfigMap plus one of its own."""
    name = xr_of(req)["metadata"]["name"]
    compose(rsp, "lock", cm("shared", "gw", {"owner": name}))
    compose(rsp, "own", cm(f"own-{name}", "gw"))


def test_second_controller_is_refused_with_422_and_other_resources_still_apply() -> None:
    cluster, sim = make("v2", lock_and_own)
    a = sim.create_xr(XR_API, XR_KIND, "a")
    b = sim.create_xr(XR_API, XR_KIND, "b")
    sim.reconcile(a)
    plan = sim.reconcile(b)

    assert set(plan.report.failed) == {"lock"}
    assert "Only one reference can have Controller set to true" in plan.report.failed["lock"]
    assert "own" in plan.report.applied
    shared = cluster.get("v1", "ConfigMap", "shared", "gw")
    assert shared["data"] == {"owner": "a"}
    assert [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["a"]
    assert cluster.get("v1", "ConfigMap", "own-b", "gw") is not None
    synced = condition(sim.get_xr(b), "Synced")
    assert synced["status"] == "False" and "lock" in synced["message"]

    # Crossplane never shows B the object A controls, not even after B "created" it.
    again = sim.compute(b)
    assert set(again.observed) == {"own"}
    assert set(again.calls[0].request.observed.resources) == {"own"}


def test_name_sticks_to_its_key() -> None:
    names = {"cm": "first"}
    cluster, sim = make("v2", lambda req, rsp: compose(rsp, "cm", cm(names["cm"], "ns")))
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    sim.reconcile(xr)
    names["cm"] = "second"
    plan = sim.reconcile(xr)
    assert plan.report.names["cm"] == ("ns", "first")
    assert cluster.get("v1", "ConfigMap", "first", "ns") is not None
    assert cluster.get("v1", "ConfigMap", "second", "ns") is None


def test_generated_names_and_crossplane_metadata() -> None:
    cluster, sim = make(
        "v2",
        lambda req, rsp: compose(
            rsp,
            "nameless",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "ns"}},
        ),
    )
    xr = sim.create_xr(XR_API, XR_KIND, "tenant")
    plan = sim.reconcile(xr)
    ns, name = plan.report.names["nameless"]
    assert name.startswith("tenant-") and len(name) == len("tenant-") + 5
    obj = cluster.get("v1", "ConfigMap", name, ns)
    assert obj["metadata"]["annotations"][ANNOTATION_RESOURCE_NAME] == "nameless"
    assert obj["metadata"]["labels"]["crossplane.io/composite"] == "tenant"
    (owner,) = obj["metadata"]["ownerReferences"]
    assert owner["controller"] and owner["uid"] == plan.xr_uid
    assert sim.resource_refs(sim.get_xr(xr)) == [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "namespace": "ns"}
    ]


def test_garbage_collection_of_keys_no_longer_desired() -> None:
    keys = ["a", "b"]
    cluster, sim = make("v2", lambda req, rsp: [compose(rsp, k, cm(k, "ns")) for k in keys])
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    sim.reconcile(xr)
    keys.remove("b")
    plan = sim.reconcile(xr)
    assert plan.report.garbage_collected == ["b"]
    assert cluster.get("v1", "ConfigMap", "b", "ns") is None
    assert [r["name"] for r in sim.resource_refs(sim.get_xr(xr))] == ["a"]


def test_uncontrolled_objects_are_adopted_when_desired_and_deleted_when_not() -> None:
    keys = ["a"]
    cluster, sim = make(
        "v2", lambda req, rsp: [compose(rsp, k, cm(k, "ns", {"v": "1"})) for k in keys]
    )
    cluster.create(cm("a", "ns", {"v": "0"}))  # made by hand, no owner
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    sim.reconcile(xr)
    adopted = cluster.get("v1", "ConfigMap", "a", "ns")
    assert (
        adopted["data"] == {"v": "1"} and adopted["metadata"]["ownerReferences"][0]["name"] == "x"
    )
    # Strip the controller reference: still observed (no controller), so GC deletes it.
    stripped = {**adopted, "metadata": {**adopted["metadata"], "ownerReferences": []}}
    cluster.update(stripped)
    keys.clear()
    plan = sim.reconcile(xr)
    assert plan.report.garbage_collected == ["a"]
    assert cluster.get("v1", "ConfigMap", "a", "ns") is None


def test_random_apply_order_is_deterministic_per_seed() -> None:
    def many(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        for i in range(8):
            compose(rsp, f"k{i}", cm(f"k{i}", "ns"))

    def order(seed: int) -> list[str]:
        _, sim = make("v2", many, seed=seed)
        return sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x")).report.order

    assert order(7) == order(7)
    orders = {tuple(order(s)) for s in range(4)}
    assert len(orders) > 1 and sorted(next(iter(orders))) == [f"k{i}" for i in range(8)]


# ------------------------------------------------------------------------------------
# Crossplane: the requirements loop
# ------------------------------------------------------------------------------------


def count_labelled(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
    """Require ConfigMaps labelled app=x; echo how many arrived (new and old fields)."""
    response.require_resources(rsp, "cms", "v1", "ConfigMap", match_labels={"app": "x"})
    rsp.requirements.extra_resources["old"].CopyFrom(rsp.requirements.resources["cms"])
    status = {
        "required": len(request.get_required_resources(req, "cms")),
        "extra": len(req.extra_resources["old"].items) if "old" in req.extra_resources else -1,
    }
    rsp.desired.composite.resource.update({"status": status})


def test_requirements_loop_stops_when_requirements_repeat() -> None:
    cluster, sim = make("v2", count_labelled)
    cluster.create(cm("one", "a", labels={"app": "x"}))
    plan = sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))
    assert [c.iteration for c in plan.calls] == [0, 1]
    assert plan.desired_composite["status"] == {"required": 1, "extra": 1}
    assert not plan.calls[0].request.required_resources
    assert plan.calls[0].request_bytes < plan.calls[1].request_bytes


def test_requirements_loop_stops_on_fatal_and_changes_nothing() -> None:
    fatal = {"on": False}

    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        compose(rsp, "a", cm("a", "ns"))
        response.set_conditions(rsp, _cond("Custom", "True", "Fine"))
        if fatal["on"]:
            rsp.desired.resources.clear()
            response.require_resources(
                rsp, "cms", "v1", "ConfigMap", match_name="x", namespace="ns"
            )
            response.fatal(rsp, "bad input")

    def later(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        response.set_conditions(rsp, _cond("Later", "True", "Fine"))

    cluster, sim = make("v2", body, later)
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    sim.reconcile(xr)
    fatal["on"] = True
    plan = sim.reconcile(xr)
    assert plan.fatal and plan.call_count == 1 and "bad input" in plan.error
    assert cluster.get("v1", "ConfigMap", "a", "ns") is not None  # never dropped on a Fatal
    live = sim.get_xr(xr)
    assert condition(live, "Synced")["status"] == "False"
    assert condition(live, "Custom")["status"] == "True"  # returned before the Fatal
    later_c = condition(live, "Later")  # the step after never ran
    assert (later_c["status"], later_c["reason"]) == ("Unknown", "FatalError")


def test_requirements_loop_gives_up_after_six_calls() -> None:
    calls = {"n": 0}

    def restless(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        calls["n"] += 1
        compose(rsp, "a", cm("a", "ns"))
        response.require_resources(rsp, f"r{calls['n']}", "v1", "ConfigMap", match_name="x")

    cluster, sim = make("v2", restless)
    plan = sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))
    assert plan.call_count == MAX_REQUIREMENTS_ITERATIONS + 1 == 6
    assert "requirements didn't stabilize after the maximum number of iterations (5)" in plan.error
    assert cluster.get("v1", "ConfigMap", "a", "ns") is None


def test_context_flows_between_iterations_and_steps() -> None:
    def first(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        n = struct_to_dict(req.context).get("n", 0)
        rsp.context.update({"n": n + 1})
        response.require_resources(rsp, "cms", "v1", "ConfigMap", match_labels={})

    def second(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        rsp.desired.composite.resource.update({"status": {"n": req.context["n"]}})

    _, sim = make("v2", first, second)
    plan = sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))
    assert plan.desired_composite["status"]["n"] == 2  # two calls of step 0
    first_req = plan.calls[0].request
    assert first_req.HasField("desired") and not first_req.desired.HasField("composite")


def test_unmatched_requirement_is_present_but_empty() -> None:
    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        response.require_resources(
            rsp, "missing", "v1", "ConfigMap", match_name="nope", namespace="ns"
        )

    _, sim = make("v2", body)
    plan = sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))
    last = plan.calls[-1].request
    assert (
        "missing" in last.required_resources and len(last.required_resources["missing"].items) == 0
    )


# ------------------------------------------------------------------------------------
# Crossplane: v1.20 versus v2
# ------------------------------------------------------------------------------------


def test_v1_ignores_requirements_resources_and_spans_namespaces() -> None:
    def setup(mode: str) -> tuple[Cluster, Crossplane]:
        cluster, sim = make(mode, count_labelled)
        cluster.create(cm("one", "a", labels={"app": "x"}))
        cluster.create(cm("two", "b", labels={"app": "x"}))
        return cluster, sim

    _, v1 = setup("v1")
    plan = v1.reconcile(v1.create_xr(XR_API, XR_KIND, "x"))
    assert plan.desired_composite["status"] == {"required": 0, "extra": 2}
    assert all(not c.request.required_resources for c in plan.calls)
    assert not plan.calls[0].request.meta.capabilities

    _, v2 = setup("v2")
    plan = v2.reconcile(v2.create_xr(XR_API, XR_KIND, "x"))
    assert plan.desired_composite["status"] == {"required": 2, "extra": 2}
    assert fnv1.CAPABILITY_REQUIRED_RESOURCES in plan.calls[0].request.meta.capabilities


def test_selector_namespace_is_honoured_only_by_v2() -> None:
    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        sel = rsp.requirements.extra_resources
        sel["byname"].CopyFrom(
            fnv1.ResourceSelector(
                api_version="v1", kind="ConfigMap", match_name="one", namespace="a"
            )
        )
        sel["bylabel"].CopyFrom(
            fnv1.ResourceSelector(
                api_version="v1",
                kind="ConfigMap",
                match_labels=fnv1.MatchLabels(labels={"app": "x"}),
                namespace="a",
            )
        )
        got = {k: len(v.items) for k, v in req.extra_resources.items()}
        rsp.desired.composite.resource.update({"status": got})

    results = {}
    for mode in ("v1", "v2"):
        cluster, sim = make(mode, body)
        cluster.create(cm("one", "a", labels={"app": "x"}))
        cluster.create(cm("two", "b", labels={"app": "x"}))
        results[mode] = sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x")).desired_composite[
            "status"
        ]
    assert results["v1"] == {"byname": 0, "bylabel": 2}  # no namespace in v1.20 selectors
    assert results["v2"] == {"byname": 1, "bylabel": 1}


def test_v1_refuses_namespaced_composed_objects() -> None:
    _, sim = make("v1", lambda req, rsp: compose(rsp, "cm", cm("x", "ns")))
    with pytest.raises(NamespacedCompositionError, match="wrap it in a provider-kubernetes Object"):
        sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))


def test_v2_namespaced_xr_composes_only_in_its_namespace() -> None:
    cluster, sim = make("v2", lambda req, rsp: compose(rsp, "cm", cm("x", "elsewhere")))
    xr = sim.create_xr(XR_API, XR_KIND, "x", namespace="home")
    plan = sim.reconcile(xr)
    assert plan.report.names["cm"] == ("home", "x")
    assert any('using XR namespace "home"' in e for e in plan.report.events)
    assert cluster.get("v1", "ConfigMap", "x", "elsewhere") is None

    _, sim2 = make("v2", lambda req, rsp: compose(rsp, "obj", wrapped("o", cm("y", "home"))))
    plan = sim2.reconcile(sim2.create_xr(XR_API, XR_KIND, "x", namespace="home"))
    assert "cluster scoped composed resource" in plan.report.error


def test_v1_publishes_connection_details_and_keeps_dropped_keys() -> None:
    details = {"HOST": b"db1.example.ch", "PORT": b"10001"}

    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        rsp.desired.composite.connection_details.clear()
        for k, v in details.items():
            rsp.desired.composite.connection_details[k] = v
        seen = {k: v.decode() for k, v in req.observed.composite.connection_details.items()}
        rsp.desired.composite.resource.update({"status": {"seen": seen}})

    cluster, sim = make("v1", body)
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    sim.reconcile(xr)
    ref = sim.get_xr(xr)["spec"]["writeConnectionSecretToRef"]
    secret = cluster.get("v1", "Secret", ref["name"], ref["namespace"])
    assert base64.b64decode(secret["data"]["PORT"]) == b"10001"
    del details["PORT"]
    plan = sim.reconcile(xr)
    assert plan.desired_composite["status"]["seen"] == {"HOST": "db1.example.ch", "PORT": "10001"}
    secret = cluster.get("v1", "Secret", ref["name"], ref["namespace"])
    assert set(secret["data"]) == {"HOST", "PORT"}  # merge patch: dropped keys stay

    cluster2, v2 = make("v2", body)
    v2.reconcile(v2.create_xr(XR_API, XR_KIND, "x"))
    assert cluster2.list("v1", "Secret") == []


# ------------------------------------------------------------------------------------
# Crossplane: XR status, conditions, readiness, numbers
# ------------------------------------------------------------------------------------


def test_xr_status_is_server_side_applied() -> None:
    status = {"a": 1, "b": {"c": 2}}
    _, sim = make("v2", lambda req, rsp: rsp.desired.composite.resource.update({"status": status}))
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    sim.reconcile(xr)
    sim.cluster.apply_status(
        {
            "apiVersion": XR_API,
            "kind": XR_KIND,
            "metadata": {"name": "x"},
            "status": {"other": "kept"},
        },
        manager="someone-else",
    )
    del status["b"]
    sim.reconcile(xr)
    live = sim.get_xr(xr)["status"]
    assert live["a"] == 1 and "b" not in live and live["other"] == "kept"
    assert {c["type"] for c in live["conditions"]} >= {"Ready", "Synced"}


def test_ready_follows_what_the_pipeline_said_per_resource() -> None:
    ready = {"a": fnv1.READY_TRUE, "b": fnv1.READY_FALSE}
    _, sim = make(
        "v2", lambda req, rsp: [compose(rsp, k, cm(k, "ns"), r) for k, r in ready.items()]
    )
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    plan = sim.reconcile(xr)
    assert plan.readiness == {"a": fnv1.READY_TRUE, "b": fnv1.READY_FALSE}
    c = condition(sim.get_xr(xr), "Ready")
    assert (c["status"], c["reason"], c["message"]) == ("False", "Creating", "Unready resources: b")
    ready["b"] = fnv1.READY_TRUE
    sim.reconcile(xr)
    assert condition(sim.get_xr(xr), "Ready")["status"] == "True"


def test_numbers_reach_the_function_as_floats_and_the_cluster_as_ints() -> None:
    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        port = req.input["port"]
        compose(
            rsp, "cm", {**cm("x", "ns"), "spec": {"port": port, "isFloat": isinstance(port, float)}}
        )

    cluster = Cluster()
    sim = Crossplane(
        cluster, mode="v2", pipeline=[Step("s", Toy(body), {"port": 10000})], rng=random.Random(0)
    )
    sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))
    assert cluster.get("v1", "ConfigMap", "x", "ns")["spec"] == {"port": 10000, "isFloat": True}


def test_reconcile_all_races_from_one_snapshot() -> None:
    cluster, sim = make("v2", lock_and_own, seed=3)
    xrs = [sim.create_xr(XR_API, XR_KIND, n) for n in ("a", "b", "c")]
    plans = sim.reconcile_all(xrs)
    winners = [p for p in plans if "lock" in p.report.applied]
    assert len(winners) == 1
    assert sum("lock" in p.report.failed for p in plans) == 2
    owner = cluster.get("v1", "ConfigMap", "shared", "gw")["data"]["owner"]
    assert owner == winners[0].xr.name


def test_stale_view_hides_new_objects_from_the_function() -> None:
    cluster, sim = make("v2", count_labelled)
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    view = cluster.snapshot()
    cluster.create(cm("late", "ns", labels={"app": "x"}))
    assert sim.compute(xr, view=view).desired_composite["status"]["required"] == 0
    assert sim.compute(xr).desired_composite["status"]["required"] == 1


# ------------------------------------------------------------------------------------
# provider-kubernetes
# ------------------------------------------------------------------------------------


def test_provider_kubernetes_round_trip_and_deletion() -> None:
    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        observed = (
            struct_to_dict(req.observed.resources["obj"].resource)
            if "obj" in req.observed.resources
            else {}
        )
        inner = observed.get("status", {}).get("atProvider", {}).get("manifest")
        compose(
            rsp,
            "obj",
            wrapped("x-cm", cm("inner", "app", {"k": "v"})),
            fnv1.READY_TRUE if inner else 0,
        )

    cluster, sim = make("v1", body)
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    rounds = settle(sim, [xr])
    assert rounds <= 4
    assert cluster.get("v1", "ConfigMap", "inner", "app")["data"] == {"k": "v"}
    obj = cluster.get(OBJECT_API, "Object", "x-cm")
    assert obj["status"]["atProvider"]["manifest"]["metadata"]["name"] == "inner"
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(sim.get_xr(xr), "Ready")["status"] == "True"

    sim.delete_xr("x")
    assert cluster.get(OBJECT_API, "Object", "x-cm")["metadata"]["deletionTimestamp"]
    ProviderKubernetes(cluster).reconcile()
    assert cluster.get(OBJECT_API, "Object", "x-cm") is None
    assert cluster.get("v1", "ConfigMap", "inner", "app") is None


def test_two_objects_wrapping_one_inner_object_fight() -> None:
    cluster = Cluster()
    provider = ProviderKubernetes(cluster)
    cluster.create(wrapped("a", cm("same", "app", {"by": "a"})))
    provider.reconcile()
    cluster.create(wrapped("b", cm("same", "app", {"by": "b"})))
    provider.reconcile()
    assert cluster.get("v1", "ConfigMap", "same", "app")["data"] == {"by": "b"}
    cluster.delete(OBJECT_API, "Object", "b")
    provider.reconcile()
    assert cluster.get("v1", "ConfigMap", "same", "app") is None  # although "a" still wants it
    assert cluster.get(OBJECT_API, "Object", "a") is not None


# ------------------------------------------------------------------------------------
# Gateway API controller
# ------------------------------------------------------------------------------------


def gateway(name: str, ns: str = "gw", port: int = 9000, allowed: dict | None = None) -> dict:
    spec: dict = {
        "gatewayClassName": "sim",
        "listeners": [{"name": "own", "port": port, "protocol": "TCP"}],
    }
    if allowed is not None:
        spec["allowedListeners"] = {"namespaces": allowed}
    return {
        "apiVersion": GW_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def listener_set(
    name: str, ns: str, port: int, gw: str = "gw1", gw_ns: str = "gw", x: bool = False
) -> dict:
    api, kind = (
        ("gateway.networking.x-k8s.io/v1alpha1", "XListenerSet") if x else (GW_API, "ListenerSet")
    )
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRef": {"name": gw, "namespace": gw_ns},
            "listeners": [
                {
                    "name": "tcp",
                    "port": port,
                    "protocol": "TCP",
                    "allowedRoutes": {
                        "namespaces": {"from": "Same"},
                        "kinds": [{"kind": "TCPRoute"}],
                    },
                }
            ],
        },
    }


def tcp_route(
    name: str, ns: str, parent: str, backend: tuple[str, str, int], kind: str = "ListenerSet"
) -> dict:
    group = "gateway.networking.x-k8s.io" if kind == "XListenerSet" else "gateway.networking.k8s.io"
    bns, svc, port = backend
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TCPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [
                {
                    "group": group,
                    "kind": kind,
                    "name": parent,
                    "namespace": ns,
                    "sectionName": "tcp",
                }
            ],
            "rules": [{"backendRefs": [{"name": svc, "namespace": bns, "port": port}]}],
        },
    }


def parent_condition(route: dict, type_: str) -> dict:
    (parent,) = route["status"]["parents"]
    return next(c for c in parent["conditions"] if c["type"] == type_)


def listener_condition(obj: dict, type_: str) -> dict:
    (lst,) = obj["status"]["listeners"]
    return next(c for c in lst["conditions"] if c["type"] == type_)


def test_gateway_oldest_listener_wins_a_port() -> None:
    c = Cluster()
    c.create(gateway("gw1", allowed={"from": "All"}))
    c.create(listener_set("older", "t1", 10000))
    c.create(listener_set("newer", "t2", 10000))
    c.create(listener_set("clash-gw", "t3", 9000))  # the Gateway's own listener wins
    ctrl = GatewayController(c)
    assert ctrl.reconcile() > 0
    assert ctrl.reconcile() == 0  # settled

    older = c.get(GW_API, "ListenerSet", "older", "t1")
    assert condition(older, "Accepted")["status"] == "True"
    assert listener_condition(older, "Conflicted")["status"] == "False"
    for name, ns in (("newer", "t2"), ("clash-gw", "t3")):
        ls = c.get(GW_API, "ListenerSet", name, ns)
        conflicted = listener_condition(ls, "Conflicted")
        assert (conflicted["status"], conflicted["reason"]) == ("True", "HostnameConflict")
        assert (condition(ls, "Accepted")["status"], condition(ls, "Accepted")["reason"]) == (
            "False",
            "ListenersNotValid",
        )
    gw = c.get(GW_API, "Gateway", "gw1", "gw")
    assert gw["status"]["addresses"][0]["type"] == "IPAddress"
    assert gw["status"]["attachedListenerSets"] == 1

    # Freeing the port lets the next-oldest claimant have it.
    c.delete(GW_API, "ListenerSet", "older", "t1")
    ctrl.reconcile()
    assert (
        listener_condition(c.get(GW_API, "ListenerSet", "newer", "t2"), "Conflicted")["status"]
        == "False"
    )


def test_gateway_refuses_listener_sets_it_does_not_allow() -> None:
    c = Cluster()
    c.ensure_namespace("team", {"tcp": "yes"})
    c.create(gateway("gw1"))  # allowedListeners unset: None
    c.create(gateway("gw2", allowed={"from": "Same"}))
    c.create(
        gateway("gw3", allowed={"from": "Selector", "selector": {"matchLabels": {"tcp": "yes"}}})
    )
    c.create(listener_set("a", "team", 10000, gw="gw1"))
    c.create(listener_set("b", "team", 10000, gw="gw2"))
    c.create(listener_set("c", "team", 10000, gw="gw3"))
    GatewayController(c).reconcile()
    for name in ("a", "b"):
        accepted = condition(c.get(GW_API, "ListenerSet", name, "team"), "Accepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "NotAllowed")
    assert condition(c.get(GW_API, "ListenerSet", "c", "team"), "Accepted")["status"] == "True"


def test_second_route_on_a_listener_is_accepted_but_gets_no_traffic() -> None:
    c = Cluster()
    c.create(gateway("gw1", allowed={"from": "All"}))
    c.create(listener_set("ls", "t1", 10000, x=True))
    c.create(tcp_route("first", "t1", "ls", ("t1", "svc-a", 5432), kind="XListenerSet"))
    c.create(tcp_route("second", "t1", "ls", ("t1", "svc-b", 5432), kind="XListenerSet"))
    ctrl = GatewayController(c)
    ctrl.reconcile()
    for name in ("first", "second"):
        assert (
            parent_condition(c.get(GW_API, "TCPRoute", name, "t1"), "Accepted")["status"] == "True"
        )
    assert ctrl.traffic() == {("gw", "gw1", 10000): ("t1", "svc-a", 5432)}
    ls = c.get("gateway.networking.x-k8s.io/v1alpha1", "XListenerSet", "ls", "t1")
    assert ls["status"]["listeners"][0]["attachedRoutes"] == 2
    c.delete(GW_API, "TCPRoute", "first", "t1")
    assert ctrl.traffic() == {("gw", "gw1", 10000): ("t1", "svc-b", 5432)}


def test_cross_namespace_backend_needs_a_reference_grant() -> None:
    c = Cluster()
    c.create(gateway("gw1", allowed={"from": "All"}))
    c.create(listener_set("ls", "gw", 10000))
    c.create(tcp_route("r", "gw", "ls", ("app", "db", 5432)))
    ctrl = GatewayController(c)

    def resolved() -> tuple[str, str]:
        ctrl.reconcile()
        cond = parent_condition(c.get(GW_API, "TCPRoute", "r", "gw"), "ResolvedRefs")
        return cond["status"], cond["reason"]

    assert resolved() == ("False", "RefNotPermitted")
    assert ctrl.traffic() == {}

    def grant(name: str, to_name: str | None) -> dict:
        to = {"group": "", "kind": "Service", **({"name": to_name} if to_name else {})}
        return {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {
                "from": [
                    {"group": "gateway.networking.k8s.io", "kind": "TCPRoute", "namespace": "gw"}
                ],
                "to": [to],
            },
        }

    c.create(grant("other-service", "not-db"))
    assert resolved() == ("False", "RefNotPermitted")
    c.create(grant("by-name", "db"))
    assert resolved() == ("True", "ResolvedRefs")
    assert ctrl.traffic() == {("gw", "gw1", 10000): ("app", "db", 5432)}
    c.delete("gateway.networking.k8s.io/v1beta1", "ReferenceGrant", "by-name", "app")
    c.create(grant("any-service", None))
    assert resolved() == ("True", "ResolvedRefs")


# ------------------------------------------------------------------------------------
# Transports
# ------------------------------------------------------------------------------------


def echo_input(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
    response.require_resources(rsp, "cms", "v1", "ConfigMap", match_labels={"app": "x"})
    compose(rsp, "cm", cm("x", "ns", {"n": str(len(request.get_required_resources(req, "cms")))}))
    response.set_conditions(rsp, _cond("Echo", "True", "Done", f"{req.input['port']}"))


def test_both_transports_produce_identical_responses() -> None:
    def run(wrap: Callable[[Any], Any]) -> list[bytes]:
        cluster = Cluster(seed=5)
        cluster.create(cm("l", "ns", labels={"app": "x"}))
        transport = wrap(Toy(echo_input))
        try:
            sim = Crossplane(
                cluster,
                mode="v2",
                pipeline=[Step("s", transport, {"port": 10001})],
                rng=random.Random(5),
            )
            plan = sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))
        finally:
            transport.close()
        assert plan.ok and plan.call_count == 2
        return [c.response.SerializeToString(deterministic=True) for c in plan.calls]

    assert run(InProcess) == run(Grpc)


def test_function_errors_surface_as_function_call_error() -> None:
    def boom(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        raise RuntimeError("boom")

    req = fnv1.RunFunctionRequest()
    with InProcess(Toy(boom)) as t, pytest.raises(FunctionCallError, match="boom"):
        t.RunFunction(req)
    with Grpc(Toy(boom)) as t, pytest.raises(FunctionCallError) as e:
        t.RunFunction(req)
    assert e.value.code == "UNKNOWN"
    _, sim = make("v2", boom)
    with pytest.raises(FunctionCallError):
        sim.reconcile(sim.create_xr(XR_API, XR_KIND, "x"))


def test_xr_ref_round_trip() -> None:
    _, sim = make("v2", lambda req, rsp: None)
    ref = sim.create_xr(
        XR_API, XR_KIND, "x", spec={"a": 1}, labels={"l": "v"}, annotations={"an": "v"}
    )
    assert ref == XRRef(XR_API, XR_KIND, "x")
    live = sim.get_xr(ref)
    assert live["metadata"]["labels"] == {"crossplane.io/composite": "x", "l": "v"}
    assert sim.delete_xr("x") and sim.get_xr(ref) is None


def test_message_size_limits_match_on_both_transports() -> None:
    def huge(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        compose(rsp, "big", cm("big", "ns", {"blob": "x" * (5 * 1024 * 1024)}))

    codes = []
    for wrap in (InProcess, Grpc):
        with wrap(Toy(huge)) as t, pytest.raises(FunctionCallError) as e:
            t.RunFunction(fnv1.RunFunctionRequest())
        codes.append(e.value.code)
    assert codes == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]


def test_v2_desired_composite_readiness_overrides_composed_readiness() -> None:
    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        compose(rsp, "a", cm("a", "ns"), fnv1.READY_FALSE)
        rsp.desired.composite.ready = fnv1.READY_TRUE

    _, sim = make("v2", body)
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    sim.reconcile(xr)
    assert condition(sim.get_xr(xr), "Ready")["status"] == "True"


def test_non_422_apply_error_fails_the_reconcile() -> None:
    def body(req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse) -> None:
        compose(
            rsp, "bad", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-ns"}}
        )

    _, sim = make("v2", body)
    xr = sim.create_xr(XR_API, XR_KIND, "x")
    plan = sim.reconcile(xr)
    assert "an empty namespace may not be set" in plan.report.error
    synced = condition(sim.get_xr(xr), "Synced")
    assert synced["status"] == "False" and synced["message"].startswith("cannot compose resources")
