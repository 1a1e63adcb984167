"""What is particular to ``PostgresStore``: its options, secrets, schema versions,
change notification across objects, a user's pool, and a server that goes away.

The shared contract is in ``test_store_contract.py``. Tests that need PostgreSQL read
``GNOMON_POSTGRES_URL`` and skip when it is not answering (fail with
``GNOMON_REQUIRE_SERVICES=1``); the outage tests stop and start a private server of their
own, never the shared one.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from gnomon._errors import InvalidOption, StoreUnavailable, StoreVersionError
from gnomon._stores.contract import ClaimRequest, IfExists, NewJob, StoredJob
from gnomon._stores.postgres import mask_conninfo
from gnomon.postgres import PostgresLocker, PostgresStore

# The distributed tests' helpers: service probes and private servers on free ports.
_DISTRIBUTED = str(Path(__file__).resolve().parents[1] / "distributed")
if _DISTRIBUTED not in sys.path:
    sys.path.insert(0, _DISTRIBUTED)
from distributed_support import (  # noqa: E402 - importable once the path is set
    POSTGRES_URL,
    REQUIRE_SERVICES,
    require_service,
    unique_name,
)
from fault_proxy import FaultProxy  # noqa: E402 - same
from private_servers import PrivatePostgres, free_port  # noqa: E402 - same

T = TypeVar("T")

SECRET = "hunter2-not-a-real-one"  # noqa: S105 - a test value that must never be shown
DEFINITION = '{"rule": {"every": "1m"}}'


def new_job(name: str = "report", **changes: Any) -> NewJob:
    return NewJob(uuid.uuid4(), name, "tasks.report", DEFINITION, **changes)


def add(store: PostgresStore, name: str = "report") -> StoredJob:
    row, created = store.put_job(new_job(name), if_exists=IfExists.ERROR)
    assert created
    assert row is not None
    return row


def ask(job: StoredJob, key: str) -> ClaimRequest:
    return ClaimRequest(
        key=key,
        job_id=job.id,
        job_name=job.name,
        scheduled_at=datetime(2026, 3, 1, tzinfo=UTC),
        node="node-a",
        instance_id="instance-a",
        ttl=timedelta(minutes=5),
    )


def eventually(check: Callable[[], T | None], within: float, step: float = 0.02) -> T:
    """The first answer of ``check`` that is not None, polled until ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer within {within}s")
        time.sleep(step)


def answered(call: Callable[[], T]) -> T | None:
    """``call``'s answer, or None while the store is unavailable."""
    try:
        return call()
    except StoreUnavailable:
        return None


def timed(work: Callable[[], object]) -> tuple[float, BaseException | None]:
    """How long ``work`` took, and what it raised."""
    started = time.monotonic()
    try:
        work()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def waiting(store: PostgresStore, woke: list[float]) -> threading.Thread:
    """A thread that waits up to 5 s for a change on ``store``, then notes when it woke."""

    def wait() -> None:
        store.wait_for_change(5)
        woke.append(time.monotonic())

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def table_names(url: str, schema: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema]
        ).fetchall()
    return {row[0] for row in rows}


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema name no other test uses on the shared server, dropped afterwards."""
    require_service("postgres")
    name = unique_name("store")
    yield name
    drop_schema(POSTGRES_URL, name)


@pytest.fixture
def make_store(schema: str) -> Iterator[Callable[..., PostgresStore]]:
    """Opens store objects on the test's schema of the shared server (closed after)."""
    made: list[PostgresStore] = []

    def make(**options: Any) -> PostgresStore:
        store = PostgresStore(POSTGRES_URL, schema=schema, **options)
        made.append(store)
        store.open()
        return store

    yield make
    for store in made:
        store.close()


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "1jobs",
        "my-jobs",
        "my jobs",
        "jobs.v2",
        "x" * 64,
        'gnomon"; DROP SCHEMA public CASCADE; --',
        "gnomon; DROP TABLE x",
        "émile",
        42,
        None,
    ],
)
def test_a_schema_that_is_not_a_plain_identifier_is_refused_by_name(bad: object) -> None:
    with pytest.raises(InvalidOption, match="schema must be a plain identifier") as caught:
        PostgresStore(POSTGRES_URL, schema=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(caught.value)


@pytest.mark.parametrize("good", ["gnomon", "_private", "Jobs_2", "x" * 63])
def test_plain_identifiers_up_to_63_characters_are_schemas(good: str) -> None:
    assert PostgresStore(POSTGRES_URL, schema=good).schema == good


@pytest.mark.parametrize("target", [42, None, b"postgresql://h/db", ["postgresql://h/db"]])
def test_a_target_that_is_neither_a_url_nor_a_pool_is_a_type_error_naming_it(
    target: object,
) -> None:
    with pytest.raises(TypeError, match="expected a postgresql:// URL") as caught:
        PostgresStore(target)  # type: ignore[arg-type]
    assert repr(target) in str(caught.value)


def test_an_asyncio_pool_is_refused_with_what_to_give_instead() -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(POSTGRES_URL, open=False)
    with pytest.raises(TypeError, match="synchronous"):
        PostgresStore(pool)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["", "sqlite:jobs.db", "not a url"])
