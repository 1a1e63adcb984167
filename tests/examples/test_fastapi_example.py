"""examples/fastapi_app.py under real uvicorn with two workers: each reminder runs once.

Both workers build their own scheduler on one SQLite file. Reminders are posted to
whichever worker the OS hands each connection to; every reminder must be sent exactly
once across the two, which the outbox file (one line per run) shows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REMINDERS = 8
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def poll(check: Callable[[], T | None], what: str, timeout: float) -> T:
    """``check()``'s first truthy answer, asked every 50 ms until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class Server:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.outbox = tmp_path / "outbox.txt"
        self.log = tmp_path / "uvicorn.log"
        env = {
            **os.environ,
            "GNOMON_EXAMPLE_DB": str(tmp_path / "reminders.db"),
            "GNOMON_EXAMPLE_OUTBOX": str(self.outbox),
        }
        command = [
            *(sys.executable, "-m", "uvicorn", "fastapi_app:app"),
            *("--app-dir", str(EXAMPLES), "--workers", "2"),
            *("--host", "127.0.0.1", "--port", str(self.port)),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"uvicorn exited early:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/jobs", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def sent(self) -> list[str]:
        """The occurrence keys in the outbox, one per run."""
        if not self.outbox.exists():
            return []
        return [line.split()[0] for line in self.outbox.read_text().splitlines()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    yield running
    running.stop()
    print(running.log.read_text())  # shown by pytest only when the test failed


@pytest.mark.timeout(60)
def test_each_reminder_posted_to_two_uvicorn_workers_is_sent_exactly_once(
    server: Server,
) -> None:
    poll(server.answers, "uvicorn to answer", timeout=20)
    posted = []
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        for n in range(REMINDERS):
            # A new connection each time, so that the OS spreads them over the workers.
            response = client.post(
                "/reminders",
                json={"text": f"reminder {n}", "in_seconds": 0.5 + n / 10},
                headers={"connection": "close"},
            )
            assert response.status_code == 201, response.text
            posted.append(response.json())
    names = {reminder["name"] for reminder in posted}
    assert len(names) == REMINDERS

    poll(lambda: len(server.sent()) >= REMINDERS, "every reminder to be sent", timeout=20)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0

    # The processes are gone: nothing can be written any more, so the count is final.
    sent = Counter(key.split("@")[0] for key in server.sent())
    assert sent == Counter(names), (
        f"each reminder once; posted by pids {[r['pid'] for r in posted]}"
    )
