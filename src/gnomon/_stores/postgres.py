"""The PostgreSQL store (``gnomon.postgres.PostgresStore``): durable jobs, claims with
their history, and nodes, shared by every scheduler that reaches one database.

Its tables live in one schema (``gnomon`` by default), beside the locker's ``claims``,
``leases`` and ``meta``, hence the ``store_`` prefix on every name:

- ``store_meta``: the schema version;
- ``store_jobs``: one row per job, tombstones included; ``seq`` comes from the sequence
  ``store_seq``;
- ``store_occurrences``: one row per occurrence key, claim and history record at once;
  ``state`` is one of ``gnomon._stores.memory.OccurrenceState``; fencing tokens come
  from the sequence ``store_fence``;
- ``store_nodes``: one row per live scheduler instance;
- ``store_actions``: the actions taken on jobs (pause, resume, remove) and by whom;
  added within schema version 1 (made on open where missing; older versions ignore it;
  a role that may not create it opens the store without it, recording no actions).

What to decide is decided by the functions ``gnomon._stores.memory`` shares with every
store; this module only reads and writes rows. Why it reads and writes them as it does:

- A follower reads ``jobs(since=n)`` and never looks below ``n`` again, so no row may
  become visible with a ``seq`` below one already seen. Every job write therefore takes
  one transaction-scoped advisory lock before ``nextval``: writes commit in ``seq``
  order. The lock is taken first and job rows are locked only under it, so it cannot
  deadlock against row locks.
- Round trips are what a call costs, so the statements of one phase travel as one
  simple-protocol query (``ClientCursor`` binds the parameters): most calls are one
  round trip, a claim (which reads, decides, then writes) two. No named prepared
  statements and no session state beyond the startup ``options``, so it can run
  behind PgBouncer's transaction pooling (told to accept ``options``; LISTEN does not
  work there, and followers fall back to polling).
- Every round trip is bounded: statement_timeout and idle_in_transaction_session_timeout
  on the server, connect and TCP timeouts in the kernel, and a watchdog for a peer that
  acknowledges but never answers. A call that fails raises ``StoreUnavailable`` and,
  its transaction never committed, changed nothing.
- Leases are judged by the server's ``clock_timestamp()``, never by a node's clock.
- Every job write runs ``pg_notify`` in its own transaction, so a notification means a
  committed change; ``wait_for_change`` listens on a connection of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import re
import select
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
from psycopg import ClientCursor, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus
from psycopg.rows import TupleRow, tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from gnomon._claims import LockerTimings, Verdict, mask_url
from gnomon._durations import Duration, format_duration, parse_duration
from gnomon._errors import (
    InvalidOption,
    JobNotFound,
    LeaseLost,
    StoreUnavailable,
    StoreVersionError,
)
from gnomon._events import Outcome
from gnomon._postgres_schema import sql_name
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
    outcome_names,
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
    next_attempt,
    optional_utc,
    paused_as,
    progressed,
    record_in_utc,
    recorded_state,
    still_running,
    unknown_occurrence,
    updated,
)

__all__ = ["PostgresStore", "mask_conninfo"]

logger = logging.getLogger("gnomon")

Connection: TypeAlias = "psycopg.Connection[Any]"
Pool: TypeAlias = "ConnectionPool[Any]"
Row: TypeAlias = TupleRow

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_POOL_MAX_SIZE = 4
_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
_make_job = maker(StoredJob)
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)
"""psycopg's connection, timeout and cancellation errors (pool timeouts included)."""
_NOT_ALLOWED = (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)
"""A role that may not write there, or a server (or session) that is read-only."""

# ---------------------------------------------------------------- schema and statements

