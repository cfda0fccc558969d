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


# The simulator histories and scenarios take minutes each: they start first, so the
# workers (pytest-xdist) end together instead of one running them alone at the end.
SLOW_MODULES = (
    "test_pool_scenarios.py",
    "test_properties.py",
    "test_fuzz.py",
    "test_pool_operator.py",
)


def pytest_collection_modifyitems(items):
    def slow_first(item) -> int:
        name = item.path.name
        return SLOW_MODULES.index(name) if name in SLOW_MODULES else len(SLOW_MODULES)

    items.sort(key=slow_first)  # stable: each module keeps its own order


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
