"""How the simulated Crossplane reaches a function: in process, or over real gRPC.

Both transports expose ``RunFunction(req) -> rsp`` (synchronous) to the engine and turn
any failure of the call itself (an exception escaping the function, a gRPC status) into
:class:`FunctionCallError`. In a real cluster such a failure makes Crossplane report
``cannot run Composition pipeline step`` and change nothing; a correct function never
causes one (it reports problems as Fatal results), so tests assert it never happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Protocol

import grpc
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1

# The SDK server and Crossplane's client both keep gRPC's default 4 MiB receive limit.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 30.0


class FunctionCallError(Exception):
    """The call to the function failed (gRPC error or an exception inside RunFunction)."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class FunctionRunner(Protocol):
    """What the SDK's ``FunctionRunnerServiceServicer`` subclasses look like."""

    async def RunFunction(
        self, req: fnv1.RunFunctionRequest, context: Any
    ) -> fnv1.RunFunctionResponse: ...


class Transport:
    """Base class of the engine-facing transports."""

    def RunFunction(self, req: fnv1.RunFunctionRequest) -> fnv1.RunFunctionResponse:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; idempotent."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Context:
    """The few ServicerContext methods a function might touch in process."""

    def invocation_metadata(self) -> tuple:
        return ()

    def peer(self) -> str:
        return "inprocess"


_local = threading.local()


def _shared_loop() -> asyncio.AbstractEventLoop:
    """One persistent event loop per thread, like the SDK's ``runtime.serve``."""
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


class InProcess(Transport):
    """Awaits ``runner.RunFunction`` on one persistent event loop (shared per thread).

    The request object is handed over as is (the engine passes a private copy per call,
    and records that copy: a function that mutates its request changes the record), so
    this costs no serialisation. The 4 MiB message limits are still enforced, with the
    RESOURCE_EXHAUSTED code gRPC would use. Use :class:`Grpc` to exercise the wire.
    """

    def __init__(self, runner: FunctionRunner) -> None:
        self.runner = runner
        self._context = _Context()

    def RunFunction(self, req: fnv1.RunFunctionRequest) -> fnv1.RunFunctionResponse:
        _check_size("request", req)
        try:
            rsp = _shared_loop().run_until_complete(self.runner.RunFunction(req, self._context))
        except Exception as e:  # an exception the gRPC server would turn into UNKNOWN
            raise FunctionCallError(f"{type(e).__name__}: {e}") from e
        if not isinstance(rsp, fnv1.RunFunctionResponse):
            raise FunctionCallError(f"RunFunction returned {type(rsp).__name__}")
        _check_size("response", rsp)
        return rsp


def _check_size(what: str, msg: Any) -> None:
    size = msg.ByteSize()
    if size > MAX_MESSAGE_BYTES:
        raise FunctionCallError(
            f"{what} of {size} bytes is larger than the {MAX_MESSAGE_BYTES} byte limit",
            "RESOURCE_EXHAUSTED",
        )


class Grpc(Transport):
    """Serves the runner with a real ``grpc.aio`` server on ``127.0.0.1:<free port>``.

    The server runs on its own event loop in a background thread (as the SDK's
    ``runtime.serve`` runs one asyncio loop); calls go through a real client stub, so
    every request and response is serialised, size-limited and parsed like in a cluster.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, runner: FunctionRunner, *, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        self.runner = runner
        self.timeout = timeout
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._startup_error: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._serve, name="fn-grpc", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._startup_error is not None:
            raise FunctionCallError(f"cannot start gRPC server: {self._startup_error}")
        if not self.port:
            raise FunctionCallError("gRPC server did not start")
        # Crossplane's client: default 4 MiB receive limit, unlimited send (the
        # function's server refuses requests over its own 4 MiB receive limit).
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=options)
        self._stub = grpcv1.FunctionRunnerServiceStub(self._channel)
        self._closed = False

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as e:
            self._startup_error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        grpcv1.add_FunctionRunnerServiceServicer_to_server(self.runner, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server

    def RunFunction(self, req: fnv1.RunFunctionRequest) -> fnv1.RunFunctionResponse:
        try:
            return self._stub.RunFunction(req, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code().name if hasattr(e, "code") and e.code() else "UNKNOWN"
            details = e.details() if hasattr(e, "details") else str(e)
            raise FunctionCallError(details or str(e), code) from e

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._channel.close()
        if self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.stop(grace=None), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


def as_transport(runner: Any) -> tuple[Transport, bool]:
    """Wrap a raw SDK-style runner in :class:`InProcess`; pass transports through.

    Returns the transport and whether the caller now owns it (and must close it).
    """
    if isinstance(runner, Transport):
        return runner, False
    if hasattr(runner, "RunFunction"):
        return InProcess(runner), True
    raise TypeError(f"{runner!r} has no RunFunction")
