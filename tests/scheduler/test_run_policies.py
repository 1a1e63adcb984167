"""Run policies on the fake clock: retries with backoff, the overlap modes, pause and resume.

Every retry here is planned with ``jitter=False`` (except where jitter itself is the
subject), so each attempt starts at an exact fake-clock instant.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from scheduler_support import (
    T0,
    UTC_ZONE,
    WAIT,
    Boom,
    ErrorWatch,
    Gate,
    Gates,
    SchedulerFactory,
    Tally,
    read,
    run_async,
    seconds,
    wait_until,
)

import gnomon
from gnomon import LimitMode, Outcome, Retry
from gnomon.testing import FakeClock, MemoryLocker

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


class Attempts:
    """A task that records each attempt's context and fails while ``attempt < succeed_on``."""

    def __init__(self, succeed_on: int | None = None, error: type[BaseException] = Boom) -> None:
        self.succeed_on = succeed_on
        self.error = error
        self.seen = Tally()
        self.clock: FakeClock | None = None

    def __call__(self, ctx: gnomon.JobContext) -> str:
        started = self.clock.now() if self.clock is not None else None
        self.seen.hit((ctx.attempt, ctx.scheduled_at, ctx.occurrence_key, started))
        if self.succeed_on is None or ctx.attempt < self.succeed_on:
            raise self.error(f"attempt {ctx.attempt} fails")
        return f"ok on {ctx.attempt}"

    @property
    def attempts(self) -> list[int]:
        return [value[0] for value in self.seen.values]

    @property
    def starts(self) -> list[datetime]:
        return [value[3] for value in self.seen.values]


def attempts_on(clock: FakeClock, succeed_on: int | None = None) -> Attempts:
    task = Attempts(succeed_on)
    task.clock = clock
    return task


def fixed(attempts: int = 3, delay: str = "10s", **options: object) -> Retry:
    return Retry(attempts, delay, jitter=False, **options)  # type: ignore[arg-type]


def add(
    scheduler: gnomon.Scheduler, task: Callable[..., object], rule: gnomon.Rule, **options: Any
) -> gnomon.Job:
    job: gnomon.Job | None = scheduler.add_job(task, rule, **options)
    assert job is not None
    return job


def settle(scheduler: gnomon.Scheduler, clock: FakeClock, step: timedelta) -> None:
    clock.advance(step)
    scheduler.wait_idle(timeout=WAIT)


# ------------------------------------------------------------------------- retries


