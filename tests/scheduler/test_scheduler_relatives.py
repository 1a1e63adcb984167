"""Relatives of the seed failure: state changes that race with a job's own run.

gocron kept finding these after v2.2.7: a job removed from inside its task or from
another thread mid-run, a one-time job under limits that never ran (#691), a task
cancelled by its own run-limit removal (#925), shutdown racing ``RunNow``, and 100 % CPU
spins on a next time that did not advance (#943).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from scheduler_support import (
    SECOND,
    T0,
    UTC_ZONE,
    WAIT,
    ErrorWatch,
    Gate,
    Gates,
    RecordingMonitor,
    SchedulerFactory,
    SharedLocker,
    Tally,
    background,
    run_async,
    wait_until,
)

import gnomon
from gnomon._rules import Rule
from gnomon.testing import FakeClock


def test_a_task_that_removes_its_own_job_finishes_and_never_runs_again(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs, removal_errors = Tally(), Tally()

    def remove_myself(ctx: gnomon.JobContext) -> None:
        runs.hit()
        try:
            scheduler.remove_job(ctx.job_id)
        except Exception as exc:
            removal_errors.hit(exc)

    job = scheduler.add_job(remove_myself, gnomon.every(1))
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    clock.advance(5 * SECOND)
    scheduler.wait_idle(timeout=WAIT)

    assert removal_errors.values == []
    assert runs.count == 1
    assert scheduler.jobs() == []
    with pytest.raises(gnomon.JobNotFound):
        scheduler.get_job(job.id)


def test_a_task_that_removes_its_own_job_through_the_handle(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    handles: list[gnomon.Job] = []

    def remove_by_handle() -> None:
        runs.hit()
        handles[0].remove()

    handles.append(scheduler.add_job(remove_by_handle, gnomon.every(1)))
    scheduler.start()
    clock.advance(3 * SECOND)
    scheduler.wait_idle(timeout=WAIT)

    assert runs.count == 1
    assert scheduler.jobs() == []


def test_an_async_task_that_removes_its_own_job_never_runs_again(errors: ErrorWatch) -> None:
    clock, runs = FakeClock(T0), Tally()

    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:

            async def remove_myself(ctx: gnomon.JobContext) -> None:
                runs.hit()
                await s.remove_job(ctx.job_id)

            await s.add_job(remove_myself, gnomon.every(1))
            clock.advance(SECOND)
            await s.wait_idle(timeout=WAIT)
            clock.advance(5 * SECOND)
            await s.wait_idle(timeout=WAIT)
            assert await s.jobs() == []

    run_async(errors, scenario)
    assert runs.count == 1


@dataclass
class BlockingJob:
    """A task that reports its start, then blocks on a gate; records what it saw."""

    started: Tally
    contexts: list[gnomon.JobContext]
    cancelled_at_end: Tally

    def __call__(self, ctx: gnomon.JobContext, gate: Gate) -> None:
        self.contexts.append(ctx)
        self.started.hit(ctx.scheduled_at)
        gate.wait()
        self.cancelled_at_end.hit(ctx.cancelled.is_set())


def blocking_job() -> BlockingJob:
    return BlockingJob(Tally(), [], Tally())


def test_removing_a_running_job_from_another_thread_signals_its_run_and_stops_the_schedule(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    task, gate = blocking_job(), gates()
    job = scheduler.add_job(task, gnomon.every(1), kwargs={"gate": gate}, name="blocking")
    scheduler.start()
    clock.advance(SECOND)
    task.started.wait_for(1)

    scheduler.remove_job(job.id)
    assert scheduler.jobs() == []
    assert task.contexts[0].cancelled.is_set(), "removal must signal the running task"
    assert job.name == "blocking", "a removed job's handle keeps its last values"
    gate.open()
    scheduler.wait_idle(timeout=WAIT)
    clock.advance(5 * SECOND)
    scheduler.wait_idle(timeout=WAIT)

    assert task.started.count == 1
    assert task.cancelled_at_end.values == [True]
    with pytest.raises(gnomon.JobNotFound):
        scheduler.remove_job(job.id)


def test_updating_a_running_job_keeps_its_run_and_history_and_reschedules_from_now(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    task, gate = blocking_job(), gates()
    finished = Tally()
    job = scheduler.add_job(
        task, gnomon.every(1), kwargs={"gate": gate}, name="before", after_run=finished.hit
    )
    scheduler.start()
    clock.advance(SECOND)
    task.started.wait_for(1)

    updated = scheduler.update_job(job.id, rule=gnomon.every(5), name="after")
    assert updated.id == job.id
    assert updated.name == "after"
    assert updated.next_run == T0 + SECOND + 5 * SECOND
    assert not task.contexts[0].cancelled.is_set(), "an update must not cancel a run"
    gate.open()
    scheduler.wait_idle(timeout=WAIT)

    assert task.cancelled_at_end.values == [False]
    assert [e.outcome for e in finished.values] == [gnomon.Outcome.SUCCESS]
    assert updated.last_run == T0 + SECOND
    clock.advance(4 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert task.started.count == 1
    clock.advance(SECOND)
    task.started.wait_for(2)


def test_run_now_from_another_thread_while_the_job_runs_starts_a_second_run(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    task, gate = blocking_job(), gates()
    job = scheduler.add_job(task, gnomon.every(60), kwargs={"gate": gate})
    scheduler.start()
    clock.advance(60 * SECOND)
    task.started.wait_for(1)

    with background(job.run_now, name="run-now-caller") as done:
        done.wait_for(1)
    assert done.values[0][0] == "ok"
    task.started.wait_for(2)
    assert job.next_run == T0 + 120 * SECOND, "run_now must not move the schedule"
    gate.open()
    scheduler.wait_idle(timeout=WAIT)
    assert task.cancelled_at_end.values == [False, False]


@pytest.mark.parametrize(
    "rule",
    [gnomon.once(), gnomon.once(T0 + SECOND)],
    ids=["immediately", "at-an-instant"],
)
def test_a_one_time_job_limited_to_one_run_under_a_waiting_limit_runs_exactly_once(
    make_scheduler: SchedulerFactory, clock: FakeClock, rule: Any
) -> None:
    s = make_scheduler(max_concurrent=1, limit_mode=gnomon.LimitMode.WAIT)
    runs = Tally()
    s.add_job(runs.hit, rule, max_runs=1, singleton=gnomon.LimitMode.WAIT)
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)
    clock.advance(60 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert runs.count == 1
    assert s.jobs() == []


def test_shutdown_while_tasks_and_listeners_are_mid_flight_waits_for_them_and_signals_them(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler(stop_timeout=WAIT)
    task_gate, before_gate, after_gate = gates(), gates(), gates()
    task = blocking_job()
    before_calls, after_calls = Tally(), Tally()

    def slow_before(event: gnomon.RunEvent) -> None:
        before_calls.hit(event)
        before_gate.wait()

    def slow_after(event: gnomon.RunEvent) -> None:
        after_calls.hit(event)
        after_gate.wait()

    s.add_job(task, gnomon.every(1), kwargs={"gate": task_gate})
    s.add_job(lambda: None, gnomon.every(1), before_run=slow_before)
    s.add_job(lambda: None, gnomon.every(1), after_run=slow_after)
    s.start()
    clock.advance(SECOND)
    task.started.wait_for(1)
    before_calls.wait_for(1)
    after_calls.wait_for(1)

    with background(s.shutdown, name="shutdown-caller") as done:
        assert task.contexts[0].cancelled.wait(WAIT), "shutdown must signal running tasks"
        assert done.count == 0, "shutdown must wait for the runs in flight"
        for gate in (task_gate, before_gate, after_gate):
            gate.open()
        done.wait_for(1)
    assert done.values == [("ok", None)]
    assert task.cancelled_at_end.values == [True]
    assert s.running is False
    with pytest.raises(gnomon.SchedulerShutDown):
        s.add_job(lambda: None, gnomon.every(1))


def test_run_now_racing_shutdown_either_runs_or_raises_scheduler_shut_down(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler()
    job = s.add_job(lambda: None, gnomon.every(60))
    s.start()
    outcomes = Tally()
    stop = threading.Event()

    def hammer(wait: bool) -> None:
        while not stop.is_set():
            try:
                result = job.run_now(wait=wait)
            except gnomon.SchedulerShutDown:
                outcomes.hit("shut down")
                return
            outcomes.hit(type(result).__name__)

    threads = [
        threading.Thread(target=hammer, args=(i % 2 == 0,), name=f"run-now-{i}", daemon=True)
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    outcomes.wait_for(20)
    s.shutdown()
    for thread in threads:
        thread.join(WAIT)
    stop.set()  # frees any thread still looping, so a failure here cannot hang the run

    assert not any(thread.is_alive() for thread in threads)
    assert set(outcomes.values) <= {"shut down", "RunEvent", "NoneType"}
    assert outcomes.values.count("shut down") == 4


@dataclass(frozen=True, slots=True)
class StuckRule(Rule):
    """A broken custom rule whose next time never moves past a fixed instant."""

    instant: datetime
    timezone: Any = None

    def next_after(self, moment: datetime) -> datetime | None:
        return self.instant

    def describe(self) -> str:
        return f"always at {self.instant.isoformat()}"


@dataclass(frozen=True, slots=True)
class EchoRule(Rule):
    """A broken custom rule that returns the moment it was given (not strictly after)."""

    timezone: Any = None

    def next_after(self, moment: datetime) -> datetime | None:
        return moment

    def describe(self) -> str:
        return "at the moment it is asked"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "rule", [StuckRule(T0 + SECOND), EchoRule()], ids=["fixed-instant", "echo-moment"]
)
def test_a_rule_whose_next_time_does_not_advance_removes_its_job_instead_of_spinning(
    make_scheduler: SchedulerFactory, clock: FakeClock, errors: ErrorWatch, rule: Rule
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    errors.allow_log("stuck-rule-job")
    runs, bystander_runs = Tally(), Tally()
    stuck = s.add_job(runs.hit, rule, name="stuck-rule-job")
    s.add_job(bystander_runs.hit, gnomon.every(1))
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)
    clock.advance(3 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert runs.count <= 1, "a time that does not advance must never run twice"
    assert stuck.id not in [j.id for j in s.jobs()]
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [stuck.id]
    assert bystander_runs.count == 4


def test_queued_runs_beyond_max_runs_never_start(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    task, gate = blocking_job(), gates()
    scheduler.add_job(
        task, gnomon.every(1), kwargs={"gate": gate}, max_runs=2, singleton=gnomon.LimitMode.WAIT
    )
    scheduler.start()
    clock.advance(5 * SECOND)
    task.started.wait_for(1)
    gate.open()
    scheduler.wait_idle(timeout=WAIT)

    assert task.started.count == 2
    assert scheduler.jobs() == []
    assert scheduler.jobs_waiting == 0


def test_a_run_queued_behind_the_limit_never_starts_once_its_job_is_removed(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler(max_concurrent=1, limit_mode=gnomon.LimitMode.WAIT)
    first, second, gate = blocking_job(), blocking_job(), gates()
    s.add_job(first, gnomon.every(60), kwargs={"gate": gate})
    queued = s.add_job(second, gnomon.every(60), kwargs={"gate": gate})
    s.start()
    clock.advance(60 * SECOND)
    first.started.wait_for(1)
    assert s.jobs_waiting == 1

    s.remove_job(queued.id)
    assert s.jobs_waiting == 0
    gate.open()
    s.wait_idle(timeout=WAIT)
    assert second.started.count == 0


def test_stop_jobs_drops_queued_runs_and_reports_them(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    task, gate = blocking_job(), gates()
    s.add_job(task, gnomon.every(1), kwargs={"gate": gate}, singleton=gnomon.LimitMode.WAIT)
    s.start()
    clock.advance(3 * SECOND)
    task.started.wait_for(1)
    s.stop_jobs()
    gate.open()
    s.wait_idle(timeout=WAIT)

    assert task.started.count == 1
    assert s.jobs_waiting == 0
    dropped = monitor.skips(gnomon.Outcome.SKIPPED_STOPPING)
    assert [e.scheduled_at for e in dropped] == [T0 + 2 * SECOND, T0 + 3 * SECOND]


def test_a_before_run_listener_that_removes_another_job_stops_that_job(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    victim_runs = Tally()
    victim = scheduler.add_job(victim_runs.hit, gnomon.every(1), start_at=T0 + 2 * SECOND)

    def remove_victim(event: gnomon.RunEvent) -> None:
        scheduler.remove_job(victim.id)

    scheduler.add_job(lambda: None, gnomon.once(T0 + SECOND), before_run=remove_victim)
    scheduler.start()
    for _ in range(5):
        clock.advance(SECOND)
        scheduler.wait_idle(timeout=WAIT)
    assert victim_runs.count == 0
    assert scheduler.jobs() == []


def test_listeners_may_add_jobs_while_the_scheduler_dispatches(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    children = Tally()

    def spawn(event: gnomon.RunEvent) -> None:
        scheduler.add_job(children.hit, gnomon.once(), name=f"child of {event.scheduled_at}")

    scheduler.add_job(lambda: None, gnomon.every(1), after_run=spawn, max_runs=3)
    scheduler.start()
    for _ in range(5):
        clock.advance(SECOND)
        scheduler.wait_idle(timeout=WAIT)
    assert children.count == 3
    assert scheduler.jobs() == []


def test_shutdown_from_an_after_run_listener_begins_shutdown_without_hanging(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    returned = Tally()

    def shut_down(event: gnomon.RunEvent) -> None:
        scheduler.shutdown()
        returned.hit()

    scheduler.add_job(lambda: None, gnomon.every(1), after_run=shut_down)
    scheduler.start()
    clock.advance(SECOND)
    returned.wait_for(1)
    wait_until(lambda: not scheduler.running, "the scheduler shuts down")
    with pytest.raises(gnomon.SchedulerShutDown):
        scheduler.add_job(lambda: None, gnomon.every(1))


def test_wait_idle_from_a_listener_or_a_run_hook_raises_instead_of_hanging(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    raised = Tally()

    class WaitingMonitor(RecordingMonitor):
        def run_finished(self, event: gnomon.RunEvent) -> None:
            wait_inside("monitor")

    s = make_scheduler(monitor=WaitingMonitor())

    def wait_inside(where: str) -> None:
        try:
            s.wait_idle(timeout=WAIT)
        except RuntimeError:
            raised.hit(where)

    s.add_job(lambda: None, gnomon.every(1), after_run=lambda event: wait_inside("listener"))
    s.start()
    clock.advance(SECOND)
    raised.wait_for(2)
    s.wait_idle(timeout=WAIT)
    assert sorted(raised.values) == ["listener", "monitor"]


def test_remove_by_tags_without_tags_removes_nothing(scheduler: gnomon.Scheduler) -> None:
    scheduler.add_job(lambda: None, gnomon.every(1), tags=("t",))
    assert scheduler.remove_by_tags() == 0
    assert len(scheduler.jobs()) == 1


def test_updated_tags_decide_what_remove_by_tags_removes(scheduler: gnomon.Scheduler) -> None:
    job = scheduler.add_job(lambda: None, gnomon.every(1), tags=("old",))
    scheduler.update_job(job.id, tags=("new",))
    assert scheduler.remove_by_tags("old") == 0
    assert job.tags == frozenset({"new"})
    assert scheduler.remove_by_tags("new") == 1


def test_a_jittered_run_waiting_to_start_never_starts_once_its_job_is_removed(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(60), jitter=10)
    scheduler.start()
    clock.advance(60 * SECOND)
    scheduler.remove_job(job.id)
    clock.advance(10 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 0


def test_a_jittered_run_waiting_to_start_never_starts_once_jobs_are_stopped(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    scheduler.add_job(runs.hit, gnomon.every(60), jitter=10)
    scheduler.start()
    clock.advance(60 * SECOND)
    scheduler.stop_jobs()
    clock.advance(10 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 0


class GatedLocker(SharedLocker):
    """A shared locker whose claims wait on a gate: a slow lock store."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    async def acquire(
        self,
        key: str,
        ttl: timedelta,
        *,
        recovery: gnomon.Recovery = gnomon.Recovery.AT_MOST_ONCE,
    ) -> gnomon.Lease:
        lease = await super().acquire(key, ttl, recovery=recovery)
        await asyncio.to_thread(self.gate.wait)
        return lease


