"""The testing guide's examples run: every Python block in ``docs/testing.md`` and the
example test module ``examples/fake_clock_test_example.py``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from scheduler_support import ErrorWatch

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "testing.md"
EXAMPLE = ROOT / "examples" / "fake_clock_test_example.py"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def guide_blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_the_testing_guide_has_examples() -> None:
    assert len(guide_blocks()) >= 5


@pytest.mark.parametrize("index", range(len(guide_blocks())))
def test_each_example_in_the_testing_guide_runs(index: int, errors: ErrorWatch) -> None:
    errors.allow_log("flaky_export")  # the guide shows a failing task on purpose
    source = guide_blocks()[index]
    code = compile(source, f"{GUIDE.name} example {index + 1}", "exec")
    exec(code, {"__name__": f"testing_guide_example_{index + 1}"})  # noqa: S102 - our own docs


def test_the_example_test_module_passes_under_pytest() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLE), "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "3 passed" in finished.stdout
