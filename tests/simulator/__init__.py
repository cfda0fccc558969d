"""A deterministic pipeline simulator: Crossplane (v1.20 and v2), an API server, a Gateway
API controller and provider-kubernetes, so tests can run a composition function the way a
real cluster would. See each module's docstring for what it reproduces and simplifies.

Typical use::

    cluster = Cluster(seed=1)
    sim = Crossplane(cluster, mode="v2", rng=random.Random(1),
                     pipeline=[Step("tcp", MyFunctionRunner(), {"apiVersion": ..., ...})])
    xr = sim.create_xr("example.org/v1", "XPostgreSQL", "pg1", spec={...})
    plan = sim.reconcile(xr)              # = sim.apply(sim.compute(xr))
    plans = sim.reconcile_all(xrs)        # N workers racing from one stale snapshot
    settle(sim, xrs)                      # + provider-kubernetes + Gateway controller
    GatewayController(cluster).traffic()  # who really gets the packets

Modules: ``cluster`` (API server), ``crossplane`` (composition engine), ``controllers``
(provider-kubernetes, Gateway API, settling), ``envoygateway`` (SecurityPolicy and PROXY
protocol on the data path), ``transport`` (in-process and gRPC).
"""

from .cluster import ApiError, Cluster, ClusterView, Key, key_of
from .controllers import (
    GatewayController,
    NotSettledError,
    Platform,
    ProviderKubernetes,
    settle,
)
from .crossplane import (
    FIELD_OWNER_XR,
    MAX_REQUIREMENTS_ITERATIONS,
    ApplyReport,
    Call,
    Condition,
    Crossplane,
    NamespacedCompositionError,
    Plan,
    Result,
    SimulatorError,
    Step,
    XRRef,
)
from .envoygateway import EnvoyGateway
from .objects import (
    ANNOTATION_RESOURCE_NAME,
    LABEL_COMPOSITE,
    dict_to_struct,
    struct_to_dict,
)
from .transport import FunctionCallError, Grpc, InProcess, Transport

__all__ = [
    "ANNOTATION_RESOURCE_NAME",
    "FIELD_OWNER_XR",
    "LABEL_COMPOSITE",
    "MAX_REQUIREMENTS_ITERATIONS",
    "ApiError",
    "ApplyReport",
    "Call",
    "Cluster",
    "ClusterView",
    "Condition",
    "Crossplane",
    "EnvoyGateway",
    "FunctionCallError",
    "GatewayController",
    "Grpc",
    "InProcess",
    "Key",
    "NamespacedCompositionError",
    "NotSettledError",
    "Plan",
    "Platform",
    "ProviderKubernetes",
    "Result",
    "SimulatorError",
    "Step",
    "Transport",
    "XRRef",
    "dict_to_struct",
    "key_of",
    "settle",
    "struct_to_dict",
]
