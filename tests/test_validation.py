"""What the function emits, and every YAML file of the project, validated against the real
upstream CRDs (openAPIV3Schema with defaults, and the CEL rules), as the API server would."""

from pathlib import Path

import pytest
import yaml

from function import pool
from function.inputs import GatewayPool
from function.step import StepRequest
from tests.factories import claim
from tests.support.crds import COMMON_FILES, FLAVOUR_FILES, Validator
from tests.world import World

ROOT = Path(__file__).resolve().parent.parent
CROSSPLANE_FILES = (
    "crossplane/v2.3.4-apiextensions.crossplane.io_compositions.yaml",
    "crossplane/v2.3.4-pkg.crossplane.io_functions.yaml",
    "crossplane/v2.3.4-meta.pkg.crossplane.io_functions.yaml",
    "crossplane/v2.3.4-pkg.crossplane.io_deploymentruntimeconfigs.yaml",
)
COMBINATIONS = [
    pytest.param(flavour, placement, mode, wrap, id=f"{flavour}-{placement}-{mode}-{label}")
    for flavour in ("v1.4", "v1.5", "v1.6")
    for placement in ("Backend", "Gateway")
    for mode, wrap, label in (
        ("v1", True, "wrapped"),
        ("v2", True, "wrapped"),
        ("v2", False, "direct"),
    )
]


@pytest.mark.parametrize(("flavour", "placement", "mode", "wrap"), COMBINATIONS)
def test_everything_the_tenant_step_emits_is_valid(crd_validator, flavour, placement, mode, wrap):
    validator = crd_validator(flavour, wrap)
    world = World(mode=mode, wrap=wrap, flavour=flavour, placement=placement)
    world.add_shard(1)
    # A name as long as its namespace "vshn-postgresql-<name>" allows: derived names must fit.
    for name in ("pg", "a" * 47):
        world.create_tenant(name)
    kinds = set()
    for _ in range(3):
        for plan in world.round():
            for obj in plan.desired.values():
                assert validator.validate(obj) == []
                inner = obj["spec"]["forProvider"]["manifest"] if wrap else obj
                kinds.add(inner["kind"])
    listener_set = "XListenerSet" if flavour == "v1.4" else "ListenerSet"
    expected = {"Lease", listener_set, "TCPRoute", "NetworkPolicy"}
    if placement == "Gateway":
        expected.add("ReferenceGrant")
    assert kinds == expected
    world.close()


@pytest.mark.parametrize("wrap", [False, True])
def test_every_gateway_the_pool_step_emits_is_valid(crd_validator, wrap):
    validator = crd_validator("v1.6", wrap)
    spec = GatewayPool.model_validate(
        {
            "pool": "postgresql",
            "namespace": "tcp-gateways",
            "gatewayClassName": "envoy-gateway",
            "provider": "cloudscale",
            "ports": "10000-14999",
            "hostname": "db{index}.example.ch",
            "headroom": 20,
            "allowedListenerNamespaces": {"from": "Selector",
                                          "selector": {"matchLabels": {"tcp": "allowed"}}},
            "infrastructure": {"annotations": {f"example.com/a{i}": "x" for i in range(14)},
                               "labels": {"team": "platform"}},
            **({"wrap": {"providerConfigName": "kubernetes"}} if wrap else {}),
        }
    )  # fmt: skip
    claims = [claim(10000 + i, 1, wrapped=wrap) for i in range(90)]
    result = pool.run(
        spec,
        StepRequest(
            xr={"metadata": {"name": "p"}},
            lookups={pool.CLAIMS: claims, pool.LISTENER_SETS: [], pool.TICKETS: []},
        ),
    )
    assert len(result.resources) == 2
    for desired in result.resources.values():
        assert validator.validate(desired.resource) == []


def yaml_documents():
    files = [
        ROOT / "crossplane.yaml",
        *ROOT.glob("package/**/*.yaml"),
        *ROOT.glob("examples/**/*.yaml"),
    ]
    for path in sorted(files):
        for number, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                yield pytest.param(path, doc, id=f"{path.relative_to(ROOT)}#{number}")


@pytest.fixture(scope="module")
def everything(crds_dir) -> dict[str, Validator]:
    files = (*CROSSPLANE_FILES, *COMMON_FILES)
    return {
        flavour: Validator.from_files((*files, *FLAVOUR_FILES[flavour]))
        for flavour in ("v1.4", "v1.5", "v1.6")
    }


def _flavour(path: Path) -> str:
    composition = path.parent / "composition.yaml"
    if composition.exists():
        for step in yaml.safe_load(composition.read_text())["spec"]["pipeline"]:
            api = (step.get("input") or {}).get("gatewayAPI")
            if api:
                return api
    return "v1.6"


def _known(validator: Validator, doc: dict) -> bool:
    try:
        validator.defaulted(doc)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("path", "doc"), list(yaml_documents()))
def test_every_yaml_document_of_a_known_kind_is_valid(everything, path, doc):
    validator = everything[_flavour(path)]
    if not _known(validator, doc):
        # XRs of the platform's own XRDs, render's Result documents, CRDs, Helm releases...
        pytest.skip(f"no upstream schema for {doc.get('apiVersion')} {doc.get('kind')}")
    if doc["apiVersion"].startswith("meta.pkg.crossplane.io/"):
        # Package metadata is read by the package manager, never applied to a cluster: the
        # scope of its CRD does not apply.
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": "package"}}
    problems = [
        problem
        for problem in validator.validate(doc)
        # An Object may wrap kinds we have no schema for (cert-manager's Certificate).
        if "spec.forProvider.manifest: Invalid value: no schema for" not in problem
    ]
    assert problems == []


def test_the_yaml_files_hold_the_kinds_that_must_be_checked(everything):
    kinds = {(doc.get("kind")) for _, doc in (p.values for p in yaml_documents())}
    assert {"Function", "Composition", "Gateway", "Lease", "Object", "ListenerSet",
            "XListenerSet", "TCPRoute", "NetworkPolicy", "ReferenceGrant"} <= kinds  # fmt: skip
