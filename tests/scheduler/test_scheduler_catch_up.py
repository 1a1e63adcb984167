"""Catch-up after a late wake-up (a suspend, a stepped clock), without a store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from scheduler_support import T0, SchedulerFactory, Tally

import gnomon
from gnomon import Outcome
from gnomon.testing import FakeClock

MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("options", "ran", "missed"),
    [
        ({}, [10], 9),
        ({"catch_up": "skip"}, [], 10),
        ({"catch_up": "all"}, list(range(1, 11)), 0),
        ({"catch_up": "all", "catch_up_limit": 4}, [7, 8, 9, 10], 6),
        ({"catch_up": "all", "catch_up_window": "3m"}, [8, 9, 10], 7),
        ({"catch_up": "latest", "catch_up_window": "20s"}, [], 10),
    ],
)
def test_a_late_wake_up_follows_the_jobs_catch_up_policy(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    options: dict[str, object],
    ran: list[int],
    missed: int,
) -> None:
    seen: list[object] = []
    s = make_scheduler(history_limit=100)

    def task(ctx: gnomon.JobContext) -> None:
        seen.append(ctx.scheduled_at)

    s.add_job(task, gnomon.every("1m"), name="late", **options)
    s.start()
    clock.jump(10 * MINUTE + timedelta(seconds=30))  # asleep from 00:00 to 00:10:30
    clock.advance(0)
    s.wait_idle()
    assert sorted(seen) == [T0 + n * MINUTE for n in ran]  # type: ignore[type-var]
    skips = s.history(outcome=Outcome.SKIPPED_MISSED)
    if missed:
        [skip] = skips
        assert skip.count == missed
        assert skip.scheduled_at == T0 + MINUTE
        assert skip.detail is not None
    else:
        assert skips == []
    assert s.get_job(s.jobs()[0].id).next_run == T0 + 11 * MINUTE


def test_an_occurrence_within_the_grace_is_late_and_runs(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    runs = Tally()
    s = make_scheduler(catch_up_grace="2s")
    s.add_job(runs.hit, gnomon.every("1m"), catch_up="skip")
    s.start()
    clock.jump(MINUTE + timedelta(seconds=1.5))
    clock.advance(0)
    s.wait_idle()
    assert runs.count == 1
    assert s.history(outcome=Outcome.SKIPPED_MISSED) == []


def test_the_missed_event_carries_the_count(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    events: list[gnomon.RunEvent] = []

    class Skips(gnomon.Monitor):
        def run_skipped(self, event: gnomon.RunEvent) -> None:
            events.append(event)

    s = make_scheduler(monitor=Skips())
    s.add_job(lambda: None, gnomon.every("1m"), catch_up="skip")
    s.start()
    clock.jump(5 * MINUTE + timedelta(seconds=30))
    clock.advance(0)
    s.wait_idle()
    [event] = events
    assert event.outcome is Outcome.SKIPPED_MISSED
    assert event.result == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [("catch_up", "sometimes"), ("catch_up_limit", 0), ("catch_up_window", "-1m")],
)
def test_bad_catch_up_options_name_the_field(
    make_scheduler: SchedulerFactory, field: str, value: object
) -> None:
    s = make_scheduler()
    with pytest.raises(gnomon.InvalidJob, match=field):
        s.add_job(lambda: None, gnomon.every("1m"), **{field: value})


def test_a_bad_catch_up_grace_is_an_invalid_option() -> None:
    with pytest.raises(gnomon.InvalidOption, match="catch_up_grace"):
        gnomon.Scheduler(catch_up_grace="soon")
