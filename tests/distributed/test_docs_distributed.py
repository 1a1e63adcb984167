"""Every Python example in docs/distributed.md runs, and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from distributed_support import require_service

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)


def test_the_guide_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
@pytest.mark.timeout(60)
def test_each_example_in_the_distributed_guide_runs(index: int) -> None:
    source = EXAMPLES[index]
    if "redis.internal" in source:
        # The opening sketch names a production host; compile it, do not run it.
        compile(source, f"distributed.md example {index + 1}", "exec")
        return
    if "psycopg" in source:
        require_service("postgres")
    code = compile(source, f"distributed.md example {index + 1}", "exec")
    exec(code, {"__name__": f"distributed_example_{index + 1}"})  # noqa: S102 - the docs' own code
