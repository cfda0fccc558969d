"""`crossplane render` for the tests: run an example folder's pipeline the way the CLI does
and print what it prints, so every example has an expected output that a test checks.

    UPDATE_EXAMPLES=1 .venv/bin/pytest tests/test_examples.py    # rewrite expected.yaml

An example folder holds xr.yaml, composition.yaml, functions.yaml, and optionally
required-resources.yaml (`--required-resources`), observed-resources.yaml
(`--observed-resources`) and, for each step of another function, `<step>.output.yaml`:
that function's recorded output (its desired resources, and a `ConnectionDetails`
document), replayed here because only this function runs in the tests.
"""

import asyncio
import datetime
from pathlib import Path

import yaml
from crossplane.function import resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from function.fn import FunctionRunner
from function.requirement import Requirement

FUNCTION = "function-tcp-access"
KEY = "crossplane.io/composition-resource-name"
MAX_CALLS = 6  # Crossplane calls a step at most six times per requirements loop
# The function's clock while rendering: a ticket's renewTime is the time it is written, so a
# real render prints the time it runs; a fixed one keeps expected.yaml the same.
RENDERED_AT = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


class Replay:
    """Another function of the pipeline: returns what it returned when recorded."""

    def __init__(self, documents: list[dict]):
        self.documents = documents

    async def RunFunction(self, req, _=None):
        rsp = response.to(req)
        for doc in self.documents:
            if doc.get("kind") == "ConnectionDetails":
                for key, value in (doc.get("data") or {}).items():
                    rsp.desired.composite.connection_details[key] = str(value).encode()
                continue
            key = doc["metadata"]["annotations"][KEY]
            obj = {**doc, "metadata": {k: v for k, v in doc["metadata"].items()
                                       if k != "annotations"}}  # fmt: skip
            resource.update(rsp.desired.resources[key], obj)
            rsp.desired.resources[key].ready = fnv1.Ready.READY_TRUE
        return rsp


def _selector(name: str, sel: fnv1.ResourceSelector) -> Requirement:
    return Requirement(
        name,
        sel.api_version,
        sel.kind,
        dict(sel.match_labels.labels),
        sel.namespace if sel.HasField("namespace") else None,
    )


def _resolve(req: fnv1.RunFunctionRequest, rsp, required: list[dict], mode: str) -> None:
    """Fill the next request with what the response asked for, from --required-resources."""
    wanted = rsp.requirements.extra_resources if mode == "v1" else rsp.requirements.resources
    target = req.extra_resources if mode == "v1" else req.required_resources
    target.clear()
    for name, sel in wanted.items():
        selector = _selector(name, sel)
        if mode == "v1":  # Crossplane v1.x label lookups span all namespaces
            selector = Requirement(name, selector.api_version, selector.kind,
                                   selector.match_labels)  # fmt: skip
        items = target[name]
        items.SetInParent()
        for obj in required:
            if selector.matches(obj):
                items.items.add().resource.update(obj)


def render(folder: Path, *, mode: str = "v1") -> list[dict]:
    """The documents `crossplane render <xr> <composition> <functions> -r` prints."""
    [xr] = load(folder / "xr.yaml")
    [composition] = load(folder / "composition.yaml")
    required = load(folder / "required-resources.yaml")
    observed = load(folder / "observed-resources.yaml")
    loop = asyncio.new_event_loop()

    desired = fnv1.State()
    context = None
    results: list[dict] = []
    conditions: list = []
    for step in composition["spec"]["pipeline"]:
        runner = (
            FunctionRunner(clock=lambda: RENDERED_AT)
            if step["functionRef"]["name"] == FUNCTION
            else Replay(load(folder / f"{step['step']}.output.yaml"))
        )
        req = fnv1.RunFunctionRequest(desired=desired)
        req.observed.composite.resource.update(xr)
        for obj in observed:
            req.observed.resources[obj["metadata"]["annotations"][KEY]].resource.update(obj)
        if step.get("input"):
            req.input.update(step["input"])
        if context is not None:
            req.context.CopyFrom(context)
        previous = None
        for _ in range(MAX_CALLS):
            rsp = loop.run_until_complete(runner.RunFunction(req, None))
            fatal = any(r.severity == fnv1.Severity.SEVERITY_FATAL for r in rsp.results)
            if fatal or rsp.requirements == previous:
                break
            previous = rsp.requirements
            _resolve(req, rsp, required, mode)
        results += [
            {
                "apiVersion": "render.crossplane.io/v1beta1",
                "kind": "Result",
                "step": step["step"],
                "severity": fnv1.Severity.Name(r.severity).removeprefix("SEVERITY_"),
                "message": r.message,
            }
            for r in rsp.results
        ]
        if any(r["severity"] == "FATAL" for r in results):
            return results
        desired, context = rsp.desired, rsp.context
        conditions += list(rsp.conditions)
    loop.close()
    return _output(xr, desired, conditions, results)


def _output(xr: dict, desired, conditions, results) -> list[dict]:
    composite = resource.struct_to_dict(desired.composite.resource)
    status = _ints(composite.get("status") or {})
    status["conditions"] = [
        {
            "type": c.type,
            "status": fnv1.Status.Name(c.status).removeprefix("STATUS_CONDITION_").title(),
            "reason": c.reason,
            "message": c.message,
        }
        for c in conditions
    ]
    docs = [{"apiVersion": xr["apiVersion"], "kind": xr["kind"],
             "metadata": {"name": xr["metadata"]["name"]}, "status": status}]  # fmt: skip
    for key in sorted(desired.resources):
        obj = _ints(resource.struct_to_dict(desired.resources[key].resource))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("annotations", {})[KEY] = key
        docs.append(obj)
    details = desired.composite.connection_details
    if details:
        docs.append(
            {
                "apiVersion": "render.crossplane.io/v1beta1",
                "kind": "ConnectionDetails",
                "data": {k: details[k].decode() for k in sorted(details)},
            }
        )
    return docs + results


def _ints(value):
    """Struct numbers are doubles; print whole ones as the API server would store them."""
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def dump(docs: list[dict]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=True, width=100) for d in docs)


def mode_of(folder: Path) -> str:
    """Crossplane v1.20 when this function's step wraps (it must there), else v2."""
    [composition] = load(folder / "composition.yaml")
    steps = composition["spec"]["pipeline"]
    ours = [s.get("input") or {} for s in steps if s["functionRef"]["name"] == FUNCTION]
    return "v1" if any("wrap" in i for i in ours) else "v2"
