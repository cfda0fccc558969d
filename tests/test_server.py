"""The function process as Kubernetes and Prometheus see it: `python -m function.main`
started for real, called over gRPC, probed and scraped over HTTP."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from crossplane.function.proto.v1beta1 import run_function_pb2 as fnv1beta1
from crossplane.function.proto.v1beta1 import run_function_pb2_grpc as grpcv1beta1
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from function import pool
from tests import test_fn, test_pool
from tests.factories import claim, gateway

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Function:
    """One server process; started once for the module (starting one takes seconds)."""

    def __init__(self, log: Path):
        self.address = f"127.0.0.1:{free_port()}"
        self.http = f"http://127.0.0.1:{free_port()}"
        self.log = log
        command = [sys.executable, "-m", "function.main", "--insecure", "--debug"]
        command += ["--address", self.address, "--metrics-address", self.http[len("http://") :]]
        with log.open("w") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(self.address)
        deadline = time.monotonic() + 60
        while self.ready() != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the function did not start:\n{self.output()}")
            time.sleep(0.1)

    def ready(self) -> int | None:
        try:
            return get(self.http + "/readyz")[0]
        except OSError:
            return None

    def run(self, req: fnv1.RunFunctionRequest) -> fnv1.RunFunctionResponse:
        return grpcv1.FunctionRunnerServiceStub(self.channel).RunFunction(req, timeout=30)

    def scrape(self) -> dict[tuple[str, tuple], float]:
        """Every sample of /metrics: (name, sorted labels) -> value."""
        status, text = get(self.http + "/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def grown(self, before: dict, name: str, expected: float, **labels) -> float:
        """How much a sample grew since `before`. A call's status may reach the client just
        before the server counts it: wait a moment for the count to reach `expected`."""
        deadline = time.monotonic() + 5
        while True:
            grown = value(self.scrape(), name, **labels) - value(before, name, **labels)
            if grown >= expected or time.monotonic() > deadline:
                return grown
            time.sleep(0.05)

    def output(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text())  # debug logs are coloured

    def stop(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def function(tmp_path_factory):
    server = Function(tmp_path_factory.mktemp("function") / "function.log")
    yield server
    server.stop()


def with_lookups(req: fnv1.RunFunctionRequest, lookups: dict) -> fnv1.RunFunctionRequest:
    for name, objects in lookups.items():
        req.required_resources[name].SetInParent()
        for obj in objects:
            req.required_resources[name].items.add().resource.update(obj)
    return req


def new_tenant(name: str) -> fnv1.RunFunctionRequest:
    """A tenant that finds a free port on shard 1 and claims it."""
    xr = {**test_fn.XR, "metadata": {"name": name, "uid": f"u-{name}"}}
    empty = ("tcp-claims-own", "tcp-claims-shard-1", "tcp-placed-shard-1", "tcp-tickets")
    lookups = {"tcp-gateways-accepting": [gateway(1)], **{n: [] for n in empty}}
    return with_lookups(test_fn.request(xr=xr), lookups)


def pool_request() -> fnv1.RunFunctionRequest:
    req = fnv1.RunFunctionRequest(
        input=resource.dict_to_struct(
            {"apiVersion": "tcp.fn.servala.io/v1alpha1", "kind": "GatewayPool", **test_pool.INPUT}
        )
    )
    req.observed.composite.resource.update(test_pool.XR)
    return with_lookups(req, {pool.CLAIMS: [], pool.LISTENER_SETS: [], pool.TICKETS: []})


def nested(depth: int) -> dict:
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


RUN_FUNCTION = {
    "grpc_type": "unary",
    "grpc_service": "apiextensions.fn.proto.v1.FunctionRunnerService",
    "grpc_method": "RunFunction",
}


def test_healthz_and_readyz_answer_while_the_grpc_server_serves(function):
    assert get(function.http + "/healthz") == (200, "ok\n")
    assert get(function.http + "/readyz") == (200, "ok\n")
    assert get(function.http + "/nothing")[0] == 404


def test_the_grpc_health_service_reports_serving(function):
    stub = health_pb2_grpc.HealthStub(function.channel)
    for service in ("", "apiextensions.fn.proto.v1.FunctionRunnerService"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def settled_tenant() -> fnv1.RunFunctionRequest:
    """A tenant that holds its claim: the same request every reconcile, cached."""
    req = test_fn.request(observed={"tcp-claim-10003": claim(10003, holder="u-db")})
    return with_lookups(req, {"tcp-gateway-shard-1": [gateway(1)]})


def test_metrics_count_the_outcomes_of_tenant_and_pool_runs(function):
    before = function.scrape()
    claimed = function.run(new_tenant("db-metrics"))
    assert [c.reason for c in claimed.conditions] == ["Claiming"]
    settled = [function.run(settled_tenant()) for _ in range(2)]  # the second from the cache
    assert [c.reason for c in settled[1].conditions] == ["Programming"]
    sized = function.run(pool_request())
    [capacity] = [c.reason for c in sized.conditions if c.type == "PoolCapacity"]
    after = function.scrape()

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    runs = "tcp_access_step_runs_total"
    assert grew(runs, step="tenant", pool="postgresql", outcome="Claiming") == 1
    assert grew(runs, step="tenant", pool="postgresql", outcome="Programming") == 2
    assert grew(runs, step="pool", pool="postgresql", outcome=capacity) == 1
    assert grew("tcp_access_claims_total", pool="postgresql", result="claimed") == 1
    assert grew("tcp_access_response_cache_requests_total", result="hit") == 1
    assert grew("tcp_access_response_cache_requests_total", result="miss") == 3
    assert grew("tcp_access_step_seconds_count", step="tenant") == 3
    assert grew("tcp_access_request_bytes_count", step="pool") == 1
    assert value(after, "tcp_access_response_cache_entries") >= 1
    assert value(after, "tcp_access_response_cache_bytes") > 0
    assert grew("grpc_server_started_total", **RUN_FUNCTION) == 4
    assert grew("grpc_server_handled_total", **RUN_FUNCTION, grpc_code="OK") == 4
    assert grew("grpc_server_handling_seconds_count", **RUN_FUNCTION) == 4
    # One debug line per step run, with what an operator greps for.
    log = function.output()
    assert "step run" in log and "xr=db-metrics" in log and "outcome=Claiming" in log


def test_a_health_watch_the_client_cancels_is_counted_as_canceled(function):
    watch = {
        "grpc_type": "server_stream",
        "grpc_service": "grpc.health.v1.Health",
        "grpc_method": "Watch",
    }
    before = function.scrape()
    stream = health_pb2_grpc.HealthStub(function.channel).Watch(
        health_pb2.HealthCheckRequest(), timeout=30
    )
    assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    stream.cancel()
    canceled = function.grown(before, "grpc_server_handled_total", 1, **watch, grpc_code="Canceled")
    after = function.scrape()
    grown = {
        code: value(after, "grpc_server_handled_total", **watch, grpc_code=code)
        - value(before, "grpc_server_handled_total", **watch, grpc_code=code)
        for code in ("Unknown", "OK")
    }
    grown["Canceled"] = canceled
    assert grown == {"Canceled": 1, "Unknown": 0, "OK": 0}


def test_a_fatal_input_is_counted_as_fatal(function):
    before = function.scrape()
    rsp = function.run(test_fn.request(input_={**test_fn.INPUT, "pool": "metrics-bad", "x": 1}))
    assert test_fn.fatal_messages(rsp)
    after = function.scrape()
    labels = {"step": "tenant", "pool": "metrics-bad", "outcome": "Fatal"}
    assert (
        value(after, "tcp_access_step_runs_total", **labels)
        - value(before, "tcp_access_step_runs_total", **labels)
        == 1
    )


def test_a_request_nested_too_deep_is_invalid_argument_naming_the_cause(function):
    req = test_fn.request(xr={**test_fn.XR, "spec": nested(40)})
    before = function.scrape()
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as raised:
            function.run(req)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nested deeper than protobuf's recursion limit" in raised.value.details()
    code = {**RUN_FUNCTION, "grpc_code": "InvalidArgument"}
    assert function.grown(before, "grpc_server_handled_total", 3, **code) == 3
    log = function.output()
    assert log.count("refused a request that cannot be decoded") == 1  # once, not per request
    assert "Traceback" not in log
    # The server goes on serving.
    assert function.run(new_tenant("db-after-deep")).conditions[0].reason == "Claiming"


def test_v1beta1_callers_are_served_too(function):
    req = fnv1beta1.RunFunctionRequest.FromString(new_tenant("db-beta").SerializeToString())
    rsp = grpcv1beta1.FunctionRunnerServiceStub(function.channel).RunFunction(req, timeout=30)
    assert [c.reason for c in rsp.conditions] == ["Claiming"]


def test_the_scrape_passes_promtool(function):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    function.run(new_tenant("db-promtool"))
    text = get(function.http + "/metrics")[1]
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_an_empty_metrics_address_turns_the_endpoint_off():
    port = free_port()
    command = [sys.executable, "-m", "function.main", "--insecure", "--metrics-address="]
    process = subprocess.Popen(
        [*command, "--address", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = health_pb2_grpc.HealthStub(channel)
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert listening_ports(process.pid) == {port}  # gRPC only, no :8080
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_metrics_port_listens_where_told(function):
    assert listening_ports(function.process.pid) == {
        int(function.address.rsplit(":", 1)[1]),
        int(function.http.rsplit(":", 1)[1]),
    }


def issue(directory: Path, name: str, ca: str | None) -> None:
    """An EC key and certificate `name`.crt/.key for localhost, signed by `ca` (else
    self-signed: the CA)."""
    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if ca is None:
        command = ["openssl", "req", "-x509", *ec, "-keyout", key, "-out", crt]
        subprocess.run(
            [*command, "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True
        )
        return
    csr = directory / f"{name}.csr"
    command = ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"]
    subprocess.run(command, check=True, capture_output=True)
    extensions = directory / f"{name}.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    command = ["openssl", "x509", "-req", "-in", csr, "-CA", directory / f"{ca}.crt"]
    command += ["-CAkey", directory / f"{ca}.key", "-CAcreateserial", "-out", crt, "-days", "1"]
    subprocess.run([*command, "-extfile", extensions], check=True, capture_output=True)


def test_with_certificates_it_serves_mtls_and_its_probes_stay_plain_http(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificates to serve with")
    issue(tmp_path, "ca", None)
    issue(tmp_path, "tls", "ca")
    issue(tmp_path, "client", "ca")
    port, http = free_port(), f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "function.main", "--address", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*command, "--metrics-address", http],
        cwd=ROOT,
        env={**os.environ, "TLS_SERVER_CERTS_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(tmp_path / "ca.crt").read_bytes(),
            private_key=(tmp_path / "client.key").read_bytes(),
            certificate_chain=(tmp_path / "client.crt").read_bytes(),
        )
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = grpcv1.FunctionRunnerServiceStub(channel)
            rsp = stub.RunFunction(new_tenant("db-tls"), timeout=30)
            assert [c.reason for c in rsp.conditions] == ["Claiming"]
        assert get(f"http://{http}/readyz") == (200, "ok\n")
        # Without a client certificate the function is not reachable.
        anonymous = grpc.ssl_channel_credentials(
            root_certificates=(tmp_path / "ca.crt").read_bytes()
        )
        with grpc.secure_channel(f"localhost:{port}", anonymous) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                grpcv1.FunctionRunnerServiceStub(channel).RunFunction(
                    new_tenant("db-tls"), timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        process.terminate()
        process.wait(timeout=15)
