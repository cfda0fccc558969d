"""The Crossplane adapter: protobuf request in, protobuf response out. No policy here."""

import collections
import collections.abc
import datetime
import functools
import time

import grpc
from crossplane.function import logging, resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from google.protobuf import struct_pb2
from pydantic import ValidationError

from function import allocation, cache, fieldpath, metrics, pool, steps, structs, tenant
from function.allocation import Requirement
from function.inputs import GatewayPool, TCPAccess
from function.step import FATAL, WARNING, StepRequest, StepResult, fatal

_SEVERITY = {
    FATAL: fnv1.Severity.SEVERITY_FATAL,
    WARNING: fnv1.Severity.SEVERITY_WARNING,
}
_STATUS = {
    "True": fnv1.Status.STATUS_CONDITION_TRUE,
    "False": fnv1.Status.STATUS_CONDITION_FALSE,
}


Clock = collections.abc.Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class FunctionRunner(grpcv1.FunctionRunnerServiceServicer):
    """Serves RunFunction for the TCPAccess and GatewayPool steps."""

    def __init__(
        self,
        cache_size: int = cache.ENTRIES,
        clock: Clock | None = None,
        cache_bytes: int = cache.BYTES,
        log_runs: bool = False,
    ):
        self.log = logging.get_logger()
        self.log_runs = log_runs  # one debug line per step run (the server's --debug)
        # Read at scrape time, not written per call (a process serves one runner).
        metrics.CACHE_BYTES.set_function(lambda: self.responses.bytes)
        metrics.CACHE_ENTRIES.set_function(lambda: len(self.responses))
        self.responses = cache.ResponseCache(cache_size, cache_bytes)
        self.clock = clock or utc_now

    async def RunFunction(
        self, req: fnv1.RunFunctionRequest, _: grpc.aio.ServicerContext | None = None
    ) -> fnv1.RunFunctionResponse:
        started = time.perf_counter()
        answer = self.responses.answer(req, self._compute)
        seconds = time.perf_counter() - started
        step, pool, outcome = answer.note
        metrics.labelled(metrics.STEP_RUNS, step, pool, outcome).inc()
        metrics.labelled(metrics.STEP_SECONDS, step).observe(seconds)
        metrics.labelled(metrics.REQUEST_BYTES, step).observe(answer.request_bytes)
        metrics.labelled(metrics.CACHE_REQUESTS, answer.cache).inc()
        if self.log_runs:
            self.log.debug(
                "step run",
                xr=xr_name(req),
                step=step,
                pool=pool,
                outcome=outcome,
                seconds=round(seconds, 6),
                cache=answer.cache,
            )
        return answer.response

    def _compute(
        self, req: fnv1.RunFunctionRequest
    ) -> tuple[fnv1.RunFunctionResponse, bool, tuple[str, str, str]]:
        """The response, whether it may be cached (it does not depend on the time), and the
        labels it is counted under: step, pool, outcome (the reason of the step's condition,
        or Fatal). Kept with a cached response: a hit does not read them again."""
        step, pool = step_of(req)
        rsp = response.to(req)
        try:
            result = run(req, self.clock())
            write(rsp, result, speaks_required_resources(req))
        except Exception as err:  # an escaping exception would be a gRPC error: report it
            self.log.exception("unexpected error")
            rsp = response.to(req)  # drop whatever was half written
            response.fatal(rsp, f"internal error in function-tcp-access: {err!r}")
            return rsp, True, (step, pool, FATAL)
        # Counted where computed: a cached answer repeats a run whose claims were counted.
        for fact in result.claims:
            metrics.labelled(metrics.CLAIMS, pool, fact).inc()
        return rsp, not result.timed, (step, pool, outcome_of(result))


STEP_LABELS = {"TCPAccess": "tenant", "GatewayPool": "pool"}
UNKNOWN = "unknown"


def step_of(req: fnv1.RunFunctionRequest) -> tuple[str, str]:
    """The `step` and `pool` labels of a request, read from its input as sent (valid or
    not): input kind and pool are the platform's, a handful of values."""
    fields = req.input.fields
    kind = fields["kind"].string_value if "kind" in fields else "TCPAccess"
    pool = fields["pool"].string_value if "pool" in fields else ""
    return STEP_LABELS.get(kind, UNKNOWN), pool


def outcome_of(result: StepResult) -> str:
    """`Fatal`, or the reason of the step's condition (each step sets one)."""
    if result.fatal:
        return FATAL
    return result.conditions[0].reason if result.conditions else UNKNOWN


def xr_name(req: fnv1.RunFunctionRequest) -> str:
    metadata = req.observed.composite.resource.fields.get("metadata")
    if metadata is None or not metadata.HasField("struct_value"):
        return ""
    fields = metadata.struct_value.fields
    namespace = fields["namespace"].string_value if "namespace" in fields else ""
    name = fields["name"].string_value if "name" in fields else ""
    return f"{namespace}/{name}" if namespace else name


STEPS = {"TCPAccess": (TCPAccess, tenant), "GatewayPool": (GatewayPool, pool)}


