"""Every example renders to its expected output (`crossplane render`'s, see tests/render.py).

Regenerate after a deliberate change:  UPDATE_EXAMPLES=1 .venv/bin/pytest tests/test_examples.py
"""

import os
from pathlib import Path

import pytest
import yaml

from tests.appcat import SERVICES, ssh_values, tcp_objects
from tests.render import dump, load, mode_of, render

ROOT = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(p.parent for p in ROOT.rglob("composition.yaml"))


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_renders_to_its_expected_output(folder: Path):
    rendered = dump(render(folder, mode=mode_of(folder)))
    expected = folder / "expected.yaml"
    if os.environ.get("UPDATE_EXAMPLES"):
        expected.write_text(
            "# crossplane render output (regenerate: UPDATE_EXAMPLES=1 pytest "
            "tests/test_examples.py)\n" + rendered
        )
    assert expected.exists(), f"{expected} is missing: run with UPDATE_EXAMPLES=1"
    assert list(yaml.safe_load_all(rendered)) == list(yaml.safe_load_all(expected.read_text()))


APPCAT = ROOT / "appcat"
# AppCat's own services, as AppCat composes them; postgresql-ipfilter/ goes beyond what
# AppCat does (a source allowlist on the shared IP) and is checked by its expected output.
APPCAT_CASES = sorted(
    p.parent for p in APPCAT.rglob("composition.yaml") if p.relative_to(APPCAT).parts[0] in SERVICES
)
KEY = "crossplane.io/composition-resource-name"


def _by_key(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["annotations"][KEY]: d for d in docs if KEY in str(d.get("metadata"))}


def _route_backend(route: dict) -> tuple:
    [ref] = route["spec"]["rules"][0]["backendRefs"]
    namespace = ref.get("namespace", route["metadata"]["namespace"])  # Gateway API's default
    return ref["group"], ref["kind"], ref["name"], namespace, ref["port"]


@pytest.mark.parametrize("folder", APPCAT_CASES, ids=lambda p: str(p.relative_to(APPCAT)))
def test_an_appcat_example_returns_what_appcat_itself_would(folder: Path):
    """AppCat's objects under AppCat's keys and names, on the port AppCat's webhook gave
    (a takeover) or the one claimed, with the connection details and Helm values AppCat
    sets for that port, and no Warning."""
    service = SERVICES[folder.relative_to(APPCAT).parts[0]]
    docs = render(folder, mode="v1")
    assert [d for d in docs if d["kind"] == "Result"] == []
    [xr] = load(folder / "xr.yaml")
    name = xr["metadata"]["name"]
    observed = _by_key(load(folder / "observed-resources.yaml"))
    [shard] = [d for d in load(folder / "required-resources.yaml") if d["kind"] == "Gateway"]
    host = shard["metadata"]["annotations"]["tcp.fn.servala.io/hostname"]
    appcat = tcp_objects(service, name, shard["metadata"]["name"], 0)
    taken_over = folder.name == "takeover"  # the webhook's allocation, AppCat's objects
    if taken_over:
        live = observed[next(iter(appcat))]["status"]["atProvider"]["manifest"]
        port = live["spec"]["listeners"][0]["port"]
    else:
        [port] = [int(k.removeprefix("tcp-claim-")) for k in observed if k.startswith("tcp-claim-")]
    rendered = _by_key(docs)
    assert f"tcp-claim-{port}" in rendered

    for key, want in tcp_objects(service, name, shard["metadata"]["name"], port).items():
        got = rendered[key]
        assert got["metadata"]["name"] == want["metadata"]["name"], key
        if taken_over:  # claim first: AppCat's objects are kept exactly as they are
            assert got["spec"] == observed[key]["spec"], key
            continue
        got, want = (o["spec"]["forProvider"]["manifest"] for o in (got, want))
        identity = ("apiVersion", "kind")
        assert [got[k] for k in identity] == [want[k] for k in identity], key
        assert [got["metadata"][k] for k in ("name", "namespace")] == [
            want["metadata"][k] for k in ("name", "namespace")
        ], key
        if want["kind"] == "XListenerSet":
            assert got["spec"]["listeners"] == want["spec"]["listeners"]
            assert got["spec"]["parentRef"] == want["spec"]["parentRef"]
        elif want["kind"] == "TCPRoute":
            parent = {k: v for k, v in got["spec"]["parentRefs"][0].items() if k != "namespace"}
            assert parent == want["spec"]["parentRefs"][0]
            assert _route_backend(got) == _route_backend(want)
        else:
            assert got["spec"] == want["spec"]

    [details] = [d["data"] for d in docs if d["kind"] == "ConnectionDetails"]
    assert (details[service.host_key], details[service.port_key]) == (host, str(port))
    if service.kind == "forgejo":
        [before] = [d for d in load(folder / "appcat.output.yaml") if d["kind"] == "Release"]
        after = rendered[name]
        assert after["spec"]["forProvider"]["values"] == ssh_values(
            before["spec"]["forProvider"]["values"], host, port
        )
        assert {k: v for k, v in after["spec"].items() if k != "forProvider"} == {
            k: v for k, v in before["spec"].items() if k != "forProvider"
        }
        assert docs[0]["status"]["sshPort"] == port
