"""Introspection: jobs, get_job, last_run, next_run, next_runs, is_running, run_now."""

from __future__ import annotations

import asyncio
import itertools
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from scheduler_support import (
    SECOND,
    T0,
    WAIT,
    Gates,
    RecordingMonitor,
    SchedulerFactory,
    Tally,
    background,
    read,
    seconds,
    wait_until,
)

import gnomon
from gnomon.testing import FakeClock

MINUTE = timedelta(minutes=1)


def nothing() -> None:
    """A task that does nothing."""


def test_jobs_are_listed_in_registration_order_and_filtered_by_any_tag(
    scheduler: gnomon.Scheduler,
) -> None:
    a = scheduler.add_job(nothing, gnomon.every(1), tags=("x",))
    b = scheduler.add_job(nothing, gnomon.every(1), tags=("y",))
    c = scheduler.add_job(nothing, gnomon.every(1), tags=("x", "z"))
    d = scheduler.add_job(nothing, gnomon.every(1))

    assert [j.id for j in scheduler.jobs()] == [a.id, b.id, c.id, d.id]
    assert [j.id for j in scheduler.jobs()] == [j.id for j in scheduler.jobs()]
    assert [j.id for j in scheduler.jobs(tags=["x"])] == [a.id, c.id]
    assert [j.id for j in scheduler.jobs(tags=["z", "y"])] == [b.id, c.id]
    assert scheduler.jobs(tags=["nope"]) == []


def test_a_job_handle_describes_its_job(scheduler: gnomon.Scheduler) -> None:
    rule = gnomon.every(90)
    job = scheduler.add_job(nothing, rule, name="described", tags=["b", "a", "a"])
    assert job.name == "described"
    assert job.tags == frozenset({"a", "b"})
    assert job.rule == rule
    assert scheduler.get_job(job.id).id == job.id


def test_the_default_name_is_the_functions_qualified_name(scheduler: gnomon.Scheduler) -> None:
    job = scheduler.add_job(nothing, gnomon.every(1))
    assert job.name == f"{nothing.__module__}.{nothing.__qualname__}"


def test_a_job_handle_is_live_not_a_snapshot(scheduler: gnomon.Scheduler, clock: FakeClock) -> None:
    job = scheduler.add_job(nothing, gnomon.every(1), name="first")
    listed = scheduler.jobs()[0]
    scheduler.start()
    scheduler.update_job(job.id, name="second")
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert listed.name == "second"
    assert listed.last_run == T0 + SECOND


