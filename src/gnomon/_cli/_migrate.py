"""State files from before stores: their ``runs`` rows copied into the store's history.

The ``gnomon`` command used to keep its history in a SQLite file of its own design (tables
``runs``, ``jobs`` and ``daemon``). A ``SQLiteStore`` on that file adds its ``gnomon_*``
tables beside them, and the old runs are copied into the store's history on first use.
The old tables are never changed or deleted: an older gnomon pointed at the file still
finds what it wrote.

Copying is idempotent twice over: ``Store.record`` writes a key only once, and the last
copied row's id is kept in a small table of the command's own (``runs_copied``), so that
a later start copies only what is new (nothing, since nothing writes ``runs`` any more)
instead of reading the whole old history at every start.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gnomon._cli._logging import LOGGER
from gnomon._events import Outcome
from gnomon._stores.contract import RunRecord, Store

__all__ = ["HISTORY_RETENTION", "migrate_state_file"]

HISTORY_RETENTION = timedelta(days=30)
"""How long the command's store keeps history; older runs are not worth copying."""
_BATCH = 500
_JOB_IDS = uuid.UUID("0e6f7a51-6d2b-4c59-9d4e-8f1b2a3c4d5e")
"""Namespace of the ids given to jobs that no stored job of the same name exists for."""
_INTERRUPTED = "gnomon stopped during the run (found when the state file was migrated)"
_COLUMNS = (
    "id, job, occurrence, attempt, scheduled_ts, started_at, finished_at, outcome,"
    " exit_status, detail, output, count, host, pid"
)
_MARKER = """CREATE TABLE IF NOT EXISTS runs_copied (
    id INTEGER PRIMARY KEY CHECK (id = 1), last_id INTEGER NOT NULL)"""
_MARK = """INSERT INTO runs_copied (id, last_id) VALUES (1, ?)
    ON CONFLICT (id) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)"""


def migrate_state_file(store: Store, path: Path, *, now: datetime | None = None) -> int:
    """Copy the old ``runs`` rows of ``path`` (if it has that table) into ``store``'s
    history; returns how many records were written."""
    since = (now or datetime.now(UTC)) - HISTORY_RETENTION
    with _connection(path) as connection:
        if not _has_old_runs(connection):
            return 0
        copied = _copy(connection, store, since.timestamp())
    if copied:
        LOGGER.info(f"copied {copied} run(s) from the old state file {path} into its store")
    return copied


@contextlib.contextmanager
def _connection(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


def _has_old_runs(connection: sqlite3.Connection) -> bool:
    found = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
    ).fetchone()
    return found is not None


def _copy(connection: sqlite3.Connection, store: Store, since: float) -> int:
    connection.execute(_MARKER)
    row = connection.execute("SELECT last_id FROM runs_copied WHERE id = 1").fetchone()
    last_id = int(row[0]) if row else 0
    job_ids: dict[str, uuid.UUID] = {}
    copied = 0
    while True:
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE id > ? AND scheduled_ts >= ?"  # noqa: S608 - a constant
            " ORDER BY id LIMIT ?",
            (last_id, since, _BATCH),
        ).fetchall()
        if not rows:
            return copied
        copied += sum(store.record(_record(store, row, job_ids)) for row in rows)
        last_id = int(rows[-1][0])
        connection.execute(_MARK, (last_id,))


def _record(store: Store, row: tuple[Any, ...], job_ids: dict[str, uuid.UUID]) -> RunRecord:
    (_, job, occurrence, attempt, scheduled_ts, started, finished, outcome_text) = row[:8]
    exit_status, detail, output, count, host, pid = row[8:]
    outcome = _outcome(outcome_text)
    return RunRecord(
        occurrence_key=occurrence,
        job_id=_job_id(store, job, job_ids),
        job_name=job,
        scheduled_at=datetime.fromtimestamp(float(scheduled_ts), UTC),
        started_at=_moment(started),
        finished_at=_moment(finished),
        outcome=outcome,
        attempt=attempt,
        attempts=attempt,
        node=f"{host}:{pid}",
        detail=_INTERRUPTED if outcome_text == "running" else detail,
        count=count,
        exit_status=exit_status,
        output=output,
    )


def _outcome(text: str) -> Outcome:
    """Old outcomes are ``Outcome`` values, except ``running``: a run its daemon never
    finished, which the old daemon would have marked abandoned at its next start."""
    if text == "running":
        return Outcome.ABANDONED
    try:
        return Outcome(text)
    except ValueError:
        return Outcome.FAILED


def _job_id(store: Store, name: str, known: dict[str, uuid.UUID]) -> uuid.UUID:
    """The stored job of that name, so that its history is found by id as well as by name;
    else an id derived from the name, the same for every copy."""
    if name not in known:
        stored = store.get_job(name=name)
        known[name] = stored.id if stored is not None else uuid.uuid5(_JOB_IDS, name)
    return known[name]


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
