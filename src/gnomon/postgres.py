"""PostgreSQL backends: ``PostgresStore`` (durable jobs, psycopg 3, synchronous),
``PostgresLocker`` and ``PostgresElector`` (psycopg 3, async), and fenced writes for a
job's own side effects.

Install with ``pip install 'gnomon[postgres]'``. Everything lives in one schema (``gnomon``
by default), created on first use: the store's ``store_*`` tables, the locker's claims and
the elector's leadership lease. Every lease is judged by the server's
``clock_timestamp()``; fencing tokens come from sequences, so they only grow.
"""

from __future__ import annotations

try:
    import psycopg
    import psycopg_pool  # noqa: F401 - fail here, with the extra's name, if the pool is missing
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "gnomon.postgres needs the PostgreSQL driver; install it with: "
        "pip install 'gnomon[postgres]'"
    ) from exc

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from gnomon._claims import ElectorTimings, LockerTimings, Verdict, refuse
from gnomon._clock import monotonic
from gnomon._distributed import Lease, Locker
from gnomon._durations import Duration, format_duration
from gnomon._errors import LeaseLost, LockHeld
from gnomon._events import Recovery
from gnomon._memory import CampaigningElector
from gnomon._postgres_pool import Pool, PostgresConnections, bounded
from gnomon._stores.postgres import PostgresStore

__all__ = [
    "PostgresElector",
    "PostgresLocker",
    "PostgresStore",
    "fenced_write",
    "fenced_write_async",
    "insert_once",
    "insert_once_async",
]

logger = logging.getLogger("gnomon")

_PURGE_EVERY = 60.0
"""Seconds between sweeps of claims whose retention ran out."""


class _PostgresLease(Lease):
    def __init__(
        self, locker: PostgresLocker, key: str, token: int, attempt: int, ttl: timedelta
    ) -> None:
        self._locker = locker
        self.key = key
        self.token = token
        self.attempt = attempt
        self.ttl = ttl

    async def renew(self) -> None:
        params = {"key": self.key, "token": self.token, "ttl": self.ttl}
        if not await self._locker._update(self._locker._store.sql.renew, params):
            raise LeaseLost(f"the lease on {self.key!r} (token {self.token}) was lost")

    async def release(self) -> None:
        params = {"key": self.key, "token": self.token}
        if not await self._locker._update(self._locker._store.sql.release, params):
            raise LeaseLost(f"cannot release {self.key!r}: token {self.token} no longer holds it")

    def __repr__(self) -> str:
        return f"<PostgresLease {self.key!r} token={self.token} attempt={self.attempt}>"


