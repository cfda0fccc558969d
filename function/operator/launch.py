"""The `tcp-access` and `kubectl-tcp_access` commands: the operator CLI, if its Kubernetes
client is installed (extra `[cli]`; the function's own install leaves it out)."""

import sys

MISSING_CLIENT = (
    "tcp-access: the Kubernetes client is not installed; install the CLI with its extra: "
    "pip install 'function-tcp-access[cli]'"
)
EXIT_MISSING = 2


def main() -> None:
    try:
        from function.operator.cli import cli
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] not in ("kubernetes", "urllib3"):
            raise
        print(f"{MISSING_CLIENT} ({err})", file=sys.stderr)
        sys.exit(EXIT_MISSING)
    cli()


if __name__ == "__main__":
    main()
