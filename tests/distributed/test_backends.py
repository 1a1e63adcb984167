"""What is particular to the Redis and PostgreSQL backends: drivers, secrets, existing
clients, store restarts, and network faults between a node and its store."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
from distributed_support import (
    POSTGRES_URL,
    REDIS_URL,
    Backend,
    eventually,
    make_elector,
    make_locker,
    require_service,
    run,
    unique_name,
)
from fault_proxy import FaultProxy
from private_servers import PrivatePostgres, PrivateRedis, free_port

from gnomon import Elector, LockHeld
from gnomon._memory import CampaigningElector

T = TypeVar("T")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_gnomon_imports_no_store_driver() -> None:
    done = _python(
        "import sys, gnomon, gnomon.testing; "
        "print(sorted(m for m in ('redis', 'psycopg', 'psycopg_pool') if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "driver", "extra"),
    [("gnomon.redis", "redis", "redis"), ("gnomon.postgres", "psycopg", "postgres")],
)
def test_a_missing_driver_names_the_extra_to_install(module: str, driver: str, extra: str) -> None:
    done = _python(f"import sys; sys.modules[{driver!r}] = None; import {module}")
    assert done.returncode != 0
    assert "ImportError" in done.stderr
    assert f"pip install 'gnomon[{extra}]'" in done.stderr


def _url_with_password(kind: str, port: int) -> str:
    if kind == "redis":
        return f"redis://:s3cr3t-pw@127.0.0.1:{port}/0"
    return f"postgresql://postgres:s3cr3t-pw@127.0.0.1:{port}/test"


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_a_urls_password_never_shows_in_reprs_errors_or_logs(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url_with_password(kind, free_port())  # nothing listens there
    locker = make_locker(kind, url, unique_name(), lease_ttl=0.6)
    elector = make_elector(kind, url, unique_name(), lease_ttl=0.6)
    assert "s3cr3t" not in repr(locker) + repr(elector)
    assert ":***@" in repr(locker)

    async def scenario() -> BaseException:
        with caplog.at_level(logging.DEBUG, logger="gnomon"):
            assert await elector.is_leader() is None
        try:
            await locker.acquire("job@1", locker.lease_ttl)
        except Exception as exc:
            return exc
        finally:
            await elector.close()
            await locker.close()
        pytest.fail("a claim on an unreachable store succeeded")

    failure = run(scenario())
    assert not isinstance(failure, LockHeld)
    assert "s3cr3t" not in f"{failure!s} {failure!r} {failure.__cause__!r}"
    assert "s3cr3t" not in caplog.text
    assert "leader election" in caplog.text


def test_a_redis_locker_works_on_an_existing_client() -> None:
    require_service("redis")
    import redis.asyncio as aioredis

    from gnomon.redis import RedisLocker

    async def scenario() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        locker = RedisLocker(client, prefix=unique_name(), lease_ttl=1)
        lease = await locker.acquire("job@1", locker.lease_ttl)
        await lease.release()
        await locker.close()
        assert await client.ping()  # the user's client is left open
        await client.aclose()

    run(scenario())


def test_a_postgres_locker_works_on_an_existing_pool() -> None:
    require_service("postgres")
    from psycopg_pool import AsyncConnectionPool

    from gnomon.postgres import PostgresLocker

    schema = unique_name()

    async def scenario() -> None:
        async with AsyncConnectionPool(POSTGRES_URL, min_size=1, open=False) as pool:
            locker = PostgresLocker(pool, schema=schema, lease_ttl=1)
            lease = await locker.acquire("job@1", locker.lease_ttl)
            await lease.release()
            await locker.close()
            async with pool.connection() as conn:
                cursor = await conn.execute(f'SELECT state FROM "{schema}".claims')  # noqa: S608
                assert await cursor.fetchall() == [("done",)]
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    run(scenario())


def test_redis_tokens_keep_growing_after_a_restart_that_lost_every_key(
    private_redis: PrivateRedis,
) -> None:
    prefix = unique_name()

    async def claim(key: str) -> int:
        locker = make_locker("redis", private_redis.url, prefix, lease_ttl=1)
        try:
            return (await locker.acquire(key, locker.lease_ttl)).token
        finally:
            await locker.close()

    before = [run(claim(f"job@{n}")) for n in range(3)]
    private_redis.kill()
    private_redis.start()
    after = run(claim("job@0"))  # the claim itself was lost with the data
    assert after > max(before)


def _script_calls(url: str) -> dict[str, int]:
    """How many script commands the server took since it started, NOSCRIPT ones included."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    names = {"cmdstat_eval": "eval", "cmdstat_evalsha": "evalsha", "cmdstat_script|load": "load"}
    return {
        short: sum(stats.get(name, {}).get(count, 0) for count in ("calls", "rejected_calls"))
        for name, short in names.items()
    }


