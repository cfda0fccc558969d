"""A no-op composition function on the same SDK, served exactly like function.main:
`python -m bench.noop --insecure --address 127.0.0.1:PORT`. It answers every request with
`response.to(req)` (the request's desired state and context, copied) and nothing else."""

import click
from crossplane.function import cli as sdkcli
from crossplane.function import response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1


class NoopRunner(grpcv1.FunctionRunnerServiceServicer):
    async def RunFunction(self, req: fnv1.RunFunctionRequest, _=None) -> fnv1.RunFunctionResponse:
        return response.to(req)


@click.command()
@sdkcli.standard_options
def cli(**kwargs) -> None:
    """Serve the no-op function."""
    sdkcli.run(NoopRunner(), **kwargs)


if __name__ == "__main__":
    cli()
