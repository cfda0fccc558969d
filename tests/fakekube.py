"""A tiny Kubernetes API server over HTTP, for driving the real `kubernetes` client in tests.

It serves list and get for a fixed table of resources out of any store with the read API of
the simulator's cluster (`tests/simulator/cluster.py`):

    list(api_version, kind, namespace=None, labels=None) -> list[dict]

What it reproduces: the URL layout (`/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>]`,
`/api/v1/...` for the core group), `<Kind>List` responses whose items carry no apiVersion and
kind (as the real server sends built-in kinds), equality `labelSelector`s, `limit`/`continue`
paging (a server may return fewer items than the limit; `page_size` forces that), server
metadata such as `managedFields`, and 404 `Status` objects for kinds it does not serve (a CRD
that is not installed). Everything else (watch, writes, auth) is out of scope.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import yaml


class Store(Protocol):
    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[dict]: ...


@dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool


GATEWAYS = Resource("gateway.networking.k8s.io/v1", "Gateway", "gateways", True)
LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases", True)
OBJECTS = Resource("kubernetes.crossplane.io/v1alpha2", "Object", "objects", False)
LISTENER_SETS = Resource("gateway.networking.k8s.io/v1", "ListenerSet", "listenersets", True)
X_LISTENER_SETS = Resource(
    "gateway.networking.x-k8s.io/v1alpha1", "XListenerSet", "xlistenersets", True
)
RESOURCES = (GATEWAYS, LEASES, OBJECTS, LISTENER_SETS, X_LISTENER_SETS)

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?/?$"
)
_SELECTOR_TERM = re.compile(r"^\s*([^=!,\s]+)\s*==?\s*([^=!,\s]*)\s*$")


class BadRequest(ValueError):
    pass


def parse_selector(text: str) -> dict[str, str]:
    """An equality label selector `k=v,k2==v2`; set-based terms are not supported."""
    selector = {}
    for term in filter(None, text.split(",")):
        match = _SELECTOR_TERM.match(term)
        if not match:
            raise BadRequest(f"unable to parse requirement: {term!r}")
        selector[match.group(1)] = match.group(2)
    return selector


def status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code,
    }


def _as_served(obj: dict) -> dict:
    """An item as a list response carries it: no apiVersion/kind, server metadata added."""
    item = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    metadata = dict(item.get("metadata") or {})
    metadata.setdefault("resourceVersion", "1")
    metadata.setdefault("uid", f"uid-{metadata.get('namespace', '')}-{metadata.get('name')}")
    metadata["managedFields"] = [
        {"manager": "fakekube", "operation": "Apply", "apiVersion": obj.get("apiVersion")}
    ]
    item["metadata"] = metadata
    return item


class FakeKube:
    """Serve `store` on 127.0.0.1 (a free port) while used as a context manager."""

    def __init__(
        self,
        store: Store,
        resources: tuple[Resource, ...] = RESOURCES,
        *,
        page_size: int | None = None,
        forbidden: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.resources = resources
        self.page_size = page_size
        self.forbidden = forbidden  # plurals the test user may not list (403)
        self.requests: list[str] = []  # path?query of every request, in order
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeKube:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, and tests start many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first (with FakeKube(...) as api)"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: Path, **contexts: str) -> Path:
        """A kubeconfig whose current context `fake` points here, plus `contexts` name->URL."""
        return write_kubeconfig(path, {"fake": self.url, **contexts})

    # -- requests -------------------------------------------------------------------------

    def handle(self, target: str) -> tuple[int, dict]:
        self.requests.append(target)
        url = urlsplit(target)
        match = _PATH.match(url.path)
        resource = self._resource(match)
        if resource is None or match is None:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        if resource.plural in self.forbidden:
            group = resource.api_version.rpartition("/")[0]
            return 403, status(
                403,
                "Forbidden",
                f'{resource.plural}.{group} is forbidden: User "tester" cannot list resource '
                f'"{resource.plural}" in API group "{group}"',
            )
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            selector = parse_selector(query.get("labelSelector", ""))
        except BadRequest as err:
            return 400, status(400, "BadRequest", str(err))
        namespace = match.group("namespace")
        items = self.store.list(resource.api_version, resource.kind, namespace, selector)
        if match.group("name"):
            return self._get(resource, items, match.group("name"))
        return 200, self._page(resource, items, query)

    def _resource(self, match: re.Match | None) -> Resource | None:
        if match is None:
            return None
        api_version = match.group("core") or f"{match.group('group')}/{match.group('version')}"
        for resource in self.resources:
            if resource.api_version == api_version and resource.plural == match.group("plural"):
                # A cluster-scoped kind has no namespaced URL.
                if match.group("namespace") and not resource.namespaced:
                    return None
                return resource
        return None

    def _get(self, resource: Resource, items: list[dict], name: str) -> tuple[int, dict]:
        for obj in items:
            if (obj.get("metadata") or {}).get("name") == name:
                return 200, {**_as_served(obj), "apiVersion": resource.api_version,
                             "kind": resource.kind}  # fmt: skip
        group = resource.api_version.rpartition("/")[0]
        return 404, status(404, "NotFound", f'{resource.plural}.{group} "{name}" not found')

    def _page(self, resource: Resource, items: list[dict], query: dict[str, str]) -> dict:
        start = int(query.get("continue") or 0)
        limits = [int(query["limit"])] if query.get("limit") else []
        if self.page_size:
            limits.append(self.page_size)
        end = start + min(limits) if limits else len(items)
        metadata: dict[str, Any] = {"resourceVersion": "1"}
        if end < len(items):
            metadata["continue"] = str(end)
        return {
            "apiVersion": resource.api_version,
            "kind": f"{resource.kind}List",
            "metadata": metadata,
            "items": [_as_served(obj) for obj in items[start:end]],
        }


def _handler(api: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            try:
                code, body = api.handle(self.path)
            except Exception as err:  # a bug in the fake must show up as a 500, not a hang
                code, body = 500, status(500, "InternalError", repr(err))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


def write_kubeconfig(path: Path, contexts: Mapping[str, str], current: str = "fake") -> Path:
    """A kubeconfig with one cluster, user and context per name -> server URL."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in contexts.items()],
        "users": [{"name": "tester", "user": {"token": "fake-token"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "tester"}} for n in contexts],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
