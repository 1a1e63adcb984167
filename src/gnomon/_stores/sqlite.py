"""``SQLiteStore``: the store contract in one SQLite file (standard-library ``sqlite3``).

Any number of processes on one machine share the file. Every write is one
``BEGIN IMMEDIATE`` transaction, so writers queue on SQLite's lock (up to ``timeout``)
instead of failing halfway, and the claim decisions of ``gnomon._stores.memory`` are
made inside it, on rows no other writer can change meanwhile. WAL lets readers go on
while a writer commits.

The file may hold other tables (the ``gnomon`` command's older state: ``runs``,
``jobs``, ``daemon``), so every table here is named ``gnomon_*``. Times are ISO-8601
UTC text, exact to the microsecond, beside a REAL timestamp where SQL orders or
compares them. Job ids are 16-byte blobs: a fraction of the text's index size, and
faster to decode when a scheduler loads every job at start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from gnomon._claims import LockerTimings, Verdict
from gnomon._durations import Duration, format_duration, parse_duration
from gnomon._errors import (
    GnomonError,
    InvalidOption,
    JobNotFound,
    LeaseLost,
    LockHeld,
    StoreUnavailable,
    StoreVersionError,
)
from gnomon._events import Outcome
from gnomon._stores.bulk import collector_paused, maker
from gnomon._stores.contract import (
    SCHEMA_VERSION,
    ActionRecord,
    Claim,
    ClaimRequest,
    HistoryCursor,
    IfExists,
    NewJob,
    NodeInfo,
    RunRecord,
    Store,
    StoredJob,
    check_page_limit,
)
from gnomon._stores.memory import (
    ActionsNotKept,
    OccurrenceState,
    StoredClaim,
    action_in_utc,
    as_utc,
    blocks_recreation,
    check_id_free,
    check_limit,
    check_lookup,
    check_name_free,
    check_version,
    claimable,
    denial,
    history_cursor,
    judge,
    kept_or_replaced,
    lease_lost,
    missing_actions_table,
    new_row,
    next_attempt,
    optional_utc,
    paused_as,
    progressed,
    recorded_state,
    still_running,
    unknown_occurrence,
    updated,
)

__all__ = ["SQLiteStore"]

Row = tuple[Any, ...]

_SYNCHRONOUS = {
    "normal": "PRAGMA synchronous = NORMAL",
    "full": "PRAGMA synchronous = FULL",
}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS gnomon_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS gnomon_jobs (
        id BLOB PRIMARY KEY, name TEXT NOT NULL, task TEXT NOT NULL,
        definition TEXT NOT NULL, anchor TEXT NOT NULL, next_fire TEXT,
        runs INTEGER NOT NULL, last_run TEXT, paused INTEGER NOT NULL, pause_reason TEXT,
        version INTEGER NOT NULL, source TEXT, seq INTEGER NOT NULL, removed TEXT,
        removed_at TEXT, removed_ts REAL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS gnomon_jobs_by_seq ON gnomon_jobs (seq)",
    """CREATE UNIQUE INDEX IF NOT EXISTS gnomon_jobs_live_name ON gnomon_jobs (name)
        WHERE removed IS NULL""",
    """CREATE INDEX IF NOT EXISTS gnomon_jobs_tombstones ON gnomon_jobs (name, seq)
        WHERE removed IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS gnomon_occurrences (
        occurrence_key TEXT PRIMARY KEY, job_id BLOB NOT NULL, job_name TEXT NOT NULL,
        scheduled_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, outcome TEXT,
        attempt INTEGER NOT NULL, attempts INTEGER NOT NULL, node TEXT,
        fencing_token INTEGER, error TEXT, detail TEXT, count INTEGER NOT NULL,
        exit_status INTEGER, output TEXT, actor TEXT, state TEXT NOT NULL,
        instance_id TEXT, lease_until TEXT, lease_ts REAL, scheduled_ts REAL NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS gnomon_occurrences_by_job
        ON gnomon_occurrences (job_id, scheduled_ts)""",
    """CREATE INDEX IF NOT EXISTS gnomon_occurrences_by_time
        ON gnomon_occurrences (scheduled_ts)""",
    """CREATE INDEX IF NOT EXISTS gnomon_occurrences_leases
        ON gnomon_occurrences (lease_ts) WHERE state = 'running'""",
    """CREATE INDEX IF NOT EXISTS gnomon_occurrences_retries
        ON gnomon_occurrences (lease_ts) WHERE state = 'retry'""",
    """CREATE TABLE IF NOT EXISTS gnomon_nodes (
        instance_id TEXT PRIMARY KEY, node TEXT NOT NULL, started_at TEXT NOT NULL,
        last_seen TEXT NOT NULL, last_seen_ts REAL NOT NULL, leader INTEGER NOT NULL)""",
    """INSERT OR IGNORE INTO gnomon_meta (name, value)
        VALUES ('schema_version', ?), ('seq', 0), ('token', 0)""",
)

# Added within schema version 1, made on open where missing: an older gnomon ignores it.
_ACTIONS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gnomon_actions (
        id INTEGER PRIMARY KEY, job_id BLOB NOT NULL, job_name TEXT NOT NULL,
        action TEXT NOT NULL, actor TEXT, at TEXT NOT NULL, at_ts REAL NOT NULL,
        detail TEXT)""",
    "CREATE INDEX IF NOT EXISTS gnomon_actions_by_job ON gnomon_actions (job_id, at_ts)",
    "CREATE INDEX IF NOT EXISTS gnomon_actions_by_time ON gnomon_actions (at_ts)",
)
_HAS_ACTIONS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gnomon_actions'"
_INSERT_ACTION = """INSERT INTO gnomon_actions (job_id, job_name, action, actor, at, at_ts,
    detail) VALUES (?, ?, ?, ?, ?, ?, ?)"""
