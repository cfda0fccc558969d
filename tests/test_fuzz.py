"""Fuzzing the request surface: junk inputs, XRs and looked-up objects, and every field of
both inputs (and of the XR the tenant step reads) given a value of every other type.

Whatever arrives, RunFunction answers: it never raises, never returns a gRPC error, answers
bad input with one Fatal result naming the field, and drops nothing the XR already had.
"""

import asyncio
import copy
import os

from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from function import fn, pool, tenant
from function.inputs import TCPAccess
from tests import stats
from tests.factories import NS, claim, gateway, tenant_listener_set

EXAMPLES = int(os.environ.get("TCP_ACCESS_FUZZ_EXAMPLES", "10000"))
TENANT_EXAMPLES = EXAMPLES // 2
POOL_EXAMPLES = EXAMPLES // 10
RETYPED_TENANT_EXAMPLES = EXAMPLES * 3 // 10
RETYPED_POOL_EXAMPLES = EXAMPLES - TENANT_EXAMPLES - POOL_EXAMPLES - RETYPED_TENANT_EXAMPLES

VALID_INPUT = {
    "apiVersion": "tcp.fn.servala.io/v1alpha1",
    "kind": "TCPAccess",
    "pool": "postgresql",
    "gatewayNamespace": NS,
    "backend": {"namespace": "vshn-postgresql-{metadata.name}", "service": "pg", "port": 5432},
    "connectionDetails": {"host": "HOST", "port": "PORT"},
}

# Pre-built odd values: drawing one costs a single choice, so 10,000 cases stay fast.
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    65536,
    2**40,
    0.5,
    5432.0,
    1e300,
    "",
    "0",
    "true",
    "10000-10009",
    "10009-10000",
    "ten",
    "💥",
    "ünïcödé",
    "a" * 64,
    "b" * 300,
    "UPPER_case",
    "{metadata.name}",
    "{does.not.exist}",
    [],
    [None],
    [1, "x", {"a": []}],
    {},
    {"spec": "x"},
    {"metadata": []},
    {"a": {"b": {"c": {"d": [1, 2, {"e": None}]}}}},
]
junk = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.integers(min_value=-(2**31), max_value=2**31),
    st.text(max_size=12),
)
INPUT_PATHS = [
    ("pool",),
    ("gatewayNamespace",),
    ("gatewayAPI",),
    ("placement",),
    ("enabled",),
    ("enabledFromFieldPath",),
    ("listenerName",),
    ("backend",),
    ("backend", "namespace"),
    ("backend", "port"),
    ("backend", "podPort"),
    ("backend", "podSelector"),
    ("gateways",),
    ("connectionDetails",),
    ("statusPath",),
    ("wrap",),
    ("unknownField",),
]


# Strategies are built once: building them per draw costs more than the function call.
BOOL = st.booleans()
FEW = st.integers(0, 4)
SHARD_INDEX = st.integers(1, 4)
SHARD_INDEXES = st.lists(st.integers(1, 5), max_size=3, unique=True)
NEAR_PORTS = st.integers(9990, 10050)
PARTS = st.sampled_from(["metadata", "spec", "status", "kind", "labels", "annotations"])
LOOKED_UP_KINDS = st.sampled_from(["gateway", "claim", "wrapped", "junk", "other"])
JUNK_MAP = st.dictionaries(st.text(max_size=8), junk, max_size=3)
OBSERVED_KEYS = st.lists(st.sampled_from([*tenant.DATA_PATH_KEYS, "tcp-claim-10003"]), max_size=3)
REQUEST_FIELDS = st.sampled_from(["required_resources", "extra_resources"])
MUTATED_PATHS = st.lists(st.sampled_from(INPUT_PATHS), max_size=2)
UIDS = st.one_of(st.just("uid-1"), st.text(max_size=40))
XR_NAMES = st.one_of(
    st.just("pg-abc12"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63),
    st.text(max_size=80),
)


@st.composite
def inputs(draw):
    data = {**VALID_INPUT, "backend": dict(VALID_INPUT["backend"])}
    if draw(BOOL):
        data["wrap"] = {"providerConfigName": "kubernetes"}
    for path in draw(MUTATED_PATHS):
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {}) if isinstance(target.get(part), dict) else {}
        target[path[-1]] = draw(junk)
    return data


@st.composite
def xrs(draw):
    name = draw(XR_NAMES)
    metadata = {"name": name, "uid": draw(UIDS)}
    if draw(BOOL):
        metadata["labels"] = draw(JUNK_MAP)
    xr = {"apiVersion": "x/v1", "kind": "XDB", "metadata": metadata}
    if draw(BOOL):
        xr["spec"] = draw(junk)
    if draw(BOOL):
        xr["status"] = {"tcpAccess": draw(junk)}
    return xr


