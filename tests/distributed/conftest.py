"""Fixtures for the distributed tests: one backend per store, private servers, a proxy.

Tests that need Redis or PostgreSQL read ``GNOMON_REDIS_URL`` / ``GNOMON_POSTGRES_URL``
and skip when the server is not answering, unless ``GNOMON_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from distributed_support import Backend, drop_namespace, require_service, unique_name
from fault_proxy import FaultProxy
from private_servers import PrivatePostgres, PrivateRedis

from gnomon.testing import FakeClock

STORES = ["memory", "redis", "postgres"]
REAL_STORES = ["redis", "postgres"]


def _backend(kind: str) -> Iterator[Backend]:
    if kind != "memory":
        require_service(kind)
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC)) if kind == "memory" else None
    backend = Backend(kind, unique_name(), clock)
    try:
        yield backend
    finally:
        drop_namespace(kind, backend.namespace)


@pytest.fixture(params=STORES)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each store in turn: memory (on a fake clock), Redis, PostgreSQL."""
    yield from _backend(request.param)


@pytest.fixture(params=REAL_STORES)
def real_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The shared Redis and PostgreSQL servers, in turn."""
    yield from _backend(request.param)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    if shutil.which("initdb") is None or shutil.which("postgres") is None:
        pytest.skip("initdb and postgres are not on PATH")
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def proxy_factory() -> Iterator[type[FaultProxy]]:
    made: list[FaultProxy] = []

    class Tracked(FaultProxy):
        def __init__(self, host: str, port: int) -> None:
            super().__init__(host, port)
            made.append(self)

    yield Tracked
    for proxy in made:
        proxy.close()
