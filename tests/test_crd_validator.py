"""The CRD validator rejects what the API server would (and the bugs it would drop silently).

Every negative test would fail against a validator that accepts everything; the positive ones
guard against false alarms.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.crds import (
    CelCompileError,
    CelError,
    Validator,
    compile_cel,
    evaluate_cel,
    go_regex,
)

GW = "gateway.networking.k8s.io"
OBJECT_API = "kubernetes.crossplane.io/v1alpha2"


@pytest.fixture
def v16(crd_validator: Callable[[str, bool], Validator]) -> Validator:
    return crd_validator("v1.6", False)


def gateway(**listener: object) -> dict:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "Gateway",
        "metadata": {"name": "shard-1", "namespace": "gateways"},
        "spec": {
            "gatewayClassName": "envoy",
            "listeners": [{"name": "tcp-10001", "port": 10001, "protocol": "TCP", **listener}],
        },
    }


def listener_set(api: str = f"{GW}/v1", kind: str = "ListenerSet", **listener: object) -> dict:
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": "tenant-a", "namespace": "app"},
        "spec": {
            "parentRef": {"name": "shard-1", "namespace": "gateways"},
            "listeners": [{"name": "tcp", "port": 10001, "protocol": "TCP", **listener}],
        },
    }


def tcp_route(api: str, rules: int = 1) -> dict:
    backend = {"name": "db", "port": 5432}
    return {
        "apiVersion": api,
        "kind": "TCPRoute",
        "metadata": {"name": "tenant-a", "namespace": "app"},
        "spec": {
            "parentRefs": [{"name": "tenant-a", "kind": "ListenerSet", "sectionName": "tcp"}],
            "rules": [{"backendRefs": [backend]} for _ in range(rules)],
        },
    }


def wrapped(manifest: dict, api: str = OBJECT_API, **metadata: str) -> dict:
    return {
        "apiVersion": api,
        "kind": "Object",
        "metadata": {"name": "tenant-a-listenerset", **metadata},
        "spec": {"forProvider": {"manifest": manifest}},
    }


def mentions(problems: list[str], *texts: str) -> bool:
    return any(all(text in problem for text in texts) for problem in problems)


# --- Gateway, ListenerSet, TCPRoute, ReferenceGrant -------------------------------------------


def test_a_gateway_with_a_tcp_listener_is_valid(v16: Validator) -> None:
    assert v16.validate(gateway()) == []


def test_port_zero_is_reported_at_the_port(v16: Validator) -> None:
    assert v16.validate(gateway(port=0)) == [
        "Gateway/shard-1: spec.listeners[0].port: Invalid value: 0: "
        "should be greater than or equal to 1"
    ]


def test_a_tcp_listener_with_a_hostname_fails_with_the_rules_message(v16: Validator) -> None:
    assert v16.validate(gateway(hostname="db.example.com")) == [
        'Gateway/shard-1: spec.listeners: Invalid value: "array": '
        "hostname must not be specified for protocols ['TCP', 'UDP']"
    ]


def test_a_whole_float_port_is_not_an_integer(v16: Validator) -> None:
    problems = v16.validate(gateway(port=10001.0))
    assert problems[0] == (
        "Gateway/shard-1: spec.listeners[0].port: Invalid value: 10001.0: must be of type integer"
    )
    # As in the API server, a type error means the CEL rules were not run.
    assert mentions(problems, "some validation rules were not checked")


def test_unknown_fields_are_reported(v16: Validator) -> None:
    assert v16.validate(gateway(portt=1)) == [
        "Gateway/shard-1: spec.listeners[0].portt: Unknown field: not declared in the schema"
    ]


def test_null_is_reported_where_the_schema_does_not_allow_it(v16: Validator) -> None:
    assert mentions(v16.validate(gateway(hostname=None)), "spec.listeners[0].hostname", "null")


def test_patterns_dollar_does_not_match_before_a_trailing_newline(v16: Validator) -> None:
    # Python's `$` would accept "tcp-1\n"; Kubernetes' RE2 does not.
    assert mentions(v16.validate(gateway(name="tcp-1\n")), "spec.listeners[0].name", "match")


def test_listener_names_are_list_map_keys(v16: Validator) -> None:
    obj = gateway()
    obj["spec"]["listeners"].append({"name": "tcp-10001", "port": 10002, "protocol": "TCP"})
    problems = v16.validate(obj)
    assert mentions(problems, "spec.listeners[1]: Duplicate value")
    assert mentions(problems, "Listener name must be unique within the Gateway")


def test_gateway_address_junctors_check_the_ip_format(v16: Validator) -> None:
    obj = gateway()
    obj["spec"]["addresses"] = [{"type": "IPAddress", "value": "192.0.2.10"}]
    assert v16.validate(obj) == []
    obj["spec"]["addresses"] = [{"type": "IPAddress", "value": "192.0.2.300"}]
    assert mentions(v16.validate(obj), "spec.addresses[0]", "oneOf")


def test_a_listenerset_valid_only_after_defaulting(v16: Validator) -> None:
    # The tls rule reads self.mode, which only the default (Terminate) provides.
    obj = listener_set(protocol="HTTPS", tls={"certificateRefs": [{"name": "cert"}]})
    assert v16.validate(obj) == []
    listener = v16.defaulted(obj)["spec"]["listeners"][0]
    assert listener["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    assert listener["tls"]["mode"] == "Terminate"
    assert listener["tls"]["certificateRefs"] == [{"name": "cert", "group": "", "kind": "Secret"}]


def test_defaults_are_applied_before_the_cel_rules(v16: Validator) -> None:
    # Without the default mode (Terminate) the rule would fail on the missing self.mode.
    obj = listener_set(protocol="HTTPS", tls={"certificateRefs": [], "options": {}})
    assert v16.validate(obj) == [
        'ListenerSet/tenant-a: spec.listeners[0].tls: Invalid value: "object": '
        "certificateRefs or options must be specified when mode is Terminate"
    ]
    # As in the API server, a rule that fails with an error is reported with that error.
    obj = listener_set(protocol="HTTPS", tls={})
    assert v16.validate(obj) == [
        'ListenerSet/tenant-a: spec.listeners[0].tls: Invalid value: "object": '
        "no such key: certificateRefs evaluating rule: "
        "certificateRefs or options must be specified when mode is Terminate"
    ]


def test_a_v1_tcproute_has_at_most_one_rule(v16: Validator) -> None:
    assert v16.validate(tcp_route(f"{GW}/v1")) == []
    assert v16.validate(tcp_route(f"{GW}/v1", rules=2)) == [
        "TCPRoute/tenant-a: spec.rules: Too many: 2: must have at most 1 items"
    ]


def test_a_v1alpha2_tcproute_may_have_several_rules(crd_validator) -> None:
    v15 = crd_validator("v1.5", False)
    assert v15.validate(tcp_route(f"{GW}/v1alpha2", rules=2)) == []
    duplicated = tcp_route(f"{GW}/v1alpha2", rules=2)
    for rule in duplicated["spec"]["rules"]:
        rule["name"] = "main"
    assert mentions(v15.validate(duplicated), "Rule name must be unique within the route")


def test_v1alpha2_tcproutes_are_not_served_by_the_v1_6_crd(v16: Validator) -> None:
    assert mentions(v16.validate(tcp_route(f"{GW}/v1alpha2")), "is not served")


def test_parent_refs_compare_namespaces_through_the_escaped_cel_name(v16: Validator) -> None:
    # `namespace` is a CEL keyword: the rules read it as __namespace__.
    obj = tcp_route(f"{GW}/v1")
    obj["spec"]["parentRefs"] = [
        {"name": "shard-1", "namespace": "gateways-a"},
        {"name": "shard-1", "namespace": "gateways-b"},
    ]
    assert v16.validate(obj) == []
    obj["spec"]["parentRefs"][1]["namespace"] = "gateways-a"
    assert mentions(v16.validate(obj), "sectionName must be unique when parentRefs includes")


def test_a_backend_service_needs_a_port(v16: Validator) -> None:
    obj = tcp_route(f"{GW}/v1")
    del obj["spec"]["rules"][0]["backendRefs"][0]["port"]
    assert mentions(v16.validate(obj), "Must have port for Service reference")


@pytest.mark.parametrize(("flavour", "version"), [("v1.6", "v1"), ("v1.5", "v1beta1")])
def test_reference_grants(crd_validator, flavour: str, version: str) -> None:
    validator = crd_validator(flavour, False)
    grant = {
        "apiVersion": f"{GW}/{version}",
        "kind": "ReferenceGrant",
        "metadata": {"name": "tenant-a", "namespace": "app"},
        "spec": {
            "from": [{"group": GW, "kind": "TCPRoute", "namespace": "gateways"}],
            "to": [{"group": "", "kind": "Service", "name": "db"}],
        },
    }
    assert validator.validate(grant) == []
    grant["spec"]["from"][0]["namespace"] = "Gateways"
    del grant["spec"]["to"]
    problems = validator.validate(grant)
    assert mentions(problems, 'spec.from[0].namespace: Invalid value: "Gateways": should match')
    assert mentions(problems, "spec.to: Required value")


def test_xlistenerset_parent_ref_kind(crd_validator) -> None:
    v14 = crd_validator("v1.4", False)
    api = f"{GW.replace('.k8s.io', '.x-k8s.io')}/v1alpha1"
    obj = listener_set(api=api, kind="XListenerSet")
    assert v14.validate(obj) == []
    assert v14.defaulted(obj)["spec"]["parentRef"]["kind"] == "Gateway"
    obj["spec"]["parentRef"]["kind"] = "Gate way"
    assert mentions(v14.validate(obj), 'spec.parentRef.kind: Invalid value: "Gate way"')
    assert mentions(v14.validate(listener_set()), "no schema for ListenerSet")


def test_the_split_rule_on_gateway_infrastructure_annotations(v16: Validator) -> None:
    # The rule is key.split("/")[0].size() < 253: a prefix of exactly 253 is refused.
    prefix = ".".join(["a" * 63] * 3 + ["b" * 60])
    obj = gateway()
    obj["spec"]["infrastructure"] = {"annotations": {f"{prefix}/name": "v"}}
    assert len(prefix) == 252 and v16.validate(obj) == []
    obj["spec"]["infrastructure"] = {"annotations": {f"{prefix}b/name": "v"}}
    assert v16.validate(obj) == [
        'Gateway/shard-1: spec.infrastructure.annotations: Invalid value: "object": If '
        "specified, the annotation key's prefix must be a DNS subdomain not longer than 253 "
        "characters in total."
    ]


# --- Metadata ---------------------------------------------------------------------------------


def test_names_must_be_dns_subdomains(v16: Validator) -> None:
    obj = gateway()
    obj["metadata"]["name"] = "Shard-1"
    assert mentions(v16.validate(obj), 'metadata.name: Invalid value: "Shard-1"', "RFC 1123")


def test_namespaced_kinds_need_a_namespace(v16: Validator) -> None:
    obj = gateway()
    del obj["metadata"]["namespace"]
    expected = "Gateway/shard-1: metadata.namespace: Required value: the kind is namespaced"
    assert v16.validate(obj) == [expected]


def test_cluster_scoped_kinds_refuse_a_namespace(v16: Validator) -> None:
    obj = wrapped(listener_set(), namespace="app")
    assert mentions(v16.validate(obj), "metadata.namespace: Forbidden")


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"Example.com/x": "v"}, "label key: prefix part"),
        ({"x": "-v"}, "label value"),
        ({"a/b/c": "v"}, "label key"),
        ({"x": "v" * 64}, "no more than 63 characters"),
    ],
)
def test_labels_follow_kubernetes_syntax(v16: Validator, labels: dict, problem: str) -> None:
    obj = gateway()
    obj["metadata"]["labels"] = labels
    assert mentions(v16.validate(obj), "metadata.labels[", problem)


# --- provider-kubernetes Objects --------------------------------------------------------------


def test_a_wrapped_listenerset_is_validated_against_its_own_crd(crd_validator) -> None:
    validator = crd_validator("v1.6", True)
    assert validator.validate(wrapped(listener_set())) == []
    assert validator.validate(wrapped(listener_set(port=0))) == [
        "Object/tenant-a-listenerset: spec.forProvider.manifest.spec.listeners[0].port: "
        "Invalid value: 0: should be greater than or equal to 1"
    ]


def test_a_wrapped_manifest_takes_its_objects_name(crd_validator) -> None:
    manifest = listener_set()
    del manifest["metadata"]["name"]
    assert crd_validator("v1.6", True).validate(wrapped(manifest)) == []


def test_namespaced_objects_wrap_too(crd_validator) -> None:
    validator = crd_validator("v1.6", True)
    obj = wrapped(listener_set(port=0), api="kubernetes.m.crossplane.io/v1alpha1")
    assert mentions(validator.validate(obj), "metadata.namespace: Required value")
    assert mentions(validator.validate(obj), "manifest.spec.listeners[0].port")


def test_the_wrapping_mode_is_enforced(crd_validator) -> None:
    assert mentions(crd_validator("v1.6", True).validate(gateway()), "wrapped mode")
    assert mentions(crd_validator("v1.6", False).validate(wrapped(gateway())), "unwrapped mode")


def test_an_unknown_wrapped_kind_is_reported(crd_validator) -> None:
    manifest = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problems = crd_validator("v1.6", True).validate(wrapped(manifest))
    assert mentions(problems, "spec.forProvider.manifest", "no schema for Widget")


# --- Built-in kinds ---------------------------------------------------------------------------


def lease(**spec: object) -> dict:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "tcp-pool-10001", "namespace": "gateways"},
        "spec": {"holderIdentity": "tenant-a", "leaseDurationSeconds": 3600, **spec},
    }


def test_a_lease_is_valid(v16: Validator) -> None:
    assert v16.validate(lease(acquireTime="2024-05-01T10:00:00.000000Z")) == []


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"leaseDurationSeconds": 0}, "spec.leaseDurationSeconds: Invalid value: 0"),
        ({"leaseDurationSeconds": 2**31}, "out of the int32 range"),
        ({"holderIdentity": 7}, "spec.holderIdentity: Invalid value: 7: must be of type string"),
        ({"acquireTime": "yesterday"}, "must be a valid date-time"),
        ({"preferredHolder": "tenant-b"}, "preferredHolder may only be set together with"),
    ],
)
def test_invalid_leases(v16: Validator, spec: dict, problem: str) -> None:
    assert mentions(v16.validate(lease(**spec)), problem)


def network_policy(peer: dict | None = None, port: dict | None = None) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "tcp-access-db", "namespace": "app"},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "db"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        peer
                        or {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "gateways"}
                            },
                            "podSelector": {},
                        }
                    ],
                    "ports": [port or {"protocol": "TCP", "port": 5432}],
                }
            ],
        },
    }


def test_a_network_policy_is_valid(v16: Validator) -> None:
    assert v16.validate(network_policy()) == []
    assert v16.validate(network_policy(peer={"ipBlock": {"cidr": "10.0.0.0/8"}})) == []
    assert v16.validate(network_policy(port={"port": "postgres"})) == []


@pytest.mark.parametrize(
    ("peer", "port", "problem"),
    [
        (None, {"protocol": "ICMP", "port": 5432}, 'Unsupported value: "ICMP"'),
        (None, {"port": 70000}, "anyOf"),
        (None, {"port": "Postgres_DB"}, "anyOf"),
        (None, {"port": 5432, "endPort": 5000}, "endPort needs a numeric port"),
        ({"ipBlock": {"cidr": "10.0.0.0/33"}}, None, "cidr must be a CIDR"),
        ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}, None, "strictly inside"),
        ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, None, "a peer needs either"),
        ({"podSelector": {"matchLabels": {"bad key": "x"}}}, None, "label keys must be"),
    ],
)
def test_invalid_network_policies(v16: Validator, peer, port, problem: str) -> None:
    assert mentions(v16.validate(network_policy(peer, port)), problem)


def test_a_network_policy_needs_a_pod_selector(v16: Validator) -> None:
    obj = network_policy()
    del obj["spec"]["podSelector"]
    assert mentions(v16.validate(obj), "spec.podSelector: Required value")


def test_secrets(v16: Validator) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tenant-a-tcp", "namespace": "app"},
        "data": {"port": "MTAwMDE="},
        "stringData": {"host": "db.example.com"},
    }
    assert v16.validate(secret) == []
    secret["data"] = {"port": "10001", "bad key": "eA=="}
    problems = v16.validate(secret)
    assert mentions(problems, "data[port]", "must be a valid byte")
    assert mentions(problems, "keys must consist of alphanumeric characters")


# --- The engine itself ------------------------------------------------------------------------


def test_crd_files_defining_the_same_version_cannot_be_mixed(crds_dir: Path) -> None:
    with pytest.raises(ValueError, match="defined by both"):
        Validator.from_files(
            [
                "gateway-api/v1.6.1-standard-tcproutes.yaml",
                "gateway-api/v1.5.1-experimental-tcproutes.yaml",
            ]
        )


def test_every_rule_and_pattern_of_every_crd_file_can_be_checked(crds_dir: Path) -> None:
    files = sorted(str(path.relative_to(crds_dir)) for path in crds_dir.rglob("*.yaml"))
    assert files
    for name in files:
        assert Validator.from_files([name]).schema_problems() == [], name


def widget_validator(spec_schema: dict) -> Validator:
    """A validator for a made-up cluster-scoped kind whose spec has the given schema."""
    schema = {"type": "object", "properties": {"spec": spec_schema}}
    crd = {
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget"},
            "scope": "Cluster",
            "versions": [{"name": "v1", "served": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }
    return Validator.from_crds([crd])


def widget(**spec: object) -> dict:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def test_a_rule_needing_a_missing_function_is_reported_not_passed() -> None:
    validator = widget_validator(
        {
            "type": "object",
            "properties": {"url": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "isURL(self.url)"}],
        }
    )
    assert mentions(validator.schema_problems(), "isURL")
    problems = validator.validate(widget(url="https://example.com"))
    assert mentions(problems, "spec: Internal error", "cannot be compiled")


def test_rule_messages_field_paths_reasons_and_transition_rules() -> None:
    validator = widget_validator(
        {
            "type": "object",
            "properties": {"replicas": {"type": "integer"}, "name": {"type": "string"}},
            "x-kubernetes-validations": [
                {
                    "rule": "self.replicas <= 3",
                    "message": "too many replicas",
                    "messageExpression": "'replicas ' + string(self.replicas) + ' > 3'",
                },
                {
                    "rule": "self.name.startsWith('w')",
                    "fieldPath": ".name",
                    "reason": "FieldValueForbidden",
                },
                {"rule": "self.replicas >= oldSelf.replicas", "message": "needs an old object"},
            ],
        }
    )
    assert validator.validate(widget(replicas=1, name="w1")) == []
    assert validator.validate(widget(replicas=5, name="x1")) == [
        'Widget/w: spec: Invalid value: "object": replicas 5 > 3',
        "Widget/w: spec.name: Forbidden: \"object\": failed rule: self.name.startsWith('w')",
    ]


def test_unknown_flavours_are_refused(crds_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown flavour"):
        Validator.for_flavour("v1.3", False)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("self.split('/')", ["example.com", "name"]),
        ("self.split('/', 1)", ["example.com/name"]),
        ("self.split('/', 0)", []),
        ("'abc'.split('', 2)", ["a", "bc"]),
        ("self.split('/')[0].size()", 11),
        ("'ÄB'.lowerAscii()", "Äb"),
        ("self.startsWith('example') && self.endsWith('name')", True),
        ("-7 / 2 == -3 && -7 % 2 == -1", True),
        ("[1, 2, 3].exists_one(x, x > 2) && [1, 2].all(x, x > 0)", True),
        ("[1, 2, 3].map(x, x * 2).filter(x, x > 2)", [4, 6]),
        ("{'a': 1}.all(k, k == 'a') && 'a' in {'a': 1}", True),
        ("type(1) == int && type('x') == string && 1 == 1.0", True),
        ("has(self.nope)", False),
        ("1 == self.nope || true", True),  # || absorbs an error when the other side is true
        ("false && 1 == self.nope", False),
        ("isCIDR('10.0.0.0/8') && cidr('10.0.0.0/8').containsIP('10.1.2.3')", True),
        ("ip('::1').family() == 6 && !isIP('1.2.3.4%eth0')", True),
        (r"self.matches(r'^[a-z.]+/[a-z]+$')", True),
        # Kubernetes' duration(): Go's time.ParseDuration syntax, ordered and comparable.
        ("duration('1h30m') == duration('90m') && duration('1.5h') == duration('5400s')", True),
        ("duration('300ms') < duration('1s') && duration('-1s') < duration('0')", True),
        ("duration('1h') + duration('1m') > duration('60m')", True),
        ("duration('2h45m').getMinutes() == 165 && duration('-90s').getMinutes() == -1", True),
        ("string(duration('1m30.5s'))", "90.5s"),
        ("duration('1us') == duration('1000ns') && duration('1µs') == duration('1us')", True),
    ],
)
def test_cel_expressions(expression: str, expected: object) -> None:
    value = {} if "nope" in expression else "example.com/name"
    assert evaluate_cel(expression, self=value) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "self.nope == 1",
        "1 / 0",
        "[1][3]",
        "'a' + 1",
        "9223372036854775807 + 1",
        "self.nope || false",
        "duration('1')",  # a number needs a unit, but for "0"
        "duration('1d')",
        "duration('')",
        "duration('1h 30m')",
        "duration('.s')",
        "duration('3000000000h')",  # beyond CEL's range of about 10,000 years
        "duration('1s') < 1",
    ],
)
def test_cel_errors(expression: str) -> None:
    with pytest.raises(CelError):
        evaluate_cel(expression, self={})


@pytest.mark.parametrize(
    "expression", ["self.isURL()", "url(self)", "self.nope(", "other == 1", "quantity('1')"]
)
def test_cel_compile_errors(expression: str) -> None:
    with pytest.raises(CelCompileError):
        compile_cel(expression)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^[a-z]+$", "abc\n", False),
        (r"^a\z", "a", True),
        ("[[:alpha:]]+", "ab", True),
        (r"^\d+$", "١٢", False),  # RE2's \d is ASCII-only
        ("^Hostname|IPAddress", "xIPAddress", True),  # unanchored alternatives search
    ],
)
def test_go_regex(pattern: str, text: str, matches: bool) -> None:
    assert (go_regex(pattern).search(text) is not None) is matches
