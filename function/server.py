"""The function's server: the SDK's gRPC server (same flags, same services, mTLS), plus what
a platform team watches it with: the standard gRPC health service, gRPC metrics under
go-grpc-prometheus' names, and a plain-HTTP endpoint for `/metrics`, `/healthz` and `/readyz`
(Kubernetes probes cannot speak the function's mTLS).

RunFunction requests are decoded here, not by gRPC: a request protobuf cannot decode (say a
Struct nested deeper than its recursion limit) is answered with INVALID_ARGUMENT naming the
cause, instead of an internal error and a stack trace per request.
"""

import asyncio
import contextlib
import http.server
import inspect
import signal
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc
from crossplane.function import logging
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from crossplane.function.runtime import SERVICE_NAMES, SHUTDOWN_GRACE_PERIOD_SECONDS
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from function import metrics

DEFAULT_METRICS_ADDRESS = ":8080"
# v1 and v1beta1 RunFunction messages are the same on the wire: both are decoded as v1.
RUN_FUNCTION_SERVICES = (
    "apiextensions.fn.proto.v1.FunctionRunnerService",
    "apiextensions.fn.proto.v1beta1.FunctionRunnerService",
)


class ServeError(Exception):
    """The server cannot start (an address cannot be bound, no credentials)."""


# --- RunFunction, decoded by us ---------------------------------------------------------

# upb's words for why a message did not decode, and ours for the caller.
_DECODE_CAUSES = {
    "MaxDepth": (
        "a value in the request is nested deeper than protobuf's recursion limit "
        "(100 messages, about 30 levels of objects in a Struct such as an XR's spec)"
    ),
    "corrupt": "the request is not a well-formed RunFunctionRequest",
}


def decode_problem(err: DecodeError) -> str:
    """Why a request did not decode, in words an operator can act on."""
    for marker, cause in _DECODE_CAUSES.items():
        if marker in str(err):
            return f"{cause}: {err}"
    return f"the request cannot be decoded: {err}"


