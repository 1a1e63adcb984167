"""Concurrency modes: singleton, max_concurrent + limit_mode, interval_from_completion.

Ports of gocron v2's concurrency tests, on the fake clock: a "long" task blocks on a
gate the test opens, so overlaps are exact rather than timed.
"""

from __future__ import annotations

import threading
import time

import pytest
from scheduler_support import (
    SECOND,
    T0,
    WAIT,
    Boom,
    Gate,
    Gates,
    RecordingMonitor,
    SchedulerFactory,
    Tally,
    seconds,
    wait_until,
)

import gnomon
from gnomon.testing import FakeClock

RESCHEDULE, WAIT_MODE = gnomon.LimitMode.RESCHEDULE, gnomon.LimitMode.WAIT


class Gated:
    """A task that records each start and blocks on a gate; tracks peak concurrency."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.starts = Tally()
        self._lock = threading.Lock()
        self._running = 0
        self.peak = 0

    def __call__(self, ctx: gnomon.JobContext) -> None:
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        self.starts.hit(ctx.job_id)
        try:
            self.gate.wait()
        finally:
            with self._lock:
                self._running -= 1


def test_a_singleton_reschedule_job_skips_ticks_while_running_and_keeps_its_schedule(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    task = Gated(gates())
    job = s.add_job(task, gnomon.every(1), singleton=RESCHEDULE)
    s.start()
    clock.advance(SECOND)
    task.starts.wait_for(1)
    clock.advance(2 * SECOND)
    monitor.run_skipped_events.wait_for(2)

    skipped = monitor.skips(gnomon.Outcome.SKIPPED_SINGLETON)
    assert [e.scheduled_at for e in skipped] == [T0 + 2 * SECOND, T0 + 3 * SECOND]
    assert job.next_run == T0 + 4 * SECOND
    assert s.jobs_waiting == 0
    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert task.starts.count == 1
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)
    assert task.starts.count == 2


def test_a_singleton_wait_job_queues_ticks_and_runs_them_back_to_back(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler(max_workers=4)
    task = Gated(gates())
    s.add_job(task, gnomon.every(1), singleton=WAIT_MODE)
    s.start()
    clock.advance(3 * SECOND)
    task.starts.wait_for(1)
    wait_until(lambda: s.jobs_waiting == 2, "two ticks queued behind the running one")

    assert task.starts.count == 1
    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert task.starts.count == 3
    assert task.peak == 1
    assert s.jobs_waiting == 0


def test_max_concurrent_with_reschedule_skips_ticks_beyond_the_limit(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(max_concurrent=2, limit_mode=RESCHEDULE, monitor=monitor, max_workers=8)
    task = Gated(gates())
    jobs = [s.add_job(task, gnomon.every(1)) for _ in range(3)]
    s.start()
    clock.advance(SECOND)
    task.starts.wait_for(2)
    monitor.run_skipped_events.wait_for(1)

    skipped = monitor.skips(gnomon.Outcome.SKIPPED_LIMIT)
    assert len(skipped) == 1
    assert s.jobs_waiting == 0
    assert all(job.next_run == T0 + 2 * SECOND for job in jobs)
    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert task.starts.count == 2
    assert task.peak == 2


def test_max_concurrent_with_wait_queues_ticks_beyond_the_limit(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler(max_concurrent=2, limit_mode=WAIT_MODE, max_workers=8)
    task = Gated(gates())
    jobs = [s.add_job(task, gnomon.every(1)) for _ in range(3)]
    s.start()
    clock.advance(SECOND)
    task.starts.wait_for(2)
    wait_until(lambda: s.jobs_waiting == 1, "the third tick waits for a slot")

    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert sorted(map(str, task.starts.values)) == sorted(str(job.id) for job in jobs)
    assert task.peak == 2


def test_limit_wait_and_singleton_wait_run_every_job_once_one_at_a_time(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler(max_concurrent=1, limit_mode=WAIT_MODE, max_workers=8)
    task = Gated(gates())
    jobs = [s.add_job(task, gnomon.once(T0 + SECOND), singleton=WAIT_MODE) for _ in range(5)]
    s.start()
    clock.advance(SECOND)
    task.starts.wait_for(1)
    task.gate.open()
    s.wait_idle(timeout=WAIT)

    assert sorted(map(str, task.starts.values)) == sorted(str(job.id) for job in jobs)
    assert task.peak == 1


@pytest.mark.parametrize(
    "case",
    [(1, WAIT_MODE, 4), (10, WAIT_MODE, 0), (1, RESCHEDULE, 0)],
    ids=["wait-limit-1", "wait-limit-10", "reschedule-limit-1"],
)
def test_jobs_waiting_counts_runs_queued_for_the_scheduler_limit(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    gates: Gates,
    case: tuple[int, gnomon.LimitMode, int],
) -> None:
    limit, mode, expected_waiting = case
    s = make_scheduler(max_concurrent=limit, limit_mode=mode, max_workers=10)
    task = Gated(gates())
    for _ in range(5):
        s.add_job(task, gnomon.once())
    s.start()
    task.starts.wait_for(min(limit, 5))
    wait_until(lambda: s.jobs_waiting == expected_waiting, f"{expected_waiting} queued")
    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert s.jobs_waiting == 0


def test_last_run_of_a_queued_singleton_run_is_when_it_started(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler()
    task = Gated(gates())
    job = s.add_job(task, gnomon.every(1), singleton=WAIT_MODE)
    assert job.last_run is None
    s.start()
    clock.advance(SECOND)
    task.starts.wait_for(1)
    assert job.last_run == T0 + SECOND

    job.run_now()
    wait_until(lambda: s.jobs_waiting == 1, "run_now waits behind the running tick")
    clock.advance(seconds(0.5))
    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert task.starts.count == 2
    assert job.last_run == T0 + seconds(1.5), "the queued run started when the first ended"


def test_interval_from_completion_measures_from_the_end_of_the_run(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler()
    task = Gated(gates())
    job = s.add_job(task, gnomon.every(10), interval_from_completion=True)
    s.start()
    clock.advance(10 * SECOND)
    task.starts.wait_for(1)
    clock.advance(15 * SECOND)
    assert task.starts.count == 1, "no tick while the run is going"
    task.gate.open()
    s.wait_idle(timeout=WAIT)

    assert job.next_run == T0 + 35 * SECOND
    clock.advance(9 * SECOND)
    s.wait_idle(timeout=WAIT)
    assert task.starts.count == 1
    clock.advance(SECOND)
    task.starts.wait_for(2)


def test_without_interval_from_completion_the_schedule_ignores_run_length(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler()
    task = Gated(gates())
    job = s.add_job(task, gnomon.every(10), singleton=RESCHEDULE)
    s.start()
    clock.advance(10 * SECOND)
    task.starts.wait_for(1)
    clock.advance(15 * SECOND)
    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert job.next_run == T0 + 30 * SECOND


def test_interval_from_completion_with_start_immediately_runs_first_at_start(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler()
    runs = Tally()
    job = s.add_job(
        runs.hit, gnomon.every(10), interval_from_completion=True, start_immediately=True
    )
    s.start()
    runs.wait_for(1)
    s.wait_idle(timeout=WAIT)
    assert job.last_run == T0
    assert job.next_run == T0 + 10 * SECOND


def test_interval_from_completion_with_a_random_interval_stays_within_its_bounds(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler()
    runs = Tally()
    job = s.add_job(runs.hit, gnomon.every_random(5, 8), interval_from_completion=True)
    s.start()
    first = job.next_run
    assert first is not None
    assert T0 + 5 * SECOND <= first < T0 + 8 * SECOND
    clock.advance(first - T0)
    s.wait_idle(timeout=WAIT)
    second = job.next_run
    assert second is not None
    assert first + 5 * SECOND <= second < first + 8 * SECOND


def test_a_saturated_waiting_limit_runs_every_queued_run_within_the_limit(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler(max_concurrent=2, limit_mode=WAIT_MODE, max_workers=8)
    peak = Peak()
    for _ in range(500):
        s.add_job(peak.task, gnomon.once(T0 + SECOND))
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)

    assert peak.runs == 500
    assert peak.highest <= 2
    assert s.jobs_waiting == 0
    assert s.jobs() == []


def test_many_singleton_jobs_on_the_real_clock_never_overlap_themselves(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(clock=None, max_workers=16)
    peaks = [Peak(hold=0.003) for _ in range(150)]
    for peak in peaks:
        s.add_job(peak.task, gnomon.every("2ms"), singleton=RESCHEDULE)
    s.start()
    wait_until(lambda: all(p.runs >= 2 for p in peaks), "every job runs a few times")
    s.stop_jobs()
    s.wait_idle(timeout=WAIT)
    assert max(p.highest for p in peaks) == 1


class Peak:
    """A task that counts its runs and the most of them ever running at once."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self._lock = threading.Lock()
        self._running = 0
        self.highest = 0
        self.runs = 0

    def task(self) -> None:
        with self._lock:
            self._running += 1
            self.runs += 1
            self.highest = max(self.highest, self._running)
        try:
            if self.hold:
                time.sleep(self.hold)  # a run that takes a little real time
        finally:
            with self._lock:
                self._running -= 1


