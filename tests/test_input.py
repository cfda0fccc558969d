"""The input model and the CRD generated from it."""

from function import crd
from function.inputs import TCPAccess


def test_committed_input_crds_equal_a_fresh_generation():
    for model, plural in crd.INPUTS:
        committed = crd.path_for(plural).read_text()
        assert committed == crd.render(model, plural), "run `python -m function.crd`"


def test_defaults():
    spec = TCPAccess.model_validate(
        {
            "pool": "p",
            "gatewayNamespace": "g",
            "backend": {"namespace": "n", "service": "s", "port": 1},
        }
    )
    assert (spec.gatewayAPI, spec.placement, spec.listenerName) == ("v1.6", "Backend", "tcp")
    assert spec.statusPath == "status.tcpAccess"
    assert spec.pod_port == 1 and spec.data_plane_namespace == "g"
    assert spec.wrap is None and spec.enabled


def test_crd_schema_requires_what_the_model_requires():
    schema = crd.crd(TCPAccess, "tcpaccesses")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert set(schema["required"]) == {"pool", "gatewayNamespace", "backend"}
    assert schema["properties"]["gatewayAPI"]["enum"] == ["v1.4", "v1.5", "v1.6"]
    assert schema["properties"]["backend"]["properties"]["podPort"]["minimum"] == 1
