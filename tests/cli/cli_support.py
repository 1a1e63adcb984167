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

OCCURRENCES = (
    "SELECT job_name, COALESCE(outcome, 'running') FROM gnomon_occurrences"
    " ORDER BY scheduled_ts, occurrence_key"
)
"""Each occurrence's job and outcome (``running`` while it runs), in the store's table."""

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
    """A temporary directory holding a schedule file (``gnomon.toml``) and its state file
    (a ``SQLiteStore``)."""

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

    def rows(self, sql: str = OCCURRENCES, path: Path | None = None) -> list[tuple[Any, ...]]:
        """Rows of the state file (or of ``path``), read the way another process would."""
        path = path or self.state
        if not path.exists():
            return []
        connection = sqlite3.connect(path, timeout=10)
        try:
            return list(connection.execute(sql))
        except sqlite3.OperationalError:
            return []  # the daemon has not created its tables yet
        finally:
            connection.close()

    def outcomes(self, job: str) -> list[str]:
        return [outcome for name, outcome in self.rows() if name == job]

    def history(self, *arguments: str) -> list[dict[str, Any]]:
        """``gnomon history --json`` (up to 1000 records), parsed."""
        result = self.gnomon("history", "--json", "--limit", "1000", *arguments)
        assert result.returncode == 0, result.stderr
        records: list[dict[str, Any]] = json.loads(result.stdout)
        return records

    def lines(self, name: str) -> list[str]:
        """The lines of a file that commands append to (none while it does not exist)."""
        path = self.root / name
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


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
POSTGRES_URL = os.environ.get("GNOMON_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _unavailable(problem: str, variable: str) -> None:
    """Skip, naming the problem, or fail when services are required (the repository's
    convention: see tests/distributed/distributed_support.py)."""
    if os.environ.get("GNOMON_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
    pytest.skip(f"{problem}; set {variable} to run this test")


def require_postgres() -> str:
    """The PostgreSQL URL to share a store on; skip when ``gnomon.postgres`` cannot be
    imported, and skip (or fail, when services are required) if no server answers."""
    try:
        import psycopg

        from gnomon.postgres import PostgresStore  # noqa: F401 - importing is the check
    except ImportError as error:
        pytest.skip(f"gnomon.postgres.PostgresStore is not importable here: {error}")
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        _unavailable(
            f"no PostgreSQL answers at {POSTGRES_URL} ({type(error).__name__})",
            "GNOMON_POSTGRES_URL",
        )
    return POSTGRES_URL


def drop_postgres_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


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
        _unavailable(f"no Redis answers at {REDIS_URL} ({error})", "GNOMON_REDIS_URL")
    return REDIS_URL
