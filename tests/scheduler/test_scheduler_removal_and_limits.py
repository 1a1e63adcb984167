"""Removal, max_runs, start_at, stop_at, start_immediately; ports of gocron v2's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from scheduler_support import (
    SECOND,
    T0,
    WAIT,
    Boom,
    Gates,
    RecordingMonitor,
    SchedulerFactory,
    Tally,
    seconds,
)

import gnomon
from gnomon.testing import FakeClock


def nothing() -> None:
    """A task that does nothing."""


def test_removing_a_job_unregisters_it_and_an_unknown_id_is_job_not_found(
    make_scheduler: SchedulerFactory,
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    job = s.add_job(nothing, gnomon.every(1))
    s.remove_job(job.id)

    assert s.jobs() == []
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [job.id]
    for call in (lambda: s.remove_job(job.id), lambda: s.get_job(job.id), job.remove):
        with pytest.raises(gnomon.JobNotFound) as raised:
            call()
        assert str(job.id) in str(raised.value)
    with pytest.raises(gnomon.JobNotFound):
        s.remove_job(uuid.uuid4())


def test_a_removed_jobs_handle_keeps_its_last_values_and_its_actions_raise(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = scheduler.add_job(nothing, gnomon.every(1), name="kept", tags=("a", "b"))
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    job.remove()

    assert (job.name, job.tags, job.last_run) == ("kept", frozenset({"a", "b"}), T0 + SECOND)
    assert job.is_running is False
    for action in (job.run_now, job.pause, job.resume, job.remove):
        with pytest.raises(gnomon.JobNotFound):
            action()


@pytest.mark.parametrize("count", [10, 100, 1000])
def test_removing_lots_of_jobs_leaves_none(scheduler: gnomon.Scheduler, count: int) -> None:
    scheduler.start()
    jobs = [scheduler.add_job(nothing, gnomon.every(1)) for _ in range(count)]
    for job in jobs:
        scheduler.remove_job(job.id)
    assert scheduler.jobs() == []


def test_remove_by_tags_removes_jobs_having_any_tag_and_returns_the_count(
    scheduler: gnomon.Scheduler,
) -> None:
    red = scheduler.add_job(nothing, gnomon.every(1), tags=("red",))
    scheduler.add_job(nothing, gnomon.every(1), tags=("red", "blue"))
    scheduler.add_job(nothing, gnomon.every(1), tags=("blue",))
    green = scheduler.add_job(nothing, gnomon.every(1), tags=("green",))
    untagged = scheduler.add_job(nothing, gnomon.every(1))

    assert scheduler.remove_by_tags("blue", "purple") == 2
    assert [j.id for j in scheduler.jobs()] == [red.id, green.id, untagged.id]
    assert scheduler.remove_by_tags("purple") == 0
    assert scheduler.remove_by_tags("red", "green") == 2
    assert [j.id for j in scheduler.jobs()] == [untagged.id]


def test_max_runs_of_one_runs_exactly_once_and_removes_the_job(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    runs = Tally()
    job = s.add_job(runs.hit, gnomon.every(1), max_runs=1)
    s.start()
    clock.advance(5 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert runs.count == 1
    assert s.jobs() == []
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [job.id]
    assert job.next_run is None


def test_the_last_run_allowed_by_max_runs_is_not_cancelled_by_the_removal(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, cancelled_at_end = gates(), Tally()
    started = Tally()

    def last_run(ctx: gnomon.JobContext) -> None:
        started.hit()
        gate.wait()
        cancelled_at_end.hit(ctx.cancelled.is_set())

    scheduler.add_job(last_run, gnomon.every(1), max_runs=1)
    scheduler.start()
    clock.advance(SECOND)
    started.wait_for(1)
    clock.advance(3 * SECOND)
    gate.open()
    scheduler.wait_idle(timeout=WAIT)

    assert cancelled_at_end.values == [False]
    assert started.count == 1
    assert scheduler.jobs() == []


def test_skipped_runs_do_not_use_up_max_runs(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    runs, refusals = Tally(), Tally()

    def refuse_three_times(event: gnomon.RunEvent) -> None:
        if refusals.count < 3:
            refusals.hit()
            raise Boom("not yet")

    s.add_job(runs.hit, gnomon.every(1), max_runs=2, before_run=refuse_three_times)
    s.start()
    for _ in range(10):
        clock.advance(SECOND)
        s.wait_idle(timeout=WAIT)

    assert runs.count == 2
    skipped = monitor.skips(gnomon.Outcome.SKIPPED_BEFORE_RUN)
    assert len(skipped) == 3
    assert all(isinstance(e.exception, Boom) for e in skipped)
    assert s.jobs() == []


def test_run_now_counts_towards_max_runs(scheduler: gnomon.Scheduler, clock: FakeClock) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(10), max_runs=2)
    scheduler.start()
    job.run_now()
    scheduler.wait_idle(timeout=WAIT)
    clock.advance(30 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 2
    assert scheduler.jobs() == []


def test_a_failed_run_counts_towards_max_runs(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    attempts = Tally()

    def fails() -> None:
        attempts.hit()
        raise Boom("counted anyway")

    scheduler.add_job(fails, gnomon.every(1), max_runs=2)
    scheduler.start()
    clock.advance(5 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert attempts.count == 2
    assert scheduler.jobs() == []


def test_stop_at_allows_runs_up_to_it_then_removes_the_job(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    runs = Tally()
    job = s.add_job(runs.hit, gnomon.every(1), stop_at=T0 + 3 * SECOND)
    s.start()
    assert all(t <= T0 + 3 * SECOND for t in job.next_runs(100))
    clock.advance(10 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert runs.count == 3
    assert s.jobs() == []
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [job.id]
    with pytest.raises(gnomon.JobNotFound):
        s.remove_job(job.id)


def test_a_job_whose_stop_at_passed_before_start_is_removed_at_start(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    runs = Tally()
    job = s.add_job(runs.hit, gnomon.every(1), stop_at=T0 + 5 * SECOND)
    clock.advance(10 * SECOND)
    s.start()
    s.wait_idle(timeout=WAIT)

    assert s.jobs() == []
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [job.id]
    assert runs.count == 0


def test_next_runs_never_passes_stop_at(scheduler: gnomon.Scheduler) -> None:
    stop = T0 + timedelta(minutes=7, seconds=30)
    job = scheduler.add_job(nothing, gnomon.every(60), stop_at=stop)
    scheduler.start()
    times = job.next_runs(100)
    assert times == [T0 + timedelta(minutes=m) for m in range(1, 8)]


def test_start_at_makes_an_interval_job_fire_first_exactly_then(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(60), start_at=T0 + seconds(2.5))
    scheduler.start()
    assert job.next_run == T0 + seconds(2.5)
    clock.advance(seconds(2.5))
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 1
    assert job.next_run == T0 + seconds(62.5)


def test_start_at_makes_a_calendar_job_fire_first_at_the_first_rule_time_after_it(
    scheduler: gnomon.Scheduler,
) -> None:
    job = scheduler.add_job(
        nothing, gnomon.daily("10:00"), start_at=datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    )
    scheduler.start()
    assert job.next_run == datetime(2026, 1, 7, 10, 0, tzinfo=UTC)


def test_a_past_start_at_walks_a_biweekly_job_forward_in_its_phase(
    make_scheduler: SchedulerFactory,
) -> None:
    """gocron's WithStartDateTimePast example: now Mon 2024-01-01 09:00, start Sat 12-30."""
    s = make_scheduler(clock=FakeClock(datetime(2024, 1, 1, 9, 0, tzinfo=UTC)))
    job = s.add_job(
        nothing,
        gnomon.weekly(["sunday"], "10:00", interval=2),
        start_at=datetime(2023, 12, 30, tzinfo=UTC),
    )
    s.start()
    assert job.next_run == datetime(2024, 1, 7, 10, 0, tzinfo=UTC)


