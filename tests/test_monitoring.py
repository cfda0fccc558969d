"""examples/monitoring: promtool accepts the alerts and their unit tests pass; the
kube-state-metrics config reads what the steps really write; the alerts and the dashboard
name only metrics that the function, that config or a recording rule produces."""

import datetime
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from function import metrics
from tests import ksm
from tests.factories import claim
from tests.test_pool_scenarios import PoolWorld

MONITORING = Path(__file__).resolve().parent.parent / "examples" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found (Debian package prometheus; .ci/run installs it)"
)


def exported(family) -> set[str]:
    """The series names Prometheus scrapes for one metric family of prometheus_client."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count", ""),
    }.get(family.type, ("",))
    return {family.name + suffix for suffix in suffixes}


# The function's own metrics, read from the registry its /metrics serves (so a renamed
# metric fails here), and what Prometheus adds to every scrape.
FUNCTION_METRICS = {name for family in metrics.REGISTRY.collect() for name in exported(family)} | {
    "up"
}


def load(name: str):
    return yaml.safe_load((MONITORING / name).read_text())


def rule_groups() -> dict:
    rule = load("prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return rule["spec"]


def rules() -> list[dict]:
    return [r for group in rule_groups()["groups"] for r in group["rules"]]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_every_alert_fires_and_stays_silent_as_its_unit_tests_say(tmp_path):
    # The unit tests compare annotations whole: they see the rules without the runbooks,
    # which test_every_alert_has_a_runbook_and_is_unit_tested checks instead.
    spec = rule_groups()
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("runbook", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(MONITORING / "rules.test.yaml", tmp_path)
    tested = promtool("test", "rules", "rules.test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_runbook_and_is_unit_tested():
    cases = [case for test in load("rules.test.yaml")["tests"] for case in test["alert_rule_test"]]
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    for alert in alerts():
        name = alert["alert"]
        assert alert.get("annotations", {}).get("runbook", "").strip(), f"{name}: no runbook"
        assert alert.get("labels", {}).get("severity") in ("warning", "critical"), name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no test that it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no test that it is silent"
    assert {case["alertname"] for case in cases} <= set(names)


# -- the kube-state-metrics config over real statuses ---------------------------------------


def ksm_resources(kind: str) -> list[dict]:
    config = load("kube-state-metrics.yaml")
    assert config["kind"] == "CustomResourceStateMetrics"
    return [r for r in config["spec"]["resources"] if r["groupVersionKind"]["kind"] == kind]


@pytest.fixture(scope="module")
def world():
    """A pool step and three tenants on the simulator, plus a claim naming no shard and
    one outside its shard's slice."""
    world = PoolWorld(mode="v2", provider="exoscale", capacity=10, headroom=3)
    world.reconcile_pool()
    names = ["a", "b", "c"]
    for name in names:
        world.create_tenant(name)
    world.until_everyone_holds_a_port(names)
    world.settle(2)
    orphan = claim(10450, 1, holder="gone")
    del orphan["metadata"]["labels"]["tcp.fn.servala.io/shard"]
    world.cluster.create(orphan)
    world.cluster.create(claim(10480, 1, holder="moved"))  # shard 1's slice is 10000-10009
    world.reconcile_pool()
    yield world
    world.close()


# Metrics of a pool recounted in windows only (absent while a pool is read whole).
WINDOWED_ONLY = {"kube_tcp_access_pool_oldest_count_timestamp_seconds"}


def by_name(families: list[ksm.Family]) -> dict[str, ksm.Family]:
    return {family.name: family for family in families}


def test_the_pool_metrics_read_the_pool_steps_status(world):
    xr = world.pool_sim.get_xr(world.pool_xr)
    [resource] = ksm_resources(xr["kind"])
    found = by_name(ksm.families(resource, xr))
    for family in found.values():
        assert not family.errors, (family.name, family.errors)
        if family.name in WINDOWED_ONLY:  # this pool is read whole
            assert not family.samples, family.name
            continue
        assert family.samples, f"{family.name} reads nothing from the pool XR's status"
    shards = xr["status"]["pool"]["shards"]
    used = {s.labels["shard"]: s.value for s in found["kube_tcp_access_pool_shard_used"].samples}
    assert used == {str(s["index"]): s["used"] for s in shards}
    [pool_label] = {s.labels["pool"] for s in found["kube_tcp_access_pool_free"].samples}
    assert pool_label == xr["metadata"]["name"]
    programmed = found["kube_tcp_access_pool_shard_programmed"].samples
    assert {s.value for s in programmed} == {1.0}  # the simulator's Gateways are programmed
    orphans = found["kube_tcp_access_pool_orphaned_claim_info"].samples
    assert [s.labels["claim"] for s in orphans] == ["tcp-postgresql-10450"]
    strays = found["kube_tcp_access_pool_claim_outside_slice_info"].samples
    assert [s.labels["claim"] for s in strays] == ["tcp-postgresql-10480"]
    capacity = found["kube_tcp_access_pool_capacity_condition"].samples
    assert {s.labels["reason"]: s.value for s in capacity}["Available"] == 1.0
    assert found["kube_tcp_access_pool_waiting"].samples[0].value == 0