def test_redis_scripts_cost_one_round_trip_each_on_a_server_that_never_ran_them(
    private_redis: PrivateRedis,
) -> None:
    # A first use that went EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA took three round
    # trips: over a slow link, more than the renew interval that bounds each one.
    locker = make_locker("redis", private_redis.url, unique_name(), lease_ttl=3)

    async def scenario() -> None:
        for key in ("job@1", "job@2"):
            lease = await locker.acquire(key, locker.lease_ttl)
            await lease.renew()
            await lease.release()
        await locker.close()

    run(scenario())
    assert _script_calls(private_redis.url) == {"eval": 3, "evalsha": 3, "load": 0}


def test_a_redis_that_lost_its_scripts_runs_them_again(private_redis: PrivateRedis) -> None:
    import redis

    locker = make_locker("redis", private_redis.url, unique_name(), lease_ttl=3)

    async def scenario() -> None:
        lease = await locker.acquire("job@1", locker.lease_ttl)
        await lease.renew()
        flusher = redis.Redis.from_url(private_redis.url)
        flusher.script_flush()
        flusher.close()
        await lease.renew()  # EVALSHA answers NOSCRIPT; EVAL runs it and loads it again
        await lease.renew()
        await lease.release()
        await locker.close()

    run(scenario())
    assert _script_calls(private_redis.url) == {"eval": 4, "evalsha": 2, "load": 0}


def test_a_postgres_immediate_stop_is_a_lock_error_and_claims_resume_after_restart(
    private_postgres: PrivatePostgres,
) -> None:
    schema = unique_name()
    locker = make_locker("postgres", private_postgres.url, schema, lease_ttl=1.5)

    async def claim(key: str) -> int:
        return (await locker.acquire(key, locker.lease_ttl)).token

    async def scenario() -> None:
        first = await claim("job@1")
        private_postgres.stop_immediate()
        with pytest.raises(Exception) as down:  # noqa: PT011 - any driver error is a lock error
            await claim("job@2")
        assert not isinstance(down.value, LockHeld)
        private_postgres.start()
        second = await _once_up(lambda: claim("job@2"), within=10)
        assert second > first
        with pytest.raises(LockHeld):
            await claim("job@1")  # the committed claim survived the crash
        await locker.close()

    run(scenario())


