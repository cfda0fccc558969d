from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.crds import MISSING_CRDS, Validator, configured_crd_dir, crd_dir


@pytest.fixture(scope="session")
def crds_dir() -> Path:
    """The upstream CRD folder; tests that need it are skipped where it is missing."""
    found = crd_dir()
    if found is None:
        pytest.skip(MISSING_CRDS.format(configured_crd_dir()))
    return found


@pytest.fixture(scope="session")
def crd_validator(crds_dir: Path) -> Callable[[str, bool], Validator]:
    """crd_validator("v1.6", wrapped=False): the flavour's Validator (built once, cached)."""
    return Validator.for_flavour


# The property histories take minutes each and the rest of the suite seconds: the workers
# (pytest-xdist, `--dist load --maxschedchunk 1`, so each takes its next test when it is
# free) start on the longest, and the last test to end is a short one. Relative costs
# (seconds) from `pytest --durations` on two cores; a test not listed costs nothing here and keeps
# its place, slow modules first.
LONGEST = {
    "test_properties.py::test_histories_keep_every_promise[crossplane-v2-wrapped": 65,
    "test_pool_scenarios.py::test_cloudscale_pool_of_a_thousand_tenants": 60,
    "test_properties.py::test_waiting_tenants_get_a_port_within_three_rounds[crossplane-v1.20": 63,
    "test_properties.py::test_histories_keep_every_promise[crossplane-v1.20": 60,
    "test_properties.py::test_waiting_tenants_get_a_port_within_three_rounds[crossplane-v2-w": 55,
    "test_fuzz.py::test_any_tenant_request_gets_an_answer": 50,
    "test_properties.py::test_waiting_tenants_get_a_port_within_three_rounds[crossplane-v2-d": 48,
    "test_pool_scenarios.py::test_exoscale_pool_grows_in_bursts_and_shrinks_without_moving"
    "_anyone[v1": 60,
    "test_pool_scenarios.py::test_exoscale_pool_grows_in_bursts": 28,
    "test_properties.py::test_histories_keep_every_promise[crossplane-v2-direct": 43,
    "test_fuzz.py::test_a_tenant_input_or_xr_field_of_another_type": 15,
    "test_properties.py::test_histories_with_xr_reads_lagging": 15,
    "test_properties.py::test_histories_on_wide_and_shared": 13,
}
SLOW_MODULES = (
    "test_pool_scenarios.py",
    "test_properties.py",
    "test_fuzz.py",
    "test_pool_operator.py",
)


def expected_cost(item) -> float:
    nodeid = item.nodeid.rpartition("/")[2]
    return next((cost for test, cost in LONGEST.items() if nodeid.startswith(test)), 0.0)


def pytest_collection_modifyitems(items):
    def slow_first(item) -> int:
        name = item.path.name
        return SLOW_MODULES.index(name) if name in SLOW_MODULES else len(SLOW_MODULES)

    items.sort(key=lambda item: (-expected_cost(item), slow_first(item)))  # stable
    # Each worker is first sent two tests: the longest with the fourth, the second with
    # the third, so neither starts with both of the two longest.
    if len(items) >= 4 and expected_cost(items[3]) > 0:
        items[1], items[2], items[3] = items[3], items[1], items[2]


def pytest_sessionfinish(session):
    """A pytest-xdist worker hands its counts to the controller, which prints them."""
    from tests import stats

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tcp_access_counts"] = dict(stats.COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    from tests import stats

    stats.COUNTS.update(getattr(node, "workeroutput", {}).get("tcp_access_counts", {}))


def pytest_terminal_summary(terminalreporter):
    """Print what the run simulated and fuzzed (tests/stats.py), e.g. "simulated reconciles:
    12345", so a shrinking budget shows in CI."""
    from tests import stats

    if stats.COUNTS:
        terminalreporter.section("simulated and fuzzed")
        for what, count in sorted(stats.COUNTS.items()):
            terminalreporter.write_line(f"{what}: {count}")
