"""The ``gnomon`` command with ``celery``, ``dramatiq`` and ``rq`` jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dispatch_support import HERE, SRC
from private_servers import free_port


def _gnomon(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)])}
    return subprocess.run(
        [sys.executable, "-m", "gnomon", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gnomon.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_an_unknown_broker_url_scheme_is_refused_naming_it_and_the_valid_ones(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        """
        [scheduler]
        broker = "kafka://user:hunter2@127.0.0.1:9092"

        [[jobs]]
        name = "report"
        every = "1m"
        celery = "app.tasks.report"
        """,
    )
    result = _gnomon("check", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown scheme 'kafka'" in result.stderr
    assert "amqp, amqps, pyamqp, redis, rediss" in result.stderr
    assert "hunter2" not in result.stderr


def test_an_unreachable_broker_stops_gnomon_run_at_start_with_a_clear_error(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    path = _write(
        tmp_path,
        f"""
        [scheduler]
        broker = "amqp://guest:s3cret@127.0.0.1:{port}//"

        [[jobs]]
        name = "report"
        every = "1m"
        celery = "app.tasks.report"
        """,
    )
    result = _gnomon("run", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr
    assert "is not reachable" in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("job", "broker", "problem"),
    [
        ('celery = "app.tasks.report"', None, "need the broker's URL: set [scheduler] broker"),
        ('rq = "dispatch_workers.rq_record"', "amqp://127.0.0.1//", "rq jobs need a redis://"),
        ('rq = "dispatch_workers.no_such"', "redis://127.0.0.1", "has no function 'no_such'"),
        ('command = "true"\nqueue = "q"', None, "queue does not apply to this job"),
        ('dramatiq = "report"\nexpires = "0s"', "redis://127.0.0.1", "expires"),
        ('celery = "app.tasks.report"\ntrack = "yes"', "redis://127.0.0.1", "track must be"),
        ('dramatiq = "report"\ntrack = true', "redis://127.0.0.1", "Results middleware"),
        (
            'celery = "app.tasks.report"\nargs = [1979-05-27T07:32:00Z]',
            "redis://127.0.0.1",
            "args[0] is a datetime",
        ),
    ],
)
def test_a_bad_dispatch_job_is_refused_by_check_naming_the_problem(
    tmp_path: Path, job: str, broker: str | None, problem: str
) -> None:
    scheduler = f'[scheduler]\nbroker = "{broker}"\n' if broker else ""
    path = tmp_path / "gnomon.toml"
    path.write_text(f'{scheduler}\n[[jobs]]\nname = "report"\nevery = "1m"\n{job}\n')
    result = _gnomon("check", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert problem in result.stderr, result.stderr


def test_check_accepts_celery_dramatiq_and_rq_jobs_without_connecting(tmp_path: Path) -> None:
    port = free_port()  # check declares the jobs but never connects
    path = _write(
        tmp_path,
        f"""
        [scheduler]
        broker = "redis://127.0.0.1:{port}/0"

        [[jobs]]
        name = "celery-report"
        cron = "0 6 * * *"
        celery = "app.tasks.report"
        args = [1, "two"]
        kwargs = {{ full = true }}
        queue = "reports"
        expires = "15m"
        track = true

        [[jobs]]
        name = "dramatiq-report"
        every = "1h"
        dramatiq = "report"

        [[jobs]]
        name = "rq-report"
        every = "1h"
        rq = "dispatch_workers.rq_record"
        args = ["sink"]
        """,
    )
    result = _gnomon("check", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


GUIDE = HERE.parents[1] / "docs" / "task-queues.md"


def test_the_guides_schedule_file_passes_check_and_its_beat_schedule_is_the_same_jobs(
    tmp_path: Path,
) -> None:
    text = GUIDE.read_text()
    [toml] = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    beat = next(
        b for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "beat_schedule" in b
    )
    namespace: dict[str, object] = {}
    exec(beat, namespace)  # noqa: S102 - the guide's own code
    beat_schedule = namespace["beat_schedule"]
    assert isinstance(beat_schedule, dict)
    path = tmp_path / "beat.toml"
    path.write_text(toml)
    result = _gnomon("check", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in beat_schedule:
        assert name in result.stdout