def test_a_string_that_is_not_a_connection_string_is_an_invalid_option(url: str) -> None:
    with pytest.raises(InvalidOption, match="expected a postgresql:// URL"):
        PostgresStore(url)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True])
def test_a_timeout_must_be_a_positive_number_of_seconds(timeout: object) -> None:
    with pytest.raises(InvalidOption, match="timeout must be a positive number"):
        PostgresStore(POSTGRES_URL, timeout=timeout)  # type: ignore[arg-type]


def test_options_are_kept_as_durations_and_shown_in_the_repr() -> None:
    store = PostgresStore(
        POSTGRES_URL, schema="jobs", timeout=2, lease_ttl="9s", poll_interval="500ms"
    )
    assert store.lease_ttl == timedelta(seconds=9)
    assert store.renew_interval == timedelta(seconds=3)
    assert store.poll_interval == timedelta(milliseconds=500)
    assert store.notifies
    assert "schema='jobs'" in repr(store)
    assert "lease_ttl='9s'" in repr(store)


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        (f"postgresql://app:{SECRET}@db.example:5433/jobs", "postgresql://app:***@db.example:5433/jobs"),
        (f"postgresql://db.example/jobs?password={SECRET}&sslmode=require", "password=***"),
        (f"host=db.example password={SECRET} dbname=jobs", "password=***"),
        ("postgresql://app@db.example/jobs", "postgresql://app@db.example/jobs"),
    ],
)  # fmt: skip
def test_passwords_are_masked_wherever_a_connection_string_is_shown(
    conninfo: str, shown: str
) -> None:
    assert SECRET not in mask_conninfo(conninfo)
    assert shown in mask_conninfo(conninfo)
    store = PostgresStore(conninfo, schema="jobs")
    assert SECRET not in repr(store)
    assert SECRET not in store.describe()
    assert "jobs" in store.describe()


def test_an_unreachable_server_is_store_unavailable_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/jobs"
    store = PostgresStore(url, schema="jobs", timeout=0.5)
    caplog.set_level(logging.DEBUG)
    try:
        took, error = timed(store.open)
    finally:
        store.close()
    assert isinstance(error, StoreUnavailable)
    assert took < 3
    assert "app:***@127.0.0.1" in str(error)
    assert SECRET not in str(error)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_a_closed_store_refuses_calls_as_unavailable(make_store: Callable[..., Any]) -> None:
    store = make_store()
    store.close()
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.seq()
    store.wait_for_change(0.05)


# ---------------------------------------------------------------- schema


def test_a_schema_written_by_a_newer_gnomon_is_refused_and_nothing_is_written(
    schema: str,
) -> None:
    meta = sql.Identifier(schema, "store_meta")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {} (version integer NOT NULL)").format(meta))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (2)").format(meta))
    store = PostgresStore(POSTGRES_URL, schema=schema)
    try:
        with pytest.raises(StoreVersionError) as caught:
            store.open()
        with pytest.raises(StoreVersionError):
            store.put_job(new_job(), if_exists=IfExists.REPLACE)
    finally:
        store.close()
    assert "version 2" in str(caught.value)
    assert "version 1" in str(caught.value)
    assert table_names(POSTGRES_URL, schema) == {"store_meta"}
    with psycopg.connect(POSTGRES_URL) as conn:
        rows = conn.execute(sql.SQL("SELECT version FROM {}").format(meta)).fetchall()
    assert rows == [(2,)]


