"""The Crossplane adapter: protobuf request in, protobuf response out. No policy here."""

import grpc
from crossplane.function import logging, resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from pydantic import ValidationError

from function import fieldpath, pool, structs, tenant
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


class FunctionRunner(grpcv1.FunctionRunnerServiceServicer):
    """Serves RunFunction for the TCPAccess and GatewayPool steps."""

    def __init__(self):
        self.log = logging.get_logger()

    async def RunFunction(
        self, req: fnv1.RunFunctionRequest, _: grpc.aio.ServicerContext | None = None
    ) -> fnv1.RunFunctionResponse:
        rsp = response.to(req)
        try:
            write(rsp, run(req))
        except Exception as err:  # an escaping exception would be a gRPC error: report it
            self.log.exception("unexpected error")
            rsp = response.to(req)  # drop whatever was half written
            response.fatal(rsp, f"internal error in function-tcp-access: {err!r}")
        return rsp


STEPS = {"TCPAccess": (TCPAccess, tenant), "GatewayPool": (GatewayPool, pool)}


def run(req: fnv1.RunFunctionRequest) -> StepResult:
    data = resource.struct_to_dict(req.input) if req.HasField("input") else {}
    kind = data.get("kind", "TCPAccess")
    if kind not in STEPS:
        return fatal(f"input.kind: {kind!r} is not one of {', '.join(STEPS)}")
    model, module = STEPS[kind]
    try:
        spec = model.model_validate(data)
    except ValidationError as err:
        return fatal(f"invalid {kind} input: {describe(err)}")
    return module.run(spec, read(req))


def describe(err: ValidationError) -> str:
    parts = []
    for error in err.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def read(req: fnv1.RunFunctionRequest) -> StepRequest:
    lookups: dict[str, list[dict]] = {}
    # Crossplane v1.x fills extra_resources, v2 required_resources: read both.
    for source in (req.extra_resources, req.required_resources):
        for name, resources in source.items():
            lookups[name] = [structs.looked_up(item.resource) for item in resources.items]
    return StepRequest(
        xr=structs.to_dict(req.observed.composite.resource),
        desired_xr=structs.to_dict(req.desired.composite.resource),
        observed={key: structs.to_dict(r.resource) for key, r in req.observed.resources.items()},
        lookups=lookups,
        connection=dict(req.observed.composite.connection_details),
        desired={key: structs.to_dict(r.resource) for key, r in req.desired.resources.items()},
        desired_connection=dict(req.desired.composite.connection_details),
    )


def write(rsp: fnv1.RunFunctionResponse, result: StepResult) -> None:
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
        # Crossplane v2 reads `resources`, v1.x `extra_resources`: write both.
        rsp.requirements.resources[requirement.name].CopyFrom(selector)
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
