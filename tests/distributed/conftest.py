"""Fixtures for the distributed tests: one backend per store, private servers, a proxy.

Tests that need Redis or PostgreSQL read ``GNOMON_REDIS_URL`` / ``GNOMON_POSTGRES_URL``
and skip when the server is not answering, unless ``GNOMON_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from distributed_support import (
    REQUIRE_SERVICES,
    Backend,
    drop_namespace,
    require_service,
    unique_name,
)
from distributed_support import store_url as store_url_of
from fault_proxy import FaultProxy
from private_servers import PrivatePostgres, PrivateRedis
from scenario_support import Cluster, ClusterFactory, create_history, drop_history

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


def _require_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    problem = f"{', '.join(missing)} not on PATH (needed for a private server)"
    if REQUIRE_SERVICES:
        pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
    pytest.skip(problem)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    _require_binaries("redis-server")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    _require_binaries("initdb", "postgres", "pg_ctl")
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


_SUMMARY: list[str] = []


@pytest.fixture
def summary() -> Callable[[str], None]:
    """Add a line to the checker's report printed at the end of the session."""
    return _SUMMARY.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARY:
        terminalreporter.section("gnomon cluster scenarios: checker counts")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture
def cluster_factory() -> Iterator[ClusterFactory]:
    """Clusters of scheduler processes; every history and store namespace is dropped after."""
    made: list[tuple[Cluster, str]] = []

    def make(store: str, *common: str, store_url: str | None = None) -> Cluster:
        require_service("postgres")  # the history lives there
        if store_url is None:
            require_service(store)
        namespace = unique_name("c")
        cluster = Cluster(
            store=store,
            store_url=store_url or store_url_of(store),
            namespace=namespace,
            history=f"{namespace}_history",
            common=list(common),
        )
        create_history(cluster.history)
        made.append((cluster, store))
        return cluster

    yield make
    for cluster, store in made:
        cluster.stop_all()
        if not os.environ.get("GNOMON_KEEP_HISTORY"):
            drop_history(cluster.history)
        drop_namespace(store, cluster.namespace)
