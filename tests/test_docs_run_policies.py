"""Every Python example in docs/run-policies.md runs, and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "run-policies.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)


def test_the_guide_has_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
@pytest.mark.timeout(60)
def test_each_example_in_the_run_policies_guide_runs(
    index: int, caplog: pytest.LogCaptureFixture
) -> None:
    code = compile(EXAMPLES[index], f"run-policies.md example {index + 1}", "exec")
    exec(code, {"__name__": f"run_policies_example_{index + 1}"})  # noqa: S102 - the docs' own code
