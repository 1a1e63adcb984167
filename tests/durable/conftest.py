"""Fixtures for the durable-job tests: schedulers sharing one store.

``stores`` builds a store of the requested kind: memory (its clock is the test's
``FakeClock``) or SQLite (a file in the test's directory). ``make`` builds schedulers on
the fake clock, each shut down when the test ends, then the stores are closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from durable_support import T0, SchedulerFactory, StoreFactory

import gnomon
from gnomon._stores.contract import Store
from gnomon.sqlite import SQLiteStore
from gnomon.testing import FakeClock, MemoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(kind: str, clock: FakeClock, tmp_path: Path) -> Iterator[StoreFactory]:
    """Another view of one database (memory: the same object), as another process has."""
    made: list[Store] = []
    shared = MemoryStore()  # leases judged in real time, as SQLite judges them

    def make() -> Store:
        store: Store = shared if kind == "memory" else SQLiteStore(tmp_path / "jobs.db")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def make(new_store: StoreFactory, clock: FakeClock) -> Iterator[SchedulerFactory]:
    made: list[gnomon.Scheduler] = []

    def build(**options: Any) -> gnomon.Scheduler:
        options.setdefault("clock", clock)
        options.setdefault("timezone", "UTC")
        options.setdefault("stop_timeout", 5.0)
        if "store" not in options:
            options["store"] = new_store()
        scheduler = gnomon.Scheduler(**options)
        made.append(scheduler)
        return scheduler

    yield build
    for scheduler in made:
        scheduler.shutdown()