def mangled(obj, draw):
    """A valid object with a random part replaced by junk."""
    if not draw(BOOL):
        return obj
    obj = {**obj, "metadata": dict(obj["metadata"])}
    part = draw(PARTS)
    if part in ("labels", "annotations"):
        obj["metadata"][part] = draw(junk)
    else:
        obj[part] = draw(junk)
    return obj


@st.composite
def looked_up(draw):
    objects = []
    for _ in range(draw(FEW)):
        kind = draw(LOOKED_UP_KINDS)
        if kind == "gateway":
            objects.append(mangled(gateway(draw(SHARD_INDEX)), draw))
        elif kind == "claim":
            objects.append(mangled(claim(draw(NEAR_PORTS)), draw))
        elif kind == "wrapped":
            objects.append(mangled(claim(draw(NEAR_PORTS), wrapped=True), draw))
        elif kind == "other":
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
        else:
            objects.append(draw(JUNK_MAP))
    return objects


@st.composite
def requests(draw):
    xr = draw(xrs())
    req = fnv1.RunFunctionRequest(input=resource.dict_to_struct(draw(inputs())))
    req.observed.composite.resource.update(xr)
    uid = xr["metadata"]["uid"]
    keys = draw(OBSERVED_KEYS)
    for key in keys:
        if key.startswith("tcp-claim-"):
            obj = claim(10003, holder=(uid if draw(BOOL) else "other"))
        else:
            obj = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": key}}
        req.observed.resources[key].resource.update(mangled(obj, draw))
    for name in ("tcp-gateways-accepting", "tcp-gateways", "tcp-claims-shard-1"):
        if draw(BOOL):
            field = draw(REQUEST_FIELDS)
            items = getattr(req, field)[name]
            items.SetInParent()
            for obj in draw(looked_up()):
                items.items.add().resource.update(obj)
    return req


LOOP = asyncio.new_event_loop()
RUNNER = fn.FunctionRunner()


def fuzz_settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def run(req):
    rsp = LOOP.run_until_complete(RUNNER.RunFunction(req, None))
    stats.count("fuzzed requests")
    fatal = [r for r in rsp.results if r.severity == fnv1.Severity.SEVERITY_FATAL]
    assert len(fatal) <= 1
    if fatal:
        message = fatal[0].message
        assert ":" in message and "internal error" not in message, message
        # A Fatal changes nothing: earlier steps' resources pass through, none of ours.
        assert set(rsp.desired.resources) <= set(req.desired.resources)
    return rsp, bool(fatal)


@fuzz_settings(TENANT_EXAMPLES)
@given(requests())
def test_any_tenant_request_gets_an_answer_and_nothing_is_dropped(req):
    rsp, fatal = run(req)
    if fatal:
        return
    spec = TCPAccess.model_validate(resource.struct_to_dict(req.input))
    if not spec.enabled or spec.enabledFromFieldPath:
        return  # turned off: the one case where resources go away
    for key in req.observed.resources:
        if key in rsp.desired.resources:
            continue
        # The only deliberate drops: a grant placement Backend does not need, a
        # SecurityPolicy no allowlist calls for (sourceRanges unset or admitting everyone),
        # and a second claim this XR holds but does not use.
        deliberate = (tenant.REFERENCEGRANT_KEY, tenant.SECURITYPOLICY_KEY)
        assert key in deliberate or key.startswith(tenant.CLAIM_KEY_PREFIX), key
        assert "tcp-listenerset" in rsp.desired.resources, key


VALID_POOL = {
    "apiVersion": "tcp.fn.servala.io/v1alpha1",
    "kind": "GatewayPool",
    "pool": "postgresql",
    "namespace": NS,
    "gatewayClassName": "envoy-gateway",
    "provider": "exoscale",
    "ports": "10000-10499",
    "hostname": "db{index}.example.ch",
}
POOL_FIELDS = [
    "pool",
    "namespace",
    "provider",
    "capacity",
    "ports",
    "hostname",
    "minShards",
    "maxShards",
    "headroom",
    "allowedListenerNamespaces",
    "gatewayAPI",
    "infrastructure",
    "statusPath",
    "readBudgetKiB",
    "wrap",
    "typo",
]


MUTATED_POOL_FIELDS = st.lists(st.sampled_from(POOL_FIELDS), max_size=2)