class RunFunctionHandler(grpc.GenericRpcHandler):
    """Serves RunFunction (v1 and v1beta1) from raw bytes to raw bytes."""

    def __init__(self, runner: grpcv1.FunctionRunnerServiceServicer):
        self.runner = runner
        self.log = logging.get_logger()
        self._logged: set[str] = set()  # causes logged already: once each, not per request
        self._handler = grpc.unary_unary_rpc_method_handler(self.run_function)

    def service(self, handler_call_details):
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        if service in RUN_FUNCTION_SERVICES and method == "RunFunction":
            return self._handler
        return None

    async def run_function(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            req = fnv1.RunFunctionRequest.FromString(raw)
        except DecodeError as err:
            problem = decode_problem(err)
            if problem not in self._logged:
                self._logged.add(problem)
                self.log.warning(
                    "refused a request that cannot be decoded (logged once per cause; every "
                    'one is counted in grpc_server_handled_total{grpc_code="InvalidArgument"})',
                    cause=problem,
                    size=len(raw),
                )
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        rsp = await self.runner.RunFunction(req, context)
        return rsp.SerializeToString()


# --- gRPC metrics, as go-grpc-prometheus exports them -----------------------------------

_GRPC_TYPES = {
    (False, False): "unary",
    (True, False): "client_stream",
    (False, True): "server_stream",
    (True, True): "bidi_stream",
}
# Go's spelling of status codes (codes.Code.String()).
_GO_CODES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Counts every RPC of a known method: started, handled (by status code), and its
    handling time."""

    def __init__(self):
        # Method -> (its handler, that handler measured): built once per method, not per call.
        self._measured: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method: gRPC answers UNIMPLEMENTED, nothing to label
        name = handler_call_details.method
        known = self._measured.get(name)
        if known is None or known[0] is not handler:
            known = self._measured[name] = (handler, self._measure(name, handler))
        return known[1]

    @staticmethod
    def _measure(name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, _, method = name.lstrip("/").rpartition("/")
        streams = (handler.request_streaming, handler.response_streaming)
        labels = (_GRPC_TYPES[streams], service, method)
        behaviour = next(
            b
            for b in (
                handler.unary_unary,
                handler.unary_stream,
                handler.stream_unary,
                handler.stream_stream,
            )
            if b is not None
        )
        if inspect.isasyncgenfunction(behaviour):

            async def measured(request, context):
                started = _started(labels)
                code = grpc.StatusCode.OK
                try:
                    async for item in behaviour(request, context):
                        yield item
                except BaseException as err:
                    code = _failed(context, err)
                    raise
                finally:
                    _handled(labels, started, _code(context, code))

        else:

            async def measured(request, context):
                started = _started(labels)
                code = grpc.StatusCode.OK
                try:
                    result = behaviour(request, context)
                    return await result if inspect.isawaitable(result) else result
                except BaseException as err:
                    code = _failed(context, err)
                    raise
                finally:
                    _handled(labels, started, _code(context, code))

        build = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[streams]
        return build(
            measured,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _started(labels: tuple[str, str, str]) -> float:
    metrics.labelled(metrics.GRPC_STARTED, *labels).inc()
    return time.perf_counter()


def _failed(context, err: BaseException) -> grpc.StatusCode:
    """The code of an RPC that raised: the one it aborted with; for a call the client gave
    up on, its deadline passing or its cancelling; else what gRPC answers for an exception."""
    code = _context_code(context)
    if code is not None and code is not grpc.StatusCode.OK:
        return code
    if isinstance(err, asyncio.CancelledError) or context.cancelled():
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _code(context, fallback: grpc.StatusCode) -> grpc.StatusCode:
    """A handler may set a code without raising (context.set_code)."""
    code = _context_code(context)
    return fallback if code is None or fallback is not grpc.StatusCode.OK else code


def _context_code(context) -> grpc.StatusCode | None:
    code = context.code()
    if isinstance(code, int):  # the aio context may report the raw number
        return next((c for c in grpc.StatusCode if c.value[0] == code), None)
    return code


def _handled(labels: tuple[str, str, str], started: float, code: grpc.StatusCode) -> None:
    metrics.labelled(metrics.GRPC_HANDLED, *labels, _GO_CODES.get(code, "Unknown")).inc()
    metrics.labelled(metrics.GRPC_SECONDS, *labels).observe(time.perf_counter() - started)


# --- /metrics, /healthz, /readyz --------------------------------------------------------


def split_address(address: str) -> tuple[str, int]:
    """`host:port`, `:port` (every interface) or `[v6]:port` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ServeError(f"--metrics-address {address!r}: expected host:port or :port")
    return host.strip("[]"), int(port)


class Probes:
    """What the HTTP endpoint reports: the process is up; the gRPC server accepts calls."""

    def __init__(self):
        self.ready = threading.Event()


def http_server(address: str, probes: Probes) -> http.server.ThreadingHTTPServer:
    host, port = split_address(address)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # http.server dispatches on this name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = metrics.exposition()
                self._answer(200, body, content_type)
            elif path == "/healthz":
                self._answer(200, b"ok\n")
            elif path == "/readyz":
                if probes.ready.is_set():
                    self._answer(200, b"ok\n")
                else:
                    self._answer(503, b"the gRPC server does not accept calls\n")
            else:
                self._answer(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # probes come every few seconds: quiet
            return

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        return Server((host, port), Handler)
    except OSError as err:
        raise ServeError(f"--metrics-address {address!r}: {err}") from err


# --- the whole server -------------------------------------------------------------------


def serve(
    runner: grpcv1.FunctionRunnerServiceServicer,
    address: str,
    *,
    creds: grpc.ServerCredentials | None,
    insecure: bool,
    options: Sequence[tuple[str, Any]] | None = None,
    metrics_address: str = DEFAULT_METRICS_ADDRESS,
) -> None:
    """Serve until SIGTERM (then stop gracefully, as the SDK's server does) or SIGINT."""
    if creds is None and not insecure:
        raise ServeError(
            "no credentials were provided - did you provide credentials or use the insecure flag?"
        )
    probes = Probes()
    endpoint = http_server(metrics_address, probes) if metrics_address else None
    if endpoint is not None:
        threading.Thread(target=endpoint.serve_forever, name="metrics", daemon=True).start()
    try:
        asyncio.run(_serve(runner, address, creds, insecure, options, probes))
    finally:
        if endpoint is not None:
            endpoint.shutdown()
            endpoint.server_close()


async def _serve(runner, address, creds, insecure, options, probes: Probes) -> None:
    server = grpc.aio.server(options=options, interceptors=[GrpcMetrics()])
    server.add_generic_rpc_handlers([RunFunctionHandler(runner)])
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
    try:
        # --insecure wins over certificates (the SDK's flag says they are then ignored).
        if insecure:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, creds)
    except RuntimeError as err:
        raise ServeError(f"--address {address!r}: {err}") from err

    async def stop() -> None:
        probes.ready.clear()  # no new calls from here on: take the pod out of rotation
        await health_service.enter_graceful_shutdown()
        await server.stop(grace=SHUTDOWN_GRACE_PERIOD_SECONDS)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(stop()))
    await server.start()
    for service in ("", *RUN_FUNCTION_SERVICES):
        await health_service.set(service, health_pb2.HealthCheckResponse.SERVING)
    probes.ready.set()
    try:
        await server.wait_for_termination()
    finally:
        probes.ready.clear()
        with contextlib.suppress(Exception):
            await server.stop(grace=SHUTDOWN_GRACE_PERIOD_SECONDS)