_ACTION = "SELECT job_id, job_name, action, actor, at, detail FROM gnomon_actions"
_PRUNE_ACTIONS = "DELETE FROM gnomon_actions WHERE at_ts < ?"
_CANNOT_WRITE = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM})
"""Primary result codes for a file this process may read but not write."""

_JOB = """SELECT id, name, task, definition, anchor, next_fire, runs, last_run, paused,
    pause_reason, version, source, seq, removed, removed_at FROM gnomon_jobs"""
_JOBS_SINCE = _JOB + " WHERE seq > ? AND removed IS NULL ORDER BY seq"
_JOBS_SINCE_WITH_REMOVED = _JOB + " WHERE seq > ? ORDER BY seq"
_JOBS_PAGE = _JOB + " WHERE seq > ? ORDER BY seq LIMIT ?"
_JOB_BY_ID = _JOB + " WHERE id = ?"
_LIVE_JOB_BY_NAME = _JOB + " WHERE name = ? AND removed IS NULL"
_TOMBSTONE_BY_NAME = _JOB + " WHERE name = ? AND removed IS NOT NULL ORDER BY seq DESC LIMIT 1"
_SAVE_JOB = """INSERT INTO gnomon_jobs (id, name, task, definition, anchor, next_fire, runs,
    last_run, paused, pause_reason, version, source, seq, removed, removed_at, removed_ts)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, task = excluded.task,
    definition = excluded.definition, anchor = excluded.anchor,
    next_fire = excluded.next_fire, runs = excluded.runs, last_run = excluded.last_run,
    paused = excluded.paused, pause_reason = excluded.pause_reason,
    version = excluded.version, source = excluded.source, seq = excluded.seq,
    removed = excluded.removed, removed_at = excluded.removed_at,
    removed_ts = excluded.removed_ts"""

_RECORD_COLUMNS = """occurrence_key, job_id, job_name, scheduled_at, started_at,
    finished_at, outcome, attempt, attempts, node, fencing_token, error, detail, count,
    exit_status, output, actor"""
_RECORD = "SELECT " + _RECORD_COLUMNS + " FROM gnomon_occurrences"  # noqa: S608 - constants
_STORED_CLAIM = """SELECT state, attempt, attempts, lease_until, fencing_token
    FROM gnomon_occurrences WHERE occurrence_key = ?"""
