"""The function's Prometheus metrics: names, labels and the registry they are scraped from.

Labels have bounded values only (steps, pools, reasons, gRPC methods and codes), never an
XR: a pool of 10,000 tenants exports as many series as a pool of ten.
"""

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Go functions export no `_created` series; neither do we, so dashboards see the same names.
prometheus_client.disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
prometheus_client.ProcessCollector(registry=REGISTRY)
prometheus_client.PlatformCollector(registry=REGISTRY)

# A tenant step is sub-millisecond from the cache and tens of milliseconds for a large
# pool step; Crossplane's default function timeout is 20 s.
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
# A request carries the XR, the lookups and earlier steps' desired state: up to the receive
# limit (4 MiB by default, 64 MiB for large pools).
BYTES = tuple(1 << shift for shift in range(10, 27, 2))

STEP_RUNS = Counter(
    "tcp_access_step_runs_total",
    "Step runs answered, by step, pool and outcome (the reason of the step's condition, or Fatal).",
    ["step", "pool", "outcome"],
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "tcp_access_step_seconds",
    "Time the function spent answering one step run.",
    ["step"],
    buckets=SECONDS,
    registry=REGISTRY,
)
REQUEST_BYTES = Histogram(
    "tcp_access_request_bytes",
    "Size of the RunFunction requests, by step.",
    ["step"],
    buckets=BYTES,
    registry=REGISTRY,
)
CLAIMS = Counter(
    "tcp_access_claims_total",
    "Claims the tenant step issued (claimed), issued for a port the XR already listened on "
    "(adopted), found taken by another XR (lost) or gave up (released).",
    ["pool", "result"],
    registry=REGISTRY,
)
CACHE_REQUESTS = Counter(
    "tcp_access_response_cache_requests_total",
    "Requests looked up in the response cache: hit, miss, or skip (not cacheable).",
    ["result"],
    registry=REGISTRY,
)
CACHE_BYTES = Gauge(
    "tcp_access_response_cache_bytes",
    "Bytes of the responses the response cache holds.",
    registry=REGISTRY,
)
CACHE_ENTRIES = Gauge(
    "tcp_access_response_cache_entries",
    "Responses the response cache holds.",
    registry=REGISTRY,
)

# Under the names and labels go-grpc-prometheus gives Go functions, so that Crossplane's
# dashboards and alerts work as they are.
GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "Total number of RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    registry=REGISTRY,
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
    registry=REGISTRY,
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level "
    "handled by the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    # go-grpc-prometheus's default buckets (Prometheus' DefBuckets).
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


_CHILDREN: dict[tuple, object] = {}


def labelled(metric, *values: str):
    """`metric.labels(*values)`, looked up once per label set: prometheus_client's own
    lookup costs more than a cached step run. Label values are bounded, so is this."""
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


def exposition() -> tuple[bytes, str]:
    """The scrape body and its content type (Prometheus text format)."""
    return prometheus_client.generate_latest(REGISTRY), prometheus_client.CONTENT_TYPE_LATEST