def test_a_run_waiting_for_its_lock_never_starts_once_its_job_is_removed(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    gate = gates()
    locker = GatedLocker(gate)
    s = make_scheduler(locker=locker)
    runs = Tally()
    job = s.add_job(runs.hit, gnomon.every(1), name="slow-lock")
    s.start()
    clock.advance(SECOND)
    locker.attempts.wait_for(1)
    s.remove_job(job.id)
    gate.open()
    s.wait_idle(timeout=WAIT)
    assert runs.count == 0


def race(threads: int, action: Callable[[int], object]) -> list[tuple[str, object]]:
    """Run ``action(i)`` on ``threads`` threads released together; collect what each got."""
    barrier = threading.Barrier(threads)
    results: list[tuple[str, object]] = []
    lock = threading.Lock()

    def contender(i: int) -> None:
        barrier.wait(WAIT)
        try:
            outcome: tuple[str, object] = ("ok", action(i))
        except Exception as exc:
            outcome = ("raised", exc)
        with lock:
            results.append(outcome)

    workers = [threading.Thread(target=contender, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
    assert not any(worker.is_alive() for worker in workers)
    return results


def test_removing_one_job_from_many_threads_at_once_succeeds_exactly_once(
    make_scheduler: SchedulerFactory,
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    for _ in range(20):
        job_id = s.add_job(lambda: None, gnomon.every(1)).id
        results = race(8, lambda _: s.remove_job(job_id))  # noqa: B023 - used at once
        assert sorted(kind for kind, _ in results) == ["ok"] + ["raised"] * 7
        assert all(isinstance(v, gnomon.JobNotFound) for k, v in results if k == "raised")
    monitor.unregistered.wait_for(20)
    assert len(set(monitor.unregistered.values)) == monitor.unregistered.count == 20


def test_remove_by_tags_from_many_threads_counts_each_job_once(
    scheduler: gnomon.Scheduler,
) -> None:
    for _ in range(200):
        scheduler.add_job(lambda: None, gnomon.every(1), tags=("doomed",))
    scheduler.add_job(lambda: None, gnomon.every(1), tags=("kept",))
    results = race(8, lambda _: scheduler.remove_by_tags("doomed"))
    counts = [count for kind, count in results if kind == "ok" and isinstance(count, int)]
    assert len(counts) == 8
    assert sum(counts) == 200
    assert [j.tags for j in scheduler.jobs()] == [frozenset({"kept"})]


def test_adding_one_id_from_many_threads_at_once_registers_it_exactly_once(
    scheduler: gnomon.Scheduler,
) -> None:
    chosen = uuid.uuid4()
    results = race(8, lambda i: scheduler.add_job(lambda: None, gnomon.every(1), id=chosen))
    assert sorted(kind for kind, _ in results) == ["ok"] + ["raised"] * 7
    assert all(isinstance(v, gnomon.InvalidJob) for k, v in results if k == "raised")
    assert [j.id for j in scheduler.jobs()] == [chosen]


def test_max_runs_holds_against_run_now_from_many_threads(
    scheduler: gnomon.Scheduler,
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(3600), max_runs=5)
    scheduler.start()
    results = race(8, lambda _: [job.run_now() for _ in range(5)])
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 5
    assert all(isinstance(v, gnomon.JobNotFound) for kind, v in results if kind == "raised"), (
        results
    )
    assert scheduler.jobs() == []


def test_a_singleton_never_overlaps_itself_under_run_now_from_many_threads(
    scheduler: gnomon.Scheduler,
) -> None:
    lock, running, overlaps, runs = threading.Lock(), [0], Tally(), Tally()

    def guarded() -> None:
        with lock:
            running[0] += 1
            if running[0] > 1:
                overlaps.hit()
        runs.hit()
        time.sleep(0.001)  # a run that takes a little real time
        with lock:
            running[0] -= 1

    job = scheduler.add_job(guarded, gnomon.every(3600), singleton=gnomon.LimitMode.RESCHEDULE)
    scheduler.start()
    race(8, lambda _: [job.run_now() for _ in range(20)])
    scheduler.wait_idle(timeout=WAIT)
    assert overlaps.count == 0
    assert runs.count >= 1
