"""The `function` command: the SDK's standard gRPC server flags, serving FunctionRunner, and
`--metrics-address` for metrics and probes (function/server.py)."""

import click
from crossplane.function import cli as sdkcli
from crossplane.function import logging, runtime

from function import fn, server


@click.command()
@sdkcli.standard_options
@click.option(
    "--metrics-address",
    default=server.DEFAULT_METRICS_ADDRESS,
    show_default=True,
    envvar="METRICS_ADDRESS",
    help="Address of the plain-HTTP endpoint for /metrics, /healthz and /readyz; "
    "empty turns it off.",
)
def cli(
    *,
    debug: bool,
    address: str,
    tls_certs_dir: str | None,
    insecure: bool,
    max_recv_message_size: int,
    max_send_message_size: int | None,
    metrics_address: str,
) -> None:
    """Run function-tcp-access as a Crossplane composition function (gRPC)."""
    logging.configure(level=logging.Level.DEBUG if debug else logging.Level.INFO)
    send = max_recv_message_size if max_send_message_size is None else max_send_message_size
    options = [
        ("grpc.max_receive_message_length", max_recv_message_size * 1024 * 1024),
        ("grpc.max_send_message_length", send * 1024 * 1024),
    ]
    try:
        server.serve(
            fn.FunctionRunner(log_runs=debug),
            address,
            creds=runtime.load_credentials(tls_certs_dir),
            insecure=insecure,
            options=options,
            metrics_address=metrics_address,
        )
    except server.ServeError as err:
        raise click.ClickException(str(err)) from err


if __name__ == "__main__":
    cli()
