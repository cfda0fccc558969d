"""The `function` command: the SDK's standard gRPC server flags, serving FunctionRunner."""

import click
from crossplane.function import cli as sdkcli

from function import fn


@click.command()
@sdkcli.standard_options
def cli(**kwargs) -> None:
    """Run function-tcp-access as a Crossplane composition function (gRPC)."""
    sdkcli.run(fn.FunctionRunner(), **kwargs)


if __name__ == "__main__":
    cli()