def run(req: fnv1.RunFunctionRequest, now: datetime.datetime) -> StepResult:
    raw = req.input.SerializeToString(deterministic=True) if req.HasField("input") else b""
    spec = parse_input(raw)
    if isinstance(spec, StepResult):
        return spec
    return STEPS[spec.kind][1].run(spec, read(req, now))


@functools.lru_cache(maxsize=64)
def parse_input(raw: bytes) -> TCPAccess | GatewayPool | StepResult:
    """The validated input; every tenant of a composition sends the same bytes, so the
    validation runs once per input, not once per call."""
    data = structs.to_dict(struct_pb2.Struct.FromString(raw))
    kind = data.get("kind", "TCPAccess")
    if not isinstance(kind, str) or kind not in STEPS:
        return fatal(f"input.kind: {kind!r} is not one of {', '.join(STEPS)}")
    try:
        return STEPS[kind][0].model_validate(data)
    except ValidationError as err:
        return fatal(f"invalid {kind} input: {describe(err)}")


def describe(err: ValidationError) -> str:
    parts = []
    for error in err.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def read(req: fnv1.RunFunctionRequest, now: datetime.datetime | None = None) -> StepRequest:
    lookups: dict[str, structs.Objects] = {}
    # Crossplane v1.x fills extra_resources, v2 required_resources: read both, and the
    # same name only once (a v2 that answers both fields sends every lookup twice).
    for source in (req.required_resources, req.extra_resources):
        for name, resources in source.items():
            if name not in lookups:
                fields = allocation.LOOKUP_FIELDS.get(name, ())
                lookups[name] = structs.Objects(resources.items, fields)
    return StepRequest(
        xr=structs.to_dict(req.observed.composite.resource),
        desired_xr=structs.to_dict(req.desired.composite.resource),
        observed={key: structs.to_dict(r.resource) for key, r in req.observed.resources.items()},
        lookups=lookups,
        connection=dict(req.observed.composite.connection_details),
        desired=structs.Resources(req.desired.resources),
        desired_connection=dict(req.desired.composite.connection_details),
        now=now or utc_now(),
        context=pipeline_context(req),
    )


def pipeline_context(req: fnv1.RunFunctionRequest) -> dict:
    """The part of the pipeline context this function reads (others may put much there)."""
    value = req.context.fields.get(steps.CONTEXT_KEY)
    return {} if value is None else {steps.CONTEXT_KEY: structs.to_python(value)}


def speaks_required_resources(req: fnv1.RunFunctionRequest) -> bool:
    """Crossplane v2 advertises that it reads `requirements.resources`; v1.x advertises
    nothing and reads only the deprecated `extra_resources`."""
    return fnv1.Capability.CAPABILITY_REQUIRED_RESOURCES in req.meta.capabilities


def write(rsp: fnv1.RunFunctionResponse, result: StepResult, v2_only: bool = False) -> None:
    for item in result.results:
        rsp.results.append(
            fnv1.Result(
                severity=_SEVERITY.get(item.severity, fnv1.Severity.SEVERITY_NORMAL),
                message=item.message,
                reason=item.reason,
                target=fnv1.Target.TARGET_COMPOSITE,
            )
        )
    if result.fatal:
        return
    for requirement in result.requirements:
        selector = selector_for(requirement)
        # v1.x reads `extra_resources` only. v2 answers both fields, so writing both to a
        # Crossplane that says it reads `resources` would send every lookup twice.
        rsp.requirements.resources[requirement.name].CopyFrom(selector)
        if not v2_only:
            rsp.requirements.extra_resources[requirement.name].CopyFrom(selector)
    for key, desired in result.resources.items():
        target = rsp.desired.resources[key]
        target.resource.Clear()
        resource.update(target, desired.resource)
        if desired.ready is not None:
            target.ready = fnv1.Ready.READY_TRUE if desired.ready else fnv1.Ready.READY_FALSE
    paths = dict(result.composite)
    if result.status_path and result.status is not None:
        paths[result.status_path] = result.status
    for path, value in paths.items():
        structs.set_path(rsp.desired.composite.resource, fieldpath.split(path), value)
    for key, value in result.connection.items():
        rsp.desired.composite.connection_details[key] = value
    for key, value in result.context.items():
        rsp.context[key] = value
    for condition in result.conditions:
        rsp.conditions.append(
            fnv1.Condition(
                type=condition.type,
                status=_STATUS.get(condition.status, fnv1.Status.STATUS_CONDITION_UNKNOWN),
                reason=condition.reason,
                message=condition.message,
                target=fnv1.Target.TARGET_COMPOSITE_AND_CLAIM,
            )
        )


def selector_for(requirement: Requirement) -> fnv1.ResourceSelector:
    selector = fnv1.ResourceSelector(
        api_version=requirement.api_version,
        kind=requirement.kind,
        match_labels=fnv1.MatchLabels(labels=requirement.match_labels),
    )
    if requirement.namespace is not None:
        selector.namespace = requirement.namespace
    return selector
