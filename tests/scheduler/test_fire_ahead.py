"""Bursts fired before their deadline, and a burst's runs finished after it has started them.

A deadline that brings many jobs is fired early enough to be done by the deadline
(``FireAhead``, ``Engine.due_together``), and the thread face's burst runner finishes its
plain successes once the burst's runs have all started (``Run.run_sync(done)``,
``Engine.finish_all``). Real threads and real time where the system clock is the point,
every wait on an event with a generous timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scheduler_support import BURST_LEAD, WAIT, Boom, burst_ends, start_burst

import gnomon
import gnomon._engine
import gnomon._scheduler
import gnomon._waker
from gnomon import JobContext, RunEvent, RunRecord
from gnomon._waker import FireAhead
from gnomon.testing import FakeClock

_T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
_Wake = tuple[float, float, bool]
"""An engine wake-up: when it returned, the instant it fired as of, whether more is due."""


# ---------------------------------------------------------------- what a deadline brings


def _noop() -> None:
    pass


def test_due_together_counts_the_entries_sharing_the_earliest_fire_time_up_to_a_limit() -> None:
    clock = FakeClock(_T0)
    scheduler = gnomon.Scheduler(clock=clock)
    engine = scheduler._engine
    scheduler.start()
    try:
        assert engine.due_together(100) == 0  # an empty heap brings nothing
        for _ in range(50):
            scheduler.add_job(_noop, gnomon.once(_T0 + timedelta(seconds=10)))
        for _ in range(20):  # a microsecond later: another deadline
            later = _T0 + timedelta(seconds=10, microseconds=1)
            scheduler.add_job(_noop, gnomon.once(later))
        scheduler.add_job(_noop, gnomon.once(_T0 + timedelta(seconds=5)))
        assert engine.due_together(100) == 1  # the earliest deadline brings one job
        clock.advance(timedelta(seconds=5))
        assert engine.due_together(100) == 50
        assert engine.due_together(7) == 7  # counting stops at the limit
    finally:
        scheduler.shutdown()


def test_fire_ahead_wakes_earlier_by_the_firing_time_beyond_the_first_batch_within_a_ceiling() -> (
    None
):
    ahead = FireAhead()
    per_entry = ahead.per_entry
    assert ahead.seconds(0) == ahead.seconds(FireAhead.FREE) == 0.0
    assert ahead.seconds(FireAhead.FREE + 100) == pytest.approx(100 * per_entry * 1.5)
    assert ahead.seconds(10**9) == FireAhead._CEILING
    # Counting past what reaches the ceiling is wasted: the limit stops there.
    assert ahead.seconds(ahead.limit()) == FireAhead._CEILING
    assert ahead.seconds(ahead.limit() - 2) < FireAhead._CEILING
    # before() counts up to the limit: a count that stops there still reaches the ceiling.
    assert ahead.before(lambda limit: limit) == FireAhead._CEILING
    assert ahead.before(lambda limit: min(limit, 10)) == 0.0


def test_fire_ahead_learns_the_firing_time_per_entry_from_bursts_only_and_stays_bounded() -> None:
    ahead = FireAhead()
    initial = ahead.per_entry
    ahead.learn(FireAhead.FREE, 1.0)  # one batch is not a burst: nothing learned
    assert ahead.per_entry == initial
    for _ in range(50):
        ahead.learn(1000, 1000 * 10e-6)
    assert ahead.per_entry == pytest.approx(10e-6)
    ahead.learn(1000, 1000 * 30e-6)  # slower: most of the way up at once (late is costly)
    assert ahead.per_entry == pytest.approx(10e-6 + 0.75 * 20e-6)
    ahead.learn(1000, 1000 * 5e-6)  # faster: a quarter of the way down (early is a spin)
    assert ahead.per_entry == pytest.approx(25e-6 - 0.25 * 20e-6)
    ahead.learn(1000, 3600.0)  # a firing held up by a suspend moves it to the bound only
    assert ahead.per_entry <= FireAhead._SLOWEST
    for _ in range(100):
        ahead.learn(1000, 0.0)
    assert ahead.per_entry == pytest.approx(FireAhead._FASTEST)


# ---------------------------------------------------------------- firing ahead


def _generous_fire_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Assume firing costs a millisecond an entry, with no ceiling short of a second:
    a burst's firing then surely ends before its deadline, however slow this machine."""
    monkeypatch.setattr(FireAhead, "_INITIAL", 1e-3)
    monkeypatch.setattr(FireAhead, "_CEILING", 1.0)
    monkeypatch.setattr(FireAhead, "learn", lambda self, entries, elapsed: None)


