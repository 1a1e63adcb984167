"""The time-rules guide's examples run: every Python block in ``docs/time-rules.md``."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "time-rules.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
PRINTED = re.compile(r"^print\((.*)\)\s*# (.*)$", re.MULTILINE)


def guide_blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_the_time_rules_guide_has_examples() -> None:
    assert len(guide_blocks()) >= 6


@pytest.mark.parametrize("index", range(len(guide_blocks())))
def test_each_example_in_the_time_rules_guide_runs(index: int) -> None:
    source = guide_blocks()[index]
    code = compile(source, f"{GUIDE.name} example {index + 1}", "exec")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(code, {"__name__": f"time_rules_example_{index + 1}"})  # noqa: S102 - our own docs
    # A `print(...)  # text` line promises that text, or a later "# text" comment line does.
    promised = [text for _, text in PRINTED.findall(source)]
    promised += re.findall(r"^print\(.*\)\n# (.*)$", source, re.MULTILINE)
    for text in promised:
        assert text in output.getvalue().splitlines()