def test_run_now_runs_once_without_moving_the_schedule(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    interval = scheduler.add_job(runs.hit, gnomon.every(60), args=("interval",))
    monthly = scheduler.add_job(runs.hit, gnomon.monthly([1], "00:00"), args=("monthly",))
    scheduler.start()
    before = (interval.next_run, monthly.next_run)
    interval.run_now()
    monthly.run_now()
    scheduler.wait_idle(timeout=WAIT)

    assert sorted(runs.values) == ["interval", "monthly"]
    assert (interval.next_run, monthly.next_run) == before
    assert interval.last_run == T0


def test_run_now_with_wait_returns_the_finished_run_event(
    scheduler: gnomon.Scheduler,
) -> None:
    job = scheduler.add_job(lambda: "done", gnomon.every(60))
    scheduler.start()
    event = job.run_now(wait=True)
    assert isinstance(event, gnomon.RunEvent)
    assert event.outcome is gnomon.Outcome.SUCCESS
    assert event.result == "done"
    assert event.job_id == job.id


def test_run_now_goes_through_the_singleton_gate(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    gate, started = gates(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    job = s.add_job(blocks, gnomon.every(60), singleton=gnomon.LimitMode.RESCHEDULE)
    s.start()
    job.run_now()
    started.wait_for(1)
    job.run_now()
    monitor.run_skipped_events.wait_for(1)
    assert [e.outcome for e in monitor.run_skipped_events.values] == [
        gnomon.Outcome.SKIPPED_SINGLETON
    ]
    assert job.next_run == T0 + 60 * SECOND
    gate.open()
    s.wait_idle(timeout=WAIT)
    assert started.count == 1


def test_run_now_of_a_one_time_job_adds_a_run(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.once(T0 + 10 * SECOND))
    scheduler.start()
    job.run_now()
    scheduler.wait_idle(timeout=WAIT)
    assert job.next_run == T0 + 10 * SECOND
    clock.advance(10 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 2


def test_run_now_after_shutdown_raises(scheduler: gnomon.Scheduler) -> None:
    job = scheduler.add_job(nothing, gnomon.every(1))
    scheduler.start()
    scheduler.shutdown()
    with pytest.raises(gnomon.SchedulerShutDown):
        job.run_now()


def test_last_run_of_a_job_started_immediately_is_the_clock_time(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = scheduler.add_job(nothing, gnomon.every(60), start_immediately=True)
    assert read(job.last_run) is None
    scheduler.start()
    scheduler.wait_idle(timeout=WAIT)
    last = job.last_run
    assert last == T0
    assert last is not None
    assert last.tzinfo is not None


def test_next_run_is_none_before_start_and_while_paused(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = scheduler.add_job(nothing, gnomon.every(60))
    assert read(job.next_run) is None
    scheduler.start()
    assert job.next_run == T0 + MINUTE
    job.pause()
    assert read(job.paused) is True
    assert read(job.next_run) is None
    clock.advance(2 * MINUTE)
    scheduler.wait_idle(timeout=WAIT)
    assert job.last_run is None
    job.resume()
    assert read(job.paused) is False
    resumed = job.next_run
    assert resumed is not None
    assert resumed > T0 + 2 * MINUTE


def test_next_run_with_start_at_then_after_the_run(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = scheduler.add_job(
        nothing,
        gnomon.every("100ms"),
        start_at=T0 + seconds(0.1),
        singleton=gnomon.LimitMode.RESCHEDULE,
    )
    scheduler.start()
    assert job.next_run == T0 + seconds(0.1)
    clock.advance(seconds(0.1))
    scheduler.wait_idle(timeout=WAIT)
    assert job.next_run == T0 + seconds(0.2)


def test_jobs_firing_together_each_get_their_own_exact_next_run(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    """gocron reported stale NextRun values when several runs completed at once."""
    jobs = {
        n: scheduler.add_job(nothing, gnomon.every(n * MINUTE), start_at=T0 + MINUTE)
        for n in (1, 2, 3, 4)
    }
    scheduler.start()
    clock.advance(MINUTE)
    scheduler.wait_idle(timeout=WAIT)
    for n, job in jobs.items():
        assert job.last_run == T0 + MINUTE
        assert job.next_run == T0 + MINUTE + n * MINUTE


def test_next_runs_extrapolates_the_rule(scheduler: gnomon.Scheduler) -> None:
    interval = scheduler.add_job(nothing, gnomon.every("100ms"))
    biweekly = scheduler.add_job(nothing, gnomon.weekly(["tue"], "09:00", interval=2))
    scheduler.start()

    assert interval.next_runs(5) == [T0 + seconds(0.1 * k) for k in range(1, 6)]
    tuesdays = biweekly.next_runs(5)
    assert len(tuesdays) == 5
    assert all(t.weekday() == 1 and (t.hour, t.minute) == (9, 0) for t in tuesdays)
    assert [b - a for a, b in itertools.pairwise(tuesdays)] == [timedelta(days=14)] * 4


def test_next_runs_stays_ascending_through_reschedule_cycles(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = scheduler.add_job(nothing, gnomon.every_random("1s", "3s"))
    scheduler.start()
    for _ in range(20):
        times = job.next_runs(5)
        assert times == sorted(times)
        assert len(set(times)) == 5
        assert job.next_run == times[0]
        clock.advance(SECOND)
        scheduler.wait_idle(timeout=WAIT)


def test_next_runs_of_a_random_interval_agree_across_threads(
    scheduler: gnomon.Scheduler,
) -> None:
    job = scheduler.add_job(nothing, gnomon.every_random("1s", "1h"))
    scheduler.start()
    expected = job.next_runs(10)
    answers = Tally()

    def ask() -> None:
        for _ in range(200):
            answers.hit(job.next_runs(10) == expected)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert answers.values == [True] * 1600


def test_is_running_is_true_only_while_a_run_is_going(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    job = scheduler.add_job(blocks, gnomon.every(1))
    scheduler.start()
    assert read(job.is_running) is False
    clock.advance(SECOND)
    started.wait_for(1)
    assert read(job.is_running) is True
    gate.open()
    scheduler.wait_idle(timeout=WAIT)
    assert read(job.is_running) is False


def test_one_time_jobs_now_and_soon_both_run(scheduler: gnomon.Scheduler, clock: FakeClock) -> None:
    runs = Tally()
    scheduler.add_job(runs.hit, gnomon.once(), args=("now",))
    scheduler.add_job(runs.hit, gnomon.once(T0 + seconds(0.1)), args=("soon",))
    scheduler.start()
    clock.advance(seconds(0.1))
    scheduler.wait_idle(timeout=WAIT)
    assert sorted(runs.values) == ["now", "soon"]


def test_an_exhausted_one_time_job_keeps_its_last_run_and_leaves(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    job = s.add_job(nothing, gnomon.once(T0 + 5 * SECOND))
    s.start()
    assert (job.last_run, job.next_run) == (None, T0 + 5 * SECOND)
    clock.advance(5 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert job.last_run == T0 + 5 * SECOND
    assert job.next_run is None
    assert s.jobs() == []
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [job.id]


def test_a_one_time_job_at_several_instants_runs_each_once_in_order(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()

    def record(ctx: gnomon.JobContext) -> None:
        runs.hit(ctx.scheduled_at)

    instants = [T0 + 3 * SECOND, T0 + SECOND, T0 + 2 * SECOND, T0 + SECOND, T0 - SECOND]
    job = scheduler.add_job(record, gnomon.once(instants))
    scheduler.start()
    assert job.next_runs(10) == [T0 + SECOND, T0 + 2 * SECOND, T0 + 3 * SECOND]
    for _ in range(5):
        clock.advance(SECOND)
        scheduler.wait_idle(timeout=WAIT)
    assert runs.values == [T0 + SECOND, T0 + 2 * SECOND, T0 + 3 * SECOND]


def test_returned_datetimes_are_aware_and_in_the_schedulers_zone(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler(timezone=ZoneInfo("Europe/Riga"))
    job = s.add_job(nothing, gnomon.daily("10:00"))
    s.start()
    first = job.next_run
    assert first is not None
    assert first == datetime(2026, 1, 6, 8, 0, tzinfo=UTC), "10:00 in Riga is 08:00 UTC"
    assert str(first.tzinfo) == "Europe/Riga"


def test_jobs_waiting_is_zero_without_limits(scheduler: gnomon.Scheduler, clock: FakeClock) -> None:
    scheduler.add_job(nothing, gnomon.every(1))
    scheduler.start()
    clock.advance(3 * SECOND)
    wait_until(lambda: scheduler.jobs_waiting == 0, "nothing queues without limits")
    scheduler.wait_idle(timeout=WAIT)


def test_wait_idle_from_inside_a_run_raises_instead_of_hanging(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    raised = Tally()

    def waits_for_itself() -> None:
        try:
            scheduler.wait_idle(timeout=WAIT)
        except RuntimeError as exc:
            raised.hit(exc)

    scheduler.add_job(waits_for_itself, gnomon.every(1))
    scheduler.start()
    clock.advance(SECOND)
    raised.wait_for(1)
    scheduler.wait_idle(timeout=WAIT)


def test_wait_idle_times_out_while_a_run_is_stuck(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    scheduler.add_job(blocks, gnomon.every(1))
    scheduler.start()
    clock.advance(SECOND)
    started.wait_for(1)
    with pytest.raises(TimeoutError):
        scheduler.wait_idle(timeout=0.05)
    gate.open()
    scheduler.wait_idle(timeout=WAIT)


def test_shutdown_from_inside_a_run_begins_shutdown_without_waiting_for_itself(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    returned = Tally()

    def shuts_down() -> None:
        scheduler.shutdown()
        returned.hit()

    scheduler.add_job(shuts_down, gnomon.every(1))
    scheduler.start()
    clock.advance(SECOND)
    returned.wait_for(1)
    wait_until(lambda: not scheduler.running, "the scheduler shuts down")
    with pytest.raises(gnomon.SchedulerShutDown):
        scheduler.add_job(nothing, gnomon.every(1))


def test_run_now_with_wait_returns_the_skip_when_the_singleton_gate_refuses_it(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    job = scheduler.add_job(blocks, gnomon.every(60), singleton=gnomon.LimitMode.RESCHEDULE)
    scheduler.start()
    clock.advance(60 * SECOND)
    started.wait_for(1)
    with background(lambda: job.run_now(wait=True), name="run-now-wait") as done:
        done.wait_for(1)
    [(kind, event)] = done.values
    assert kind == "ok"
    assert isinstance(event, gnomon.RunEvent)
    assert event.outcome is gnomon.Outcome.SKIPPED_SINGLETON


def test_run_now_with_wait_returns_when_stop_jobs_drops_its_queued_run(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    job = scheduler.add_job(blocks, gnomon.every(60), singleton=gnomon.LimitMode.WAIT)
    scheduler.start()
    clock.advance(60 * SECOND)
    started.wait_for(1)
    with background(lambda: job.run_now(wait=True), name="run-now-wait") as done:
        wait_until(lambda: scheduler.jobs_waiting == 1, "run_now queues behind the run")
        scheduler.stop_jobs()
        done.wait_for(1)
        gate.open()
    [(kind, event)] = done.values
    assert kind == "ok"
    assert isinstance(event, gnomon.RunEvent)
    assert event.outcome is gnomon.Outcome.SKIPPED_STOPPING


def test_updating_a_sync_task_to_a_coroutine_function_runs_it_on_the_loop(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    results = Tally()

    async def coroutine_task() -> str:
        await asyncio.sleep(0)
        return "async now"

    job = scheduler.add_job(lambda: "sync", gnomon.every(1), after_run=results.hit)
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    scheduler.update_job(job.id, func=coroutine_task)
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert [e.result for e in results.values] == ["sync", "async now"]


def test_pausing_a_running_job_lets_the_run_finish_and_stops_later_ticks(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    job = scheduler.add_job(blocks, gnomon.every(1))
    scheduler.start()
    clock.advance(SECOND)
    started.wait_for(1)
    job.pause()
    assert read(job.is_running) is True
    gate.open()
    scheduler.wait_idle(timeout=WAIT)
    assert read(job.is_running) is False
    clock.advance(5 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert started.count == 1
    job.resume()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert started.count == 2


def test_a_job_added_while_stopped_is_armed_by_start(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    scheduler.start()
    scheduler.stop_jobs()
    clock.advance(10 * SECOND)
    job = scheduler.add_job(nothing, gnomon.every(60))
    assert read(job.next_run) is None
    scheduler.start()
    assert job.next_run == T0 + 70 * SECOND