def test_interval_from_completion_keeps_firing_after_a_tick_skipped_by_the_limit(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(max_concurrent=1, limit_mode=RESCHEDULE, monitor=monitor)
    hog = Gated(gates())
    runs = Tally()
    s.add_job(hog, gnomon.once(T0 + 5 * SECOND))
    job = s.add_job(runs.hit, gnomon.every(10), interval_from_completion=True)
    s.start()
    clock.advance(5 * SECOND)
    hog.starts.wait_for(1)
    clock.advance(5 * SECOND)
    monitor.run_skipped_events.wait_for(1)
    assert monitor.skips(gnomon.Outcome.SKIPPED_LIMIT)[0].job_id == job.id
    hog.gate.open()
    s.wait_idle(timeout=WAIT)

    assert job.next_run is not None, "a skipped tick must not end the schedule"
    for _ in range(30):
        clock.advance(SECOND)
        s.wait_idle(timeout=WAIT)
    assert runs.count >= 2


def test_interval_from_completion_keeps_firing_after_before_run_refuses_a_run(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs, refusals = Tally(), Tally()

    def refuse_once(event: gnomon.RunEvent) -> None:
        if refusals.count == 0:
            refusals.hit()
            raise Boom("not this time")

    job = scheduler.add_job(
        runs.hit, gnomon.every(10), interval_from_completion=True, before_run=refuse_once
    )
    scheduler.start()
    for _ in range(25):
        clock.advance(SECOND)
        scheduler.wait_idle(timeout=WAIT)
    assert refusals.count == 1
    assert runs.count >= 1
    assert job.next_run is not None


def test_interval_from_completion_is_not_disturbed_by_a_refused_run_now(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    task = Gated(gates())
    job = scheduler.add_job(
        task, gnomon.every(10), interval_from_completion=True, singleton=RESCHEDULE
    )
    scheduler.start()
    clock.advance(10 * SECOND)
    task.starts.wait_for(1)
    job.run_now()  # refused by the singleton gate while the run goes on
    clock.advance(5 * SECOND)
    task.gate.open()
    scheduler.wait_idle(timeout=WAIT)
    assert job.next_run == T0 + 25 * SECOND