class PostgresLocker(Locker):
    """Claims occurrences in PostgreSQL: ``PostgresLocker("postgresql://host/db")``.

    ``postgres`` is a URL (a small pool is opened on first use, inside the running loop)
    or an existing ``psycopg_pool.AsyncConnectionPool``. Store round trips give up after
    ``renew_interval``; any store error reaches the scheduler as a lock error.
    """

    def __init__(
        self,
        postgres: str | Pool,
        *,
        schema: str = "gnomon",
        lease_ttl: Duration = timedelta(seconds=30),
        renew_interval: Duration | None = None,
        retention: Duration | None = None,
    ) -> None:
        timings = LockerTimings.parse(lease_ttl, renew_interval, retention)
        self.lease_ttl = timings.lease_ttl
        self.renew_interval = timings.renew_interval
        self.retention = timings.retention
        self.schema = schema
        self._store = PostgresConnections(
            postgres, schema=schema, timeout=timings.renew_interval.total_seconds()
        )
        self._next_purge = 0.0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresLocker:
        """Same as ``PostgresLocker(url, **options)``."""
        return cls(url, **options)

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: Recovery = Recovery.AT_MOST_ONCE
    ) -> Lease:
        outcome = await bounded(self._claim(key, ttl, recovery), self._store.timeout)
        await self._maybe_purge()
        if isinstance(outcome, LockHeld):
            raise outcome
        return outcome

    async def _claim(self, key: str, ttl: timedelta, recovery: Recovery) -> Lease | LockHeld:
        params = {
            "key": key,
            "ttl": ttl,
            "keep": self.retention,
            "at_least_once": recovery is Recovery.AT_LEAST_ONCE,
        }
        row = await self._store.fetch_one(self._store.sql.claim, params)
        if row is None:
            raise RuntimeError(f"claiming {key!r} returned no row")
        verdict, token, attempt, left = Verdict(row[0]), _int(row[1]), _int(row[2]), row[3]
        if verdict in (Verdict.CLAIM, Verdict.RECLAIM):
            return _PostgresLease(self, key, token, attempt, ttl)
        if not isinstance(left, timedelta):
            raise TypeError(f"expected an interval from PostgreSQL, got {left!r}")
        return refuse(key, verdict, attempt, left)

    async def _maybe_purge(self) -> None:
        """Now and then, forget claims whose retention ran out (best effort)."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + _PURGE_EVERY
        try:
            await bounded(self._store.execute(self._store.sql.purge), self._store.timeout)
        except Exception as exc:
            logger.warning("could not sweep expired claims in %r: %r", self.schema, exc)

    async def _update(self, statement: sql.Composed, params: dict[str, object]) -> bool:
        work = self._store.fetch_one(statement, {**params, "keep": self.retention})
        return await bounded(work, self._store.timeout) is not None

    async def close(self) -> None:
        await self._store.close()

    def __repr__(self) -> str:
        return (
            f"PostgresLocker({self._store.describe()!r}, schema={self.schema!r}, "
            f"lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"renew_interval={format_duration(self.renew_interval)!r}, "
            f"retention={format_duration(self.retention)!r})"
        )


class PostgresElector(CampaigningElector):
    """Elects one leader through a lease row: ``PostgresElector("postgresql://host/db")``.

    The leader renews its lease every third of ``lease_ttl``; followers campaign every
    ``retry_interval``, so a dead leader is replaced within ``lease_ttl + retry_interval``.
    A lease row, not a session advisory lock, so it works behind PgBouncer.
    """

    def __init__(
        self,
        postgres: str | Pool,
        *,
        schema: str = "gnomon",
        lease_ttl: Duration = timedelta(seconds=15),
        retry_interval: Duration | None = None,
    ) -> None:
        timings = ElectorTimings.parse(lease_ttl, retry_interval)
        super().__init__(timings, local_clock=monotonic)
        self.schema = schema
        self._store = PostgresConnections(
            postgres, schema=schema, timeout=timings.renew_interval.total_seconds()
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresElector:
        """Same as ``PostgresElector(url, **options)``."""
        return cls(url, **options)

    async def _claim_term(self) -> int | None:
        params = {"name": "leader", "holder": self._holder, "ttl": self.lease_ttl}
        row = await bounded(
            self._store.fetch_one(self._store.sql.elect, params), self._store.timeout
        )
        return None if row is None else _int(row[0])

    async def _resign(self, token: int) -> None:
        params = {"name": "leader", "holder": self._holder, "token": token}
        await bounded(self._store.fetch_one(self._store.sql.resign, params), self._store.timeout)

    async def _close_store(self) -> None:
        await self._store.close()

    def __repr__(self) -> str:
        return (
            f"PostgresElector({self._store.describe()!r}, schema={self.schema!r}, "
            f"lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"retry_interval={format_duration(self.retry_interval)!r})"
        )


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer from PostgreSQL, got {value!r}")
    return value


# Fenced writes: a job's own side effects, protected against zombies.


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def _fenced_write_sql(
    table: str,
    key: Mapping[str, object],
    values: Mapping[str, object],
    token: int,
    token_column: str,
) -> tuple[sql.Composed, list[object]]:
    if not key:
        raise ValueError("fenced_write needs at least one key column")
    row = {**key, **values, token_column: token}
    columns = sql.SQL(", ").join(map(sql.Identifier, row))
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(column))
        for column in row
        if column not in key
    )
    query = sql.SQL(
        "INSERT INTO {table} AS t ({columns}) VALUES ({values}) "
        "ON CONFLICT ({key}) DO UPDATE SET {updates} "
        "WHERE t.{token} <= excluded.{token} RETURNING 1"
    ).format(
        table=_table(table),
        columns=columns,
        values=sql.SQL(", ").join(sql.Placeholder() * len(row)),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        updates=updates,
        token=sql.Identifier(token_column),
    )
    return query, list(row.values())


def _insert_once_sql(
    table: str, occurrence_key: str, values: Mapping[str, object], key_column: str
) -> tuple[sql.Composed, list[object]]:
    row = {key_column: occurrence_key, **values}
    query = sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES ({values}) "
        "ON CONFLICT ({key}) DO NOTHING RETURNING 1"
    ).format(
        table=_table(table),
        columns=sql.SQL(", ").join(map(sql.Identifier, row)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(row)),
        key=sql.Identifier(key_column),
    )
    return query, list(row.values())


def fenced_write(
    conn: psycopg.Connection[Any],
    table: str,
    *,
    key: Mapping[str, object],
    values: Mapping[str, object],
    token: int,
    token_column: str = "fencing_token",  # noqa: S107 - a column name, not a secret
) -> bool:
    """Upsert the row ``key`` of ``table`` unless it was last written with a larger
    token. True if this write was accepted.

    ``table`` needs a unique constraint on the ``key`` columns and a ``bigint`` column
    ``token_column``. Pass ``ctx.fencing_token``: a run that lost its lease (a paused or
    partitioned node) holds a smaller token than the run that took over, so its write is
    rejected, whenever it arrives. Writes with the stored token itself are accepted: they
    come from the same holder (a run writing twice, or a leader's later runs in one term).
    """
    query, params = _fenced_write_sql(table, key, values, token, token_column)
    return conn.execute(query, params).fetchone() is not None


async def fenced_write_async(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    *,
    key: Mapping[str, object],
    values: Mapping[str, object],
    token: int,
    token_column: str = "fencing_token",  # noqa: S107 - a column name, not a secret
) -> bool:
    """The asyncio twin of :func:`fenced_write`."""
    query, params = _fenced_write_sql(table, key, values, token, token_column)
    cursor = await conn.execute(query, params)
    return await cursor.fetchone() is not None


def insert_once(
    conn: psycopg.Connection[Any],
    table: str,
    *,
    occurrence_key: str,
    values: Mapping[str, object],
    key_column: str = "occurrence_key",
) -> bool:
    """Insert one row per occurrence: the first write of ``occurrence_key`` wins and every
    later one (a re-run, a zombie) changes nothing. True if this write was the first.

    ``table`` needs a unique constraint on ``key_column``; pass ``ctx.occurrence_key``.
    """
    query, params = _insert_once_sql(table, occurrence_key, values, key_column)
    return conn.execute(query, params).fetchone() is not None


async def insert_once_async(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    *,
    occurrence_key: str,
    values: Mapping[str, object],
    key_column: str = "occurrence_key",
) -> bool:
    """The asyncio twin of :func:`insert_once`."""
    query, params = _insert_once_sql(table, occurrence_key, values, key_column)
    cursor = await conn.execute(query, params)
    return await cursor.fetchone() is not None