@st.composite
def pool_requests(draw):
    data = dict(VALID_POOL)
    if draw(BOOL):
        data["readBudgetKiB"] = 1  # a window of shards, whatever the pool holds
    for name in draw(MUTATED_POOL_FIELDS):
        data[name] = draw(junk)
    req = fnv1.RunFunctionRequest(input=resource.dict_to_struct(data))
    req.observed.composite.resource.update(draw(xrs()))
    for index in draw(SHARD_INDEXES):
        obj = gateway(index)
        req.observed.resources[pool.gateway_key(index)].resource.update(mangled(obj, draw))
    if draw(BOOL):
        items = req.required_resources[pool.CLAIMS]
        items.SetInParent()
        for obj in draw(looked_up()):
            items.items.add().resource.update(obj)
    if draw(BOOL):
        items = req.required_resources[pool.LISTENER_SETS]
        items.SetInParent()
        for index in draw(SHARD_INDEXES):
            obj = tenant_listener_set(draw(NEAR_PORTS), index, accepted=draw(BOOL))
            items.items.add().resource.update(mangled(obj, draw))
        for obj in draw(looked_up()):
            items.items.add().resource.update(obj)
    return req


@fuzz_settings(POOL_EXAMPLES)
@given(pool_requests())
def test_any_pool_request_gets_an_answer_and_keeps_shards_on_a_partial_view(req):
    rsp, fatal = run(req)
    claims = req.required_resources.get(pool.CLAIMS)
    listener_sets = req.required_resources.get(pool.LISTENER_SETS)
    seen = all(found is not None and found.items for found in (claims, listener_sets))
    if fatal or seen:
        return
    # Claims or listener sets unread or none seen: every Gateway the pool has stays.
    for key in req.observed.resources:
        assert key in rsp.desired.resources, key


# -- every field of both inputs, given a value of every other type ------------------------

# Both inputs with every field set (nested ones and list items too), so that every path
# below exists to be retyped; the XR and its claim make the tenant step build its data path.
FULL_TENANT_INPUT = {
    **VALID_INPUT,
    "gatewayAPI": "v1.6",
    "placement": "Gateway",
    "enabled": True,
    "enabledFromFieldPath": "spec.tcp",
    "enabledValue": "on",
    "listenerName": "postgresql",
    "templatesReadTenantFields": True,
    "backend": {
        "namespace": "vshn-postgresql-{metadata.name}",
        "service": "{spec.service}",
        "port": 5432,
        "podSelector": {"app": "{metadata.name}"},
        "podPort": 5433,
    },
    "gateways": [
        {"name": "postgresql-1", "hostname": "db1.example.ch", "ports": "10000-10009",
         "capacity": 10},
        {"name": "postgresql-2", "ports": "10010-10019", "capacity": 10},
    ],
    "connectionDetails": {"host": "HOST", "port": "PORT", "templates": {"URL": "pg://{host}"}},
    "statusPath": "status.tcpAccess",
    "dataPlane": {"namespace": "envoy-gateway-system", "podSelector": {"app": "envoy"}},
    "wrap": {"providerConfigName": "kubernetes", "providerConfigFromLabel": "pc"},
    "resources": {
        role: {"key": f"tcp-{role.lower()}", "name": f"{{metadata.name}}-{role.lower()}",
               "objectName": f"{{metadata.name}}-{role.lower()}-object"}
        for role in tenant.ROLES
    },
    "respectLegacyAllocations": False,
    "patches": [
        {"resource": "release", "fieldPath": "spec.values.port", "value": "port"},
        {"fieldPath": "status.ssh.host", "value": "hostPort"},
    ],
    "connectionSecret": {"name": "{metadata.name}-tcp", "namespace": "vshn-postgresql-x"},
    "sourceRanges": {"fromFieldPath": "spec.ipFilter", "default": ["0.0.0.0/0"],
                     "trustUnreportedPolicy": False},
}  # fmt: skip
FULL_POOL_INPUT = {
    **VALID_POOL,
    "provider": "custom",
    "capacity": 10,
    "minShards": 1,
    "maxShards": 5,
    "headroom": 2,
    "readBudgetKiB": 900,
    "allowedListenerNamespaces": {
        "from": "Selector",
        "selector": {
            "matchLabels": {"tcp": "allowed"},
            "matchExpressions": [{"key": "team", "operator": "In", "values": ["db"]}],
        },
    },
    "infrastructure": {"annotations": {"a": "b"}, "labels": {"c": "d"}},
    "clientAddress": "ProxyProtocol",
    "applyClientAddressToExistingShards": False,
    "statusPath": "status.pool",
    "wrap": {"providerConfigName": "kubernetes", "providerConfigFromLabel": "pc"},
}
FULL_XR = {
    "apiVersion": "x/v1",
    "kind": "XDB",
    "metadata": {"name": "pg-abc12", "uid": "uid-1", "labels": {"pc": "kubernetes-2"}},
    "spec": {"tcp": "on", "service": "postgresql-rw"},
    "status": {"tcpAccess": {"phase": "Ready", "claimAttempts": 1, "servedPort": 10003}},
}
FULL_DESIRED_XR = {"status": {"tcpAccess": {"phase": "Ready"}, "ssh": {"host": "x"}}}
# One value of each type a Struct can hold.
RETYPED_VALUES = st.sampled_from([None, True, 7, 7.5, "s", [], ["s"], {}, {"s": "s"}])