_INSERT_RECORD = """INSERT OR IGNORE INTO gnomon_occurrences (occurrence_key, job_id,
    job_name, scheduled_at, started_at, finished_at, outcome, attempt, attempts, node,
    fencing_token, error, detail, count, exit_status, output, actor, state, scheduled_ts)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_CLAIM = """INSERT OR REPLACE INTO gnomon_occurrences (occurrence_key, job_id, job_name,
    scheduled_at, started_at, attempt, attempts, node, fencing_token, count, actor, state,
    instance_id, lease_until, lease_ts, scheduled_ts)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, 'running', ?, ?, ?, ?)"""
_ABANDON = """UPDATE gnomon_occurrences SET state = 'finished', outcome = 'abandoned',
    finished_at = ?, lease_until = NULL, lease_ts = NULL WHERE occurrence_key = ?"""
_RENEWABLE = """SELECT lease_until FROM gnomon_occurrences
    WHERE occurrence_key = ? AND fencing_token = ? AND state = 'running'"""
_RENEW = """UPDATE gnomon_occurrences SET lease_until = ?, lease_ts = ?
    WHERE occurrence_key = ?"""
_FINISH = """UPDATE gnomon_occurrences SET outcome = ?, finished_at = ?,
    started_at = COALESCE(?, started_at), error = ?, detail = ?, exit_status = ?,
    output = ?, state = ?, lease_until = ?, lease_ts = ?
    WHERE occurrence_key = ? AND fencing_token = ? AND state = 'running'"""
_DUE_RETRIES = (
    "SELECT " + _RECORD_COLUMNS + " FROM gnomon_occurrences"  # noqa: S608 - constants
    " WHERE state = 'retry' AND lease_ts < ? ORDER BY lease_ts, occurrence_key LIMIT ?"
)
_DROP_RETRY = """UPDATE gnomon_occurrences SET state = 'finished', lease_until = NULL,
    lease_ts = NULL WHERE occurrence_key = ? AND state = 'retry'"""
_EXPIRED = (
    "SELECT " + _RECORD_COLUMNS + ", lease_until FROM gnomon_occurrences"  # noqa: S608 - constants
    " WHERE state = 'running' AND lease_ts < ? ORDER BY lease_ts, occurrence_key LIMIT ?"
)
_RETRYABLE = (
    "SELECT " + _RECORD_COLUMNS + ", state FROM gnomon_occurrences"  # noqa: S608 - constants
    " WHERE occurrence_key = ?"
)
_RETRY = "UPDATE gnomon_occurrences SET state = 'retry', actor = ? WHERE occurrence_key = ?"
_PRUNE_RECORDS = """DELETE FROM gnomon_occurrences
    WHERE scheduled_ts < ? AND state IN ('finished', 'skipped')"""
_PRUNE_TOMBSTONES = "DELETE FROM gnomon_jobs WHERE removed IS NOT NULL AND removed_ts < ?"

_HEARTBEAT = """INSERT INTO gnomon_nodes (instance_id, node, started_at, last_seen,
    last_seen_ts, leader) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (instance_id) DO UPDATE SET node = excluded.node,
    started_at = excluded.started_at, last_seen = excluded.last_seen,
    last_seen_ts = excluded.last_seen_ts, leader = excluded.leader"""
_NODES = """SELECT node, instance_id, started_at, last_seen, leader FROM gnomon_nodes
    WHERE last_seen_ts >= ? ORDER BY started_at, instance_id"""
_LEAVE = "DELETE FROM gnomon_nodes WHERE instance_id = ?"

_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
_AUTOCHECKPOINT_OFF = "PRAGMA wal_autocheckpoint = 0"
_AUTOCHECKPOINT_ON = "PRAGMA wal_autocheckpoint = 1000"  # SQLite's default
_UPKEEP_LAPSE = 5.0
"""Seconds without ``upkeep`` after which commits checkpoint for themselves again."""
_CHECKPOINT_BATCH = 16
_CHECKPOINT_AGE = 60.0

_COUNT = "UPDATE gnomon_meta SET value = value + 1 WHERE name = ?"
_COUNTER = "SELECT value FROM gnomon_meta WHERE name = ?"
_HAS_META = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gnomon_meta'"

_datetime = datetime.fromisoformat
_UUID = uuid.UUID


class SQLiteStore(Store):
    """Jobs, claims and history in one SQLite file: ``SQLiteStore("jobs.db")``.

    The file is created (mode 0600) and its schema made on first use. ``synchronous``
    is ``"normal"`` (durable across process crashes) or ``"full"`` (across power loss
    too, at an fsync per commit). ``timeout`` is how long a write waits for another
    process's transaction before the call raises ``StoreUnavailable``. ``lease_ttl``
    and ``renew_interval`` are the claim timings of schedulers on this store; followers
    look for changes every ``poll_interval``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        timeout: Duration = 5.0,
        lease_ttl: Duration = timedelta(seconds=30),
        renew_interval: Duration | None = None,
        poll_interval: Duration = "500ms",
    ) -> None:
        self.path = _file_path(path)
        self.synchronous = _synchronous(synchronous)
        self.timeout = parse_duration(timeout, field="timeout", error=InvalidOption)
        timings = LockerTimings.parse(lease_ttl, renew_interval)
        self.lease_ttl = timings.lease_ttl
        self.renew_interval = timings.renew_interval
        self.poll_interval = parse_duration(
            poll_interval, field="poll_interval", error=InvalidOption
        )
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._guard = threading.Lock()
        self._preparing = threading.Lock()
        self._ready = False
        self._closed = False
        self._upkept = -math.inf
        """When ``upkeep`` last ran (monotonic seconds)."""
        self._unchecked = 0
        """How many commits this process made since its last checkpoint."""
        self._checkpointed = time.monotonic()
        self._actions_missing: str | None = None
        """Why the file has no actions table (it may not be written), ``None`` once it has."""
        self._actions_not_kept = ActionsNotKept()

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        with self._errors():
            self._connection()

    def close(self) -> None:
        with self._guard:
            self._closed = True
            connections, self._connections = self._connections, []
        for _, connection in connections:
            connection.close()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def describe(self) -> str:
        return self.path

    def seq(self) -> int:
        return int(self._fetch(_COUNTER, ("seq",))[0][0])

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, made (and the schema checked) on first use."""
        if self._closed:
            raise StoreUnavailable(f"the SQLite store {self.path} was closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            self._local.upkept = False  # SQLite's own checkpoints, as a connection starts
        if not self._ready:
            self._prepare(connection)
        return connection

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so that close() may close every thread's
        # connection; each is used by the thread that made it.
        with self._guard:
            if self._closed:
                raise StoreUnavailable(f"the SQLite store {self.path} was closed")
            self._close_orphans()
            _create_private_file(self.path)
            connection = sqlite3.connect(
                self.path,
                timeout=self.timeout.total_seconds(),
                isolation_level=None,
                check_same_thread=False,
            )
            self._connections.append((threading.current_thread(), connection))
        connection.execute(_SYNCHRONOUS[self.synchronous])
        return connection

    def _close_orphans(self) -> None:
        """Close the connections of threads that ended (their thread-locals are gone)."""
        alive = []
        for thread, connection in self._connections:
            if thread.is_alive():
                alive.append((thread, connection))
            else:
                connection.close()
        self._connections = alive

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Refuse a newer schema before writing anything, then switch to WAL and create
        the schema if it is missing (inside a write transaction, re-checked there, as
        several processes may open a new file at once). A store from an older gnomon
        gains the actions table, unless the file is read-only: it is read without."""
        with self._preparing:
            if self._ready:
                return
            version = _schema_version(connection)
            self._check_version(version)
            self._use_wal(connection)
            if version is None:
                with _transaction(connection):
                    found = _schema_version(connection)
                    self._check_version(found)
                    if found is None:
                        _create_schema(connection)
            elif connection.execute(_HAS_ACTIONS).fetchone() is None:
                self._actions_missing = _try_create_actions(connection)
            self._ready = True

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        mode = self._switch_to_wal(connection)
        if str(mode).lower() != "wal":
            raise StoreUnavailable(
                f"the SQLite store {self.path} cannot use WAL (journal mode {mode!r}): "
                "put it on a local filesystem"
            )

    def _switch_to_wal(self, connection: sqlite3.Connection) -> object:
        """Switch the file to WAL, retrying within ``timeout``: when processes switch a
        new file at once, SQLite refuses the losers at once (waiting could deadlock) and
        the winner's switch is done a moment later."""
        deadline = time.monotonic() + self.timeout.total_seconds()
        while True:
            try:
                return connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    def _check_version(self, version: int | None) -> None:
        if version is None or version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"the SQLite store {self.path} has schema version {version}, written by a "
                f"newer gnomon; this one knows schema version {SCHEMA_VERSION}: upgrade gnomon"
            )
        raise StoreVersionError(
            f"the SQLite store {self.path} has schema version {version}, which this gnomon "
            f"(schema version {SCHEMA_VERSION}) cannot migrate"
        )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite failures that mean the file cannot be reached, read or written, as
        ``StoreUnavailable``; programming errors pass through."""
        try:
            yield
        except (GnomonError, sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreUnavailable(f"the SQLite store {self.path} cannot be used: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; anything raised inside rolls it back."""
        with self._errors():
            connection = self._connection()
            self._leave_checkpoints(connection)
            with _transaction(connection):
                yield connection
            self._unchecked += 1  # a lost update among threads only delays a checkpoint

    def _leave_checkpoints(self, connection: sqlite3.Connection) -> None:
        """While a follower runs ``upkeep``, commits leave checkpoints to it: SQLite would
        otherwise checkpoint inside whichever commit fills the log past 1,000 pages,
        syncing the file in the middle of that caller's ``add_job``. Once upkeep stops
        (the scheduler shut down), commits checkpoint for themselves again."""
        lapse = max(_UPKEEP_LAPSE, 3 * self.poll_interval.total_seconds())
        upkept = time.monotonic() - self._upkept < lapse
        if self._local.upkept is not upkept:
            connection.execute(_AUTOCHECKPOINT_OFF if upkept else _AUTOCHECKPOINT_ON)
            self._local.upkept = upkept

    def upkeep(self) -> None:
        """Checkpoint the write-ahead log once this process made a batch of commits (or
        any at all a while ago): passively, so that it never waits on readers or
        writers. A heartbeat's commit alone is not worth a checkpoint's sync."""
        now = self._upkept = time.monotonic()
        batch = self._unchecked >= _CHECKPOINT_BATCH
        if not batch and not (self._unchecked and now - self._checkpointed >= _CHECKPOINT_AGE):
            return
        self._unchecked, self._checkpointed = 0, now
        with self._errors():
            self._connection().execute(_CHECKPOINT).fetchall()

    def _fetch(self, statement: str, params: tuple[object, ...] = ()) -> list[Row]:
        with self._errors():
            return self._connection().execute(statement, params).fetchall()

    # ---------------------------------------------------------------- jobs

    def jobs(self, *, since: int = 0, include_removed: bool = False) -> list[StoredJob]:
        statement = _JOBS_SINCE_WITH_REMOVED if include_removed else _JOBS_SINCE
        with self._errors(), collector_paused():
            cursor = self._connection().execute(statement, (since,))
            return [_job(row) for row in cursor]

    def jobs_page(self, *, since: int, limit: int) -> list[StoredJob]:
        check_page_limit(limit)
        with self._errors(), collector_paused():
            cursor = self._connection().execute(_JOBS_PAGE, (since, limit))
            return [_job(row) for row in cursor]

    def get_job(
        self, *, job_id: uuid.UUID | None = None, name: str | None = None
    ) -> StoredJob | None:
        check_lookup(job_id, name)
        if job_id is not None:
            rows = self._fetch(_JOB_BY_ID, (job_id.bytes,))
        else:
            rows = self._fetch(_LIVE_JOB_BY_NAME, (name,)) or self._fetch(
                _TOMBSTONE_BY_NAME, (name,)
            )
        return _job(rows[0]) if rows else None

    def put_job(
        self,
        job: NewJob,
        *,
        if_exists: IfExists,
        expected_version: int | None = None,
        keep_next_fire: bool = True,
        tombstone_after: datetime | None = None,
    ) -> tuple[StoredJob | None, bool]:
        if_exists = IfExists(if_exists)
        with self._write() as connection:
            live = _one_job(connection, _LIVE_JOB_BY_NAME, job.name)
            if live is None:
                return _create(connection, job, tombstone_after)
            row = kept_or_replaced(live, job, if_exists, expected_version, keep_next_fire)
            return (_save_job(connection, row) if row != live else live), False

    def update_job(
        self,
        job_id: uuid.UUID,
        *,
        name: str | None = None,
        definition: str | None = None,
        expected_version: int | None = None,
        next_fire: datetime | None = None,
        reset_next_fire: bool = False,
    ) -> StoredJob:
        with self._write() as connection:
            row = _live_job(connection, job_id)
            check_version(row, expected_version)
            if name is not None:
                check_name_free(row, name, _one_job(connection, _LIVE_JOB_BY_NAME, name))
            new = updated(row, name, definition, next_fire, reset_next_fire=reset_next_fire)
            return _save_job(connection, new) if new != row else row

    def set_paused(
        self,
        job_id: uuid.UUID,
        paused: bool,
        reason: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> StoredJob:
        with self._write() as connection:
            row = _live_job(connection, job_id)
            check_version(row, expected_version)
            new = paused_as(row, paused, reason)
            return _save_job(connection, new) if new != row else row

    def remove_job(self, job_id: uuid.UUID, *, reason: str = "removed") -> StoredJob | None:
        with self._write() as connection:
            row = _one_job(connection, _JOB_BY_ID, job_id.bytes)
            if row is None or row.removed is not None:
                return None
            gone = dataclasses.replace(row, removed=reason, removed_at=self.now())
            return _save_job(connection, gone)

    def save_progress(self, job_id: uuid.UUID, next_fire: datetime | None) -> None:
        """A job removed meanwhile has no progress to keep: nothing is written."""
        with self._write() as connection:
            row = _one_job(connection, _JOB_BY_ID, job_id.bytes)
            if row is None or row.removed is not None:
                return
            new = dataclasses.replace(row, next_fire=optional_utc(next_fire, "next_fire"))
            if new != row:
                _save_job(connection, new)

    # ---------------------------------------------------------------- occurrences

    def claim(self, request: ClaimRequest) -> Claim:
        with self._write() as connection:
            granted = _claim(connection, request, self.now())
        if isinstance(granted, LockHeld):
            raise granted
        return granted

    def renew(self, key: str, token: int, ttl: timedelta) -> None:
        with self._write() as connection:
            now = self.now()
            held = connection.execute(_RENEWABLE, (key, token)).fetchone()
            if held is None or held[0] is None or now > _datetime(held[0]):
                raise lease_lost(key, token)
            until = now + ttl
            connection.execute(_RENEW, (_text(until), until.timestamp(), key))

    def finish(
        self,
        key: str,
        token: int,
        outcome: Outcome,
        *,
        finished_at: datetime,
        started_at: datetime | None = None,
        error: str | None = None,
        detail: str | None = None,
        exit_status: int | None = None,
        output: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        finished = _text(as_utc(finished_at, "finished_at"))
        started = _optional_text(optional_utc(started_at, "started_at"))
        result = (Outcome(outcome).value, finished, started, error, detail, exit_status, output)
        if retry_at is None:
            pending: tuple[str, str | None, float | None] = ("finished", None, None)
        else:
            when = as_utc(retry_at, "retry_at")
            pending = ("retry", _text(when), when.timestamp())
        with self._write() as connection:
            if connection.execute(_FINISH, (*result, *pending, key, token)).rowcount != 1:
                raise LeaseLost(f"cannot finish {key!r}: token {token} no longer holds it")

    def occurrence(self, key: str) -> RunRecord | None:
        rows = self._fetch(_RETRYABLE, (key,))
        return _record(rows[0]) if rows else None

    def due_retries(self, *, grace: timedelta, limit: int = 100) -> list[RunRecord]:
        check_limit(limit)
        before = (self.now() - grace).timestamp()
        return [_record(row) for row in self._fetch(_DUE_RETRIES, (before, limit))]

    def drop_retry(self, key: str) -> None:
        with self._write() as connection:
            connection.execute(_DROP_RETRY, (key,))

    def record(self, record: RunRecord) -> bool:
        params = _record_params(record)
        with self._write() as connection:
            return connection.execute(_INSERT_RECORD, params).rowcount == 1

    def expired_claims(self, *, limit: int = 100) -> list[RunRecord]:
        check_limit(limit)
        now = self.now()
        rows = self._fetch(_EXPIRED, (now.timestamp(), limit))
        return [_record(row) for row in rows if now > _datetime(row[-1])]

    def retry(self, key: str, *, actor: str | None = None) -> RunRecord:
        with self._write() as connection:
            row = connection.execute(_RETRYABLE, (key,)).fetchone()
            if row is None:
                raise unknown_occurrence(key)
            if row[-1] == OccurrenceState.RUNNING.value:
                raise still_running(key)
            connection.execute(_RETRY, (actor, key))
        return dataclasses.replace(_record(row), actor=actor)

    def history(
        self,
        *,
        job_id: uuid.UUID | None = None,
        job_name: str | None = None,
        outcomes: Collection[Outcome | None] | None = None,
        since: datetime | None = None,
        limit: int = 100,
        before: HistoryCursor | None = None,
    ) -> list[RunRecord]:
        check_limit(limit)
        if outcomes is not None and not outcomes:
            return []
        where, params = _history_filter(job_id, job_name, outcomes, since)
        where, params = _after_cursor(where, params, history_cursor(before))
        statement = f"{_RECORD}{where} ORDER BY scheduled_ts DESC, occurrence_key DESC LIMIT ?"
        return [_record(row) for row in self._fetch(statement, (*params, limit))]

    def prune(self, before: datetime) -> int:
        moment = as_utc(before, "before").timestamp()
        statements = [_PRUNE_RECORDS, _PRUNE_TOMBSTONES]
        if self._why_no_actions() is None:
            statements.append(_PRUNE_ACTIONS)
        with self._write() as connection:
            return sum(connection.execute(each, (moment,)).rowcount for each in statements)

    # ---------------------------------------------------------------- actions

    def record_action(self, record: ActionRecord) -> None:
        record = action_in_utc(record)
        params = (
            record.job_id.bytes, record.job_name, record.action, record.actor,
            _text(record.at), record.at.timestamp(), record.detail,
        )  # fmt: skip
        missing = self._why_no_actions()
        if missing is not None:
            self._actions_not_kept.say(self.path, missing_actions_table(missing))
            return
        with self._write() as connection:
            connection.execute(_INSERT_ACTION, params)

    def actions(
        self,
        *,
        job_id: uuid.UUID | None = None,
        job_name: str | None = None,
        limit: int = 100,
    ) -> list[ActionRecord]:
        check_limit(limit)
        if self._why_no_actions() is not None:
            return []
        where, params = _history_filter(job_id, job_name, None, None)
        statement = f"{_ACTION}{where} ORDER BY at_ts DESC, id DESC LIMIT ?"
        return [
            ActionRecord(_UUID(bytes=job), name, action, actor, _datetime(at), detail)
            for job, name, action, actor, at, detail in self._fetch(statement, (*params, limit))
        ]

    def _why_no_actions(self) -> str | None:
        """Why the file has no actions table, ``None`` when it has one. While it is
        missing it is looked for again: a gnomon allowed to write may have added it."""
        with self._errors():
            connection = self._connection()  # prepared: the table made, or why not
            if self._actions_missing and connection.execute(_HAS_ACTIONS).fetchone():
                self._actions_missing = None
        return self._actions_missing

    # ---------------------------------------------------------------- nodes

    def heartbeat(self, instance_id: str, node: str, started_at: datetime, leader: bool) -> None:
        started = _text(as_utc(started_at, "started_at"))
        with self._write() as connection:
            now = self.now()
            params = (instance_id, node, started, _text(now), now.timestamp(), int(leader))
            connection.execute(_HEARTBEAT, params)

    def leave(self, instance_id: str) -> None:
        with self._write() as connection:
            connection.execute(_LEAVE, (instance_id,))

    def nodes(self, *, alive_within: timedelta) -> list[NodeInfo]:
        oldest = (self.now() - alive_within).timestamp()
        return [
            NodeInfo(node, instance, _datetime(started), _datetime(seen), bool(leader))
            for node, instance, started, seen, leader in self._fetch(_NODES, (oldest,))
        ]

    def __repr__(self) -> str:
        return (
            f"SQLiteStore({self.path!r}, synchronous={self.synchronous!r}, "
            f"lease_ttl={format_duration(self.lease_ttl)!r})"
        )


# ---------------------------------------------------------------- options and files


def _file_path(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if not isinstance(text, str) or text in ("", ":memory:"):
        raise InvalidOption(
            f"SQLiteStore needs the path of a file, got {path!r} (for a store in memory, "
            "use gnomon.testing.MemoryStore)"
        )
    return text


def _synchronous(value: str) -> str:
    if value not in _SYNCHRONOUS:
        raise InvalidOption(
            f"synchronous must be one of {', '.join(map(repr, _SYNCHRONOUS))}, got {value!r}"
        )
    return value


def _create_private_file(path: str) -> None:
    """Create the file readable by its owner only, before SQLite creates it with the
    umask's (usually world-readable) mode: job arguments may be secrets."""
    if os.path.exists(path):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


# ---------------------------------------------------------------- schema and transactions


def _schema_version(connection: sqlite3.Connection) -> int | None:
    if connection.execute(_HAS_META).fetchone() is None:
        return None
    row = connection.execute(_COUNTER, ("schema_version",)).fetchone()
    return None if row is None else int(row[0])


def _create_schema(connection: sqlite3.Connection) -> None:
    *tables, counters = _SCHEMA
    for statement in tables:
        connection.execute(statement)
    connection.execute(counters, (SCHEMA_VERSION,))
    _create_actions(connection)


def _create_actions(connection: sqlite3.Connection) -> None:
    for statement in _ACTIONS_SCHEMA:
        connection.execute(statement)


def _try_create_actions(connection: sqlite3.Connection) -> str | None:
    """Add the actions table to a store from an older gnomon; if the file may not be
    written, why not (the store is still read, as a dashboard reads it)."""
    try:
        with _transaction(connection):
            _create_actions(connection)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF not in _CANNOT_WRITE:
            raise
        return str(exc)
    return None


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` takes the write lock first, so a transaction never fails
    halfway on another writer; a failure rolls everything back."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


def _next(connection: sqlite3.Connection, counter: str) -> int:
    """The next value of ``seq`` or ``token``: kept in the file, so it only grows."""
    connection.execute(_COUNT, (counter,))
    return int(connection.execute(_COUNTER, (counter,)).fetchone()[0])


# ---------------------------------------------------------------- job rows


def _uuid(data: bytes) -> uuid.UUID:
    """``uuid.UUID(bytes=data)`` at a quarter of the cost (what ``UUID.__setstate__``
    does): loading every stored job makes one per row, from 16 bytes SQLite checked."""
    if len(data) != 16:
        raise ValueError("bytes is not a 16-char string")  # as uuid.UUID says it
    value = _new_uuid(_UUID)
    _set(value, "int", _int_from_bytes(data))
    _set(value, "is_safe", uuid.SafeUUID.unknown)
    return value


_make_job = maker(StoredJob)
_new_uuid = object.__new__
_set = object.__setattr__
_int_from_bytes = int.from_bytes


def _job(row: Row) -> StoredJob:
    (job_id, name, task, definition, anchor, next_fire, runs, last_run, paused, reason,
     version, source, seq, removed, removed_at) = row  # fmt: skip
    return _make_job((
        _uuid(job_id), name, task, definition, _datetime(anchor),
        None if next_fire is None else _datetime(next_fire), runs,
        None if last_run is None else _datetime(last_run), bool(paused), reason, version,
        source, seq, removed, None if removed_at is None else _datetime(removed_at),
    ))  # fmt: skip


def _one_job(connection: sqlite3.Connection, statement: str, key: object) -> StoredJob | None:
    row = connection.execute(statement, (key,)).fetchone()
    return None if row is None else _job(row)


def _live_job(connection: sqlite3.Connection, job_id: uuid.UUID) -> StoredJob:
    row = _one_job(connection, _JOB_BY_ID, job_id.bytes)
    if row is None or row.removed is not None:
        raise JobNotFound(f"no live job has the id {job_id}")
    return row


def _create(
    connection: sqlite3.Connection, job: NewJob, tombstone_after: datetime | None
) -> tuple[StoredJob | None, bool]:
    if blocks_recreation(_one_job(connection, _TOMBSTONE_BY_NAME, job.name), tombstone_after):
        return None, False
    check_id_free(_one_job(connection, _JOB_BY_ID, job.id.bytes), job)
    return _save_job(connection, new_row(job, datetime.now(UTC))), True


def _save_job(connection: sqlite3.Connection, row: StoredJob) -> StoredJob:
    """Write ``row`` (insert, or overwrite the row of its id) with the next ``seq``."""
    seq = _next(connection, "seq")
    removed_at = row.removed_at
    connection.execute(
        _SAVE_JOB,
        (
            row.id.bytes, row.name, row.task, row.definition, _text(row.anchor),
            _optional_text(row.next_fire), row.runs, _optional_text(row.last_run),
            int(row.paused), row.pause_reason, row.version, row.source, seq, row.removed,
            _optional_text(removed_at), None if removed_at is None else removed_at.timestamp(),
        ),
    )  # fmt: skip
    # Positional, not dataclasses.replace: that alone would cost a tenth of an insert.
    return StoredJob(
        row.id, row.name, row.task, row.definition, row.anchor, row.next_fire, row.runs,
        row.last_run, row.paused, row.pause_reason, row.version, row.source, seq,
        row.removed, removed_at,
    )  # fmt: skip


# ---------------------------------------------------------------- occurrence rows


def _claim(
    connection: sqlite3.Connection, request: ClaimRequest, now: datetime
) -> Claim | LockHeld:
    """The claim decision and its writes. A refusal after the decision is returned, not
    raised, so that the abandonment it may carry is committed."""
    stored = _stored_claim(connection, request.key)
    job = claimable(request, _one_job(connection, _JOB_BY_ID, request.job_id.bytes), stored)
    verdict = judge(stored, now, request.recovery)
    if verdict in (Verdict.CLAIM, Verdict.RECLAIM):
        return _grant(connection, request, job, stored=stored, verdict=verdict, now=now)
    if verdict is Verdict.ABANDON:
        connection.execute(_ABANDON, (_text(now), request.key))
    return denial(request.key, verdict, stored, now)


def _stored_claim(connection: sqlite3.Connection, key: str) -> StoredClaim | None:
    row = connection.execute(_STORED_CLAIM, (key,)).fetchone()
    if row is None:
        return None
    state, attempt, attempts, lease_until, token = row
    until = None if lease_until is None else _datetime(lease_until)
    return StoredClaim(OccurrenceState(state), attempt, attempts, until, token is not None)


def _grant(
    connection: sqlite3.Connection,
    request: ClaimRequest,
    job: StoredJob,
    *,
    stored: StoredClaim | None,
    verdict: Verdict,
    now: datetime,
) -> Claim:
    attempt, attempts = next_attempt(stored)
    token = _next(connection, "token")
    scheduled = as_utc(request.scheduled_at, "scheduled_at")
    lease_until = now + request.ttl
    connection.execute(
        _CLAIM,
        (
            request.key, request.job_id.bytes, request.job_name, _text(scheduled),
            _text(now), attempt, attempts, request.node, token, request.actor,
            request.instance_id, _text(lease_until), lease_until.timestamp(),
            scheduled.timestamp(),
        ),
    )  # fmt: skip
    if verdict is Verdict.CLAIM and (moved := progressed(job, request, stored, now)) != job:
        _save_job(connection, moved)
    return Claim(request.key, token, attempt)


def _record(row: Row) -> RunRecord:
    (key, job_id, job_name, scheduled_at, started_at, finished_at, outcome, attempt,
     attempts, node, token, error, detail, count, exit_status, output, actor,
     *_) = row  # fmt: skip
    return RunRecord(
        key, _UUID(bytes=job_id), job_name, _datetime(scheduled_at),
        None if started_at is None else _datetime(started_at),
        None if finished_at is None else _datetime(finished_at),
        None if outcome is None else Outcome(outcome), attempt, attempts, node, token,
        error, detail, count, exit_status, output, actor,
    )  # fmt: skip


def _record_params(record: RunRecord) -> tuple[object, ...]:
    scheduled = as_utc(record.scheduled_at, "scheduled_at")
    return (
        record.occurrence_key, record.job_id.bytes, record.job_name, _text(scheduled),
        _optional_text(optional_utc(record.started_at, "started_at")),
        _optional_text(optional_utc(record.finished_at, "finished_at")),
        None if record.outcome is None else Outcome(record.outcome).value,
        record.attempt, record.attempts, record.node, record.fencing_token, record.error,
        record.detail, record.count, record.exit_status, record.output, record.actor,
        recorded_state(record).value, scheduled.timestamp(),
    )  # fmt: skip


def _history_filter(
    job_id: uuid.UUID | None,
    job_name: str | None,
    outcomes: Collection[Outcome | None] | None,
    since: datetime | None,
) -> tuple[str, list[object]]:
    """A WHERE clause of fixed fragments, and the values bound to it."""
    clauses: list[str] = []
    params: list[object] = []
    if job_id is not None:
        clauses.append("job_id = ?")
        params.append(job_id.bytes)
    if job_name is not None:
        clauses.append("job_name = ?")
        params.append(job_name)
    if since is not None:
        clauses.append("scheduled_ts >= ?")
        params.append(as_utc(since, "since").timestamp())
    if outcomes is not None:
        values = [Outcome(outcome).value for outcome in outcomes if outcome is not None]
        either = [f"outcome IN ({', '.join('?' * len(values))})"] if values else []
        either += ["outcome IS NULL"] if None in outcomes else []
        clauses.append(f"({' OR '.join(either)})")
        params.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _after_cursor(
    where: str, params: list[object], cursor: HistoryCursor | None
) -> tuple[str, list[object]]:
    """``where`` narrowed to the records after ``cursor`` in history order (newest
    first, then by key): a range on the index's ``scheduled_ts``, ties by key."""
    if cursor is None:
        return where, params
    moment, key = cursor[0].timestamp(), cursor[1]
    clause = "scheduled_ts <= ? AND (scheduled_ts < ? OR occurrence_key < ?)"
    joined = f"{where} AND {clause}" if where else f" WHERE {clause}"
    return joined, [*params, moment, moment, key]


def _text(moment: datetime) -> str:
    """A UTC instant as fixed-width ISO-8601 text, so that text order is time order."""
    return moment.isoformat(timespec="microseconds")


def _optional_text(moment: datetime | None) -> str | None:
    return None if moment is None else _text(moment)
