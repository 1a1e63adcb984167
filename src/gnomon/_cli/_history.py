"""The state file: a SQLite database holding one record per occurrence, and the daemon's state.

Every write commits on its own (WAL journal), so a daemon killed with ``kill -9`` loses no
record it had written. Readers (``gnomon history``/``status``) open the same file while a
daemon runs.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from gnomon._errors import GnomonError

__all__ = [
    "FAILED_OUTCOMES",
    "DaemonRecord",
    "History",
    "JobRecord",
    "RunRecord",
    "StateFileMissing",
    "StateFileUnusable",
]

SCHEMA_VERSION = 1
RUNNING = "running"
FAILED_OUTCOMES = ("failed", "timed_out", "cancelled", "abandoned")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    occurrence TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    scheduled_at TEXT NOT NULL,
    scheduled_ts REAL NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    duration REAL,
    outcome TEXT NOT NULL,
    exit_status INTEGER,
    detail TEXT,
    output TEXT,
    count INTEGER NOT NULL DEFAULT 1,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, scheduled_ts);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (scheduled_ts);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    next_run TEXT
);
CREATE TABLE IF NOT EXISTS daemon (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    schedule_file TEXT NOT NULL,
    timezone TEXT NOT NULL,
    cluster TEXT,
    started_at TEXT NOT NULL,
    heartbeat_ts REAL NOT NULL,
    stopped_at TEXT
);
"""


class StateFileMissing(GnomonError, FileNotFoundError):
    """There is no state file where one was expected."""


class StateFileUnusable(GnomonError):
    """The state file cannot be opened, created or read (permissions, not a database)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One occurrence: a run (finished or still running) or a skip with its reason."""

    job: str
    occurrence: str
    attempt: int
    scheduled_at: str
    started_at: str | None
    finished_at: str | None
    duration: float | None
    outcome: str
    exit_status: int | None
    detail: str | None
    output: str | None
    count: int


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job of the daemon's current schedule, with its history summarised."""

    name: str
    rule: str
    action: str
    next_run: str | None
    last_outcome: str | None
    last_run: str | None
    failures_24h: int


@dataclass(frozen=True, slots=True)
class DaemonRecord:
    """The daemon that last used this state file."""

    pid: int
    host: str
    schedule_file: str
    timezone: str
    cluster: str | None
    started_at: str
    heartbeat_ts: float
    stopped_at: str | None

    @property
    def running(self) -> bool:
        """Best judgement from here: the process is alive (same host) or beat recently."""
        if self.stopped_at is not None:
            return False
        if self.host == socket.gethostname():
            return _process_exists(self.pid)
        return datetime.now(UTC).timestamp() - self.heartbeat_ts < 10.0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def iso(moment: datetime | None) -> str | None:
    """Seconds precision is what people read; the database keeps full precision elsewhere."""
    return None if moment is None else moment.isoformat(timespec="milliseconds")


