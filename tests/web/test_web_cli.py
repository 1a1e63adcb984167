"""The dashboard from the ``gnomon`` command: ``run --web`` and ``web``."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_support import WAIT, wait_for

import gnomon
from gnomon.sqlite import SQLiteStore

TOKEN = "cli-test-token-0123456789abcdef"  # noqa: S105 - a test token
SCHEDULE = """
[scheduler]
timezone = "UTC"

[[jobs]]
name = "nightly"
cron = "0 3 * * *"
command = "true"
"""


class Process:
    """A ``gnomon`` subprocess whose output goes to a file the test reads."""

    def __init__(self, root: Path, *arguments: str) -> None:
        self.log = root / f"gnomon-{arguments[0]}.log"
        with self.log.open("w", encoding="utf-8") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gnomon", *arguments],
                cwd=root,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def url(self, pattern: str) -> str:
        def found() -> str | None:
            match = re.search(pattern, self.log.read_text(encoding="utf-8"))
            if match is None and self.process.poll() is not None:
                pytest.fail(f"gnomon exited early:\n{self.log.read_text(encoding='utf-8')}")
            return str(match.group(1)) if match else None

        return wait_for(f"{pattern!r} in the log", found)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=WAIT)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(timeout=WAIT)


def test_run_with_web_serves_a_read_only_dashboard_without_a_token_file(
    tmp_path: Path, processes: list[Process]
) -> None:
    (tmp_path / "gnomon.toml").write_text(SCHEDULE, encoding="utf-8")
    daemon = Process(tmp_path, "run", "--web", "127.0.0.1:0")
    processes.append(daemon)
    url = daemon.url(r"dashboard on (http://127\.0\.0\.1:\d+/) \(read-only\)")
    page = httpx.get(url, timeout=WAIT)
    assert page.status_code == 200
    assert ">nightly</a>" in page.text
    assert "at 03:00" in page.text
    assert "Run now" not in page.text
    job_id = re.search(r'href="/jobs/([0-9a-f-]+)">nightly</a>', page.text)
    assert job_id is not None
    refused = httpx.post(f"{url}jobs/{job_id.group(1)}/run", headers={"origin": url[:-1]})
    assert refused.status_code == 403
    foreign = httpx.get(url, headers={"host": "rebound.example:8421"}, timeout=WAIT)
    assert foreign.status_code == 400
    assert daemon.stop() == 0


def test_run_with_a_token_file_needs_the_token_for_pages_and_actions(
    tmp_path: Path, processes: list[Process]
) -> None:
    (tmp_path / "gnomon.toml").write_text(SCHEDULE, encoding="utf-8")
    (tmp_path / "token").write_text(f"{TOKEN}\n", encoding="utf-8")
    daemon = Process(tmp_path, "run", "--web", "127.0.0.1:0", "--web-token-file", "token")
    processes.append(daemon)
    url = daemon.url(r"dashboard on (http://127\.0\.0\.1:\d+/) \(actions need the token\)")
    assert httpx.get(url, timeout=WAIT).status_code == 401
    bearer = {"authorization": f"Bearer {TOKEN}"}
    page = httpx.get(url, headers=bearer, timeout=WAIT)
    assert page.status_code == 200
    job_id = re.search(r'href="/jobs/([0-9a-f-]+)">nightly</a>', page.text)
    assert job_id is not None
    run = f"{url}jobs/{job_id.group(1)}/run"
    origin = {"origin": url[:-1]}
    assert httpx.post(run, headers=origin, timeout=WAIT).status_code == 401
    assert httpx.post(run, headers=bearer, timeout=WAIT).status_code == 403
    assert httpx.post(run, headers={**bearer, **origin}, timeout=WAIT).status_code == 303

    def ran() -> list[gnomon.RunRecord]:
        store = SQLiteStore(tmp_path / "gnomon.state.sqlite3")
        try:
            return [r for r in store.history(limit=10) if r.outcome is gnomon.Outcome.SUCCESS]
        finally:
            store.close()

    [record] = wait_for("the run started from the dashboard", ran)
    assert record.actor == "token"
    assert daemon.stop() == 0


def test_gnomon_web_serves_a_store_read_only(tmp_path: Path, processes: list[Process]) -> None:
    path = tmp_path / "fleet.db"
    store = SQLiteStore(path)
    s = gnomon.Scheduler(store=store, timezone="UTC")
    s.register(print, name="print")
    s.start()
    job = s.add_job("print", gnomon.every("1h"), name="fleet-job", tags=["fleet"])
    s.shutdown()
    store.close()
    assert job is not None
    web = Process(tmp_path, "web", "--store", f"sqlite:{path}", "--listen", "127.0.0.1:0")
    processes.append(web)
    url = web.url(r"\(read-only\) on (http://127\.0\.0\.1:\d+/)")
    page = httpx.get(url, timeout=WAIT)
    assert page.status_code == 200
    assert f'href="/jobs/{job.id}">fleet-job</a>' in page.text
    assert "read-only" in page.text
    detail = httpx.get(f"{url}jobs/{job.id}", timeout=WAIT)
    assert "every 1h" in detail.text
    refused = httpx.post(f"{url}jobs/{job.id}/run", headers={"origin": url[:-1]}, timeout=WAIT)
    assert refused.status_code == 403
    assert web.stop() == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", "--web-token-file", "token"], "--web-token-file needs --web"),
        (["run", "--web", "127.0.0.1:99999"], "port must be between 0 and 65535"),
        (["run", "--web", "127.0.0.1:0", "--web-token-file", "short"], "at least 16"),
        (["run", "--web", "127.0.0.1:0", "--web-token-file", "absent"], "cannot be read"),
        (["web", "--store", "mysql://x", "--listen", "127.0.0.1:0"], "mysql://x"),
        (["web", "--listen", "here"], "--listen must be [HOST:]PORT"),
    ],
)
def test_bad_web_options_are_usage_errors(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    (tmp_path / "gnomon.toml").write_text(SCHEDULE, encoding="utf-8")
    (tmp_path / "short").write_text("abc", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gnomon", *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_status_shows_a_pause_reason(tmp_path: Path) -> None:
    (tmp_path / "gnomon.toml").write_text(textwrap.dedent(SCHEDULE), encoding="utf-8")
    store = SQLiteStore(tmp_path / "gnomon.state.sqlite3")
    s = gnomon.Scheduler(store=store, timezone="UTC")
    s.register(print, name="print")
    s.start()
    job = s.add_job("print", gnomon.every("1h"), name="held")
    assert job is not None
    job.pause("waiting for the vendor")
    s.shutdown()
    store.close()
    result = subprocess.run(
        [sys.executable, "-m", "gnomon", "status"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    assert "held (paused: waiting for the vendor)" in result.stdout
