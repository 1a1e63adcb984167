"""Fixtures for the dispatch tests: schedulers on a SQLite store that workers also read.

Workers are started once per test module (see each module's ``env`` fixture); every test
uses its own job names and sink keys, so the tests of a module share them safely.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import gnomon
from gnomon.sqlite import SQLiteStore
from gnomon.testing import FakeClock

_DISTRIBUTED = str(Path(__file__).resolve().parents[1] / "distributed")
if _DISTRIBUTED not in sys.path:
    sys.path.insert(0, _DISTRIBUTED)  # the fault proxy and the private servers

SchedulerFactory = Callable[[Path], tuple[gnomon.Scheduler, FakeClock]]


@pytest.fixture
def make_scheduler() -> Iterator[SchedulerFactory]:
    """Schedulers on the fake clock, started at the real now (brokers judge expiry by
    real time), each on its own handle to a shared SQLite store file."""
    made: list[tuple[gnomon.Scheduler, SQLiteStore]] = []

    def make(store_path: Path, **options: object) -> tuple[gnomon.Scheduler, FakeClock]:
        clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        store = SQLiteStore(store_path)
        scheduler = gnomon.Scheduler(store=store, clock=clock, **options)  # type: ignore[arg-type]
        made.append((scheduler, store))
        return scheduler, clock

    yield make
    for scheduler, store in made:
        scheduler.shutdown()
        store.close()
