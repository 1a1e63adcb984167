"""examples/django_app: its own Django tests (``manage.py test``) pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_app"


@pytest.mark.timeout(120)
def test_the_django_examples_own_test_suite_passes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        # Whatever the tests do not override lands in the test's directory, not the repo.
        "GNOMON_DB": str(tmp_path / "gnomon.sqlite3"),
        "REMINDERS_OUTBOX": str(tmp_path / "outbox.txt"),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "--verbosity", "2"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    ran = re.search(r"^Ran (\d+) tests? in ", report, flags=re.MULTILINE)
    assert ran is not None, report
    assert int(ran.group(1)) >= 4, report
    assert re.search(r"^OK$", report, flags=re.MULTILINE), report
