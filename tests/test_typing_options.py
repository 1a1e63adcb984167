"""Job options are typed (``**options: Unpack[JobOptions]``): mypy catches a misspelt one.

The test writes two small programs, one with a typo in an option name and one using the
options correctly on both faces, and type-checks them with the project's mypy settings in
one run.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TYPO = """\
import gnomon


def task() -> None:
    pass


gnomon.Scheduler().add_job(task, gnomon.every("1m"), singelton=gnomon.LimitMode.WAIT)
"""

CORRECT = """\
import gnomon


def task() -> None:
    pass


async def main() -> None:
    s = gnomon.Scheduler(job_defaults={"retry": gnomon.Retry(attempts=2)})
    job = s.add_job(
        task,
        gnomon.every("1m"),
        singleton=gnomon.LimitMode.WAIT_LATEST,
        retry=gnomon.Retry(attempts=3, delay="10s", on=(OSError,)),
        timeout="30s",
    )
    s.update_job(job.id, singleton=gnomon.LimitMode.REPLACE, retry=None)
    s.job(gnomon.every("1h"), name="hourly", retry=gnomon.Retry())(task)
    job.pause("deploy")
    job.resume(catch_up=True)
    a = gnomon.AsyncScheduler()
    await a.add_job(task, gnomon.every("1m"), retry=gnomon.Retry(past_next=True))
"""


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("typing")
    # mypy caches results by module name: fresh names keep another run's report out.
    unique = uuid.uuid4().hex[:12]
    typo = folder / f"typo_usage_{unique}.py"
    correct = folder / f"correct_usage_{unique}.py"
    typo.write_text(TYPO)
    correct.write_text(CORRECT)
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--no-error-summary",
        "--no-color-output",
        "--show-error-codes",
        str(typo),
        str(correct),
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode in (0, 1), done.stderr  # 2 would be a crash or a usage error
    return typo, correct, done.stdout


def test_a_misspelt_option_fails_mypy(mypy_report: tuple[Path, Path, str]) -> None:
    typo, _, report = mypy_report
    errors = [line for line in report.splitlines() if line.startswith(str(typo))]
    assert errors, report
    assert any('"singelton"' in line and 'did you mean "singleton"' in line for line in errors), (
        report
    )
    assert all(f"{typo}:8:" in line for line in errors if ": error:" in line), report


def test_correct_options_on_both_faces_pass_mypy(mypy_report: tuple[Path, Path, str]) -> None:
    _, correct, report = mypy_report
    assert str(correct) not in report, report
