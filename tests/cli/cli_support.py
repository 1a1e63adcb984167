"""Helpers to run the real ``gnomon`` command on real schedule files in temporary directories."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

WAIT = 20.0
"""Generous: CI machines are slow, and every wait ends as soon as its event happens."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "gnomon", *arguments]


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


class Workspace:
    """A temporary directory holding a schedule file (``gnomon.toml``) and its state file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.schedule = root / "gnomon.toml"
        self.state = root / "gnomon.state.sqlite3"

    def write(self, text: str, name: str = "gnomon.toml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def gnomon(self, *arguments: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command(*arguments),
            cwd=self.root,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rows(self, sql: str = "SELECT job, outcome FROM runs ORDER BY id") -> list[tuple[Any, ...]]:
        """Rows of the state file, read the way another process would."""
        if not self.state.exists():
            return []
        connection = sqlite3.connect(self.state, timeout=10)
        try:
            return list(connection.execute(sql))
        except sqlite3.OperationalError:
            return []  # the daemon has not created its tables yet
        finally:
            connection.close()

    def outcomes(self, job: str) -> list[str]:
        return [outcome for name, outcome in self.rows() if name == job]


class Daemon:
    """``gnomon run`` in a subprocess, logging JSON lines to a file the test reads."""

    def __init__(self, workspace: Workspace, *arguments: str) -> None:
        self.workspace = workspace
        self.log_path = workspace.root / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            command("run", "--log-format", "json", *arguments),
            cwd=workspace.root,
            env=environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"message": line, "raw": True})
        return records

    def wait_for_record(self, what: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            return next((record for record in self.records() if match(record)), None)

        return wait_for(f"{what}; log so far:\n{self.log_path.read_text()}", probe)

    def wait_for_message(self, fragment: str) -> dict[str, Any]:
        return self.wait_for_record(
            f"a log record containing {fragment!r}",
            lambda record: fragment in str(record.get("message", "")),
        )

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)
        self._log.close()


REDIS_URL = os.environ.get("GNOMON_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> str:
    """The Redis URL to share between daemons; skip (or fail, when services are required)
    if no server answers there."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as error:
        problem = f"no Redis answers at {REDIS_URL} ({error})"
        if os.environ.get("GNOMON_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
        pytest.skip(f"{problem}; set GNOMON_REDIS_URL to run this test")
    return REDIS_URL
