"""What gets installed: the function's dependencies from a hash-checked lock, without the
operator CLI's Kubernetes client; the CLI with it, also as a kubectl plugin."""

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: canonical name -> (pinned version, hashes)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            assert current is not None, line
            entries[current][1].append(line.removeprefix("--hash=").rstrip(" \\"))
            continue
        requirement = Requirement(line.rstrip(" \\"))
        [specifier] = requirement.specifier
        assert specifier.operator == "==", f"{line}: not pinned"
        current = canonicalize_name(requirement.name)
        entries[current] = (specifier.version, [])
    return entries


def test_the_lock_pins_every_runtime_dependency_with_hashes():
    lock = locked()
    for line in PROJECT["dependencies"]:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in lock, f"{wanted.name} is a dependency but not in requirements.lock"
        version, _ = lock[name]
        assert wanted.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside pyproject's {wanted.specifier}"
        )
    for name, (version, hashes) in lock.items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{name}=={version}"


def test_the_function_carries_no_kubernetes_client():
    assert not any(Requirement(d).name == "kubernetes" for d in PROJECT["dependencies"])
    assert "kubernetes" not in locked()
    assert any(Requirement(d).name == "kubernetes" for d in PROJECT["optional-dependencies"]["cli"])
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, function.main; print('kubernetes' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"


def test_the_cli_without_its_kubernetes_client_says_how_to_install_it():
    # The client made unimportable, as on an install without the [cli] extra.
    script = (
        "import sys; sys.modules['kubernetes'] = None; sys.argv = ['tcp-access', 'report'];"
        "from function.operator.launch import main; main()"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 2
    assert "pip install 'function-tcp-access[cli]'" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_cli_is_also_a_kubectl_plugin():
    scripts = PROJECT["scripts"]
    # kubectl runs `kubectl-tcp_access` for `kubectl tcp-access`.
    assert scripts["kubectl-tcp_access"] == scripts["tcp-access"]
    ran = subprocess.run(
        [sys.executable, "-c", "from function.operator.launch import main; main()", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0 and "report" in ran.stdout
