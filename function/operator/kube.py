"""Reading a pool out of a live cluster with the official `kubernetes` client.

Everything leaves this module as plain dicts with `apiVersion` and `kind` set, so the rest of
the CLI (snapshot, report) never sees the client. Every failure becomes a `KubeError` with
one line a person can act on and the exit code the CLI uses.
"""

import json
import os
import re
from dataclasses import dataclass

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from function import labels
from function.claims import LEASE_API, OBJECT_API

EXIT_CLUSTER = 2  # the cluster could not be reached or read, or no kubeconfig
EXIT_NOT_FOUND = 3  # the pool does not exist

PAGE_SIZE = 500  # items per list call: bounded responses on pools with thousands of claims
TIMEOUT = (10, 60)  # (connect, read) seconds: an unreachable API must not hang the CLI
RETRIES = 1


class KubeError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_CLUSTER) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


GATEWAY = Kind("gateway.networking.k8s.io/v1", "Gateway", "gateways", True)
LEASE = Kind(LEASE_API, "Lease", "leases", True)
OBJECT = Kind(OBJECT_API, "Object", "objects", False)
LISTENER_SET = Kind("gateway.networking.k8s.io/v1", "ListenerSet", "listenersets", True)
X_LISTENER_SET = Kind("gateway.networking.x-k8s.io/v1alpha1", "XListenerSet", "xlistenersets", True)
LISTENER_KINDS = (LISTENER_SET, X_LISTENER_SET)


def label_selector(match: dict[str, str] | None) -> str | None:
    return ",".join(f"{k}={v}" for k, v in match.items()) if match else None


# -- configuration ---------------------------------------------------------------------------


def connect(kubeconfig: str | None = None, context: str | None = None) -> "Kube":
    """A client from --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else in-cluster."""
    configuration = client.Configuration()
    _load_config(configuration, kubeconfig, context)
    configuration.retries = RETRIES
    return Kube(client.ApiClient(configuration))


def _load_config(configuration, kubeconfig: str | None, context: str | None) -> None:
    # $KUBECONFIG is read here, not by the client: it reads it once at import time.
    path = kubeconfig or os.environ.get("KUBECONFIG") or _default_kubeconfig()
    if path:
        files = [os.path.expanduser(p) for p in path.split(os.pathsep) if p]
        if not any(os.path.isfile(f) for f in files):
            raise KubeError(f"kubeconfig {path} not found")
        try:
            config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,  # a read-only tool never rewrites the user's kubeconfig
            )
        except Exception as err:  # the loaders raise anything from YAML to exec-plugin errors
            raise KubeError(f"cannot load kubeconfig {path}: {_one_line(err)}") from None
        return
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        if context:
            raise KubeError(f"--context {context} needs a kubeconfig; none was found")
        try:
            config.load_incluster_config(client_configuration=configuration)
        except Exception as err:
            raise KubeError(f"cannot load the in-cluster config: {_one_line(err)}") from None
        return
    raise KubeError(
        "no kubeconfig: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, "
        "or run inside a cluster"
    )


def _default_kubeconfig() -> str | None:
    path = os.path.expanduser("~/.kube/config")
    return path if os.path.isfile(path) else None


# -- listing ---------------------------------------------------------------------------------