_CREATE = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE {meta} (version integer NOT NULL);
CREATE SEQUENCE {seq_name};
CREATE SEQUENCE {fence_name};
CREATE TABLE {jobs} (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    task text NOT NULL,
    definition text NOT NULL,
    anchor timestamptz NOT NULL,
    next_fire timestamptz,
    runs bigint NOT NULL DEFAULT 0,
    last_run timestamptz,
    paused boolean NOT NULL DEFAULT false,
    pause_reason text,
    version bigint NOT NULL DEFAULT 1,
    source text,
    seq bigint NOT NULL,
    removed text,
    removed_at timestamptz
);
CREATE UNIQUE INDEX store_jobs_live_name ON {jobs} (name) WHERE removed IS NULL;
CREATE UNIQUE INDEX store_jobs_seq ON {jobs} (seq);
CREATE INDEX store_jobs_tombstones ON {jobs} (name, seq) WHERE removed IS NOT NULL;
CREATE TABLE {occurrences} (
    key text PRIMARY KEY,
    job_id uuid NOT NULL,
    job_name text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    outcome text,
    attempt integer NOT NULL DEFAULT 1,
    attempts integer NOT NULL DEFAULT 1,
    node text,
    token bigint,
    error text,
    detail text,
    count integer NOT NULL DEFAULT 1,
    exit_status integer,
    output text,
    actor text,
    state text NOT NULL CHECK (state IN ('running', 'finished', 'skipped', 'retry')),
    instance_id text,
    lease_until timestamptz
);
CREATE INDEX store_occurrences_job ON {occurrences} (job_id, scheduled_at DESC);
CREATE INDEX store_occurrences_job_name ON {occurrences} (job_name, scheduled_at DESC);
CREATE INDEX store_occurrences_scheduled ON {occurrences} (scheduled_at DESC);
CREATE INDEX store_occurrences_leases ON {occurrences} (lease_until) WHERE state = 'running';
CREATE INDEX store_occurrences_retries ON {occurrences} (lease_until) WHERE state = 'retry';
CREATE TABLE {nodes} (
    instance_id text PRIMARY KEY,
    node text NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    leader boolean NOT NULL
);
INSERT INTO {meta} (version) VALUES ({version});
"""

_CREATE_ACTIONS = """
CREATE TABLE IF NOT EXISTS {actions} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id uuid NOT NULL,
    job_name text NOT NULL,
    action text NOT NULL,
    actor text,
    at timestamptz NOT NULL,
    detail text
);
CREATE INDEX IF NOT EXISTS store_actions_job ON {actions} (job_id, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS store_actions_at ON {actions} (at DESC, id DESC)
"""

_JOB_COLUMNS = (
    "id, name, task, definition, anchor, next_fire, runs, last_run, paused, pause_reason, "
    "version, source, seq, removed, removed_at"
)
_RUN_COLUMNS = (
    "key, job_id, job_name, scheduled_at, started_at, finished_at, outcome, attempt, "
    "attempts, node, token, error, detail, count, exit_status, output, actor"
)
_OCCURRENCE_COLUMNS = f"{_RUN_COLUMNS}, state, instance_id, lease_until"
_EXCLUDED = ", ".join(f"excluded.{name}" for name in _OCCURRENCE_COLUMNS.split(", "))
_NEW_JOB_COLUMNS = "id, name, task, definition, anchor, next_fire, paused, source, seq"
_EXCLUDED_JOB = ", ".join(f"excluded.{name}" for name in _NEW_JOB_COLUMNS.split(", "))

# A job write and its notification, in one statement: no row written, no notification.
_NOTIFYING = "SELECT w.* FROM w, pg_notify({channel}, w.id::text) AS n"

# A new job; the id of a tombstone may be taken (the tombstone is then overwritten),
# never that of a live job.
_INSERT_JOB = """
WITH w AS (
    INSERT INTO {jobs} AS j ({new_job_columns})
    SELECT %(id)s::uuid, %(name)s::text, %(task)s::text, %(definition)s::text,
        coalesce(%(anchor)s::timestamptz, clock_timestamp()), %(next_fire)s::timestamptz,
        %(paused)s::boolean, %(source)s::text, nextval({seq})
    WHERE {free}
    ON CONFLICT (id) DO UPDATE SET ({new_job_columns}, runs, last_run, pause_reason, version,
        removed, removed_at) = ({excluded_job}, 0, NULL, NULL, 1, NULL, NULL)
    WHERE j.removed IS NOT NULL
    RETURNING {cols})
{notifying}"""

# The name is free when no live row has it and its newest tombstone does not block it:
# ``blocks_recreation`` in SQL, for put_job's one round trip (the locked path, which
# decides in Python, handles every case this says no to).
_NAME_IS_FREE = """NOT EXISTS (
        SELECT 1 FROM {jobs} WHERE name = %(name)s AND removed IS NULL)
    AND NOT coalesce((
        SELECT t.removed = 'exhausted' AND (%(after)s::timestamptz IS NULL
            OR t.removed_at IS NULL OR t.removed_at > %(after)s::timestamptz)
        FROM {jobs} t WHERE t.name = %(name)s AND t.removed IS NOT NULL
        ORDER BY t.seq DESC LIMIT 1), false)"""

_WRITE_JOB = """
WITH w AS (
    UPDATE {jobs} SET name = %(name)s, task = %(task)s, definition = %(definition)s,
        source = %(source)s, next_fire = %(next_fire)s, runs = %(runs)s,
        last_run = %(last_run)s, paused = %(paused)s, pause_reason = %(pause_reason)s,
        version = %(version)s, removed = %(removed)s, removed_at = %(removed_at)s,
        seq = nextval({seq})
    WHERE id = %(id)s
    RETURNING {cols})
{notifying}"""

_REMOVE_JOB = """
WITH w AS (
    UPDATE {jobs} SET removed = %(reason)s, removed_at = clock_timestamp(),
        seq = nextval({seq})
    WHERE id = %(id)s AND removed IS NULL
    RETURNING {cols})
{notifying}"""

_SAVE_PROGRESS = """
WITH w AS (
    UPDATE {jobs} SET next_fire = %(next_fire)s, seq = nextval({seq})
    WHERE id = %(id)s AND removed IS NULL AND next_fire IS DISTINCT FROM %(next_fire)s
    RETURNING id)
{notifying}"""

# Claims are serialised by the write lock, so the only row that can appear between the
# read and this write is a skip recorded meanwhile, which a claim takes over.
_CLAIM_OCCURRENCE = """
INSERT INTO {occurrences} ({occurrence_columns})
VALUES (%(key)s, %(job_id)s, %(job_name)s, %(scheduled_at)s, clock_timestamp(), NULL, NULL,
        %(attempt)s, %(attempts)s, %(node)s, nextval({fence}), NULL, NULL, 1, NULL, NULL,
        %(actor)s, 'running', %(instance_id)s, clock_timestamp() + %(ttl)s)
ON CONFLICT (key) DO UPDATE SET ({occurrence_columns}) = ({excluded})
RETURNING token"""

_RECORD = """
INSERT INTO {occurrences} ({occurrence_columns})
VALUES (%(key)s, %(job_id)s, %(job_name)s, %(scheduled_at)s, %(started_at)s, %(finished_at)s,
        %(outcome)s, %(attempt)s, %(attempts)s, %(node)s, %(token)s, %(error)s, %(detail)s,
        %(count)s, %(exit_status)s, %(output)s, %(actor)s, %(state)s, NULL, NULL)
ON CONFLICT (key) DO NOTHING
RETURNING 1"""

_STATEMENTS = {
    "create": _CREATE + _CREATE_ACTIONS,
    "create_actions": _CREATE_ACTIONS,
    "find_actions": (
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = {schema_name} AND c.relname = 'store_actions')"
    ),
    "record_action": (
        "INSERT INTO {actions} (job_id, job_name, action, actor, at, detail) "
        "VALUES (%(job_id)s, %(job_name)s, %(action)s, %(actor)s, %(at)s, %(detail)s)"
    ),
    "prune_actions": (
        "WITH d AS (DELETE FROM {actions} WHERE at < %(before)s RETURNING 1) SELECT count(*) FROM d"
    ),
    "read_version": "SELECT version FROM {meta} LIMIT 1",
    # the catalog as of this statement (to_regclass would read a cache that does not see
    # a table another process created while this one waited for the schema lock)
    "find_meta": (
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = {schema_name} AND c.relname = 'store_meta')"
    ),
    "schema_lock": "SELECT pg_advisory_xact_lock(hashtext({schema_lock_key}))",
    "write_lock": "SELECT pg_advisory_xact_lock(hashtext({write_lock_key}))",
    "listen": "LISTEN {channel_name}",
    "now": "SELECT clock_timestamp()",
    "seq": "SELECT coalesce(max(seq), 0) FROM {jobs}",
    "jobs": "SELECT {cols} FROM {jobs} WHERE seq > %(since)s ORDER BY seq",
    "jobs_page": "SELECT {cols} FROM {jobs} WHERE seq > %(since)s ORDER BY seq LIMIT %(limit)s",
    "live_jobs": (
        "SELECT {cols} FROM {jobs} WHERE seq > %(since)s AND removed IS NULL ORDER BY seq"
    ),
    "job_by_id": "SELECT {cols} FROM {jobs} WHERE id = %(id)s",
    # the live row, else the newest tombstone
    "job_by_name": (
        "SELECT {cols} FROM {jobs} WHERE name = %(name)s "
        "ORDER BY removed IS NOT NULL, seq DESC LIMIT 1"
    ),
    "live_by_name": "SELECT {cols} FROM {jobs} WHERE name = %(name)s AND removed IS NULL",
    "lock_live_by_name": (
        "SELECT {cols} FROM {jobs} WHERE name = %(name)s AND removed IS NULL FOR UPDATE"
    ),
    "lock_by_id": "SELECT {cols} FROM {jobs} WHERE id = %(id)s FOR UPDATE",
    "newest_tombstone": (
        "SELECT {cols} FROM {jobs} WHERE name = %(name)s AND removed IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1"
    ),
    "insert_if_free": _INSERT_JOB.replace("{free}", _NAME_IS_FREE),
    "insert_job": _INSERT_JOB.replace("{free}", "TRUE"),
    "write_job": _WRITE_JOB,
    "remove_job": _REMOVE_JOB,
    "save_progress": _SAVE_PROGRESS,
    "lock_occurrence": (
        "SELECT state, attempt, attempts, lease_until, token IS NOT NULL FROM {occurrences} "
        "WHERE key = %(key)s FOR UPDATE"
    ),
    "lock_claimed_job": "SELECT {cols} FROM {jobs} WHERE id = %(job_id)s FOR UPDATE",
    "claim_occurrence": _CLAIM_OCCURRENCE,
    "abandon": (
        "UPDATE {occurrences} SET state = 'finished', outcome = 'abandoned', "
        "finished_at = %(now)s, lease_until = NULL WHERE key = %(key)s"
    ),
    # a lease is live up to and including lease_until
    "renew": (
        "UPDATE {occurrences} SET lease_until = clock_timestamp() + %(ttl)s "
        "WHERE key = %(key)s AND token = %(token)s AND state = 'running' "
        "AND lease_until >= clock_timestamp() RETURNING 1"
    ),
    "finish": (
        "UPDATE {occurrences} SET outcome = %(outcome)s, "
        "state = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN 'finished' ELSE 'retry' END, "
        "finished_at = %(finished_at)s, started_at = coalesce(%(started_at)s, started_at), "
        "error = %(error)s, detail = %(detail)s, exit_status = %(exit_status)s, "
        "output = %(output)s, lease_until = %(retry_at)s WHERE key = %(key)s "
        "AND token = %(token)s AND state = 'running' RETURNING 1"
    ),
    "due_retries": (
        "SELECT {run_cols} FROM {occurrences} WHERE state = 'retry' "
        "AND lease_until < clock_timestamp() - %(grace)s ORDER BY lease_until, key "
        "LIMIT %(limit)s"
    ),
    "drop_retry": (
        "UPDATE {occurrences} SET state = 'finished', lease_until = NULL "
        "WHERE key = %(key)s AND state = 'retry' RETURNING 1"
    ),
    "record": _RECORD,
    "expired": (
        "SELECT {run_cols} FROM {occurrences} WHERE state = 'running' "
        "AND lease_until < clock_timestamp() ORDER BY lease_until, key LIMIT %(limit)s"
    ),
    "retry": (
        "UPDATE {occurrences} SET state = 'retry', actor = %(actor)s "
        "WHERE key = %(key)s AND state <> 'running' RETURNING {run_cols}"
    ),
    "occurrence_state": "SELECT state FROM {occurrences} WHERE key = %(key)s",
    "occurrence": "SELECT {run_cols} FROM {occurrences} WHERE key = %(key)s",
    "prune_runs": (
        "WITH d AS (DELETE FROM {occurrences} WHERE state IN ('finished', 'skipped') "
        "AND scheduled_at < %(before)s RETURNING 1) SELECT count(*) FROM d"
    ),
    "prune_tombstones": (
        "WITH d AS (DELETE FROM {jobs} WHERE removed IS NOT NULL "
        "AND removed_at < %(before)s RETURNING 1) SELECT count(*) FROM d"
    ),
    "prune_nodes": "DELETE FROM {nodes} WHERE last_seen < %(before)s",
    "heartbeat": (
        "INSERT INTO {nodes} (instance_id, node, started_at, last_seen, leader) "
        "VALUES (%(instance_id)s, %(node)s, %(started_at)s, clock_timestamp(), %(leader)s) "
        "ON CONFLICT (instance_id) DO UPDATE SET node = excluded.node, "
        "started_at = excluded.started_at, last_seen = excluded.last_seen, "
        "leader = excluded.leader"
    ),
    "leave": "DELETE FROM {nodes} WHERE instance_id = %(instance_id)s",
    "nodes": (
        "SELECT node, instance_id, started_at, last_seen, leader FROM {nodes} "
        "WHERE last_seen >= clock_timestamp() - %(within)s ORDER BY started_at, instance_id"
    ),
}

Statement: TypeAlias = "str | sql.Composable"
"""A statement by its name in ``_STATEMENTS``, or one composed for a single call."""


class _Statements:
    """Every statement, composed once for one schema (identifiers quoted by psycopg),
    and each query the store sends rendered once (composing costs as much as a fast
    round trip's client side)."""

    def __init__(self, schema: str, channel: str, local_timeout: float | None) -> None:
        names: dict[str, sql.Composable] = {
            "schema": sql.Identifier(schema),
            "meta": sql.Identifier(schema, "store_meta"),
            "jobs": sql.Identifier(schema, "store_jobs"),
            "occurrences": sql.Identifier(schema, "store_occurrences"),
            "nodes": sql.Identifier(schema, "store_nodes"),
            "actions": sql.Identifier(schema, "store_actions"),
            "seq_name": sql.Identifier(schema, "store_seq"),
            "fence_name": sql.Identifier(schema, "store_fence"),
            "seq": _regclass(schema, "store_seq"),
            "fence": _regclass(schema, "store_fence"),
            "schema_name": sql.Literal(schema),
            # the locker takes the same lock to create its tables: one creator at a time
            "schema_lock_key": sql.Literal(f"gnomon schema {schema}"),
            "write_lock_key": sql.Literal(f"gnomon store writes {schema}"),
            "channel_name": sql.Identifier(channel),
            "version": sql.Literal(SCHEMA_VERSION),
            "cols": sql.SQL(_JOB_COLUMNS),
            "run_cols": sql.SQL(_RUN_COLUMNS),
            "occurrence_columns": sql.SQL(_OCCURRENCE_COLUMNS),
            "excluded": sql.SQL(_EXCLUDED),
            "new_job_columns": sql.SQL(_NEW_JOB_COLUMNS),
            "excluded_job": sql.SQL(_EXCLUDED_JOB),
            "notifying": sql.SQL(_NOTIFYING).format(channel=sql.Literal(channel)),
        }
        self._occurrences = names["occurrences"]
        self._actions = names["actions"]
        self._composed = {key: sql.SQL(text).format(**names) for key, text in _STATEMENTS.items()}
        self._begin: list[sql.Composable] = [sql.SQL("BEGIN")]
        if local_timeout is not None:
            # a user's pool: its sessions do not carry the store's statement timeout
            millis = sql.Literal(str(max(1, round(local_timeout * 1000))))
            setting = sql.SQL("SELECT set_config('statement_timeout', {}, true)")
            self._begin.append(setting.format(millis))
        self._rendered: dict[tuple[object, ...], bytes] = {}

    def head_size(self, begin: bool) -> int:
        """How many statements ``query`` puts before the caller's."""
        return len(self._begin) if begin else 0

    def query(
        self, conn: Connection, statements: Sequence[Statement], *, begin: bool, commit: bool
    ) -> bytes:
        """``statements`` as one query, between ``BEGIN`` and ``COMMIT`` if asked."""
        key = (*statements, begin, commit)
        cacheable = all(isinstance(statement, str) for statement in statements)
        rendered = self._rendered.get(key) if cacheable else None
        if rendered is None:
            parts = [self._composed[s] if isinstance(s, str) else s for s in statements]
            head = self._begin if begin else []
            tail = [sql.SQL("COMMIT")] if commit else []
            rendered = sql.SQL("; ").join([*head, *parts, *tail]).as_bytes(conn)
            if cacheable:
                self._rendered[key] = rendered
        return rendered

    def get(self, name: str) -> sql.Composed:
        return self._composed[name]

    def history(self, where: sql.Composable) -> sql.Composed:
        return sql.SQL(
            "SELECT {run_cols} FROM {occurrences} WHERE {where} "
            "ORDER BY scheduled_at DESC, key DESC LIMIT %(limit)s"
        ).format(occurrences=self._occurrences, run_cols=sql.SQL(_RUN_COLUMNS), where=where)

    def actions(self, where: sql.Composable) -> sql.Composed:
        return sql.SQL(
            "SELECT job_id, job_name, action, actor, at, detail FROM {actions} WHERE {where} "
            "ORDER BY at DESC, id DESC LIMIT %(limit)s"
        ).format(actions=self._actions, where=where)


def _regclass(schema: str, name: str) -> sql.Composed:
    # nextval takes the sequence's name as text; quote it as PostgreSQL would
    return sql.Literal(sql_name(schema, name)) + sql.SQL("::regclass")


def _channel(schema: str) -> str:
    """The notification channel: at most 63 bytes, which both LISTEN (that truncates
    longer names) and pg_notify (that refuses them) then agree on."""
    channel = f"gnomon_store_{schema}"
    if len(channel) <= 63:
        return channel
    digest = hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()
    return f"gnomon_store_{schema[:32]}_{digest}"


# ---------------------------------------------------------------- options


def _schema_name(schema: object) -> str:
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidOption(
            "schema must be a plain identifier (letters, digits and underscores, at most "
            f"63 characters, not starting with a digit), got {schema!r}"
        )
    return schema


def _timeout(timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidOption(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _target(url_or_pool: object) -> str | Pool:
    if isinstance(url_or_pool, ConnectionPool):
        return url_or_pool
    if isinstance(url_or_pool, AsyncConnectionPool):
        raise TypeError(
            "PostgresStore is synchronous: give it a postgresql:// URL or a "
            f"psycopg_pool.ConnectionPool, not an AsyncConnectionPool ({url_or_pool!r})"
        )
    if not isinstance(url_or_pool, str):
        raise TypeError(
            "expected a postgresql:// URL or a psycopg_pool.ConnectionPool, "
            f"got {url_or_pool!r} ({type(url_or_pool).__name__})"
        )
    if not url_or_pool.strip():
        raise InvalidOption("expected a postgresql:// URL, got an empty string")
    try:
        conninfo_to_dict(url_or_pool)
    except psycopg.ProgrammingError as exc:
        raise InvalidOption(
            f"expected a postgresql:// URL, got {mask_conninfo(url_or_pool)!r} ({exc})"
        ) from None
    return url_or_pool


def mask_conninfo(conninfo: str) -> str:
    """``conninfo`` (a URL or ``key=value`` pairs) with any password replaced by ``***``."""
    if "://" in conninfo:
        parts = urlsplit(mask_url(conninfo))
        query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
        return parts._replace(query=urlencode(query, safe="*")).geturl()
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable connection string>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - the mask, not a password
    return make_conninfo("", **params)


def _secret(conninfo: str) -> str | None:
    """The password in ``conninfo``, to scrub from driver messages."""
    try:
        password = conninfo_to_dict(conninfo).get("password")
    except psycopg.ProgrammingError:
        return None
    return str(password) if password else None


# ---------------------------------------------------------------- connections


def _session_options(conninfo: str, timeout: float) -> str:
    """Server settings for the store's own connections, added to any in ``conninfo``.

    UTC, so that timestamps load as aware UTC datetimes; statement and idle-transaction
    timeouts, so that neither a slow query nor a client stopped between the two phases
    of a claim holds the write lock for longer than ``timeout``.
    """
    millis = max(1, round(timeout * 1000))
    ours = (
        f"-c TimeZone=UTC -c statement_timeout={millis} "
        f"-c idle_in_transaction_session_timeout={millis}"
    )
    theirs = conninfo_to_dict(conninfo).get("options")
    return f"{theirs} {ours}" if theirs else ours


def _connect_kwargs(conninfo: str, timeout: float) -> dict[str, Any]:
    """What the store's own connections are opened with: each round trip bounded, on the
    server by statement_timeout, in the kernel by tcp_user_timeout and keepalives (a
    peer that stopped acknowledging drops the connection)."""
    return {
        "autocommit": True,
        "connect_timeout": max(2, math.ceil(timeout)),
        "options": _session_options(conninfo, timeout),
        "tcp_user_timeout": max(1, round(timeout * 1000)),
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
    }


def _stale(conn: Connection) -> bool:
    """True when an idle pooled connection was closed by the server (a restart).

    An idle connection has nothing to read unless the server spoke first: reading it
    without blocking tells a closed socket from a notice, without a round trip.
    """
    pgconn = conn.pgconn
    if pgconn.status != ConnStatus.OK:
        return True
    if not _readable(pgconn.socket):
        return False
    try:
        pgconn.consume_input()
    except psycopg.OperationalError:
        return True
    # a server going down sends its farewell (an error) before closing: what is left
    # to read after it is the end of the stream
    return pgconn.status != ConnStatus.OK or _readable(pgconn.socket)


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows has no poll()


def _in_utc(rows: list[Row], conn: Connection) -> list[Row]:
    """Rows with every timestamp in UTC, whatever the session's TimeZone."""
    if conn.info.timezone is UTC:
        return rows
    return [tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row) for row in rows]


# ---------------------------------------------------------------- change notification


class _Listener:
    """The LISTEN connection behind ``wait_for_change``.

    One caller at a time reads the connection; callers that arrive meanwhile wait on a
    condition and are woken by the reader. A connection that breaks is made again at
    once or on a later call; a wait that makes a new one returns at once, since changes
    may have gone unnoticed while nobody listened.
    """

    def __init__(
        self, connect: Callable[[], Connection], listen: sql.Composed, limit: float
    ) -> None:
        self._connect = connect
        self._listen = listen
        self._limit = limit
        self._conn: Connection | None = None
        self._cond = threading.Condition()
        self._reading = False
        self._changes = 0
        self._listened = False
        self._stop = threading.Event()

    def start(self) -> None:
        """Listen from now on (best effort), so that changes made before the first wait
        are not missed."""
        with self._cond:
            if self._reading or self._conn is not None or self._stop.is_set():
                return
            self._reading = True
        try:
            self._relisten()
        finally:
            with self._cond:
                self._finish_read(changed=False)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = self._changes
            while self._changes == seen and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if self._reading:
                    self._cond.wait(remaining)
                    continue
                self._reading = True
                self._cond.release()
                changed = False
                try:
                    changed = self._read(deadline)
                finally:
                    self._cond.acquire()
                    self._finish_read(changed)

    def _read(self, deadline: float) -> bool:
        """Up to ``deadline``: True on a notification, or when changes may have been
        missed. Never raises."""
        conn = self._conn
        if conn is None:
            return self._after_relisten(deadline)
        try:
            # psycopg's own wait wakes every 100 ms: notifications already received are
            # taken without waiting, then the socket is waited on for the whole timeout.
            for _ in conn.notifies(timeout=0, stop_after=1):
                return True
            if _wait_readable(conn.pgconn.socket, _left(deadline)):
                for _ in conn.notifies(timeout=0, stop_after=1):
                    return True
        except Exception as exc:  # a broken channel must not raise
            logger.info("the store's notification connection broke: %r", exc)
            self._drop()
            return self._after_relisten(deadline)
        return False

    def _after_relisten(self, deadline: float) -> bool:
        missed = self._relisten()
        if missed is None:
            self._stop.wait(_left(deadline))
            return False
        return missed

    def _relisten(self) -> bool | None:
        """Open a listening connection: ``None`` if that failed, else whether changes
        may have gone unnoticed (an earlier connection had listened)."""
        if self._stop.is_set():
            return None
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            logger.info("cannot listen for store changes: %r", exc)
            return None
        try:
            with _WATCHDOG.guard(conn, self._limit):
                conn.execute(self._listen)
        except psycopg.Error as exc:
            logger.info("cannot listen for store changes: %r", exc)
            conn.close()
            return None
        self._conn = conn
        missed, self._listened = self._listened, True
        return missed

    def _finish_read(self, changed: bool) -> None:
        """With the condition held: count the change, wake the others, and close the
        connection if the store closed while this caller read it."""
        self._reading = False
        if changed:
            self._changes += 1
        if self._stop.is_set():
            self._drop()
        self._cond.notify_all()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._cond:
            self._stop.set()
            if self._reading:
                # the reader closes the connection itself; this wakes it up
                _shut_down(self._conn)
            else:
                self._drop()
            self._cond.notify_all()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _wait_readable(fd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``fd`` to have something to read."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(max(0, math.ceil(timeout * 1000))))
    return bool(select.select([fd], [], [fd], timeout)[0])  # Windows has no poll()


def _shut_down(conn: Connection | None) -> None:
    """End a connection that another thread is waiting on, without touching libpq state
    from this thread: shut the socket down, and the waiter sees end of file."""
    import socket

    if conn is None or conn.closed:
        return
    with contextlib.suppress(OSError, psycopg.Error):
        fd = conn.pgconn.socket
        with socket.socket(fileno=socket.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)


class _Guard:
    """One round trip the watchdog watches."""

    __slots__ = ("conn", "deadline", "fired")

    def __init__(self, conn: Connection, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.fired = False


class _Watchdog:
    """Ends round trips that outlive their deadline, wherever they hang.

    A server that stopped answering without closing (a paused process, a partition that
    a proxy or a NAT hides) leaves a read waiting forever: statement_timeout runs on the
    server, and TCP's timeouts only see unacknowledged data. Shutting the socket down
    makes that read see end of file, so the call fails and the pool drops the
    connection. One thread for the process, which wakes only when the earliest deadline
    of the round trips it watches comes (most round trips are over long before).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._guards: dict[int, _Guard] = {}
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf

    @contextlib.contextmanager
    def guard(self, conn: Connection, seconds: float) -> Iterator[_Guard]:
        guard = _Guard(conn, time.monotonic() + seconds)
        with self._cond:
            self._guards[id(guard)] = guard
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="gnomon-postgres-watchdog", daemon=True
                )
                self._thread.start()
            elif guard.deadline < self._wake_at:
                self._cond.notify()
        try:
            yield guard
        finally:
            with self._cond:
                del self._guards[id(guard)]

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for guard in self._guards.values():
                    if not guard.fired and now > guard.deadline:
                        guard.fired = True
                        _shut_down(guard.conn)
                pending = [g.deadline for g in self._guards.values() if not g.fired]
                self._wake_at = min(pending, default=math.inf)
                self._cond.wait(None if not pending else self._wake_at - now)


_WATCHDOG = _Watchdog()


def _round_trip_limit(timeout: float) -> float:
    """How long the watchdog lets a round trip run: past statement_timeout, which ends
    a slow statement more cleanly when the server is there to end it."""
    return timeout + max(0.5, timeout / 2)


# ---------------------------------------------------------------- the store


class PostgresStore(Store):
    """Durable jobs in PostgreSQL, shared by schedulers on several machines.

    ``url_or_pool`` is a ``postgresql://`` URL (the store opens a small pool of its own
    on ``open()`` and closes it on ``close()``) or a ``psycopg_pool.ConnectionPool``,
    used as it is and never closed by the store. Tables live in ``schema``, created on
    ``open()``. Every round trip is bounded by ``timeout`` seconds; a store that cannot
    be reached raises :class:`~gnomon.StoreUnavailable`, and reconnects by itself.
    ``lease_ttl`` and ``renew_interval`` are the claims' lease timings, ``poll_interval``
    how often followers poll as a backstop to notifications.
    """

    notifies = True

    def __init__(
        self,
        url_or_pool: str | Pool,
        *,
        schema: str = "gnomon",
        timeout: float = 5.0,
        lease_ttl: Duration = "30s",
        renew_interval: Duration | None = None,
        poll_interval: Duration = "1s",
    ) -> None:
        self._target = _target(url_or_pool)
        self.schema = _schema_name(schema)
        self.timeout = _timeout(timeout)
        timings = LockerTimings.parse(lease_ttl, renew_interval)
        self.lease_ttl = timings.lease_ttl
        self.renew_interval = timings.renew_interval
        self.poll_interval = parse_duration(
            poll_interval, field="poll_interval", error=InvalidOption
        )
        self._channel = _channel(self.schema)
        self._own_pool = isinstance(self._target, str)
        local_timeout = None if self._own_pool else self.timeout
        self._sql = _Statements(self.schema, self._channel, local_timeout)
        self._pool: Pool | None = None if isinstance(self._target, str) else self._target
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False
        self._actions_missing: str | None = None
        """Why the schema has no actions table (this role may not add it), else ``None``."""
        self._actions_not_kept = ActionsNotKept()
        self._listener = _Listener(
            self._listen_connection, self._sql.get("listen"), _round_trip_limit(self.timeout)
        )

    # ------------------------------------------------------------ life cycle

    def open(self) -> None:
        with self._connection():
            pass
        self._listener.start()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        self._listener.close()
        if self._own_pool and pool is not None:
            pool.close(timeout=self.timeout)

    def describe(self) -> str:
        return f"{self._conninfo_label()} (schema {self.schema})"

    def __repr__(self) -> str:
        return (
            f"PostgresStore({self._conninfo_label()!r}, schema={self.schema!r}, "
            f"timeout={self.timeout:g}, lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"renew_interval={format_duration(self.renew_interval)!r}, "
            f"poll_interval={format_duration(self.poll_interval)!r})"
        )

    def _conninfo_label(self) -> str:
        if isinstance(self._target, str):
            return mask_conninfo(self._target)
        conninfo = self._target.conninfo
        text = conninfo if isinstance(conninfo, str) else "<conninfo callable>"
        return f"pool {self._target.name!r}: {mask_conninfo(text)}"

    def _conninfo(self) -> str:
        target = self._target
        if isinstance(target, str):
            return target
        return target.conninfo() if callable(target.conninfo) else target.conninfo

    def _open_pool(self) -> Pool:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"the store {self.describe()} is closed")
            if self._pool is None:
                self._pool = self._make_pool()
            return self._pool

    def _make_pool(self) -> Pool:
        conninfo = self._conninfo()
        pool: Pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=_POOL_MAX_SIZE,
            open=False,
            timeout=self.timeout,
            # give up a failing reconnection soon, so that the next call tries afresh
            # rather than waiting out an exponential backoff after the server is back
            reconnect_timeout=max(1.0, self.timeout / 2),
            name=f"gnomon-store-{self.schema}",
            kwargs=_connect_kwargs(conninfo, self.timeout),
        )
        pool.open(wait=False)
        return pool

    def _listen_connection(self) -> Connection:
        conninfo = self._conninfo()
        if isinstance(self._target, str):
            kwargs = _connect_kwargs(conninfo, self.timeout)
        else:
            given = self._target.kwargs
            kwargs = dict((given() if callable(given) else given) or {})
            kwargs.update(autocommit=True, connect_timeout=max(2, math.ceil(self.timeout)))
        return psycopg.Connection.connect(conninfo, **kwargs)

    # ------------------------------------------------------------ round trips

    @contextlib.contextmanager
    def _connection(self, *, refusals: bool = False) -> Iterator[Connection]:
        """A connection, with the schema made sure of first. Driver errors that mean
        the store is unreachable (or too slow), or that it refuses this role (or is
        read-only), become ``StoreUnavailable``; with ``refusals``, a refusal is raised
        as psycopg raised it, for a caller that can do without (the actions)."""
        pool = self._open_pool()
        try:
            conn = _checkout(pool)
            # the store sends its own BEGIN and COMMIT: a user's pool may not be in
            # autocommit, and gets its setting back
            manual = not conn.autocommit
            try:
                conn.autocommit = True
                if not self._ready:
                    self._migrate(conn)
                yield conn
            finally:
                _checkin(pool, conn, autocommit=not manual, limit=_round_trip_limit(self.timeout))
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        except _NOT_ALLOWED as exc:
            if refusals:
                raise
            raise StoreUnavailable(
                f"PostgreSQL store {self.describe()} refused the call: {_first_line(exc)} "
                "(the role needs SELECT, INSERT, UPDATE and DELETE on the schema's tables, "
                "and the server must accept writes)"
            ) from exc

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        reason = str(exc).strip() or type(exc).__name__
        secret = None
        with contextlib.suppress(Exception):
            secret = _secret(self._conninfo())
        if secret:
            reason = reason.replace(secret, "***")
        return StoreUnavailable(f"PostgreSQL store {self.describe()} is unavailable: {reason}")

    def _exchange(
        self,
        conn: Connection,
        *statements: Statement,
        params: Mapping[str, object] | None = None,
        begin: bool = False,
        commit: bool = False,
    ) -> list[list[Row]]:
        """Send ``statements`` in one round trip, as one query; each one's rows.

        Several statements without ``begin``/``commit`` run as one implicit
        transaction. On a user's pool every query is in a transaction, which carries
        the statement timeout (the store's own connections have it in their session).
        """
        if not self._own_pool and not (begin or commit):
            begin = commit = True
        query = self._sql.query(conn, statements, begin=begin, commit=commit)
        cursor = ClientCursor(conn, row_factory=tuple_row)
        limit = _round_trip_limit(self.timeout)
        with _WATCHDOG.guard(conn, limit) as guard:
            try:
                cursor.execute(query, params)
                results = _all_results(cursor)
            except _UNAVAILABLE as exc:
                if guard.fired:
                    raise psycopg.OperationalError(f"no answer within {limit:g}s") from exc
                raise
        first = self._sql.head_size(begin)
        return [_in_utc(rows, conn) for rows in results[first : first + len(statements)]]

    def _run(
        self, *statements: Statement, params: Mapping[str, object] | None = None
    ) -> list[list[Row]]:
        """One round trip on a connection of its own."""
        with self._connection() as conn:
            return self._exchange(conn, *statements, params=params)

    def _rows(self, statement: Statement, params: Mapping[str, object] | None = None) -> list[Row]:
        return self._run(statement, params=params)[0]

    # ------------------------------------------------------------ schema

    def _migrate(self, conn: Connection) -> None:
        """Create the schema, or accept the current version, or refuse a newer one.

        The usual case (created and current) costs two reads and no lock; creating
        takes the schema lock, so that processes starting together create it once.
        """
        if self._version(conn) is None:
            self._create(conn)
        elif not self._exchange(conn, "find_actions")[0][0][0]:
            self._actions_missing = self._try_create_actions(conn)
        self._ready = True

    def _try_create_actions(self, conn: Connection) -> str | None:
        """Add the actions table to a schema from an older gnomon; if this role or
        server may not, why not (the store is still read, as a dashboard reads it)."""
        try:
            self._exchange(conn, "schema_lock", "create_actions", begin=True, commit=True)
        except _NOT_ALLOWED as exc:
            _rollback(conn, _round_trip_limit(self.timeout))
            return _first_line(exc)
        return None

    def _version(self, conn: Connection) -> int | None:
        """The schema's version, ``None`` before it exists; any other version than
        this gnomon's is refused before anything is written."""
        if not self._exchange(conn, "find_meta")[0][0][0]:
            return None
        rows = self._exchange(conn, "read_version")[0]
        version = rows[0][0] if rows else None
        if version != SCHEMA_VERSION:
            raise StoreVersionError(
                f"the store {self.describe()} is at schema version {version}, and this "
                f"gnomon reads and writes version {SCHEMA_VERSION}; nothing was written "
                "(upgrade gnomon to use this store)"
            )
        return SCHEMA_VERSION

    def _create(self, conn: Connection) -> None:
        """Create the schema under the schema lock, unless another process just did."""
        results = self._exchange(conn, "schema_lock", "find_meta", begin=True)
        if not results[1][0][0]:
            self._exchange(conn, "create", commit=True)
            return
        self._exchange(conn, commit=True)
        self._version(conn)

    # ------------------------------------------------------------ clock and jobs

    def now(self) -> datetime:
        return _datetime(self._rows("now")[0][0])

    def wait_for_change(self, timeout: float) -> None:
        self._listener.wait(timeout)

    def seq(self) -> int:
        return _int(self._rows("seq")[0][0])

    def jobs(self, *, since: int = 0, include_removed: bool = False) -> list[StoredJob]:
        rows = self._rows("jobs" if include_removed else "live_jobs", {"since": since})
        with collector_paused():
            return [_make_job(row) for row in rows]

    def jobs_page(self, *, since: int, limit: int) -> list[StoredJob]:
        check_page_limit(limit)
        rows = self._rows("jobs_page", {"since": since, "limit": limit})
        with collector_paused():
            return [_make_job(row) for row in rows]

    def get_job(
        self, *, job_id: uuid.UUID | None = None, name: str | None = None
    ) -> StoredJob | None:
        check_lookup(job_id, name)
        if job_id is not None:
            rows = self._rows("job_by_id", {"id": job_id})
        else:
            rows = self._rows("job_by_name", {"name": name})
        return StoredJob(*rows[0]) if rows else None

    def put_job(
        self,
        job: NewJob,
        *,
        if_exists: IfExists,
        expected_version: int | None = None,
        keep_next_fire: bool = True,
        tombstone_after: datetime | None = None,
    ) -> tuple[StoredJob | None, bool]:
        job = _job_in_utc(job)
        if_exists = IfExists(if_exists)
        after = optional_utc(tombstone_after, "tombstone_after")
        with self._connection() as conn:
            inserted, live = self._insert_if_free(conn, job, after)
            if inserted is not None:
                return inserted, True
            if live is not None:
                row = kept_or_replaced(live, job, if_exists, expected_version, keep_next_fire)
                if row == live:
                    return live, False
            return self._put_locked(
                conn,
                job,
                if_exists=if_exists,
                expected_version=expected_version,
                keep_next_fire=keep_next_fire,
                tombstone_after=after,
            )

    def _insert_if_free(
        self, conn: Connection, job: NewJob, tombstone_after: datetime | None
    ) -> tuple[StoredJob | None, StoredJob | None]:
        """One round trip under the write lock: insert ``job`` if its name is free,
        else read the live row of that name. New jobs, kept ones and unchanged
        replacements end here."""
        params = {**_fields(job), "after": tombstone_after}
        results = self._exchange(
            conn, "write_lock", "insert_if_free", "live_by_name", params=params
        )
        inserted, live = results[1], results[2]
        if inserted:
            return StoredJob(*inserted[0]), None
        return None, (StoredJob(*live[0]) if live else None)

    def _put_locked(
        self,
        conn: Connection,
        job: NewJob,
        *,
        if_exists: IfExists,
        expected_version: int | None,
        keep_next_fire: bool,
        tombstone_after: datetime | None,
    ) -> tuple[StoredJob | None, bool]:
        """``put_job`` as one transaction, deciding on locked rows: a replacement that
        changes the row, a name a tombstone holds, an id already taken."""
        params = {"name": job.name, "id": job.id}
        found = self._exchange(
            conn,
            "write_lock",
            "lock_live_by_name",
            "newest_tombstone",
            "lock_by_id",
            params=params,
            begin=True,
        )
        live, tombstone, same_id = (_job_or_none(rows) for rows in found[1:])
        if live is None:
            if blocks_recreation(tombstone, tombstone_after):
                self._exchange(conn, commit=True)
                return None, False
            check_id_free(same_id, job)
            rows = self._exchange(conn, "insert_job", params=_fields(job), commit=True)[0]
            return StoredJob(*rows[0]), True
        row = kept_or_replaced(live, job, if_exists, expected_version, keep_next_fire)
        return self._write(conn, live, row), False

    def _write(self, conn: Connection, row: StoredJob, new: StoredJob) -> StoredJob:
        """The last phase of an edit: write ``new`` over the locked ``row`` and commit
        (just commit when nothing changes)."""
        if new == row:
            self._exchange(conn, commit=True)
            return row
        rows = self._exchange(conn, "write_job", params=_fields(new), commit=True)[0]
        return StoredJob(*rows[0])

    def _lock_live(
        self, conn: Connection, job_id: uuid.UUID, *extra: str, **params: Any
    ) -> tuple[StoredJob, list[list[Row]]]:
        """The first phase of an edit: the live row, locked (``JobNotFound`` without
        one), and the rows of ``extra`` statements."""
        found = self._exchange(
            conn, "write_lock", "lock_by_id", *extra, params={"id": job_id, **params}, begin=True
        )
        row = _job_or_none(found[1])
        if row is None or row.removed is not None:
            raise JobNotFound(f"no live job has the id {job_id}")
        return row, found[2:]

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
        with self._connection() as conn:
            extra = () if name is None else ("live_by_name",)
            row, found = self._lock_live(conn, job_id, *extra, name=name)
            check_version(row, expected_version)
            check_name_free(row, name, _job_or_none(found[0]) if found else None)
            new = updated(row, name, definition, next_fire, reset_next_fire=reset_next_fire)
            return self._write(conn, row, new)

    def set_paused(
        self,
        job_id: uuid.UUID,
        paused: bool,
        reason: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> StoredJob:
        with self._connection() as conn:
            row, _ = self._lock_live(conn, job_id)
            check_version(row, expected_version)
            return self._write(conn, row, paused_as(row, paused, reason))

    def remove_job(self, job_id: uuid.UUID, *, reason: str = "removed") -> StoredJob | None:
        params = {"id": job_id, "reason": reason}
        rows = self._run("write_lock", "remove_job", params=params)[1]
        return StoredJob(*rows[0]) if rows else None

    def save_progress(self, job_id: uuid.UUID, next_fire: datetime | None) -> None:
        params = {"id": job_id, "next_fire": optional_utc(next_fire, "next_fire")}
        self._run("write_lock", "save_progress", params=params)

    # ------------------------------------------------------------ occurrences

    def claim(self, request: ClaimRequest) -> Claim:
        """Two round trips: lock the occurrence's row and the job's and read the
        store's clock; then write the claim, its token and the job's progress, and
        commit (or, refused, roll back)."""
        params = _claim_params(request)
        with self._connection() as conn:
            found = self._exchange(
                conn,
                "write_lock",
                "lock_occurrence",
                "lock_claimed_job",
                "now",
                params=params,
                begin=True,
            )
            stored = _stored_claim(found[1])
            job = claimable(request, _job_or_none(found[2]), stored)
            now = _datetime(found[3][0][0])
            verdict = judge(stored, now, request.recovery)
            if verdict in (Verdict.CLAIM, Verdict.RECLAIM):
                return self._grant(
                    conn, request, job, stored=stored, verdict=verdict, now=now, params=params
                )
            if stored is not None and verdict is Verdict.ABANDON:
                params["now"] = now
                self._exchange(conn, "abandon", params=params, commit=True)
        raise denial(request.key, verdict, stored, now)

    def _grant(
        self,
        conn: Connection,
        request: ClaimRequest,
        job: StoredJob,
        *,
        stored: StoredClaim | None,
        verdict: Verdict,
        now: datetime,
        params: dict[str, Any],
    ) -> Claim:
        """The claim's second phase: its row and token, and the job's progress."""
        attempt, attempts = next_attempt(stored)
        statements = ["claim_occurrence"]
        if verdict is Verdict.CLAIM and (moved := progressed(job, request, stored, now)) != job:
            statements.append("write_job")
            params.update(_fields(moved))
        params.update(attempt=attempt, attempts=attempts)
        results = self._exchange(conn, *statements, params=params, commit=True)
        return Claim(request.key, _int(results[0][0][0]), attempt)

    def renew(self, key: str, token: int, ttl: timedelta) -> None:
        if not self._rows("renew", {"key": key, "token": token, "ttl": ttl}):
            raise lease_lost(key, token)

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
        params = {
            "key": key,
            "token": token,
            "outcome": Outcome(outcome).value,
            "finished_at": as_utc(finished_at, "finished_at"),
            "started_at": optional_utc(started_at, "started_at"),
            "error": error,
            "detail": detail,
            "exit_status": exit_status,
            "output": output,
            "retry_at": optional_utc(retry_at, "retry_at"),
        }
        if not self._rows("finish", params):
            raise LeaseLost(f"cannot finish {key!r}: token {token} no longer holds it")

    def occurrence(self, key: str) -> RunRecord | None:
        rows = self._rows("occurrence", {"key": key})
        return _run_record(rows[0]) if rows else None

    def due_retries(self, *, grace: timedelta, limit: int = 100) -> list[RunRecord]:
        check_limit(limit)
        rows = self._rows("due_retries", {"grace": grace, "limit": limit})
        return [_run_record(row) for row in rows]

    def drop_retry(self, key: str) -> None:
        self._rows("drop_retry", {"key": key})

    def record(self, record: RunRecord) -> bool:
        return bool(self._rows("record", _record_params(record_in_utc(record))))

    def expired_claims(self, *, limit: int = 100) -> list[RunRecord]:
        check_limit(limit)
        return [_run_record(row) for row in self._rows("expired", {"limit": limit})]

    def retry(self, key: str, *, actor: str | None = None) -> RunRecord:
        with self._connection() as conn:
            rows = self._exchange(conn, "retry", params={"key": key, "actor": actor})[0]
            if rows:
                return _run_record(rows[0])
            known = self._exchange(conn, "occurrence_state", params={"key": key})[0]
        raise still_running(key) if known else unknown_occurrence(key)

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
        oldest = optional_utc(since, "since")
        where, params = _history_filter(job_id, job_name, outcomes, oldest)
        cursor = history_cursor(before)
        if cursor is not None:
            # a range on the index's scheduled_at, ties by key
            where = sql.SQL(" AND ").join([where, sql.SQL(_AFTER_CURSOR)])
            params.update(before_at=cursor[0], before_key=cursor[1])
        rows = self._rows(self._sql.history(where), {**params, "limit": limit})
        return [_run_record(row) for row in rows]

    def prune(self, before: datetime) -> int:
        """Finished and skipped records, tombstones, actions (and instances not seen
        since) from before ``before``: runs before tombstones, the order a claim locks
        them in."""
        params = {"before": as_utc(before, "before")}
        actions = ["prune_actions"] if self._why_no_actions() is None else []
        results = self._run(
            "prune_runs", "prune_tombstones", *actions, "prune_nodes", params=params
        )
        return sum(_int(rows[0][0]) for rows in results[:-1])  # nodes are not counted

    # ------------------------------------------------------------ actions

    def record_action(self, record: ActionRecord) -> None:
        params = _fields(action_in_utc(record))
        missing = self._why_no_actions()
        if missing is not None:
            self._actions_not_kept.say(self.describe(), missing_actions_table(missing))
            return
        try:
            with self._connection(refusals=True) as conn:
                self._exchange(conn, "record_action", params=params)
        except _NOT_ALLOWED as exc:
            reason = f"this role may not record them ({_first_line(exc)})"
            self._actions_not_kept.say(self.describe(), reason)

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
        try:
            with self._connection(refusals=True) as conn:
                statement = self._sql.actions(where)
                rows = self._exchange(conn, statement, params={**params, "limit": limit})[0]
        except psycopg.errors.InsufficientPrivilege as exc:
            reason = f"this role may not read them ({_first_line(exc)})"
            self._actions_not_kept.say(self.describe(), reason)
            return []
        return [ActionRecord(*row) for row in rows]

    def _why_no_actions(self) -> str | None:
        """Why the schema has no actions table, ``None`` when it has one. While it is
        missing it is looked for again: a gnomon allowed to create it may have since."""
        if self._ready and self._actions_missing is None:
            return None
        with self._connection() as conn:  # the schema checked first: the table, or why not
            if self._actions_missing and self._exchange(conn, "find_actions")[0][0][0]:
                self._actions_missing = None
        return self._actions_missing

    # ------------------------------------------------------------ nodes

    def heartbeat(self, instance_id: str, node: str, started_at: datetime, leader: bool) -> None:
        params = {
            "instance_id": instance_id,
            "node": node,
            "started_at": as_utc(started_at, "started_at"),
            "leader": leader,
        }
        self._run("heartbeat", params=params)

    def leave(self, instance_id: str) -> None:
        self._run("leave", params={"instance_id": instance_id})

    def nodes(self, *, alive_within: timedelta) -> list[NodeInfo]:
        return [NodeInfo(*row) for row in self._rows("nodes", {"within": alive_within})]


# ---------------------------------------------------------------- helpers


def _checkout(pool: Pool) -> Connection:
    """A live connection: idle ones the server closed (a restart) are dropped at once,
    rather than failing the call that would have used them."""
    for _ in range(_POOL_MAX_SIZE):
        conn: Connection = pool.getconn()
        if not _stale(conn):
            return conn
        conn.close()
        pool.putconn(conn)
    last: Connection = pool.getconn()
    return last


def _checkin(pool: Pool, conn: Connection, *, autocommit: bool, limit: float) -> None:
    """Give ``conn`` back, its transaction ended (the watchdog must be done with it
    before the pool may hand it to another caller)."""
    _rollback(conn, limit)  # a call that raised between its phases
    if not autocommit:
        with contextlib.suppress(psycopg.Error):
            conn.autocommit = False
    pool.putconn(conn)


def _rollback(conn: Connection, limit: float) -> None:
    """End the transaction ``conn`` is in, if any."""
    if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
        with contextlib.suppress(psycopg.Error), _WATCHDOG.guard(conn, limit):
            conn.execute("ROLLBACK")


def _first_line(exc: Exception) -> str:
    """A server error's message without the statement it quotes."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _all_results(cursor: ClientCursor[Row]) -> list[list[Row]]:
    """Each statement's rows (``description`` would build column objects we never use)."""
    results: list[list[Row]] = []
    while True:
        result = cursor.pgresult
        has_rows = result is not None and result.status == ExecStatus.TUPLES_OK
        results.append(cursor.fetchall() if has_rows else [])
        if not cursor.nextset():
            return results


def _fields(value: Any) -> dict[str, Any]:
    """A dataclass's fields by name, shallow (``asdict`` deep-copies every value)."""
    return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer from PostgreSQL, got {value!r}")
    return value


def _datetime(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp from PostgreSQL, got {value!r}")
    return value


def _job_or_none(rows: list[Row]) -> StoredJob | None:
    return StoredJob(*rows[0]) if rows else None


def _job_in_utc(job: NewJob) -> NewJob:
    """``job`` with its times in UTC; naive ones are refused, as by every store."""
    return dataclasses.replace(
        job,
        next_fire=optional_utc(job.next_fire, "next_fire"),
        anchor=optional_utc(job.anchor, "anchor"),
    )


def _claim_params(request: ClaimRequest) -> dict[str, Any]:
    return {
        "key": request.key,
        "job_id": request.job_id,
        "job_name": request.job_name,
        "scheduled_at": as_utc(request.scheduled_at, "scheduled_at"),
        "node": request.node,
        "instance_id": request.instance_id,
        "ttl": request.ttl,
        "actor": request.actor,
    }


def _stored_claim(rows: list[Row]) -> StoredClaim | None:
    """What the claim decision needs of the occurrence's row, if it has one."""
    if not rows:
        return None
    state, attempt, attempts, lease_until, ran = rows[0]
    return StoredClaim(OccurrenceState(state), attempt, attempts, lease_until, ran)


def _record_params(record: RunRecord) -> dict[str, Any]:
    params = _fields(record)
    params.update(
        key=record.occurrence_key,
        token=record.fencing_token,
        outcome=None if record.outcome is None else Outcome(record.outcome).value,
        state=recorded_state(record).value,
    )
    return params


def _run_record(row: Row) -> RunRecord:
    values = list(row)
    outcome = values[6]
    values[6] = None if outcome is None else _OUTCOMES[outcome]
    return RunRecord(*values)


_AFTER_CURSOR = (
    "scheduled_at <= %(before_at)s AND (scheduled_at < %(before_at)s OR key < %(before_key)s)"
)


def _history_filter(
    job_id: uuid.UUID | None,
    job_name: str | None,
    outcomes: Collection[Outcome | None] | None,
    since: datetime | None,
) -> tuple[sql.Composable, dict[str, object]]:
    conditions: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, object] = {}
    if job_id is not None:
        conditions.append(sql.SQL("job_id = %(job_id)s"))
        params["job_id"] = job_id
    if job_name is not None:
        conditions.append(sql.SQL("job_name = %(job_name)s"))
        params["job_name"] = job_name
    if outcomes is not None:
        names = outcome_names(list(outcomes))
        params["outcomes"] = [name for name in names if name is not None]
        condition = "outcome = ANY(%(outcomes)s::text[])"
        if None in names:
            condition = f"({condition} OR outcome IS NULL)"
        conditions.append(sql.SQL(condition))
    if since is not None:
        conditions.append(sql.SQL("scheduled_at >= %(since)s"))
        params["since"] = since
    return sql.SQL(" AND ").join(conditions), params