def paths(value, prefix=()):
    """Every path into `value`'s objects and lists."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


TENANT_INPUT_PATHS = st.sampled_from(list(paths(FULL_TENANT_INPUT)))
POOL_INPUT_PATHS = st.sampled_from(list(paths(FULL_POOL_INPUT)))
XR_PATHS = st.sampled_from(
    [("xr", *p) for p in paths(FULL_XR)] + [("desired", *p) for p in paths(FULL_DESIRED_XR)]
)


def retype(obj, path, value) -> bool:
    """Set `path` of `obj` to `value`; False if an earlier change removed the way there."""
    for number, part in enumerate(path):
        if isinstance(obj, dict) and (part in obj or number == len(path) - 1):
            if not isinstance(part, str):  # a list an earlier change made an object
                return False
        elif not (isinstance(obj, list) and isinstance(part, int) and part < len(obj)):
            return False
        if number == len(path) - 1:
            obj[part] = value
            return True
        obj = obj[part]
    return False


@st.composite
def retyped(draw, full, input_paths):
    """(request, retyped input paths): one or two fields of the input, or of the XR the
    step reads, given a value of another type."""
    data, xr, desired = copy.deepcopy(full), copy.deepcopy(FULL_XR), copy.deepcopy(FULL_DESIRED_XR)
    changed = []
    if draw(BOOL):
        for path in draw(st.lists(input_paths, min_size=1, max_size=2)):
            if retype(data, path, copy.deepcopy(draw(RETYPED_VALUES))):
                changed.append(path)
    else:
        which, *path = draw(XR_PATHS)
        retype(xr if which == "xr" else desired, path, copy.deepcopy(draw(RETYPED_VALUES)))
    req = fnv1.RunFunctionRequest(input=resource.dict_to_struct(data))
    req.observed.composite.resource.update(xr)
    req.desired.composite.resource.update(desired)
    req.desired.resources["release"].resource.update({"apiVersion": "v1", "kind": "ConfigMap"})
    held = claim(10003, holder=FULL_XR["metadata"]["uid"], owner="pg-abc12", wrapped=True)
    req.observed.resources["tcp-claim-10003"].resource.update(held)
    req.required_resources["tcp-claims-own"].items.add().resource.update(held)
    return req, changed


def names_the_field(message: str, path: tuple) -> bool:
    """The message names the retyped field, the object holding it (a rule across its
    fields), or the field by its own name (a rule of the whole input)."""
    dotted = [".".join(map(str, path[:n])) for n in range(len(path), 0, -1)]
    own_name = next((p for p in reversed(path) if isinstance(p, str)), None)
    return any(f"{d}:" in message or f"{d}." in message for d in dotted) or (
        own_name is not None and f"{own_name}:" in message
    )


def check_retyped(case) -> None:
    req, changed = case
    rsp, fatal = run(req)
    if fatal and changed:
        [message] = [r.message for r in rsp.results if r.severity == fnv1.Severity.SEVERITY_FATAL]
        assert any(names_the_field(message, path) for path in changed), (changed, message)


@fuzz_settings(RETYPED_TENANT_EXAMPLES)
@given(retyped(FULL_TENANT_INPUT, TENANT_INPUT_PATHS))
def test_a_tenant_input_or_xr_field_of_another_type_is_one_fatal_naming_it_or_works(case):
    check_retyped(case)


@fuzz_settings(RETYPED_POOL_EXAMPLES)
@given(retyped(FULL_POOL_INPUT, POOL_INPUT_PATHS))
def test_a_pool_input_or_xr_field_of_another_type_is_one_fatal_naming_it_or_works(case):
    check_retyped(case)