def _record_wakes(scheduler: gnomon.Scheduler | gnomon.AsyncScheduler) -> list[_Wake]:
    """Record each of the engine's wake-ups as it returns."""
    wakes: list[_Wake] = []
    wake = scheduler._engine.wake

    def recording_wake(now: datetime, **options: Any) -> bool:
        more = wake(now, **options)
        wakes.append((time.time(), now.timestamp(), more))
        return more

    scheduler._engine.wake = recording_wake  # type: ignore[method-assign]
    return wakes


def test_a_burst_is_fired_whole_before_its_deadline_and_its_runs_start_when_it_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _generous_fire_ahead(monkeypatch)
    runs = 300
    starts: list[tuple[float, float]] = []
    done = threading.Semaphore(0)

    def task(ctx: JobContext) -> None:
        starts.append((ctx.scheduled_at.timestamp(), time.time()))
        done.release()

    scheduler = gnomon.Scheduler()
    wakes = _record_wakes(scheduler)
    try:
        start_burst(scheduler, [(task, ())] * runs)
        for _ in range(runs):
            assert done.acquire(timeout=WAIT)
    finally:
        scheduler.shutdown()
    returned, fired_as_of, more = wakes[0]
    assert not more  # the first wake-up fired the whole burst...
    assert returned < fired_as_of  # ...before its deadline
    assert len(starts) == runs
    assert all(started >= scheduled for scheduled, started in starts)


def test_an_async_burst_is_fired_whole_before_its_deadline_and_its_runs_start_when_it_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _generous_fire_ahead(monkeypatch)
    runs = 300

    async def scenario() -> tuple[list[_Wake], list[tuple[float, float]]]:
        starts: list[tuple[float, float]] = []
        all_ran = asyncio.Event()

        async def task(ctx: JobContext) -> None:
            starts.append((ctx.scheduled_at.timestamp(), time.time()))
            if len(starts) == runs:
                all_ran.set()

        scheduler = gnomon.AsyncScheduler()
        wakes = _record_wakes(scheduler)
        due = gnomon.once(datetime.now(UTC) + BURST_LEAD)
        for _ in range(runs):
            await scheduler.add_job(task, due)
        await scheduler.start()
        try:
            await asyncio.wait_for(all_ran.wait(), WAIT)
        finally:
            await scheduler.shutdown()
        return wakes, starts

    wakes, starts = asyncio.run(scenario())
    returned, fired_as_of, more = wakes[0]
    assert not more
    assert returned < fired_as_of
    assert len(starts) == runs
    assert all(started >= scheduled for scheduled, started in starts)


# ---------------------------------------------------------------- finishing later


def _named_burst(task: Callable[..., Any], runs: int, **options: Any) -> gnomon.Scheduler:
    """A started scheduler with ``runs`` one-off jobs ``run-<index>`` due together soon,
    whose burst is never taken over, however slow this machine is."""
    scheduler = gnomon.Scheduler()
    scheduler._burst_stall = 3600.0
    due = gnomon.once(datetime.now(UTC) + BURST_LEAD)
    for index in range(runs):
        scheduler.add_job(task, due, name=f"run-{index}", **options)
    scheduler.start()
    return scheduler


def _history_of_burst(
    scheduler: gnomon.Scheduler, done: threading.Semaphore, runs: int
) -> list[RunRecord]:
    """Wait for the burst's ``runs`` tasks (each releases ``done``) and for it to end,
    then shut the scheduler down: its history."""
    try:
        for _ in range(runs):
            assert done.acquire(timeout=WAIT)
        scheduler.wait_idle(WAIT)
        assert burst_ends(scheduler)
        return scheduler.history(limit=runs)
    finally:
        scheduler.shutdown()


def test_a_bursts_runs_are_finished_after_it_started_them_each_recorded_as_it_ended() -> None:
    runs = 200
    starts: dict[str, float] = {}
    done = threading.Semaphore(0)

    def task(ctx: JobContext) -> None:
        starts[ctx.job_name] = time.time()
        done.release()

    records = _history_of_burst(_named_burst(task, runs), done, runs)
    assert len(records) == runs
    assert {record.outcome for record in records} == {gnomon.Outcome.SUCCESS}
    # Each record ends when its task returned: before the next run of the burst started,
    # not when the burst got round to finishing it, after its last run started.
    order = sorted(starts, key=starts.__getitem__)
    following = dict(itertools.pairwise(order))
    early_ends = 0
    for record in records:
        assert record.started_at is not None
        assert record.finished_at is not None
        ended = record.finished_at.timestamp()
        assert ended >= record.started_at.timestamp()
        after = following.get(record.job_name)
        if after is not None and ended <= starts[after]:
            early_ends += 1
    # Runs the pool took (a burst's first batch may go there) may overlap; the burst's
    # own runs, the most of them, each ended before the next began.
    assert early_ends >= runs // 2