class Kube:
    """List calls through the official client, answered as plain dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.host = api.configuration.host
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)

    def close(self) -> None:
        self.api.close()

    def list(self, kind: Kind, namespace: str | None = None, match: dict | None = None):
        """Every object of `kind` labelled `match` (all namespaces when `namespace` is None),
        following `continue` tokens; None when the cluster does not serve the kind (404: its
        CRD is not installed)."""
        items: list[dict] = []
        token: str | None = None
        while True:
            try:
                page = self._page(kind, namespace, label_selector(match), token)
            except ApiException as err:
                if err.status == 404:
                    return None
                raise self._refused(kind, err) from None
            except (urllib3.exceptions.HTTPError, OSError) as err:
                message = f"cannot reach the Kubernetes API at {self.host}: {_reason(err)}"
                raise KubeError(message) from None
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return [_typed(kind, item) for item in items]

    def _page(self, kind: Kind, namespace: str | None, selector: str | None, token: str | None):
        options = {
            "label_selector": selector,
            "limit": PAGE_SIZE,
            "_continue": token,
            "_request_timeout": TIMEOUT,
        }
        if kind == LEASE:
            if namespace:
                page = self.coordination.list_namespaced_lease(namespace, **options)
            else:
                page = self.coordination.list_lease_for_all_namespaces(**options)
            # Typed models to the JSON the API sent (camelCase keys, timestamps as strings).
            return self.api.sanitize_for_serialization(page)
        if namespace and kind.namespaced:
            return self.custom.list_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, **options
            )
        if kind.namespaced:
            return self.custom.list_custom_object_for_all_namespaces(
                kind.group, kind.version, kind.plural, **options
            )
        return self.custom.list_cluster_custom_object(
            kind.group, kind.version, kind.plural, **options
        )

    def _refused(self, kind: Kind, err: ApiException) -> KubeError:
        what = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
        detail = _status_message(err)
        return KubeError(
            f"the Kubernetes API at {self.host} refused to list {what}: "
            f"{err.status} {err.reason}" + (f": {detail}" if detail else "")
        )


def _typed(kind: Kind, item: dict) -> dict:
    # List responses omit apiVersion and kind on the items of built-in kinds.
    rest = {k: v for k, v in item.items() if k not in ("apiVersion", "kind")}
    return {"apiVersion": kind.api_version, "kind": kind.kind, **rest}


def _status_message(err: ApiException) -> str:
    try:
        body = json.loads(err.body or "")
    except ValueError:
        return _one_line(err.body or "")
    return _one_line(body.get("message", "")) if isinstance(body, dict) else ""


_OBJECT_REPR = re.compile(r"<[^>]*>: |\w+Connection\([^)]*\): ")


def _reason(err: Exception) -> str:
    """The root cause, without urllib3's connection-object prefixes."""
    cause = getattr(err, "reason", None) or err
    return _OBJECT_REPR.sub("", _one_line(cause)) or type(cause).__name__


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


# -- the pool --------------------------------------------------------------------------------


@dataclass
class PoolObjects:
    gateways: list[dict]
    claims: list[dict]  # Leases, or with wrapped every Object labelled with the pool
    listener_sets: list[dict]  # of every namespace, attached or not
    missing_kinds: list[str]  # kinds the cluster does not serve


def read_pool(
    kube: Kube, pool: str, namespace: str, *, wrapped: bool, listeners: bool = False
) -> PoolObjects:
    """The pool's shard Gateways and claims (and ListenerSets); KubeError when it has none."""
    match = {labels.POOL: pool}
    missing: list[str] = []
    gateways = _listed(kube.list(GATEWAY, namespace, match), GATEWAY, missing)
    claim_kind = OBJECT if wrapped else LEASE
    claims = _listed(
        kube.list(claim_kind, None if wrapped else namespace, match), claim_kind, missing
    )
    if not gateways and not claims:
        raise KubeError(
            f"pool {pool} not found in namespace {namespace}: no Gateway or {claim_kind.kind} "
            f"labelled {labels.POOL}={pool}",
            EXIT_NOT_FOUND,
        )
    listener_sets: list[dict] = []
    if listeners:
        for kind in LISTENER_KINDS:
            listener_sets += _listed(kube.list(kind), kind, missing)
    return PoolObjects(gateways, claims, listener_sets, missing)


def _listed(found: list[dict] | None, kind: Kind, missing: list[str]) -> list[dict]:
    if found is None:
        missing.append(f"{kind.kind}.{kind.group}")
        return []
    return found