def test_start_immediately_runs_at_start_then_follows_the_rule(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(60), start_immediately=True)
    scheduler.start()
    runs.wait_for(1)
    scheduler.wait_idle(timeout=WAIT)
    assert job.last_run == T0
    assert job.next_run == T0 + 60 * SECOND


def test_immediate_runs_on_the_fake_clock_happen_at_start_without_advancing(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    scheduler.add_job(runs.hit, gnomon.every(60), start_immediately=True)
    scheduler.add_job(runs.hit, gnomon.once())
    scheduler.start()
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 2


def test_start_immediately_on_a_running_scheduler_runs_at_add_time(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    scheduler.start()
    clock.advance(5 * SECOND)
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(60), start_immediately=True)
    runs.wait_for(1)
    scheduler.wait_idle(timeout=WAIT)
    assert job.last_run == T0 + 5 * SECOND
    assert job.next_run == T0 + 65 * SECOND


def test_an_interval_job_added_to_a_running_scheduler_fires_first_one_interval_later(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    scheduler.start()
    clock.advance(7 * SECOND)
    job = scheduler.add_job(nothing, gnomon.every(60))
    assert job.next_run == T0 + 67 * SECOND


def test_a_one_time_job_past_its_instant_before_start_is_removed_without_spinning(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    runs = Tally()
    job = s.add_job(runs.hit, gnomon.once(T0 + SECOND))
    clock.advance(10 * SECOND)
    s.start()
    s.wait_idle(timeout=WAIT)
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)

    assert runs.count == 0
    assert s.jobs() == []
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [job.id]


def test_update_job_keeps_the_run_count_that_max_runs_looks_at(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(1), max_runs=2)
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    scheduler.update_job(job.id, name="renamed", rule=gnomon.every(2))
    for _ in range(6):
        clock.advance(SECOND)
        scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 2
    assert scheduler.jobs() == []


def test_a_job_added_again_under_a_removed_jobs_id_fires_only_on_its_own_rule(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    # The removed job's timer entry is still on the heap: it must not fire the new job.
    runs = Tally()
    scheduler.start()
    first = scheduler.add_job(runs.hit, gnomon.every(1), args=("first",))
    scheduler.remove_job(first.id)
    scheduler.add_job(runs.hit, gnomon.every(5), args=("second",), id=first.id)
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.values == []
    clock.advance(4 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.values == ["second"]


def test_compacting_the_timer_heap_while_firing_fires_nothing_early(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    # Many removed jobs leave stale timer entries; the jobs expiring as they fire make
    # the engine compact its heap in the middle of a batch. Jobs due later stay put.
    runs = Tally()
    scheduler.start()
    removed = [scheduler.add_job(nothing, gnomon.every("5h")) for _ in range(1030)]
    for _ in range(20):
        scheduler.add_job(runs.hit, gnomon.once(T0 + 10 * SECOND), args=("at 10 s",))
    for _ in range(1020):
        scheduler.add_job(runs.hit, gnomon.once(T0 + 20 * SECOND), args=("at 20 s",))
    for job in removed:
        job.remove()
    clock.advance(10 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.values == ["at 10 s"] * 20
    clock.advance(10 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.values == ["at 10 s"] * 20 + ["at 20 s"] * 1020