async def _once_up(attempt: Callable[[], Awaitable[T]], within: float) -> T:
    """``attempt()`` retried while the store is still coming back; LockHeld is an answer."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await attempt()
        except LockHeld:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _proxied(url: str, proxy: FaultProxy) -> str:
    parts = urlsplit(url)
    return parts._replace(
        netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}", proxy.url_host)
    ).geturl()


def _through_proxy(backend: Backend, proxy_factory: type[FaultProxy]) -> tuple[FaultProxy, str]:
    url = REDIS_URL if backend.kind == "redis" else POSTGRES_URL
    parts = urlsplit(url)
    proxy = proxy_factory(parts.hostname or "127.0.0.1", parts.port or 0)
    return proxy, _proxied(url, proxy)


TTL = 1.0
RETRY = 0.25


def _answers_none(node: Elector) -> Callable[[], Awaitable[bool | None]]:
    async def check() -> bool | None:
        return True if await node.is_leader() is None else None

    return check


def test_a_partitioned_leader_stops_leading_by_its_deadline_and_another_takes_over(
    real_backend: Backend, proxy_factory: type[FaultProxy]
) -> None:
    proxy, url = _through_proxy(real_backend, proxy_factory)
    cut_off = make_elector(
        real_backend.kind, url, real_backend.namespace, lease_ttl=TTL, retry_interval=RETRY
    )
    other = real_backend.elector(lease_ttl=TTL, retry_interval=RETRY)

    async def scenario() -> None:
        await cut_off.start()
        old = await cut_off.is_leader()
        assert old is not None
        await other.start()
        proxy.blackhole()
        partitioned = time.monotonic()
        await eventually(_answers_none(cut_off), within=TTL + 1, step=0.01)
        stopped = time.monotonic() - partitioned
        assert stopped < TTL  # it stops before the store may hand the lease on
        new = await eventually(other.is_leader, within=TTL + RETRY + 1, step=0.01)
        took_over = time.monotonic() - partitioned
        assert new > old
        assert took_over <= TTL + RETRY + 0.5
        proxy.heal()
        await asyncio.sleep(TTL)
        assert await cut_off.is_leader() is None
        assert await other.is_leader() == new
        print(
            f"\n{real_backend.kind}: partitioned leader stopped after {stopped:.2f}s; "
            f"failover after {took_over:.2f}s (bound {TTL + RETRY:.2f}s)"
        )
        await cut_off.close()

    real_backend.run(scenario())


def test_a_partition_shorter_than_the_ttl_causes_no_failover(
    real_backend: Backend, proxy_factory: type[FaultProxy]
) -> None:
    proxy, url = _through_proxy(real_backend, proxy_factory)
    leader = make_elector(
        real_backend.kind, url, real_backend.namespace, lease_ttl=TTL, retry_interval=RETRY
    )
    other = real_backend.elector(lease_ttl=TTL, retry_interval=RETRY)

    async def scenario() -> None:
        await leader.start()
        token = await leader.is_leader()
        assert token is not None
        await other.start()
        assert isinstance(leader, CampaigningElector)
        proxy.blackhole()
        await asyncio.sleep(TTL * 0.3)
        proxy.heal()
        for _ in range(int(2 * TTL / 0.05)):
            assert await other.is_leader() is None
            await asyncio.sleep(0.05)
        assert await leader.is_leader() == token
        await leader.close()

    real_backend.run(scenario())


def test_a_claim_through_a_blackholed_link_fails_within_the_renew_interval(
    real_backend: Backend, proxy_factory: type[FaultProxy]
) -> None:
    proxy, url = _through_proxy(real_backend, proxy_factory)
    locker = make_locker(real_backend.kind, url, real_backend.namespace, lease_ttl=1.5)

    async def scenario() -> None:
        await (await locker.acquire("job@1", locker.lease_ttl)).release()
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(Exception) as failed:  # noqa: PT011 - any error but LockHeld
            await locker.acquire("job@2", locker.lease_ttl)
        assert not isinstance(failed.value, LockHeld)
        assert time.monotonic() - started < locker.renew_interval.total_seconds() + 1.0
        proxy.heal()
        healed = time.monotonic()
        lease = await _once_up(lambda: locker.acquire("job@3", locker.lease_ttl), within=5)
        assert lease.attempt == 1
        print(
            f"\n{real_backend.kind}: claims resumed {time.monotonic() - healed:.2f}s after the heal"
        )
        await locker.close()

    real_backend.run(scenario())


def test_postgres_sweeps_claims_whose_retention_ran_out() -> None:
    require_service("postgres")
    import psycopg

    from gnomon.postgres import PostgresLocker

    schema = unique_name()
    locker = PostgresLocker(POSTGRES_URL, schema=schema, lease_ttl=0.3, retention=0.3)

    def keys() -> list[str]:
        with psycopg.connect(POSTGRES_URL) as conn:
            rows = conn.execute(f'SELECT key FROM "{schema}".claims ORDER BY key').fetchall()  # noqa: S608
        return [key for (key,) in rows]

    async def scenario() -> None:
        await (await locker.acquire("job@1", locker.lease_ttl)).release()
        await asyncio.sleep(0.5)
        locker._next_purge = 0.0  # the sweep runs at most once a minute; make it due
        await locker.acquire("job@2", locker.lease_ttl)
        await locker.close()

    try:
        run(scenario())
        assert keys() == ["job@2"]
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_a_slow_link_within_the_renew_interval_keeps_claims_and_renewals_working(
    real_backend: Backend, proxy_factory: type[FaultProxy]
) -> None:
    proxy, url = _through_proxy(real_backend, proxy_factory)
    locker = make_locker(real_backend.kind, url, real_backend.namespace, lease_ttl=3)

    async def scenario() -> None:
        await (await locker.acquire("job@0", locker.lease_ttl)).release()  # connect first
        proxy.delay(0.2)  # each direction: 0.4 s a round trip, under the 1 s renew interval
        lease = await locker.acquire("job@1", locker.lease_ttl)
        for _ in range(3):
            await lease.renew()
        await lease.release()
        await locker.close()

    real_backend.run(scenario())


def test_a_reset_connection_is_a_lock_error_and_the_next_claim_reconnects(
    real_backend: Backend, proxy_factory: type[FaultProxy]
) -> None:
    proxy, url = _through_proxy(real_backend, proxy_factory)
    locker = make_locker(real_backend.kind, url, real_backend.namespace, lease_ttl=1.5)

    async def scenario() -> None:
        await (await locker.acquire("job@1", locker.lease_ttl)).release()
        proxy.reset()
        with pytest.raises(Exception) as failed:  # noqa: PT011 - any error but LockHeld
            await locker.acquire("job@2", locker.lease_ttl)
        assert not isinstance(failed.value, LockHeld)
        proxy.heal()
        lease = await _once_up(lambda: locker.acquire("job@2", locker.lease_ttl), within=5)
        assert lease.attempt == 1
        await locker.close()

    real_backend.run(scenario())