def test_stores_opening_together_create_the_schema_once(schema: str) -> None:
    stores = [PostgresStore(POSTGRES_URL, schema=schema) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def open_store(store: PostgresStore) -> None:
        barrier.wait()
        try:
            store.open()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert add(stores[0]).name == "report"
        assert [row.name for row in stores[-1].jobs()] == ["report"]
    finally:
        for store in stores:
            store.close()
    meta = sql.Identifier(schema, "store_meta")
    with psycopg.connect(POSTGRES_URL) as conn:
        assert conn.execute(sql.SQL("SELECT version FROM {}").format(meta)).fetchall() == [(1,)]


def test_the_store_shares_its_schema_with_the_locker_without_a_clash(
    schema: str, make_store: Callable[..., PostgresStore]
) -> None:
    import asyncio

    store = make_store()
    job = add(store)

    async def lock_and_release() -> int:
        locker = PostgresLocker(POSTGRES_URL, schema=schema)
        try:
            lease = await locker.acquire("report@1", timedelta(seconds=30))
            await lease.release()
            return lease.token
        finally:
            await locker.close()

    assert asyncio.run(lock_and_release()) >= 1
    assert store.claim(ask(job, "report@1")).token >= 1
    tables = table_names(POSTGRES_URL, schema)
    assert {"claims", "leases", "meta"} <= tables
    assert {"store_meta", "store_jobs", "store_occurrences", "store_nodes"} <= tables


def test_values_are_parameters_never_sql(make_store: Callable[..., PostgresStore]) -> None:
    store = make_store()
    name = "x'); DROP TABLE store_jobs; --"
    row = add(store, name)
    assert store.get_job(name=name) == row
    assert store.history(job_name="'; SELECT 1; --") == []
    assert [job.name for job in store.jobs()] == [name]


# ---------------------------------------------------------------- round trips


def test_a_round_trip_that_waits_too_long_is_unavailable_and_changes_nothing(
    schema: str, make_store: Callable[..., PostgresStore]
) -> None:
    store = make_store(timeout=0.5)
    job = add(store)
    jobs = sql.Identifier(schema, "store_jobs")
    with psycopg.connect(POSTGRES_URL) as blocker:
        blocker.execute(sql.SQL("SELECT 1 FROM {} FOR UPDATE").format(jobs))
        took, error = timed(lambda: store.set_paused(job.id, paused=True, reason="blocked"))
    assert isinstance(error, StoreUnavailable)
    assert "statement timeout" in str(error)
    assert took < 2.5
    assert store.get_job(job_id=job.id) == job
    assert store.set_paused(job.id, paused=True, reason="free").version == job.version + 1


def test_a_users_session_time_zone_does_not_leak_into_the_times_read(schema: str) -> None:
    pool: ConnectionPool[Any] = ConnectionPool(
        POSTGRES_URL,
        min_size=1,
        max_size=2,
        open=True,
        kwargs={"options": "-c TimeZone=Asia/Tokyo"},
    )
    store = PostgresStore(pool, schema=schema)
    try:
        store.open()
        fire = datetime(2026, 3, 1, 12, tzinfo=UTC)
        row, _ = store.put_job(new_job(next_fire=fire), if_exists=IfExists.ERROR)
        assert row is not None
        assert row.next_fire == fire
        assert row.next_fire.tzinfo is UTC
        assert row.anchor.tzinfo is UTC
        assert store.now().tzinfo is UTC
    finally:
        store.close()
        pool.close()


# ---------------------------------------------------------------- a user's pool


def test_a_users_pool_is_used_as_it_is_and_not_closed(schema: str) -> None:
    pool: ConnectionPool[Any] = ConnectionPool(POSTGRES_URL, min_size=1, max_size=2, open=True)
    store = PostgresStore(pool, schema=schema)
    try:
        store.open()
        job = add(store)
        claim = store.claim(ask(job, "report@1"))
        assert store.get_job(job_id=job.id).runs == 1  # type: ignore[union-attr]
        assert claim.token >= 1
        assert "pool" in store.describe()
        requests = pool.get_stats()["requests_num"]
        assert requests >= 3
    finally:
        store.close()
    assert not pool.closed
    with pool.connection() as conn:
        assert conn.autocommit is False
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pool.close()


# ---------------------------------------------------------------- change notification


def test_a_job_written_through_one_object_wakes_a_wait_on_another(
    make_store: Callable[..., PostgresStore],
) -> None:
    writer, follower = make_store(), make_store()
    follower.wait_for_change(0.01)
    woke: list[float] = []
    thread = waiting(follower, woke)
    written = time.monotonic()
    writer.put_job(new_job(), if_exists=IfExists.ERROR)
    thread.join(10)
    latency = woke[0] - written
    assert latency < 1.0, f"woke {latency:.3f}s after the write"


def test_a_wait_without_changes_lasts_its_timeout_and_a_change_before_it_ends_it(
    make_store: Callable[..., PostgresStore],
) -> None:
    store = make_store()
    store.wait_for_change(0.01)
    took, _ = timed(lambda: store.wait_for_change(0.3))
    assert 0.25 <= took < 1.5
    add(store)
    took, _ = timed(lambda: store.wait_for_change(5))
    assert took < 1.0


def test_every_waiter_on_one_object_is_woken_by_one_change(
    make_store: Callable[..., PostgresStore],
) -> None:
    writer, follower = make_store(), make_store()
    follower.wait_for_change(0.01)
    woke: list[float] = []
    threads = [waiting(follower, woke) for _ in range(3)]
    started = time.monotonic()
    add(writer)
    for thread in threads:
        thread.join(10)
    assert len(woke) == 3
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------- outages


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    missing = [name for name in ("initdb", "postgres", "pg_ctl") if shutil.which(name) is None]
    if missing:
        problem = f"{', '.join(missing)} not on PATH (needed for a private server)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
        pytest.skip(problem)
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_a_server_that_goes_away_is_unavailable_and_the_store_recovers_by_itself(
    private_postgres: PrivatePostgres,
) -> None:
    server = private_postgres
    timeout = 1.0
    store = PostgresStore(server.url, schema=unique_name("outage"), timeout=timeout)
    other = PostgresStore(server.url, schema=store.schema, timeout=timeout)
    try:
        store.open()
        job = add(store)
        before = [store.claim(ask(job, f"report@{n}")).token for n in range(3)]
        server.stop_immediate()
        _unavailable_while_down(store, job, timeout)
        server.start()
        assert eventually(lambda: answered(store.seq), within=10) > 0
        _nothing_half_written(store, job)
        after = store.claim(ask(job, "report@after")).token
        assert after > max(before)
        _notified_again(store, other)
    finally:
        store.close()
        other.close()


def test_a_server_that_stops_answering_is_unavailable_within_the_timeout(schema: str) -> None:
    """A partition that leaves the connection open (here a proxy that forwards nothing)
    is not ended by the server's statement timeout: the store's own watchdog ends it."""
    server = urlsplit(POSTGRES_URL)
    proxy = FaultProxy(server.hostname or "127.0.0.1", server.port or 5432)
    userinfo = server.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{proxy.url_host}" if userinfo else proxy.url_host
    url = urlunsplit(server._replace(netloc=netloc))
    store = PostgresStore(url, schema=schema, timeout=0.5)
    try:
        store.open()
        job = add(store)
        proxy.blackhole()
        took, error = timed(lambda: store.get_job(job_id=job.id))
        assert isinstance(error, StoreUnavailable)
        assert "no answer within" in str(error)
        assert took < 0.5 + 2
        proxy.heal()
        assert eventually(lambda: answered(lambda: store.get_job(job_id=job.id)), within=10) == job
    finally:
        store.close()
        proxy.close()


def _unavailable_while_down(store: PostgresStore, job: StoredJob, timeout: float) -> None:
    calls: list[Callable[[], object]] = [
        store.seq,
        lambda: store.put_job(new_job("written-while-down"), if_exists=IfExists.ERROR),
        lambda: store.claim(ask(job, "report@down")),
        lambda: store.set_paused(job.id, paused=True, reason="down"),
    ]
    for call in calls:
        took, error = timed(call)
        assert isinstance(error, StoreUnavailable), error
        assert took < timeout + 2
    took, error = timed(lambda: store.wait_for_change(0.3))
    assert error is None
    assert took < 0.3 + 3


def _nothing_half_written(store: PostgresStore, job: StoredJob) -> None:
    assert store.get_job(name="written-while-down") is None
    row = store.get_job(job_id=job.id)
    assert row is not None
    assert (row.paused, row.runs) == (False, 3)
    assert "report@down" not in {record.occurrence_key for record in store.history()}


def _notified_again(store: PostgresStore, other: PostgresStore) -> None:
    """The store's listening connection broke with the server: a later wait makes a
    new one (returning at once, since changes may have been missed), then waits."""
    other.open()
    store.wait_for_change(0.2)
    store.wait_for_change(0.05)
    woke: list[float] = []
    thread = waiting(store, woke)
    started = time.monotonic()
    add(other, "after-the-restart")
    thread.join(10)
    assert woke
    assert time.monotonic() - started < 2.0
