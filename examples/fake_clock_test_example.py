"""Testing your own scheduled jobs with gnomon's fake clock, as a pytest module.

Copy this shape into your test suite: a clock fixture, a scheduler fixture that shuts
down when the test ends, then ``clock.advance(...)`` followed by ``wait_idle()``.

Run it with pytest (``pytest examples/fake_clock_test_example.py``) or directly
(``python examples/fake_clock_test_example.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import gnomon
from gnomon.testing import FakeClock

MONDAY_9AM = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Inbox:
    """The application code under test: it sends a digest of whatever is pending."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.digests: list[list[str]] = []

    def send_digest(self) -> int:
        if not self.pending:
            return 0
        self.digests.append(self.pending)
        self.pending = []
        return len(self.digests[-1])


def schedule_digests(scheduler: gnomon.Scheduler, inbox: Inbox) -> gnomon.Job:
    """The application's wiring: a digest at 09:30 and 17:30 on weekdays."""
    return scheduler.add_job(inbox.send_digest, gnomon.cron("30 9,17 * * mon-fri"), name="digest")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_9AM)


@pytest.fixture
def scheduler(clock: FakeClock) -> Iterator[gnomon.Scheduler]:
    with gnomon.Scheduler(clock=clock, timezone=ZoneInfo("UTC")) as scheduler:
        yield scheduler


def test_the_digest_goes_out_at_half_past_nine(
    clock: FakeClock, scheduler: gnomon.Scheduler
) -> None:
    inbox = Inbox()
    job = schedule_digests(scheduler, inbox)
    inbox.pending.append("welcome")

    clock.advance(timedelta(minutes=29))
    scheduler.wait_idle(timeout=5)
    assert inbox.digests == []

    clock.advance(timedelta(minutes=1))
    scheduler.wait_idle(timeout=5)
    assert inbox.digests == [["welcome"]]
    assert job.last_run == MONDAY_9AM + timedelta(minutes=30)


def test_no_digest_runs_at_the_weekend(clock: FakeClock, scheduler: gnomon.Scheduler) -> None:
    job = schedule_digests(scheduler, Inbox())
    friday_evening = datetime(2026, 3, 6, 17, 30, tzinfo=UTC)
    next_monday = datetime(2026, 3, 9, 9, 30, tzinfo=UTC)
    assert job.next_runs(11)[9:] == [friday_evening, next_monday]


def test_an_empty_inbox_sends_nothing(clock: FakeClock, scheduler: gnomon.Scheduler) -> None:
    results: list[object] = []
    inbox = Inbox()
    scheduler.add_job(
        inbox.send_digest, gnomon.every("1h"), after_run=lambda event: results.append(event.result)
    )
    clock.advance(timedelta(hours=3))
    scheduler.wait_idle(timeout=5)
    assert results == [0, 0, 0]
    assert inbox.digests == []


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
