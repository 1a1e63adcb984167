"""Fixtures for the scheduler tests.

Every test here runs under an :class:`ErrorWatch`: any exception escaping into a thread,
an unraisable exception, or an ERROR record on the ``gnomon`` or ``asyncio`` logger that
the test did not cause on purpose fails the test. It is torn down last, after every
scheduler the test made has shut down.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from scheduler_support import T0, UTC_ZONE, ErrorWatch, Gates, SchedulerFactory

import gnomon
from gnomon.testing import FakeClock


@pytest.fixture(autouse=True)
def errors() -> Iterator[ErrorWatch]:
    watch = ErrorWatch()
    watch.install()
    try:
        yield watch
    finally:
        watch.uninstall()
    watch.check()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def gates() -> Iterator[Gates]:
    made = Gates()
    yield made
    made.open_all()


@pytest.fixture
def make_scheduler(clock: FakeClock, gates: Gates) -> Iterator[SchedulerFactory]:
    """Build schedulers on the fake clock in UTC; each is shut down when the test ends."""
    made: list[gnomon.Scheduler] = []

    def make(**options: Any) -> gnomon.Scheduler:
        options.setdefault("clock", clock)
        options.setdefault("timezone", UTC_ZONE)
        options.setdefault("stop_timeout", 5.0)
        scheduler = gnomon.Scheduler(**options)
        made.append(scheduler)
        return scheduler

    yield make
    gates.open_all()
    for scheduler in made:
        scheduler.shutdown()


@pytest.fixture
def scheduler(make_scheduler: SchedulerFactory) -> gnomon.Scheduler:
    """A scheduler on the fake clock, not yet started."""
    return make_scheduler()
