"""Every Python example in docs/stores.md runs, and its assertions hold.

Each block runs in an empty temporary directory (the guide's ``SQLiteStore("jobs.db")``
is a fresh file there). A block that begins with ``# From examples/<file>`` is an excerpt
of an example app: it must appear in that file verbatim, and the whole file is executed
in its place (it defines its app and functions, and starts nothing). The apps
themselves run under uvicorn and Django's test runner in ``tests/examples/``.
"""

from __future__ import annotations

import importlib.util
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "stores.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
EXCERPT = re.compile(r"# From (examples/\S+)\n")
DJANGO_PROJECT = ROOT / "examples" / "django_app"


def test_the_guide_has_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
@pytest.mark.timeout(60)
def test_each_example_in_the_stores_guide_runs(
    index: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    block = EXAMPLES[index]
    if "gnomon.postgres" in block and importlib.util.find_spec("psycopg") is None:
        pytest.skip("the PostgreSQL driver is not installed (pip install 'gnomon[postgres]')")
    monkeypatch.chdir(tmp_path)
    excerpt = EXCERPT.match(block)
    if excerpt is None:
        code = compile(block, f"stores.md example {index + 1}", "exec")
        exec(code, {"__name__": f"stores_example_{index + 1}"})  # noqa: S102 - the docs' own code
        return
    source = ROOT / excerpt.group(1)
    assert block[excerpt.end() :] in source.read_text(), f"{source} no longer has this excerpt"
    run_example_file(source, monkeypatch)


def run_example_file(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Execute an example file as its app would import it, then forget its modules."""
    if DJANGO_PROJECT in source.parents:
        monkeypatch.syspath_prepend(str(DJANGO_PROJECT))
    before = set(sys.modules)
    try:
        runpy.run_path(str(source), run_name=f"example_{source.stem}")
    finally:
        for name in set(sys.modules) - before:
            if name == "reminders" or name.startswith("reminders."):
                del sys.modules[name]


README_BLOCKS = re.findall(
    r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL
)


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_each_readme_example_compiles(index: int) -> None:
    """The README's examples run forever (``run_forever``), so they are only compiled."""
    compile(README_BLOCKS[index], f"README.md example {index + 1}", "exec")
