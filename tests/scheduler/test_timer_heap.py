"""The timer heap's keys (an int per entry: microseconds, push order, job id): fire
times are due to the microsecond on either side of 1970, and far ones wait their turn."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import gnomon
from gnomon.testing import FakeClock

MICRO = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WAIT = 10.0


class Seen:
    """The label and intended time of every run, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[tuple[str, datetime]] = []

    def record(self, label: str, ctx: gnomon.JobContext) -> None:
        with self._lock:
            self._runs.append((label, ctx.scheduled_at))

    def runs(self) -> list[tuple[str, datetime]]:
        with self._lock:
            return sorted(self._runs, key=lambda run: run[1])


def test_fire_times_a_microsecond_apart_around_1970_are_each_due_at_their_own() -> None:
    clock = FakeClock(EPOCH - timedelta(seconds=1))
    s = gnomon.Scheduler(clock=clock, timezone="UTC")
    seen = Seen()
    for label, when in (("before", EPOCH - MICRO), ("epoch", EPOCH), ("after", EPOCH + MICRO)):
        s.add_job(seen.record, gnomon.once(when), args=(label,))
    s.start()
    try:
        expected: list[tuple[str, datetime]] = []
        clock.advance(timedelta(seconds=1) - 2 * MICRO)  # two microseconds before 1970
        s.wait_idle(timeout=WAIT)
        assert seen.runs() == expected
        for label, when in (("before", EPOCH - MICRO), ("epoch", EPOCH), ("after", EPOCH + MICRO)):
            clock.advance(MICRO)
            s.wait_idle(timeout=WAIT)
            expected.append((label, when))
            assert seen.runs() == expected
    finally:
        s.shutdown()


def test_a_fire_time_in_year_9999_waits_behind_a_near_one() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    clock = FakeClock(start)
    s = gnomon.Scheduler(clock=clock, timezone="UTC")
    seen = Seen()
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    far = s.add_job(seen.record, gnomon.once(last), args=("far",))
    s.add_job(seen.record, gnomon.every("1m"), args=("near",))
    s.start()
    try:
        clock.advance(timedelta(minutes=2))
        s.wait_idle(timeout=WAIT)
        minute = timedelta(minutes=1)
        assert seen.runs() == [("near", start + minute), ("near", start + 2 * minute)]
        assert far.next_run == last
        assert s._engine.next_deadline() == (start + 3 * minute).timestamp()
    finally:
        s.shutdown()


def test_fire_times_a_microsecond_apart_after_2106_are_each_due_at_their_own() -> None:
    # From 2**32 s on, a float timestamp no longer tells neighbouring microseconds
    # apart: the heap counts such fire times from their datetimes instead.
    first = datetime(2107, 3, 8, 12, 26, 2, 111996, tzinfo=UTC)
    clock = FakeClock(first - timedelta(seconds=1))
    s = gnomon.Scheduler(clock=clock, timezone="UTC")
    seen = Seen()
    for label, when in (("first", first), ("second", first + MICRO)):
        s.add_job(seen.record, gnomon.once(when), args=(label,))
    s.start()
    try:
        clock.advance(timedelta(seconds=1))
        s.wait_idle(timeout=WAIT)
        assert seen.runs() == [("first", first)]
        clock.advance(MICRO)
        s.wait_idle(timeout=WAIT)
        assert seen.runs() == [("first", first), ("second", first + MICRO)]
    finally:
        s.shutdown()