class History:
    """A connection to one state file, safe to share between threads."""

    def __init__(self, path: Path, *, create: bool) -> None:
        if not create and not path.exists():
            raise StateFileMissing(
                f"no state file at {path}: it is created by 'gnomon run' (or pass --state PATH)"
            )
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._connection = self._open(path, create=create)
        except sqlite3.Error as error:
            raise StateFileUnusable(f"cannot use the state file {path}: {error}") from None
        self._host = socket.gethostname()
        self._pid = os.getpid()

    @staticmethod
    def _open(path: Path, *, create: bool) -> sqlite3.Connection:
        connection = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA busy_timeout = 10000")
            if create:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.executescript(_SCHEMA)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            else:
                connection.execute("SELECT COUNT(*) FROM runs")
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def _query(self, sql: str, parameters: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._connection.execute(sql, tuple(parameters)))

    # -- writes (the daemon) --

    def insert_run(
        self,
        *,
        job: str,
        occurrence: str,
        attempt: int,
        scheduled_at: datetime,
        outcome: str,
        started_at: datetime | None = None,
        detail: str | None = None,
        count: int = 1,
    ) -> int:
        """Add one occurrence record; returns its id so that its end can update it."""
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO runs (job, occurrence, attempt, scheduled_at, scheduled_ts,"
                " started_at, outcome, detail, count, host, pid)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job,
                    occurrence,
                    attempt,
                    iso(scheduled_at),
                    scheduled_at.timestamp(),
                    iso(started_at),
                    outcome,
                    detail,
                    count,
                    self._host,
                    self._pid,
                ),
            )
            return cursor.lastrowid or 0

    def finish_run(
        self,
        run_id: int,
        *,
        finished_at: datetime,
        duration: float | None,
        outcome: str,
        exit_status: int | None,
        detail: str | None,
        output: str | None,
    ) -> None:
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET finished_at = ?, duration = ?, outcome = ?, exit_status = ?,"
                " detail = ?, output = ? WHERE id = ?",
                (iso(finished_at), duration, outcome, exit_status, detail, output, run_id),
            )

    def close_interrupted_runs(self, detail: str) -> int:
        """Mark runs left ``running`` by a daemon on this host that no longer exists."""
        rows = self._query(
            "SELECT DISTINCT pid FROM runs WHERE outcome = ? AND host = ?", (RUNNING, self._host)
        )
        dead = [int(pid) for (pid,) in rows if not _process_exists(int(pid))]
        if not dead:
            return 0
        marks = ", ".join("?" for _ in dead)
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE runs SET outcome = 'abandoned', detail = ? WHERE outcome = ?"  # noqa: S608 - only placeholders are interpolated
                f" AND host = ? AND pid IN ({marks})",
                (detail, RUNNING, self._host, *dead),
            )
            return cursor.rowcount

    def last_scheduled(self, job: str) -> datetime | None:
        rows = self._query("SELECT MAX(scheduled_ts) FROM runs WHERE job = ?", (job,))
        value = rows[0][0] if rows else None
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    def daemon_started(
        self, *, schedule_file: str, timezone: str, cluster: str | None, started_at: datetime
    ) -> None:
        """``cluster`` describes the locker/elector, passwords already masked."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO daemon (id, pid, host, schedule_file, timezone, cluster,"
                " started_at, heartbeat_ts, stopped_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    self._pid,
                    self._host,
                    schedule_file,
                    timezone,
                    cluster,
                    iso(started_at),
                    started_at.timestamp(),
                ),
            )

    def daemon_stopped(self, stopped_at: datetime) -> None:
        with self._transaction() as connection:
            connection.execute(
                "UPDATE daemon SET stopped_at = ? WHERE id = 1 AND pid = ?",
                (iso(stopped_at), self._pid),
            )

    def replace_jobs(self, jobs: Iterable[tuple[str, str, str]]) -> None:
        """The daemon's current job list: (name, rule description, action description)."""
        with self._transaction() as connection:
            connection.execute("DELETE FROM jobs")
            connection.executemany(
                "INSERT INTO jobs (name, position, rule, action) VALUES (?, ?, ?, ?)",
                [
                    (name, position, rule, action)
                    for position, (name, rule, action) in enumerate(jobs)
                ],
            )

    def heartbeat(self, now: datetime, next_runs: dict[str, datetime | None]) -> None:
        with self._transaction() as connection:
            connection.execute(
                "UPDATE daemon SET heartbeat_ts = ? WHERE id = 1 AND pid = ?",
                (now.timestamp(), self._pid),
            )
            connection.executemany(
                "UPDATE jobs SET next_run = ? WHERE name = ?",
                [(iso(moment), name) for name, moment in next_runs.items()],
            )

    # -- reads (history, status) --

    def runs(
        self, *, job: str | None = None, limit: int = 20, failed: bool = False
    ) -> list[RunRecord]:
        """The latest occurrences first."""
        conditions: list[str] = []
        parameters: list[object] = []
        if job is not None:
            conditions.append("job = ?")
            parameters.append(job)
        if failed:
            conditions.append(f"outcome IN ({', '.join('?' for _ in FAILED_OUTCOMES)})")
            parameters.extend(FAILED_OUTCOMES)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._query(
            "SELECT job, occurrence, attempt, scheduled_at, started_at, finished_at, duration,"  # noqa: S608 - only fixed text and placeholders are interpolated
            f" outcome, exit_status, detail, output, count FROM runs {where}"
            " ORDER BY scheduled_ts DESC, id DESC LIMIT ?",
            (*parameters, limit),
        )
        return [RunRecord(*row) for row in rows]

    def daemon(self) -> DaemonRecord | None:
        rows = self._query(
            "SELECT pid, host, schedule_file, timezone, cluster, started_at, heartbeat_ts,"
            " stopped_at"
            " FROM daemon WHERE id = 1"
        )
        return DaemonRecord(*rows[0]) if rows else None

    def jobs(self, now: datetime) -> list[JobRecord]:
        """The current jobs in schedule order, each with its last outcome and recent failures."""
        since = now.timestamp() - 86400
        failed = ", ".join("?" for _ in FAILED_OUTCOMES)
        rows = self._query(
            "SELECT j.name, j.rule, j.action, j.next_run,"  # noqa: S608 - only placeholders are interpolated
            " (SELECT outcome FROM runs r WHERE r.job = j.name"
            "   ORDER BY scheduled_ts DESC, id DESC LIMIT 1),"
            " (SELECT started_at FROM runs r WHERE r.job = j.name AND started_at IS NOT NULL"
            "   ORDER BY scheduled_ts DESC, id DESC LIMIT 1),"
            f" (SELECT COUNT(*) FROM runs r WHERE r.job = j.name AND outcome IN ({failed})"
            "   AND scheduled_ts >= ?)"
            " FROM jobs j ORDER BY j.position",
            (*FAILED_OUTCOMES, since),
        )
        return [JobRecord(*row) for row in rows]
