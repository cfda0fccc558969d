"""`tcp-access`: the operator's command line. Thin: parsing, exit codes, printing.

Exit codes: 0 done, 1 unexpected error, 2 bad usage, bad figures or cluster trouble (no
kubeconfig, API unreachable or refusing), 3 the pool does not exist.
"""

import datetime
import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable

import click

from function.operator import assignments as assigning
from function.operator import plan as planner
from function.operator import report as reporting
from function.operator import snapshot as snapshots
from function.operator.kube import LEASE, OBJECT, KubeError, connect, read_pool

EXIT_INVALID = 2


def _fail(message: str, code: int) -> None:
    click.echo(f"tcp-access: {message}", err=True)
    sys.exit(code)


def _guarded(command: Callable) -> Callable:
    """One line on stderr and a meaningful exit code instead of a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KubeError as err:
            _fail(err.message, err.exit_code)
        except planner.PlanError as err:
            _fail("invalid figures: " + "; ".join(err.problems), EXIT_INVALID)
        except Exception as err:
            if os.environ.get("TCP_ACCESS_DEBUG"):
                traceback.print_exc()
            _fail(
                f"unexpected error: {type(err).__name__}: {err} "
                "(set TCP_ACCESS_DEBUG=1 for the traceback)",
                1,
            )

    return run


def _cluster_options(command: Callable) -> Callable:
    options = [
        click.option(
            "--pool", "-p", required=True, help="Pool name (label tcp.fn.servala.io/pool)."
        ),
        click.option(
            "--namespace", "-n", required=True, help="Namespace of the shard Gateways and claims."
        ),
        click.option(
            "--wrapped",
            is_flag=True,
            help="Claims are provider-kubernetes Objects (the step's `wrap`, Crossplane v1.x).",
        ),
        click.option(
            "--kubeconfig",
            type=click.Path(dir_okay=False),
            help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).",
        ),
        click.option("--context", help="Kubeconfig context (default: the current one)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Inspect and plan the TCP gateway pools of function-tcp-access."""
    # urllib3 logs each retry as a warning; the CLI reports the final failure itself.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


@cli.command()
@_cluster_options
@_guarded
def snapshot(pool, namespace, wrapped, kubeconfig, context) -> None:
    """Print the pool's shard Gateways and claims as a YAML stream.

    The objects the function's lookups would return, without server-only metadata: an
    input for `crossplane render --required-resources` (or `--extra-resources` on v1.x).
    With --wrapped, the claims are every provider-kubernetes Object labelled with the pool.
    """
    kube = connect(kubeconfig, context)
    try:
        objects = read_pool(kube, pool, namespace, wrapped=wrapped)
    finally:
        kube.close()
    _warn_missing(objects.missing_kinds)
    click.echo(snapshots.render(objects.gateways, objects.claims), nl=False)


@cli.command()
@_cluster_options
@click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--assignments",
    is_flag=True,
    help="List every port with its tenant instead: XR, namespace, claim age, listener state.",
)
@_guarded
def report(pool, namespace, wrapped, kubeconfig, context, output, assignments) -> None:
    """Print the pool's shards, utilisation, NodePorts and drift.

    Drift: ports claimed but listened on by no ListenerSet/XListenerSet attached to the
    claim's shard Gateway (normal for a moment while a tenant is Claiming), ports listened
    on but not claimed, and ports more than one listener of a shard uses.

    With --assignments: port -> tenant, per shard. The tenant is the XR controlling the
    port's claim (or, for a Namespaced XR, its listener set); the listener state is what
    the Gateway reports of the listener set on that port.
    """
    kube = connect(kubeconfig, context)
    try:
        objects = read_pool(kube, pool, namespace, wrapped=wrapped, listeners=True)
    finally:
        kube.close()
    if assignments:
        now = datetime.datetime.now(datetime.UTC)
        rows = assigning.build(
            namespace, objects.gateways, objects.claims, objects.listener_sets, now
        )
        render = assigning.render_json if output == "json" else assigning.render_table
        _warn_missing(objects.missing_kinds)
        click.echo(render(pool, namespace, rows), nl=False)
        return
    result = reporting.build(
        pool,
        namespace,
        objects.gateways,
        objects.claims,
        objects.listener_sets,
        claim_kind=(OBJECT if wrapped else LEASE).kind,
        missing_kinds=objects.missing_kinds,
        now=datetime.datetime.now(datetime.UTC),
    )
    if output == "json":
        click.echo(reporting.render_json(result), nl=False)
    else:
        click.echo(reporting.render_table(result), nl=False)


@cli.command()
@click.option("--tenants", type=click.IntRange(min=0), required=True, help="Tenants to place.")
@click.option(
    "--provider",
    type=click.Choice(["exoscale", "cloudscale", "custom"]),
    required=True,
    help="Load balancer provider: exoscale (10 listeners per IP), cloudscale (100), custom.",
)
@click.option("--capacity", type=int, help="Listeners per shard, the Gateway's own included.")
@click.option("--headroom", type=int, help="Free tenant slots the pool keeps (default 5).")
@click.option("--min-shards", type=int, help="Fewest shards (default 1).")
@click.option("--max-shards", type=int, help="Most shards (default 50).")
@click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@_guarded
def plan(tenants, provider, capacity, headroom, min_shards, max_shards, output) -> None:
    """How many shards, public IPs and NodePorts --tenants tenants need.

    Runs the function's own pool step and tenant allocation in memory: tenants are added
    one by one, and the pool grows as it would in production.
    """
    result = planner.plan(tenants, provider, capacity, headroom, min_shards, max_shards)
    if output == "json":
        click.echo(json.dumps(planner.to_dict(result), indent=2))
    else:
        click.echo(planner.render_text(result), nl=False)


def _warn_missing(kinds: list[str]) -> None:
    for kind in kinds:
        click.echo(f"tcp-access: warning: the cluster does not serve {kind}", err=True)
