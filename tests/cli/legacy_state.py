"""The ``gnomon`` command's state file as it was before stores, to test its migration.

The schema and the writes are copied from the command's old ``_history.py`` (the last
version before the command moved onto ``SQLiteStore``), so that the migration is tested
against files exactly as that version wrote them.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import datetime
from pathlib import Path

SCHEMA_VERSION = 1
RUNNING = "running"

SCHEMA = """
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


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")


class LegacyStateFile:
    """Writes a state file the way the old daemon did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.executescript(SCHEMA)
        self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._connection.close()

    def insert_run(
        self,
        *,
        job: str,
        occurrence: str,
        scheduled_at: datetime,
        outcome: str,
        started_at: datetime | None = None,
        detail: str | None = None,
        count: int = 1,
    ) -> int:
        cursor = self._connection.execute(
            "INSERT INTO runs (job, occurrence, attempt, scheduled_at, scheduled_ts,"
            " started_at, outcome, detail, count, host, pid)"
            " VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job,
                occurrence,
                iso(scheduled_at),
                scheduled_at.timestamp(),
                iso(started_at),
                outcome,
                detail,
                count,
                socket.gethostname(),
                os.getpid(),
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
        self._connection.execute(
            "UPDATE runs SET finished_at = ?, duration = ?, outcome = ?, exit_status = ?,"
            " detail = ?, output = ? WHERE id = ?",
            (iso(finished_at), duration, outcome, exit_status, detail, output, run_id),
        )

    def daemon_started(self, *, schedule_file: str, started_at: datetime) -> None:
        self._connection.execute(
            "INSERT OR REPLACE INTO daemon (id, pid, host, schedule_file, timezone, cluster,"
            " started_at, heartbeat_ts, stopped_at) VALUES (1, ?, ?, ?, 'UTC', NULL, ?, ?, ?)",
            (
                os.getpid(),
                socket.gethostname(),
                schedule_file,
                iso(started_at),
                started_at.timestamp(),
                iso(started_at),
            ),
        )

    def table_rows(self, table: str) -> int:
        return int(self._connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 - a test's own table names
