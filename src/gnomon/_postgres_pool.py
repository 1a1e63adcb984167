"""Connections for ``gnomon.postgres``: one pool per event loop, made on first use.

Users build lockers before the scheduler's loop exists, so a pool made from a URL is
opened lazily inside the loop that first needs it. A pool the user passed in is used as
it is. Every round trip is bounded in time (see ``bounded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from gnomon._claims import mask_url
from gnomon._postgres_schema import SCHEMA_VERSION, Statements, sql_name

__all__ = ["PostgresConnections", "bounded"]

T = TypeVar("T")

Row = tuple[object, ...]
Connection = psycopg.AsyncConnection[Row]
Pool = AsyncConnectionPool[Connection]


async def bounded(work: Awaitable[T], seconds: float) -> T:
    """Await ``work`` for at most ``seconds``, then abandon it.

    psycopg answers a first cancellation by asking the server to cancel the query, which
    can itself hang for seconds when the network is what failed; a second cancellation
    makes it drop the connection at once.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    task.add_done_callback(_consume)
    raise TimeoutError(f"the PostgreSQL round trip took longer than {seconds:g}s")


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class PostgresConnections:
    """A pool (given, or made per loop from a URL) and the schema it serves."""

    def __init__(self, target: str | Pool, *, schema: str, timeout: float) -> None:
        if not isinstance(target, str | AsyncConnectionPool):
            raise TypeError(
                "expected a postgresql:// URL or a psycopg_pool.AsyncConnectionPool, "
                f"got {target!r}"
            )
        if not isinstance(schema, str) or not schema:
            raise ValueError(f"schema must be a non-empty name, got {schema!r}")
        self._target = target
        self.timeout = timeout
        self.sql = Statements(schema)
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._ready = False

    def describe(self) -> str:
        target = self._target
        return mask_url(target) if isinstance(target, str) else repr(target)

    async def _pool(self) -> Pool:
        if isinstance(self._target, AsyncConnectionPool):
            return self._target
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = AsyncConnectionPool(
                self._target,
                min_size=1,
                max_size=4,
                open=False,
                timeout=self.timeout,
                kwargs={"autocommit": True, "connect_timeout": max(1, round(self.timeout))},
            )
            self._pools[loop] = pool
            await pool.open(wait=False)
        return pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection from the pool, the schema made sure of first."""
        pool = await self._pool()
        async with pool.connection() as conn:
            if not self._ready:
                await self._migrate(conn)
                self._ready = True
            yield conn

    async def fetch_one(self, statement: sql.Composed, params: Mapping[str, object]) -> Row | None:
        """One statement, in autocommit when the connection allows it, so that no row
        lock outlives the round trip."""
        async with self.connection() as conn:
            if conn.autocommit:
                return await (await conn.execute(statement, params)).fetchone()
            async with conn.transaction():
                return await (await conn.execute(statement, params)).fetchone()

    async def execute(self, statement: sql.Composed) -> None:
        """One statement that returns nothing, in autocommit when possible."""
        async with self.connection() as conn:
            if conn.autocommit:
                await conn.execute(statement)
                return
            async with conn.transaction():
                await conn.execute(statement)

    async def _migrate(self, conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute(self.sql.lock)
            await conn.execute(self.sql.create_schema)
            cursor = await conn.execute(
                "SELECT to_regclass(%s)", [sql_name(self.sql.schema, "meta")]
            )
            found = await cursor.fetchone()
            if found is None or found[0] is None:
                await conn.execute(self.sql.create)
                return
            row = await (await conn.execute(self.sql.read_version)).fetchone()
        version = row[0] if row else None
        if version != SCHEMA_VERSION:
            raise RuntimeError(
                f"schema {self.sql.schema!r} is at version {version}; this gnomon "
                f"uses version {SCHEMA_VERSION}"
            )

    async def close(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()
