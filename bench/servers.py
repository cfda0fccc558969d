"""Function servers in their own processes, and 8 concurrent gRPC clients against them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.common import ROOT

METHOD = "/apiextensions.fn.proto.v1.FunctionRunnerService/RunFunction"
MODULES = {"real": "function.main", "uncached": "function.main", "noop": "bench.noop"}
# "uncached" is the real function with its response cache off: every call is computed.
ENVIRONMENT = {"uncached": {"TCP_ACCESS_RESPONSE_CACHE": "0"}}
CLIENT_MAX_RECEIVE = 4 * 1024 * 1024  # Crossplane's client keeps gRPC's default


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """One function server process (`python -m function.main` or `bench.noop`)."""

    kind: str
    process: subprocess.Popen
    address: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self, field: str) -> int:
        """A /proc/<pid>/status figure in KiB (VmHWM: peak RSS, VmRSS: RSS now)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the SDK stops gracefully on SIGTERM
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.log.unlink()


def start(kind: str, *, max_recv_mb: int | None = None) -> Server:
    port = free_port()
    address = f"127.0.0.1:{port}"
    # No metrics endpoint: several servers run at once, and :8080 is the default of each.
    command = [sys.executable, "-m", MODULES[kind], "--insecure", "--address", address]
    command += ["--metrics-address="]
    if max_recv_mb is not None:
        command += ["--max-recv-message-size", str(max_recv_mb)]
    log = Path(tempfile.mkstemp(prefix=f"bench-{kind}-", suffix=".log")[1])
    with log.open("w") as out:
        env = {**os.environ, **ENVIRONMENT.get(kind, {})}
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(kind, process, address, log)
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(address) as channel:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} server exited: {log.read_text()[-2000:]}")
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                break
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(f"{kind} server did not start") from None
    return server


@dataclass
class Load:
    calls: int
    seconds: float
    errors: int
    server_cpu: float  # CPU seconds the server used while measured

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def server_busy(self) -> float:
        return self.server_cpu / self.seconds


async def _drive(
    server: Server, payloads: list[bytes], *, clients: int, warmup: float, seconds: float
) -> Load:
    """`clients` concurrent callers, each on its own channel (connection), sending the
    payloads round-robin as raw bytes (no client-side protobuf work). Counts the calls
    that complete within `seconds` after `warmup`."""
    options = [
        ("grpc.max_receive_message_length", CLIENT_MAX_RECEIVE),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    channels = [grpc.aio.insecure_channel(server.address, options=options) for _ in range(clients)]
    state = {"measuring": False, "stop": False, "calls": 0, "errors": 0}

    async def caller(i: int) -> None:
        method = channels[i].unary_unary(METHOD)
        k = i
        while not state["stop"]:
            try:
                await method(payloads[k % len(payloads)], timeout=60)
                if state["measuring"]:
                    state["calls"] += 1
            except grpc.aio.AioRpcError:
                if state["measuring"]:
                    state["errors"] += 1
            k += 1

    tasks = [asyncio.create_task(caller(i)) for i in range(clients)]
    await asyncio.sleep(warmup)
    cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    state["measuring"] = True
    await asyncio.sleep(seconds)
    state["measuring"] = False
    elapsed = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    calls, errors = state["calls"], state["errors"]
    state["stop"] = True
    await asyncio.gather(*tasks)
    for channel in channels:
        await channel.close()
    return Load(calls, elapsed, errors, cpu)


def drive(
    server: Server,
    payloads: list[bytes],
    *,
    clients: int = 8,
    warmup: float = 1.0,
    seconds: float = 5.0,
) -> Load:
    return asyncio.run(_drive(server, payloads, clients=clients, warmup=warmup, seconds=seconds))


async def _send_all(address: str, payloads: list[bytes], clients: int) -> int:
    """Send every payload once, `clients` at a time; return the number of errors."""
    options = [
        ("grpc.max_receive_message_length", CLIENT_MAX_RECEIVE),
        ("grpc.max_send_message_length", -1),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(clients)]
    errors = 0
    queue = list(enumerate(payloads))

    async def caller(i: int) -> None:
        nonlocal errors
        method = channels[i].unary_unary(METHOD)
        while queue:
            _, payload = queue.pop()
            try:
                await method(payload, timeout=120)
            except grpc.aio.AioRpcError:
                errors += 1

    await asyncio.gather(*(caller(i) for i in range(clients)))
    for channel in channels:
        await channel.close()
    return errors


def send_all(server: Server, payloads: list[bytes], *, clients: int = 8) -> int:
    return asyncio.run(_send_all(server.address, payloads, clients))
