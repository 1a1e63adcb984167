"""Shared helpers for the distributed tests: service URLs, availability, backends."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from gnomon import Elector, Locker
from gnomon.testing import FakeClock, MemoryElector, MemoryLocker

T = TypeVar("T")

REDIS_URL = os.environ.get("GNOMON_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("GNOMON_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("GNOMON_REQUIRE_SERVICES") == "1"


def run(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


def unique_name(stem: str = "t") -> str:
    """A prefix or schema name no other test run uses."""
    return f"{stem}_{uuid.uuid4().hex[:12]}"


def _redis_answers() -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis at {REDIS_URL} is not answering ({type(exc).__name__}: {exc})"
    return None


def _postgres_answers() -> str | None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not answering ({type(exc).__name__})"
    return None


_PROBES: dict[str, Callable[[], str | None]] = {
    "redis": _redis_answers,
    "postgres": _postgres_answers,
}
_verdicts: dict[str, str | None] = {}


def require_service(kind: str) -> None:
    """Skip (or, with GNOMON_REQUIRE_SERVICES=1, fail) when the server is not answering."""
    if kind not in _verdicts:
        _verdicts[kind] = _PROBES[kind]()
    problem = _verdicts[kind]
    if problem is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
    pytest.skip(f"{problem}; set GNOMON_{kind.upper()}_URL to run these tests")


def store_url(kind: str) -> str:
    return REDIS_URL if kind == "redis" else POSTGRES_URL


def make_locker(kind: str, target: str, namespace: str, **timings: Any) -> Locker:
    """A locker of ``kind`` on ``target`` (a URL), its keys under ``namespace``."""
    if kind == "redis":
        from gnomon.redis import RedisLocker

        return RedisLocker(target, prefix=namespace, **timings)
    from gnomon.postgres import PostgresLocker

    return PostgresLocker(target, schema=namespace, **timings)


def make_elector(kind: str, target: str, namespace: str, **timings: Any) -> Elector:
    if kind == "redis":
        from gnomon.redis import RedisElector

        return RedisElector(target, prefix=namespace, **timings)
    from gnomon.postgres import PostgresElector

    return PostgresElector(target, schema=namespace, **timings)


def drop_namespace(kind: str, namespace: str) -> None:
    """Remove a test's keys or schema from the shared server."""
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{{{namespace}}}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    elif kind == "postgres":
        import psycopg
        from psycopg import sql

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(namespace))
            )


@dataclass
class Backend:
    """One store, as the contract tests see it.

    ``pass_time`` lets store time go by: the fake clock moves for the memory store; for
    real stores the test waits, since their clocks cannot be faked.
    """

    kind: str
    namespace: str
    clock: FakeClock | None = None
    _electors: list[Elector] = field(default_factory=list)
    _lockers: list[Locker] = field(default_factory=list)
    _memory_stores: dict[str, MemoryLocker] = field(default_factory=dict)

    @property
    def fake_time(self) -> bool:
        return self.clock is not None

    def locker(self, **timings: Any) -> Locker:
        if self.kind == "memory":
            # One MemoryLocker is the store: nodes of the memory backend share it.
            shape = repr(sorted(timings.items()))
            if shape not in self._memory_stores:
                self._memory_stores[shape] = MemoryLocker(clock=self.clock, **timings)
            made: Locker = self._memory_stores[shape]
        else:
            made = make_locker(self.kind, store_url(self.kind), self.namespace, **timings)
        self._lockers.append(made)
        return made

    def elector(self, **timings: Any) -> Elector:
        """A new node of this store's election."""
        if self.kind != "memory":
            made = make_elector(self.kind, store_url(self.kind), self.namespace, **timings)
        elif self._electors:
            first = self._electors[0]
            assert isinstance(first, MemoryElector)
            made = first.peer()
        else:
            made = MemoryElector(clock=self.clock, **timings)
        self._electors.append(made)
        return made

    async def pass_time(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(timedelta(seconds=seconds))
        else:
            await asyncio.sleep(seconds)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a scenario, then close what it made, in the loop that made it."""

        async def scenario() -> T:
            try:
                return await work
            finally:
                await self.close()

        return asyncio.run(scenario())

    async def close(self) -> None:
        electors, self._electors = self._electors, []
        lockers, self._lockers = self._lockers, []
        for elector in electors:
            await elector.close()
        for locker in lockers:
            await locker.close()


async def eventually(
    check: Callable[[], Awaitable[T | None]], within: float, step: float = 0.02
) -> T:
    """The first non-None answer of ``check`` within ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        answer = await check()
        if answer is not None:
            return answer
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no answer within {within}s")
        await asyncio.sleep(step)
