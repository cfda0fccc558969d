"""Fuzzing the request surface: junk inputs, XRs and looked-up objects.

Whatever arrives, RunFunction answers: it never raises, never returns a gRPC error, answers
bad input with one Fatal result naming the field, and drops nothing the XR already had.
"""

import asyncio
import os

from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from function import fn, tenant
from tests import stats
from tests.factories import NS, claim, gateway

EXAMPLES = int(os.environ.get("TCP_ACCESS_FUZZ_EXAMPLES", "10000"))

VALID_INPUT = {
    "apiVersion": "tcp.fn.servala.io/v1alpha1",
    "kind": "TCPAccess",
    "pool": "postgresql",
    "gatewayNamespace": NS,
    "backend": {"namespace": "vshn-postgresql-{metadata.name}", "service": "pg", "port": 5432},
    "connectionDetails": {"host": "HOST", "port": "PORT"},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789.", min_size=60, max_size=300),
    st.sampled_from(["", "0", "10000-10009", "ten", "💥", "a" * 64, "{metadata.name}"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
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


@st.composite
def inputs(draw):
    data = {**VALID_INPUT, "backend": dict(VALID_INPUT["backend"])}
    if draw(st.booleans()):
        data["wrap"] = {"providerConfigName": "kubernetes"}
    for path in draw(st.lists(st.sampled_from(INPUT_PATHS), max_size=2)):
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {}) if isinstance(target.get(part), dict) else {}
        target[path[-1]] = draw(junk)
    return data


@st.composite
def xrs(draw):
    name = draw(
        st.one_of(
            st.just("pg-abc12"),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63),
            st.text(max_size=80),
        )
    )
    metadata = {"name": name, "uid": draw(st.one_of(st.just("uid-1"), st.text(max_size=40)))}
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(st.text(max_size=10), junk, max_size=2))
    xr = {"apiVersion": "x/v1", "kind": "XDB", "metadata": metadata}
    if draw(st.booleans()):
        xr["spec"] = draw(junk)
    if draw(st.booleans()):
        xr["status"] = {"tcpAccess": draw(junk)}
    return xr


def mangled(obj, draw):
    """A valid object with a random part replaced by junk."""
    if not draw(st.booleans()):
        return obj
    obj = {**obj, "metadata": dict(obj["metadata"])}
    part = draw(st.sampled_from(["metadata", "spec", "status", "kind", "labels", "annotations"]))
    if part in ("labels", "annotations"):
        obj["metadata"][part] = draw(junk)
    else:
        obj[part] = draw(junk)
    return obj


@st.composite
def looked_up(draw):
    objects = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["gateway", "claim", "wrapped", "junk", "other"]))
        if kind == "gateway":
            objects.append(mangled(gateway(draw(st.integers(1, 4))), draw))
        elif kind == "claim":
            objects.append(mangled(claim(draw(st.integers(9990, 10050))), draw))
        elif kind == "wrapped":
            objects.append(mangled(claim(draw(st.integers(9990, 10050)), wrapped=True), draw))
        elif kind == "other":
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
        else:
            objects.append(draw(st.dictionaries(st.text(max_size=8), junk, max_size=3)))
    return objects


@st.composite
def requests(draw):
    xr = draw(xrs())
    req = fnv1.RunFunctionRequest(input=resource.dict_to_struct(draw(inputs())))
    req.observed.composite.resource.update(xr)
    uid = xr["metadata"]["uid"]
    keys = draw(st.lists(st.sampled_from([*tenant.DATA_PATH_KEYS, "tcp-claim-10003"]), max_size=3))
    for key in keys:
        if key.startswith("tcp-claim-"):
            obj = claim(10003, holder=draw(st.sampled_from([uid, "other"])))
        else:
            obj = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": key}}
        req.observed.resources[key].resource.update(mangled(obj, draw))
    for name in ("tcp-gateways-accepting", "tcp-gateways", "tcp-claims-shard-1"):
        if draw(st.booleans()):
            field = draw(st.sampled_from(["required_resources", "extra_resources"]))
            items = getattr(req, field)[name]
            items.SetInParent()
            for obj in draw(looked_up()):
                items.items.add().resource.update(obj)
    return req


LOOP = asyncio.new_event_loop()
RUNNER = fn.FunctionRunner()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(requests())
def test_any_request_gets_an_answer_and_nothing_is_dropped(req):
    rsp = LOOP.run_until_complete(RUNNER.RunFunction(req, None))
    stats.count("fuzzed requests")
    fatal = [r for r in rsp.results if r.severity == fnv1.Severity.SEVERITY_FATAL]
    assert len(fatal) <= 1
    if fatal:
        message = fatal[0].message
        assert ":" in message and "internal error" not in message, message
        assert not rsp.desired.resources  # a Fatal changes nothing
        return
    spec = resource.struct_to_dict(req.input)
    disabled = spec.get("enabled") is False or "enabledFromFieldPath" in spec
    if disabled:
        return
    for key in req.observed.resources:
        if key in rsp.desired.resources:
            continue
        # The only deliberate drops: a grant placement Backend does not need, and a second
        # claim this XR holds but does not use.
        assert key == tenant.REFERENCEGRANT_KEY or key.startswith(tenant.CLAIM_KEY_PREFIX), key
        assert "tcp-listenerset" in rsp.desired.resources, key
