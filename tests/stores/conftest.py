"""Fixtures for the store tests: one store per technology, and a second view of it.

``store`` is parametrized over every store: memory (on a ``FakeClock``), SQLite (a file
in the test's directory) and PostgreSQL (a schema of its own, dropped after the test).
PostgreSQL reads ``GNOMON_POSTGRES_URL`` and skips when the server is not answering,
unless ``GNOMON_REQUIRE_SERVICES=1``, as the distributed tests do.
``make_store`` opens another store object on the same database, as another process
would (for memory: the same object, which is how processes share it in tests).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gnomon._stores.contract import Store
from gnomon.sqlite import SQLiteStore
from gnomon.testing import FakeClock, MemoryStore

POSTGRES_URL = os.environ.get("GNOMON_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("GNOMON_REQUIRE_SERVICES") == "1"

T0 = datetime(2026, 3, 1, tzinfo=UTC)
"""Where the memory store's fake clock starts."""
EXPIRY_DEADLINE = 10.0

_postgres_verdict: list[str | None] = []


@dataclass
class Backend:
    """One store's database, as the contract tests see it."""

    kind: str
    opener: Callable[[], Store]
    clock: FakeClock | None = None
    cleanup: Callable[[], None] | None = None
    made: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store = self.opener()
        store.open()
        self.made.append(store)
        return store

    def expire(self, store: Store, key: str) -> None:
        """Let store time pass until ``store`` judges the lease on ``key`` expired: the
        fake clock is stepped; a real store's clock cannot be moved, so it is waited for
        and the store asked every 20 ms."""
        deadline = time.monotonic() + EXPIRY_DEADLINE
        while key not in {record.occurrence_key for record in store.expired_claims(limit=1000)}:
            if time.monotonic() > deadline:
                raise AssertionError(f"the lease on {key!r} did not expire within 10 s")
            self.pass_time(0.02)

    def pass_time(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(timedelta(seconds=seconds))
        else:
            time.sleep(seconds)

    def close(self) -> None:
        for store in self.made:
            store.close()
        if self.cleanup is not None:
            self.cleanup()


def _memory() -> Backend:
    clock = FakeClock(T0)
    shared = MemoryStore(clock=clock)
    return Backend("memory", lambda: shared, clock)


def _sqlite(directory: Path) -> Backend:
    path = directory / "store.db"
    return Backend("sqlite", lambda: SQLiteStore(path))


def require_postgres() -> None:
    """Skip (or, with GNOMON_REQUIRE_SERVICES=1, fail) when PostgreSQL is not answering."""
    if not _postgres_verdict:
        _postgres_verdict.append(_postgres_problem())
    problem = _postgres_verdict[0]
    if problem is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
    pytest.skip(f"{problem}; set GNOMON_POSTGRES_URL to run these tests")


def _postgres_problem() -> str | None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not answering ({type(exc).__name__})"
    return None


def _postgres_store_class() -> type[Store]:
    try:
        from gnomon.postgres import PostgresStore
    except ImportError as exc:
        pytest.skip(f"gnomon.postgres.PostgresStore cannot be imported yet: {exc}")
    if not (isinstance(PostgresStore, type) and issubclass(PostgresStore, Store)):
        pytest.skip("gnomon.postgres.PostgresStore is not a gnomon Store yet")
    return PostgresStore


def _postgres() -> Backend:
    require_postgres()
    store_class = _postgres_store_class()
    schema = f"gnomon_test_{uuid.uuid4().hex[:12]}"
    return Backend(
        "postgres",
        lambda: store_class(POSTGRES_URL, schema=schema),  # type: ignore[call-arg]
        cleanup=lambda: _drop_schema(schema),
    )


def _drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each store in turn: memory (on a fake clock), SQLite, PostgreSQL."""
    kind = request.param
    made = _memory() if kind == "memory" else _sqlite(tmp_path) if kind == "sqlite" else _postgres()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def make_store(backend: Backend) -> Callable[[], Store]:
    """Opens another store object on the test's database (closed after the test)."""
    return backend.open


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    """An open store on an empty database."""
    return make_store()