def test_a_windowed_pool_reports_when_its_oldest_count_was():
    windowed = PoolWorld(mode="v2", provider="exoscale", capacity=10, headroom=3, readBudgetKiB=10)
    names = [f"w{i}" for i in range(12)]
    for name in names:
        windowed.create_tenant(name)
    windowed.until_everyone_holds_a_port(names)
    windowed.reconcile_pool()
    xr = windowed.pool_sim.get_xr(windowed.pool_xr)
    view = xr["status"]["pool"]["view"]
    assert view["mode"] == "Window"
    [resource] = ksm_resources(xr["kind"])
    family = by_name(ksm.families(resource, xr))[
        "kube_tcp_access_pool_oldest_count_timestamp_seconds"
    ]
    assert not family.errors
    [sample] = family.samples
    counted = datetime.datetime.strptime(view["oldestCount"], "%Y-%m-%dT%H:%M:%SZ")
    assert sample.value == counted.replace(tzinfo=datetime.UTC).timestamp()
    oldest = min(s["countedAt"] for s in xr["status"]["pool"]["shards"])
    assert view["oldestCount"] == oldest
    windowed.close()


def test_the_tenant_metrics_read_the_tenant_steps_condition(world):
    xr = world.xr("a")
    [resource] = ksm_resources(xr["kind"])
    [family] = ksm.families(resource, xr)
    assert not family.errors
    ready = [s for s in family.samples if s.labels["type"] == "TCPAccessReady"]
    assert [(s.labels["reason"], s.value, s.labels["name"]) for s in ready] == [("Ready", 1.0, "a")]


def test_every_example_tenant_xr_kind_has_the_same_tenant_metric():
    config = load("kube-state-metrics.yaml")["spec"]["resources"]
    tenants = [r for r in config if r["groupVersionKind"]["kind"] != "XGatewayPool"]
    kinds = {r["groupVersionKind"]["kind"] for r in tenants}
    assert kinds == {"XVSHNPostgreSQL", "XVSHNRedis", "XVSHNMariaDB", "XVSHNForgejo"}
    assert len({json.dumps(r["metrics"], sort_keys=True) for r in tenants}) == 1


# -- every name an expression uses is produced by something ---------------------------------

_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = _CLAUSE.sub("", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        follows = text[match.end() :].lstrip()
        if follows.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def produced() -> set[str]:
    config = load("kube-state-metrics.yaml")["spec"]["resources"]
    from_ksm = {f"{r['metricNamePrefix']}_{m['name']}" for r in config for m in r["metrics"]}
    recorded = {r["record"] for r in rules() if "record" in r}
    return FUNCTION_METRICS | from_ksm | recorded


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_names_are_found_in_expressions():
    expr = 'sum by (le, step) (rate(tcp_access_step_seconds_bucket{pool=~"$pool"}[5m])) > up'
    assert metric_names(expr) == {"tcp_access_step_seconds_bucket", "up"}


def test_alerts_and_recording_rules_read_only_produced_metrics():
    known = produced()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, (rule.get("alert") or rule.get("record"), unknown)


def test_the_dashboard_reads_only_produced_metrics():
    known = produced()
    exprs = dashboard_exprs()
    assert len(exprs) > 10
    for expr in exprs:
        assert not metric_names(expr) - known, expr
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    [pool] = [v for v in dashboard["templating"]["list"] if v["name"] == "pool"]
    assert re.match(r"label_values\((\w+), pool\)", pool["definition"]).group(1) in known


def test_the_pod_monitor_scrapes_the_function_pods_metrics_port():
    monitor = load("podmonitor.yaml")
    assert monitor["kind"] == "PodMonitor"
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "pkg.crossplane.io/function": "function-tcp-access"
    }
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    # The FunctionDown alert's job is the value of the label the monitor takes it from.
    down = next(a for a in alerts() if a["alert"] == "TCPAccessFunctionDown")
    assert monitor["spec"]["jobLabel"] == "pkg.crossplane.io/function"
    assert 'job="function-tcp-access"' in down["expr"]


def test_the_readme_says_what_every_alert_means():
    readme = (MONITORING.parent.parent / "README.md").read_text()
    section = readme.split("## Operating the pools", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(TCPAccess\w+)` \|", section, re.MULTILINE))
    assert documented == {a["alert"] for a in alerts()}