def test_a_run_that_fails_once_succeeds_on_its_second_attempt(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(s, task, gnomon.every("1h"), name="flaky", retry=fixed(3, "10s"))
    s.start()
    settle(s, clock, HOUR)
    assert task.attempts == [1]
    assert s.history() == []  # the occurrence is not over while its retry waits
    settle(s, clock, seconds(10))
    assert task.attempts == [1, 2]
    assert task.starts == [T0 + HOUR, T0 + HOUR + seconds(10)]
    [record] = s.history()
    assert (record.outcome, record.attempts, record.attempt) == (Outcome.SUCCESS, 2, 2)
    assert record.scheduled_at == T0 + HOUR


def test_each_attempt_is_the_same_occurrence_with_attempt_counting_up(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=3)
    s = make_scheduler()
    add(s, task, gnomon.every("1h"), name="same", retry=fixed(3, "10s", factor=1.0))
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    settle(s, clock, seconds(10))
    attempts = task.seen.values
    assert [a[0] for a in attempts] == [1, 2, 3]
    assert {a[1] for a in attempts} == {T0 + HOUR}
    assert len({a[2] for a in attempts}) == 1


def test_exhausted_retries_record_the_occurrence_once_with_its_final_outcome_and_attempts(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task, errors_seen = attempts_on(clock), Tally()
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1h"),
        name="doomed",
        retry=fixed(3, "10s"),
        after_error=errors_seen.hit,
    )
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    settle(s, clock, seconds(20))  # the third attempt waits delay * factor
    settle(s, clock, MINUTE)
    assert task.starts == [T0 + HOUR, T0 + HOUR + seconds(10), T0 + HOUR + seconds(30)]
    [record] = s.history()
    assert (record.outcome, record.attempts, record.attempt) == (Outcome.FAILED, 3, 3)
    assert record.error is not None
    assert "attempt 3 fails" in record.error
    errors_seen.wait_for(3)
    assert [(e.attempt, e.will_retry) for e in errors_seen.values] == [
        (1, True),
        (2, True),
        (3, False),
    ]


def test_a_job_without_retry_is_not_retried(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task, errors_seen = attempts_on(clock), Tally()
    s = make_scheduler()
    add(s, task, gnomon.every("1h"), name="once", after_error=errors_seen.hit)
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, 10 * MINUTE)
    assert task.attempts == [1]
    errors_seen.wait_for(1)
    assert errors_seen.values[0].will_retry is False


@pytest.mark.parametrize(
    "case",
    [
        (OSError, {"on": (OSError,)}, True),
        (ConnectionError, {"on": (OSError,)}, True),  # a subclass matches
        (ValueError, {"on": (OSError,)}, False),
        (PermissionError, {"on": (OSError,), "never_on": (PermissionError,)}, False),
        (ConnectionError, {"on": (OSError,), "never_on": (PermissionError,)}, True),
        (KeyError, {"never_on": (LookupError,)}, False),
        (KeyError, {}, True),  # on=(Exception,) by default
    ],
)
def test_only_failures_matching_on_and_not_never_on_are_retried(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    errors: ErrorWatch,
    case: tuple[type[Exception], dict[str, object], bool],
) -> None:
    error, policy, retried = case
    errors.allow_log("filtered")  # the final failure is logged at ERROR
    task = Attempts(succeed_on=2, error=error)
    s = make_scheduler()
    add(s, task, gnomon.every("1h"), name="filtered", retry=fixed(3, "10s", **policy))
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert task.attempts == ([1, 2] if retried else [1])
    [record] = s.history()
    assert record.outcome is (Outcome.SUCCESS if retried else Outcome.FAILED)


@pytest.mark.parametrize("on_timeout", [True, False])
def test_an_async_run_that_times_out_is_retried_only_with_on_timeout(
    make_scheduler: SchedulerFactory, clock: FakeClock, on_timeout: bool
) -> None:
    attempts = Tally()

    async def slow_then_quick(ctx: gnomon.JobContext) -> None:
        attempts.hit(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(WAIT * 10)  # cancelled at the fake-clock deadline

    s = make_scheduler()
    add(
        s,
        slow_then_quick,
        gnomon.every("1h"),
        timeout="5s",
        retry=fixed(2, "10s", on_timeout=on_timeout),
    )
    s.start()
    clock.advance(HOUR)
    attempts.wait_for(1)
    settle(s, clock, seconds(5))
    settle(s, clock, seconds(10))
    assert attempts.values == ([1, 2] if on_timeout else [1])
    [record] = s.history()
    assert record.outcome is (Outcome.SUCCESS if on_timeout else Outcome.TIMED_OUT)


def test_a_sync_run_that_timed_out_is_retried_only_once_its_thread_has_returned(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    gate, started, errors_seen = gates(), Tally(), Tally()
    attempts = Tally()

    def ignores_its_deadline(ctx: gnomon.JobContext) -> None:
        attempts.hit(ctx.attempt)
        if ctx.attempt == 1:
            started.hit()
            gate.wait()

    s = make_scheduler()
    job = add(
        s,
        ignores_its_deadline,
        gnomon.every("1h"),
        timeout="5s",
        retry=fixed(2, "1s"),
        after_error=errors_seen.hit,
    )
    s.start()
    clock.advance(HOUR)
    started.wait_for(1)
    clock.advance(seconds(5))  # the deadline: reported TIMED_OUT, the thread runs on
    errors_seen.wait_for(1)
    [timed_out] = errors_seen.values
    assert (timed_out.outcome, timed_out.will_retry) == (Outcome.TIMED_OUT, True)
    clock.advance(seconds(30))  # long past the retry's planned time
    assert attempts.values == [1]
    assert job.is_running
    gate.open()
    wait_until(lambda: not job.is_running, "the timed-out thread to return")
    settle(s, clock, timedelta(0))
    assert attempts.values == [1, 2]
    [record] = s.history()
    assert (record.outcome, record.attempts) == (Outcome.SUCCESS, 2)
    assert record.started_at == T0 + HOUR + seconds(35)


def test_backoff_without_jitter_multiplies_the_delay_up_to_max_delay(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock)
    s = make_scheduler()
    policy = Retry(5, "10s", factor=3, max_delay="2m", jitter=False)
    add(s, task, gnomon.every("1d"), name="backoff", retry=policy)
    s.start()
    settle(s, clock, timedelta(days=1))
    for _ in range(30):
        settle(s, clock, seconds(10))
    first = T0 + timedelta(days=1)
    waits = [b - a for a, b in zip(task.starts, task.starts[1:], strict=False)]
    assert waits == [seconds(10), seconds(30), seconds(90), seconds(120)]
    assert task.starts[0] == first
    assert s.history()[0].attempts == 5


@pytest.mark.parametrize(
    ("delay", "factor", "max_delay", "ceilings"),
    [
        ("10s", 2.0, None, [10, 20, 40, 80, 160, 320, 600, 600]),  # None: max(10m, delay)
        ("20m", 2.0, None, [1200, 1200]),  # None: max(10m, delay) = delay
        ("1s", 1.0, None, [1, 1, 1]),
        ("5s", 10.0, "1m", [5, 50, 60, 60]),
        ("5s", 1.5, "5s", [5, 5]),
    ],
)
def test_the_backoff_ceiling_follows_the_formula(
    delay: str, factor: float, max_delay: str | None, ceilings: list[float]
) -> None:
    policy = Retry(10, delay, factor=factor, max_delay=max_delay, jitter=False)
    for attempt, expected in enumerate(ceilings, start=1):
        assert policy.ceiling(attempt) == seconds(expected), f"after attempt {attempt}"
        assert policy.wait(attempt) == seconds(expected)


def test_a_huge_attempt_number_stays_at_max_delay() -> None:
    policy = Retry(10_000, "1s", factor=2.0, max_delay="1h")
    assert policy.ceiling(5_000) == HOUR


def test_jittered_waits_stay_within_zero_and_the_ceiling() -> None:
    policy = Retry(10, "10s", factor=2.0, max_delay="1m")
    for attempt in range(1, 6):
        ceiling = policy.ceiling(attempt)
        draws = [policy.wait(attempt) for _ in range(200)]
        assert all(timedelta(0) <= draw <= ceiling for draw in draws)
        assert len(set(draws)) > 1  # drawn, not fixed


def test_a_jittered_retry_starts_at_the_drawn_fraction_of_the_ceiling(
    make_scheduler: SchedulerFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([0.25, 0.5])
    monkeypatch.setattr(random, "random", lambda: next(draws))
    task = attempts_on(clock, succeed_on=3)
    s = make_scheduler()
    add(s, task, gnomon.every("1d"), name="jittered", retry=Retry(3, "40s"))
    s.start()
    settle(s, clock, timedelta(days=1))
    settle(s, clock, seconds(10))  # 0.25 of 40s
    settle(s, clock, seconds(40))  # 0.5 of 80s
    waits = [b - a for a, b in zip(task.starts, task.starts[1:], strict=False)]
    assert waits == [seconds(10), seconds(40)]


def test_a_retry_that_would_start_at_the_next_occurrence_is_dropped(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task, errors_seen = attempts_on(clock), Tally()
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1m"),
        name="crowded",
        retry=fixed(3, "1m"),
        after_error=errors_seen.hit,
    )
    s.start()
    settle(s, clock, MINUTE)
    errors_seen.wait_for(1)
    assert errors_seen.values[0].will_retry is False
    settle(s, clock, MINUTE)
    assert [(a[0], a[1]) for a in task.seen.values] == [(1, T0 + MINUTE), (1, T0 + 2 * MINUTE)]
    record = s.history()[-1]
    assert (record.scheduled_at, record.outcome, record.attempts) == (
        T0 + MINUTE,
        Outcome.FAILED,
        1,
    )


def first_occurrence_fails_once(
    clock: FakeClock, seen: Tally, failing: set[datetime]
) -> Callable[[gnomon.JobContext], None]:
    """A task whose first attempt fails for the occurrences in ``failing``."""

    def task(ctx: gnomon.JobContext) -> None:
        seen.hit((ctx.attempt, ctx.scheduled_at, clock.now()))
        if ctx.attempt == 1 and ctx.scheduled_at in failing:
            raise Boom(f"first attempt of {ctx.scheduled_at.isoformat()} fails")

    return task


def test_a_retry_past_the_next_occurrence_runs_with_past_next(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    seen = Tally()
    task = first_occurrence_fails_once(clock, seen, {T0 + MINUTE})
    s = make_scheduler()
    add(s, task, gnomon.every("1m"), name="late", retry=fixed(3, "90s", past_next=True))
    s.start()
    settle(s, clock, MINUTE)
    settle(s, clock, MINUTE)
    settle(s, clock, seconds(30))
    assert seen.values == [
        (1, T0 + MINUTE, T0 + MINUTE),
        (1, T0 + 2 * MINUTE, T0 + 2 * MINUTE),
        (2, T0 + MINUTE, T0 + 2 * MINUTE + seconds(30)),
    ]
    assert [(r.scheduled_at, r.outcome, r.attempts) for r in s.history()] == [
        (T0 + 2 * MINUTE, Outcome.SUCCESS, 1),
        (T0 + MINUTE, Outcome.SUCCESS, 2),
    ]


def test_two_occurrences_each_keep_their_pending_retry_without_a_singleton(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    seen = Tally()
    task = first_occurrence_fails_once(clock, seen, {T0 + MINUTE, T0 + 2 * MINUTE})
    s = make_scheduler()
    add(s, task, gnomon.every("1m"), name="both", retry=fixed(3, "90s", past_next=True))
    s.start()
    for _ in range(8):
        settle(s, clock, seconds(30))
    retried = sorted((a[1], a[2]) for a in seen.values if a[0] == 2)
    assert retried == [
        (T0 + MINUTE, T0 + 2 * MINUTE + seconds(30)),
        (T0 + 2 * MINUTE, T0 + 3 * MINUTE + seconds(30)),
    ]
    records = {r.scheduled_at: (r.outcome, r.attempts) for r in s.history()}
    assert records[T0 + MINUTE] == (Outcome.SUCCESS, 2)
    assert records[T0 + 2 * MINUTE] == (Outcome.SUCCESS, 2)


def test_a_pending_retry_makes_an_overlapping_tick_skip_under_reschedule(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1m"),
        name="held",
        singleton=LimitMode.RESCHEDULE,
        retry=fixed(3, "90s", past_next=True),
    )
    s.start()
    settle(s, clock, MINUTE)
    settle(s, clock, MINUTE)  # the 2m tick finds the slot held by the pending retry
    assert task.attempts == [1]
    [skip] = s.history(outcome=Outcome.SKIPPED_SINGLETON)
    assert skip.scheduled_at == T0 + 2 * MINUTE
    settle(s, clock, seconds(30))
    assert [(a[0], a[1]) for a in task.seen.values] == [(1, T0 + MINUTE), (2, T0 + MINUTE)]


def test_a_pending_retry_makes_an_overlapping_tick_queue_under_wait(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1m"),
        name="queued",
        singleton=LimitMode.WAIT,
        retry=fixed(3, "90s", past_next=True),
    )
    s.start()
    settle(s, clock, MINUTE)
    clock.advance(MINUTE)  # the 2m tick queues behind the pending retry
    assert task.attempts == [1]
    assert s.jobs_waiting == 1  # the queued tick; the pending retry is not counted
    settle(s, clock, seconds(30))
    assert [(a[0], a[1], a[3]) for a in task.seen.values] == [
        (1, T0 + MINUTE, T0 + MINUTE),
        (2, T0 + MINUTE, T0 + 2 * MINUTE + seconds(30)),
        (1, T0 + 2 * MINUTE, T0 + 2 * MINUTE + seconds(30)),
    ]
    assert s.jobs_waiting == 0
    assert s.history(outcome=Outcome.SKIPPED_SINGLETON) == []


@pytest.mark.parametrize("mode", [LimitMode.WAIT_LATEST, LimitMode.REPLACE])
def test_a_new_tick_discards_a_pending_retry_under_wait_latest_and_replace(
    make_scheduler: SchedulerFactory, clock: FakeClock, mode: LimitMode
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1m"),
        name="fresh",
        singleton=mode,
        retry=fixed(3, "90s", past_next=True),
    )
    s.start()
    settle(s, clock, MINUTE)
    settle(s, clock, MINUTE)  # the new tick runs at once; the retry is discarded
    settle(s, clock, seconds(30))
    assert [(a[0], a[1], a[3]) for a in task.seen.values] == [
        (1, T0 + MINUTE, T0 + MINUTE),
        (1, T0 + 2 * MINUTE, T0 + 2 * MINUTE),
    ]
    discarded = [r for r in s.history() if r.scheduled_at == T0 + MINUTE]
    assert [(r.outcome, r.attempts) for r in discarded] == [(Outcome.FAILED, 1)]


def test_removing_a_job_drops_its_pending_retry(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    job = add(s, task, gnomon.every("1h"), name="removed", retry=fixed(3, "10s"))
    s.start()
    settle(s, clock, HOUR)
    job.remove()
    settle(s, clock, MINUTE)
    assert task.attempts == [1]
    [record] = s.history()
    assert (record.outcome, record.attempts) == (Outcome.FAILED, 1)


def test_pausing_a_job_drops_its_pending_retry(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    job = add(s, task, gnomon.every("1h"), name="paused", retry=fixed(3, "10s"))
    s.start()
    settle(s, clock, HOUR)
    job.pause("maintenance")
    settle(s, clock, MINUTE)
    job.resume()
    settle(s, clock, MINUTE)
    assert task.attempts == [1]
    [record] = s.history(outcome=Outcome.FAILED)
    assert (record.scheduled_at, record.attempts) == (T0 + HOUR, 1)


def test_stop_jobs_drops_a_pending_retry(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(s, task, gnomon.every("1h"), name="stopped", retry=fixed(3, "10s"))
    s.start()
    settle(s, clock, HOUR)
    s.stop_jobs()
    settle(s, clock, MINUTE)
    s.start()
    settle(s, clock, MINUTE)
    assert task.attempts == [1]
    [record] = s.history(outcome=Outcome.FAILED)
    assert record.attempts == 1


def test_a_retry_after_stop_at_does_not_run(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task, errors_seen = attempts_on(clock, succeed_on=2), Tally()
    s = make_scheduler()
    job = add(
        s,
        task,
        gnomon.every("1h"),
        name="ending",
        stop_at=T0 + HOUR + seconds(5),
        retry=fixed(3, "10s"),
        after_error=errors_seen.hit,
    )
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, MINUTE)
    assert task.attempts == [1]
    errors_seen.wait_for(1)
    assert errors_seen.values[0].will_retry is False
    [record] = s.history()
    assert (record.outcome, record.attempts) == (Outcome.FAILED, 1)
    assert job.removed


def test_a_retry_due_before_stop_at_still_runs_after_the_last_fire(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1h"),
        name="last-fire",
        stop_at=T0 + HOUR + seconds(30),
        retry=fixed(3, "10s"),
    )
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert task.attempts == [1, 2]
    [record] = s.history()
    assert (record.outcome, record.attempts) == (Outcome.SUCCESS, 2)


def test_wait_idle_does_not_wait_for_a_pending_retry_nor_jobs_waiting_count_it(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    job = add(s, task, gnomon.every("1h"), name="idle", retry=fixed(3, "10m"))
    s.start()
    clock.advance(HOUR)
    s.wait_idle(timeout=WAIT)  # returns although the retry is still to come
    assert task.attempts == [1]
    assert s.jobs_waiting == 0
    assert not job.is_running
    settle(s, clock, 10 * MINUTE)
    assert task.attempts == [1, 2]


def test_a_manual_run_retries_too(make_scheduler: SchedulerFactory, clock: FakeClock) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    job = add(s, task, gnomon.every("1d"), name="manual", retry=fixed(3, "10s"))
    s.start()
    event = job.run_now(wait=True)
    assert (event.outcome, event.will_retry) == (Outcome.FAILED, True)
    settle(s, clock, seconds(10))
    assert task.attempts == [1, 2]
    assert len({a[2] for a in task.seen.values}) == 1


# ------------------------------------------------------------------------- overlap


class Overrun:
    """A task whose first run lasts until its gate opens (two intervals, on the fake
    clock); later runs return at once."""

    def __init__(self, gate: Gate, *, honours_cancel: bool = False) -> None:
        self.gate = gate
        self.honours_cancel = honours_cancel
        self.started = Tally()
        self.cancelled_seen = Tally()

    def __call__(self, ctx: gnomon.JobContext) -> None:
        self.started.hit(ctx.scheduled_at)
        if len(self.started.values) > 1:
            return
        if self.honours_cancel:
            ctx.cancelled.wait(WAIT)
        else:
            self.gate.wait()
        if ctx.cancelled.is_set():
            self.cancelled_seen.hit()


def outcomes(scheduler: gnomon.Scheduler) -> dict[datetime, Outcome | None]:
    return {r.scheduled_at: r.outcome for r in scheduler.history()}


def test_wait_latest_keeps_only_the_latest_waiting_tick_under_a_2x_overrun(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    task = Overrun(gates())
    s = make_scheduler()
    job = add(s, task, gnomon.every("1m"), name="latest", singleton=LimitMode.WAIT_LATEST)
    s.start()
    clock.advance(MINUTE)
    task.started.wait_for(1)
    clock.advance(MINUTE)
    assert s.jobs_waiting == 1
    clock.advance(MINUTE)  # the 3m tick displaces the 2m one
    assert s.jobs_waiting == 1
    assert not task.cancelled_seen.count
    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert task.started.values == [T0 + MINUTE, T0 + 3 * MINUTE]
    assert outcomes(s) == {
        T0 + MINUTE: Outcome.SUCCESS,
        T0 + 2 * MINUTE: Outcome.SKIPPED_SINGLETON,
        T0 + 3 * MINUTE: Outcome.SUCCESS,
    }
    assert job.next_run == T0 + 4 * MINUTE


def test_replace_cancels_the_running_run_and_a_sync_run_keeps_its_slot_until_it_returns(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    task, errors_seen = Overrun(gates()), Tally()
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1m"),
        name="replaced",
        singleton=LimitMode.REPLACE,
        after_error=errors_seen.hit,
    )
    s.start()
    clock.advance(MINUTE)
    task.started.wait_for(1)
    clock.advance(MINUTE)  # asks the 1m run to stop; the 2m tick waits for its slot
    clock.advance(MINUTE)  # the 3m tick displaces the waiting 2m one
    assert task.started.count == 1
    task.gate.open()  # the run ignored ctx.cancelled and returns normally
    s.wait_idle(timeout=WAIT)
    assert task.cancelled_seen.count == 1
    assert task.started.values == [T0 + MINUTE, T0 + 3 * MINUTE]
    assert outcomes(s) == {
        T0 + MINUTE: Outcome.CANCELLED,
        T0 + 2 * MINUTE: Outcome.SKIPPED_SINGLETON,
        T0 + 3 * MINUTE: Outcome.SUCCESS,
    }
    errors_seen.wait_for(1)
    assert [e.outcome for e in errors_seen.values] == [Outcome.CANCELLED]


def test_replace_starts_the_new_run_as_soon_as_a_cooperative_run_returns(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    task = Overrun(gates(), honours_cancel=True)
    s = make_scheduler()
    add(s, task, gnomon.every("1m"), name="cooperative", singleton=LimitMode.REPLACE)
    s.start()
    clock.advance(MINUTE)
    task.started.wait_for(1)
    clock.advance(MINUTE)
    task.started.wait_for(2)
    s.wait_idle(timeout=WAIT)
    assert task.started.values == [T0 + MINUTE, T0 + 2 * MINUTE]
    assert outcomes(s) == {T0 + MINUTE: Outcome.CANCELLED, T0 + 2 * MINUTE: Outcome.SUCCESS}


def test_replace_cancels_an_async_run_and_records_it_cancelled(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    started = Tally()

    async def long_async(ctx: gnomon.JobContext) -> None:
        started.hit(ctx.scheduled_at)
        if started.count == 1:
            await asyncio.sleep(WAIT * 10)

    s = make_scheduler()
    add(s, long_async, gnomon.every("1m"), name="async-replaced", singleton=LimitMode.REPLACE)
    s.start()
    clock.advance(MINUTE)
    started.wait_for(1)
    clock.advance(MINUTE)
    started.wait_for(2)
    s.wait_idle(timeout=WAIT)
    assert outcomes(s) == {T0 + MINUTE: Outcome.CANCELLED, T0 + 2 * MINUTE: Outcome.SUCCESS}


def test_wait_latest_with_an_async_task_under_a_2x_overrun(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    async def long_async(ctx: gnomon.JobContext) -> None:
        started.hit(ctx.scheduled_at)
        if started.count == 1:
            await asyncio.to_thread(gate.wait)

    s = make_scheduler()
    add(s, long_async, gnomon.every("1m"), name="async-latest", singleton=LimitMode.WAIT_LATEST)
    s.start()
    clock.advance(MINUTE)
    started.wait_for(1)
    clock.advance(MINUTE)
    clock.advance(MINUTE)
    gate.open()
    s.wait_idle(timeout=WAIT)
    assert started.values == [T0 + MINUTE, T0 + 3 * MINUTE]
    assert outcomes(s) == {
        T0 + MINUTE: Outcome.SUCCESS,
        T0 + 2 * MINUTE: Outcome.SKIPPED_SINGLETON,
        T0 + 3 * MINUTE: Outcome.SUCCESS,
    }


@pytest.mark.parametrize("mode", [LimitMode.WAIT_LATEST, LimitMode.REPLACE])
def test_the_per_job_modes_are_an_invalid_option_for_the_whole_scheduler(mode: LimitMode) -> None:
    with pytest.raises(gnomon.InvalidOption, match=f"limit_mode.*{mode}"):
        gnomon.Scheduler(limit_mode=mode)
    with pytest.raises(gnomon.InvalidOption, match="limit_mode"):
        gnomon.AsyncScheduler(limit_mode=mode)


# ------------------------------------------------------------------- pause and resume


def paused_for_five_minutes(
    make_scheduler: SchedulerFactory, clock: FakeClock, **options: object
) -> tuple[gnomon.Scheduler, gnomon.Job, Tally]:
    """An every-minute job that ran at 1m, paused at 1m30s, and now at 6m30s."""
    ran = Tally()

    def task(ctx: gnomon.JobContext) -> None:
        ran.hit(ctx.scheduled_at)

    s = make_scheduler()
    job = add(s, task, gnomon.every("1m"), name="paused-job", **options)
    s.start()
    settle(s, clock, seconds(90))
    job.pause("nightly deploy")
    assert job.paused
    assert job.pause_reason == "nightly deploy"
    assert job.next_run is None
    settle(s, clock, 5 * MINUTE)
    return s, job, ran


def test_resume_re_arms_in_phase_and_records_one_missed_record_with_the_reason(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s, job, ran = paused_for_five_minutes(make_scheduler, clock)
    job.resume()
    s.wait_idle(timeout=WAIT)
    assert job.pause_reason is None
    assert job.next_run == T0 + 7 * MINUTE  # the 1m chain, not now + 1m (7m30s)
    assert ran.values == [T0 + MINUTE]
    [missed] = s.history(outcome=Outcome.SKIPPED_MISSED)
    assert missed.count == 5
    assert missed.scheduled_at == T0 + 2 * MINUTE
    assert missed.detail is not None
    assert "nightly deploy" in missed.detail
    assert (T0 + 6 * MINUTE).isoformat() in missed.detail
    settle(s, clock, 30 * seconds(1))
    assert ran.values == [T0 + MINUTE, T0 + 7 * MINUTE]


@pytest.mark.parametrize(
    ("policy", "caught_up", "missed"),
    [("latest", [6], 4), ("all", [2, 3, 4, 5, 6], 0), ("skip", [], 5)],
)
def test_resume_with_catch_up_follows_the_jobs_catch_up_policy(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    policy: str,
    caught_up: list[int],
    missed: int,
) -> None:
    s, job, ran = paused_for_five_minutes(make_scheduler, clock, catch_up=policy)
    job.resume(catch_up=True)
    s.wait_idle(timeout=WAIT)
    assert sorted(ran.values) == [T0 + n * MINUTE for n in [1, *caught_up]]
    skips = s.history(outcome=Outcome.SKIPPED_MISSED)
    assert [r.count for r in skips] == ([missed] if missed else [])
    assert job.next_run == T0 + 7 * MINUTE


def test_resume_with_nothing_missed_records_nothing(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler()
    job = add(s, lambda: None, gnomon.every("1m"), name="brief-pause")
    s.start()
    settle(s, clock, seconds(10))
    job.pause()
    settle(s, clock, seconds(20))
    job.resume()
    assert job.next_run == T0 + MINUTE
    assert s.history(outcome=Outcome.SKIPPED_MISSED) == []


def test_pausing_again_replaces_the_reason(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler()
    job = add(s, lambda: None, gnomon.every("1m"), name="reasons")
    s.start()
    job.pause("first")
    job.pause("second")
    assert job.pause_reason == "second"
    with pytest.raises(TypeError, match="reason"):
        job.pause(42)  # type: ignore[arg-type]


def test_start_after_stop_jobs_resumes_every_job_in_phase(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    ran = Tally()
    s = make_scheduler()
    job = add(s, ran.hit, gnomon.every("1m"), name="stopped-job")
    s.start()
    settle(s, clock, seconds(90))
    s.stop_jobs()
    settle(s, clock, 5 * MINUTE)
    s.start()
    s.wait_idle(timeout=WAIT)
    assert ran.count == 1
    assert job.next_run == T0 + 7 * MINUTE
    [missed] = s.history(outcome=Outcome.SKIPPED_MISSED)
    assert missed.count == 5
    assert missed.detail is not None
    assert "stopped" in missed.detail


# ------------------------------------------------------------------------- async face


def test_the_async_face_retries_pauses_and_resumes(errors: ErrorWatch) -> None:
    clock = FakeClock(T0)
    task = attempts_on(clock, succeed_on=2)

    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            job = await s.add_job(task, gnomon.every("1m"), retry=fixed(3, "10s"))
            clock.advance(MINUTE)
            await s.wait_idle(timeout=WAIT)
            assert s.jobs_waiting == 0
            clock.advance(seconds(10))
            await s.wait_idle(timeout=WAIT)
            assert task.attempts == [1, 2]
            [record] = await s.history()
            assert (record.outcome, record.attempts) == (Outcome.SUCCESS, 2)
            await job.pause("async reason")
            assert job.pause_reason == "async reason"
            clock.advance(3 * MINUTE)
            await job.resume()
            assert job.next_run == T0 + 5 * MINUTE
            [missed] = await s.history(outcome=Outcome.SKIPPED_MISSED)
            assert missed.count == 3
            assert missed.detail is not None
            assert "async reason" in missed.detail

    run_async(errors, scenario)


def test_the_async_face_drops_a_pending_retry_on_removal(errors: ErrorWatch) -> None:
    clock = FakeClock(T0)

    async def scenario() -> None:
        attempts = Tally()

        async def fails(ctx: gnomon.JobContext) -> None:
            attempts.hit(ctx.attempt)
            raise Boom("async failure")

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            job = await s.add_job(fails, gnomon.every("1h"), retry=fixed(3, "10s"))
            clock.advance(HOUR)
            await s.wait_idle(timeout=WAIT)
            await job.remove()
            clock.advance(MINUTE)
            await s.wait_idle(timeout=WAIT)
            assert attempts.values == [1]
            [record] = await s.history()
            assert (record.outcome, record.attempts) == (Outcome.FAILED, 1)

    run_async(errors, scenario)


def test_the_async_face_replaces_a_running_async_task(errors: ErrorWatch) -> None:
    clock = FakeClock(T0)

    async def scenario() -> None:
        started = Tally()

        async def long_async(ctx: gnomon.JobContext) -> None:
            started.hit(ctx.scheduled_at)
            if started.count == 1:
                await asyncio.sleep(WAIT * 10)

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            await s.add_job(long_async, gnomon.every("1m"), singleton=LimitMode.REPLACE)
            clock.advance(MINUTE)
            await asyncio.to_thread(started.wait_for, 1)
            clock.advance(MINUTE)
            await s.wait_idle(timeout=WAIT)
            assert started.values == [T0 + MINUTE, T0 + 2 * MINUTE]
            records = {r.scheduled_at: r.outcome for r in await s.history()}
            assert records == {T0 + MINUTE: Outcome.CANCELLED, T0 + 2 * MINUTE: Outcome.SUCCESS}

    run_async(errors, scenario)


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("attempts", [0, -1, True, 2.5, "3", None])
def test_retry_attempts_must_be_a_whole_number_of_at_least_one(attempts: object) -> None:
    with pytest.raises(gnomon.InvalidJob, match=r"attempts must be a whole number of at least 1"):
        Retry(attempts)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [0, -5, "0s", "-1s", timedelta(0), timedelta(seconds=-1)])
def test_retry_delay_must_be_positive(delay: object) -> None:
    with pytest.raises(gnomon.InvalidJob, match=r"Retry delay must be a positive duration"):
        Retry(3, delay)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", ["soon", [10], None])
def test_retry_delay_must_be_a_duration(delay: object) -> None:
    with pytest.raises(gnomon.InvalidJob, match=r"Retry delay must be a timedelta"):
        Retry(3, delay)  # type: ignore[arg-type]


@pytest.mark.parametrize("factor", [0.5, 0, -2, True, "2"])
def test_retry_factor_must_be_a_number_of_at_least_one(factor: object) -> None:
    with pytest.raises(gnomon.InvalidJob, match=r"factor must be a number of at least 1"):
        Retry(3, "10s", factor=factor)  # type: ignore[arg-type]


def test_retry_max_delay_must_not_be_less_than_the_delay() -> None:
    with pytest.raises(gnomon.InvalidJob, match=r"max_delay \(5s\) must be at least the delay"):
        Retry(3, "10s", max_delay="5s")


def test_retry_max_delay_must_be_a_positive_duration() -> None:
    with pytest.raises(gnomon.InvalidJob, match=r"max_delay must be a positive duration"):
        Retry(3, "10s", max_delay="-1m")


@pytest.mark.parametrize("field", ["on", "never_on"])
@pytest.mark.parametrize("value", [OSError, [OSError], (OSError, "x"), (42,), "OSError", None])
def test_retry_exception_filters_must_be_tuples_of_exception_classes(
    field: str, value: object
) -> None:
    with pytest.raises(
        gnomon.InvalidJob, match=rf"Retry {field} must be a tuple of exception classes"
    ):
        Retry(3, "10s", **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["jitter", "on_timeout", "past_next"])
def test_retry_flags_must_be_booleans(field: str) -> None:
    with pytest.raises(gnomon.InvalidJob, match=rf"Retry {field} must be True or False"):
        Retry(3, "10s", **{field: 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["timeout", "jitter", "catch_up_window"])
def test_a_retry_given_where_a_duration_was_expected_is_an_invalid_job(
    scheduler: gnomon.Scheduler, field: str
) -> None:
    options: dict[str, Any] = {field: Retry()}
    with pytest.raises(gnomon.InvalidJob, match=rf"{field} must be a timedelta.*Retry"):
        scheduler.add_job(lambda: None, gnomon.every("1m"), **options)


@pytest.mark.parametrize("value", [3, "3 attempts", {"attempts": 3}, Retry])
def test_retry_must_be_a_retry(scheduler: gnomon.Scheduler, value: object) -> None:
    with pytest.raises(gnomon.InvalidJob, match=r"retry must be a gnomon\.Retry"):
        scheduler.add_job(lambda: None, gnomon.every("1m"), retry=value)  # type: ignore[call-overload]


def test_update_job_and_job_defaults_check_retry_too(scheduler: gnomon.Scheduler) -> None:
    job = scheduler.add_job(lambda: None, gnomon.every("1m"))
    with pytest.raises(gnomon.InvalidJob, match=r"retry must be a gnomon\.Retry"):
        scheduler.update_job(job.id, retry=3)  # type: ignore[arg-type]
    defaulted = gnomon.Scheduler(job_defaults={"retry": "often"})  # type: ignore[arg-type]
    with pytest.raises(gnomon.InvalidJob, match=r"retry must be a gnomon\.Retry.*'often'"):
        defaulted.add_job(lambda: None, gnomon.every("1m"))
    defaulted.shutdown()


def test_a_retry_set_by_update_job_applies_to_the_next_failure(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    job = add(s, task, gnomon.every("1h"), name="updated")
    s.update_job(job.id, retry=fixed(2, "10s"))
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert task.attempts == [1, 2]


def test_job_defaults_give_every_job_a_retry(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler(job_defaults={"retry": fixed(2, "10s")})
    add(s, task, gnomon.every("1h"), name="defaulted")
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert task.attempts == [1, 2]


def test_an_unknown_option_names_the_closest_valid_one(scheduler: gnomon.Scheduler) -> None:
    with pytest.raises(TypeError, match=r"did you mean 'singleton' for 'singelton'\?"):
        scheduler.add_job(lambda: None, gnomon.every("1m"), singelton=LimitMode.WAIT)  # type: ignore[call-overload]
    job = scheduler.add_job(lambda: None, gnomon.every("1m"))
    with pytest.raises(TypeError, match=r"did you mean 'retry' for 'retries'\?"):
        scheduler.update_job(job.id, retries=Retry())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"did you mean 'timeout' for 'timout'\?"):
        scheduler.job(gnomon.every("1m"), timout="1s")(lambda: None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"did you mean 'max_runs' for 'max_run'\?"):
        gnomon.Scheduler(job_defaults={"max_run": 3})  # type: ignore[arg-type]


def test_an_unknown_option_on_the_async_face_names_the_closest_valid_one(
    errors: ErrorWatch,
) -> None:
    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=FakeClock(T0), timezone=UTC_ZONE) as s:
            with pytest.raises(TypeError, match=r"did you mean 'singleton'"):
                await s.add_job(lambda: None, gnomon.every("1m"), singelton=LimitMode.WAIT)  # type: ignore[call-overload]

    run_async(errors, scenario)


# ------------------------------------------------------------------- edge cases


def test_a_retry_of_one_job_keeps_the_history_of_another_job_with_the_same_name(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    steady = attempts_on(clock, succeed_on=1)
    flaky = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    first = add(s, steady, gnomon.every("1h"), name="export")
    second = add(s, flaky, gnomon.every("1h"), name="export", retry=fixed(2, "10s"))
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert [(r.outcome, r.attempts) for r in s.history(job=first)] == [(Outcome.SUCCESS, 1)]
    assert [(r.outcome, r.attempts) for r in s.history(job=second)] == [(Outcome.SUCCESS, 2)]


def test_a_once_job_retries_its_only_occurrence(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(s, task, gnomon.once(T0 + HOUR), name="one-off", retry=fixed(3, "10s"))
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert task.attempts == [1, 2]
    [record] = s.history()
    assert (record.outcome, record.attempts) == (Outcome.SUCCESS, 2)


def test_a_retry_is_the_same_occurrence_and_uses_no_run_of_max_runs(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    job = add(s, task, gnomon.every("1h"), name="counted", max_runs=2, retry=fixed(2, "10s"))
    s.start()
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert read(job.removed) is False
    settle(s, clock, HOUR)
    settle(s, clock, seconds(10))
    assert [(a[0], a[1]) for a in task.seen.values] == [
        (1, T0 + HOUR),
        (2, T0 + HOUR),
        (1, T0 + 2 * HOUR),
        (2, T0 + 2 * HOUR),
    ]
    assert job.removed
    assert [r.attempts for r in s.history()] == [2, 2]


def test_removing_a_job_cancels_the_ticks_queued_behind_its_pending_retry(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    job = add(
        s,
        task,
        gnomon.every("1m"),
        name="queued-then-removed",
        singleton=LimitMode.WAIT,
        retry=fixed(2, "150s", past_next=True),
    )
    s.start()
    settle(s, clock, MINUTE)
    clock.advance(MINUTE)
    clock.advance(MINUTE)
    assert s.jobs_waiting == 2
    job.remove()
    assert s.jobs_waiting == 0
    settle(s, clock, MINUTE)
    assert task.attempts == [1]
    assert outcomes_of(s) == {
        T0 + MINUTE: (Outcome.FAILED, 1),
        T0 + 2 * MINUTE: (Outcome.CANCELLED, 1),
        T0 + 3 * MINUTE: (Outcome.CANCELLED, 1),
    }


def test_wait_idle_does_not_wait_for_a_tick_queued_behind_a_pending_retry(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    task = attempts_on(clock, succeed_on=2)
    s = make_scheduler()
    add(
        s,
        task,
        gnomon.every("1m"),
        name="queued-behind",
        singleton=LimitMode.WAIT,
        retry=fixed(2, "90s", past_next=True),
    )
    s.start()
    settle(s, clock, MINUTE)
    clock.advance(MINUTE)  # 2m: queued until the retry at 2m30s has run
    assert s.jobs_waiting == 1
    s.wait_idle(timeout=2.0)  # nothing can run before the clock moves
    assert task.attempts == [1]


def outcomes_of(scheduler: gnomon.Scheduler) -> dict[datetime, tuple[Outcome | None, int]]:
    return {r.scheduled_at: (r.outcome, r.attempts) for r in scheduler.history()}


def test_a_recovery_re_claim_and_retries_share_attempt_and_count_against_attempts(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    locker = MemoryLocker(lease_ttl="30s", clock=clock)
    fire = T0 + HOUR
    key = f"recovered@{fire.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
    dead = asyncio.run(locker.acquire(key, seconds(30), recovery=gnomon.Recovery.AT_LEAST_ONCE))
    task = attempts_on(clock)  # always fails
    s = make_scheduler(locker=locker)
    add(
        s,
        task,
        gnomon.every("1h"),
        name="recovered",
        recovery=gnomon.Recovery.AT_LEAST_ONCE,
        retry=fixed(3, "10s"),
    )
    s.start()
    settle(s, clock, HOUR)  # the dead holder's lease ran out long ago: re-claimed
    settle(s, clock, seconds(20))  # the wait after attempt 2 is 10s * 2
    settle(s, clock, MINUTE)
    assert [(a[0], a[2]) for a in task.seen.values] == [(2, key), (3, key)]
    [record] = s.history()
    assert (record.outcome, record.attempts) == (Outcome.FAILED, 3)
    assert record.fencing_token is not None
    assert record.fencing_token > dead.token


def test_the_async_face_keeps_only_the_latest_waiting_tick(
    errors: ErrorWatch, gates: Gates
) -> None:
    clock, gate = FakeClock(T0), gates()

    async def scenario() -> None:
        started = Tally()

        async def long_async(ctx: gnomon.JobContext) -> None:
            started.hit(ctx.scheduled_at)
            if started.count == 1:
                await asyncio.to_thread(gate.wait)

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            await s.add_job(long_async, gnomon.every("1m"), singleton=LimitMode.WAIT_LATEST)
            clock.advance(MINUTE)
            await asyncio.to_thread(started.wait_for, 1)
            clock.advance(MINUTE)
            clock.advance(MINUTE)
            assert s.jobs_waiting == 1
            gate.open()
            await s.wait_idle(timeout=WAIT)
            assert started.values == [T0 + MINUTE, T0 + 3 * MINUTE]
            records = {r.scheduled_at: r.outcome for r in await s.history()}
            assert records == {
                T0 + MINUTE: Outcome.SUCCESS,
                T0 + 2 * MINUTE: Outcome.SKIPPED_SINGLETON,
                T0 + 3 * MINUTE: Outcome.SUCCESS,
            }

    run_async(errors, scenario)