def test_a_bursts_runs_keep_their_gates_outcomes_and_contexts_on_the_quick_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One thread runs the whole burst, in firing order, however slow this machine is:
    # run-1 comes before run-100, which is fired and not started when run-1 removes it.
    monkeypatch.setattr(gnomon._scheduler, "SLOW_SECONDS", 3600.0)  # no slow pace
    runs = 120
    due = datetime.now(UTC) + BURST_LEAD
    seen: dict[str, tuple[str, datetime, uuid.UUID]] = {}
    done = threading.Semaphore(0)
    jobs: dict[str, gnomon.Job] = {}
    scheduler = gnomon.Scheduler()
    scheduler._burst_stall = 3600.0  # never taken over

    def task(ctx: JobContext) -> None:
        seen[ctx.job_name] = (ctx.occurrence_key, ctx.scheduled_at, ctx.job_id)
        done.release()
        if ctx.job_name == "run-1":  # a later run of this burst, fired, not started yet
            scheduler.remove_job(jobs["run-100"].id)
        if ctx.job_name == "run-3":
            raise Boom("run-3 fails")

    for index in range(runs):
        name = f"run-{index}"
        # Hourly, not one-off: a one-off job leaves the registry as its only run is fired.
        job = scheduler.add_job(task, gnomon.every(timedelta(hours=1)), name=name, start_at=due)
        assert job is not None
        jobs[name] = job
    scheduler.start()
    _history_of_burst(scheduler, done, runs - 1)
    # Every record: the removed job's run is recorded too, as it was refused.
    outcomes = {record.job_name: record for record in scheduler.history(limit=runs)}
    # The removed job's fired run never started; every other run ran once, with its own
    # context, made before the deadline.
    assert "run-100" not in seen
    assert len(seen) == runs - 1
    for name, (key, scheduled_at, job_id) in seen.items():
        assert scheduled_at == due
        assert job_id == jobs[name].id
        assert key == outcomes[name].occurrence_key
    assert outcomes["run-3"].outcome is gnomon.Outcome.FAILED
    assert outcomes["run-3"].error is not None
    assert "run-3 fails" in outcomes["run-3"].error
    assert {outcomes[name].outcome for name in seen if name != "run-3"} == {gnomon.Outcome.SUCCESS}
    # A run lets go of the context made for it ahead as it begins: none kept with it.
    assert all(kept[0].prepared is None for kept in scheduler._engine.history)


def test_a_bursts_run_with_a_listener_is_told_of_before_its_thread_starts_another() -> None:
    runs = 100
    timelines: dict[threading.Thread, list[tuple[str, str]]] = {}
    done = threading.Semaphore(0)

    def note(what: str, name: str) -> None:
        timelines.setdefault(threading.current_thread(), []).append((what, name))

    def task(ctx: JobContext) -> None:
        note("ran", ctx.job_name)

    def after_run(event: RunEvent) -> None:
        note("told", event.job_name)
        done.release()

    scheduler = _named_burst(task, runs, after_run=after_run)
    try:
        for _ in range(runs):
            assert done.acquire(timeout=WAIT)
    finally:
        scheduler.shutdown()
    # A run someone listens to is finished as it ends, never left for after the burst:
    # on every thread, each run is told of before that thread starts another.
    assert sum(len(timeline) for timeline in timelines.values()) == 2 * runs
    assert max(len(timeline) for timeline in timelines.values()) > 2 * 32  # a burst ran
    for timeline in timelines.values():
        for (ran, name), (told, told_name) in zip(timeline[::2], timeline[1::2], strict=True):
            assert (ran, told, told_name) == ("ran", "told", name)


def test_finishing_a_bursts_runs_goes_on_past_a_failing_effect_and_logs_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = 100
    after_failure: list[str] = []
    finish = gnomon._engine.Engine._finish

    def failing_on_one(engine: gnomon._engine.Engine, run: Any, effects: Any) -> None:
        finish(engine, run, effects)
        if run.spec.name == "run-5":

            def boom() -> None:
                raise Boom("an effect failed")

            effects.append(boom)
            effects.append(lambda: after_failure.append(run.spec.name))

    monkeypatch.setattr(gnomon._engine.Engine, "_finish", failing_on_one)
    done = threading.Semaphore(0)

    def task() -> None:
        done.release()

    records = _history_of_burst(_named_burst(task, runs), done, runs)
    assert len(records) == runs  # every run finished and recorded
    assert after_failure == ["run-5"]  # the effect after the failing one still ran
    assert any("finishing a burst's runs failed" in r.getMessage() for r in caplog.records)
