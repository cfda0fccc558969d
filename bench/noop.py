"""A no-op composition function served exactly like function.main (function/server.py):
`python -m bench.noop --insecure --address 127.0.0.1:PORT`. It answers every request with
`response.to(req)` (the request's desired state and context, copied) and nothing else."""

import click
from crossplane.function import cli as sdkcli
from crossplane.function import response, runtime
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1

from function import server


class NoopRunner(grpcv1.FunctionRunnerServiceServicer):
    async def RunFunction(self, req: fnv1.RunFunctionRequest, _=None) -> fnv1.RunFunctionResponse:
        return response.to(req)


@click.command()
@sdkcli.standard_options
@click.option("--metrics-address", default="")
def cli(*, address, tls_certs_dir, insecure, metrics_address, max_recv_message_size, **_) -> None:
    """Serve the no-op function."""
    size = max_recv_message_size * 1024 * 1024
    server.serve(
        NoopRunner(),
        address,
        creds=runtime.load_credentials(tls_certs_dir),
        insecure=insecure,
        options=[("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)],
        metrics_address=metrics_address,
    )


if __name__ == "__main__":
    cli()
