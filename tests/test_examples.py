"""Every example renders to its expected output (`crossplane render`'s, see tests/render.py).

Regenerate after a deliberate change:  UPDATE_EXAMPLES=1 .venv/bin/pytest tests/test_examples.py
"""

import os
from pathlib import Path

import pytest
import yaml

from tests.render import dump, mode_of, render

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
