"""Listeners, the monitor, outcomes, locking and leadership; ports of gocron v2's tests."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import pytest
from scheduler_support import (
    SECOND,
    T0,
    WAIT,
    BigBoom,
    Boom,
    BrokenLocker,
    ErrorWatch,
    FixedElector,
    Gate,
    Gates,
    RecordingMonitor,
    SchedulerFactory,
    SharedLocker,
    Tally,
    seconds,
    wait_until,
)

import gnomon
from gnomon._distributed import occurrence_key
from gnomon.testing import FakeClock

Outcome = gnomon.Outcome


def test_after_run_receives_the_finished_successful_run(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    befores, afters, errors_seen = Tally(), Tally(), Tally()
    job = scheduler.add_job(
        lambda: 42,
        gnomon.every(1),
        name="answer",
        tags=("x",),
        before_run=befores.hit,
        after_run=afters.hit,
        after_error=errors_seen.hit,
    )
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)

    [before] = befores.values
    assert (before.outcome, before.finished_at, before.result) == (None, None, None)
    assert (before.job_id, before.job_name, before.tags) == (job.id, "answer", frozenset({"x"}))
    [after] = afters.values
    assert after.outcome is Outcome.SUCCESS
    assert after.result == 42
    assert after.exception is None
    assert after.scheduled_at == after.started_at == after.finished_at == T0 + SECOND
    assert after.attempt == 1
    assert errors_seen.values == []


def test_after_error_receives_the_exception_and_after_run_stays_silent(
    scheduler: gnomon.Scheduler, clock: FakeClock, errors: ErrorWatch
) -> None:
    errors.allow_log("divides_by_zero")
    afters, errors_seen = Tally(), Tally()

    def divides_by_zero() -> float:
        return 1 / 0

    scheduler.add_job(
        divides_by_zero, gnomon.every(1), after_run=afters.hit, after_error=errors_seen.hit
    )
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)

    [event] = errors_seen.values
    assert event.outcome is Outcome.FAILED
    assert isinstance(event.exception, ZeroDivisionError)
    assert "division by zero" in str(event.exception)
    assert afters.values == []


def test_a_failing_task_is_logged_at_error_with_its_traceback_and_job_name(
    scheduler: gnomon.Scheduler, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def fails() -> None:
        raise Boom("logged with traceback")

    scheduler.add_job(fails, gnomon.every(1), name="noisy-job")
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)

    records = [r for r in caplog.records if r.name.startswith("gnomon") and r.exc_info]
    assert any(isinstance(r.exc_info[1], Boom) for r in records if r.exc_info)
    assert all("noisy-job" in r.getMessage() for r in records)


def test_a_base_exception_in_a_task_is_contained_and_the_scheduler_goes_on(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    errors_seen, later_runs = Tally(), Tally()

    def escapes() -> None:
        raise BigBoom("not an Exception")

    scheduler.add_job(escapes, gnomon.every(1), after_error=errors_seen.hit)
    scheduler.add_job(later_runs.hit, gnomon.every(1))
    scheduler.start()
    clock.advance(3 * SECOND)
    scheduler.wait_idle(timeout=WAIT)

    assert [e.outcome for e in errors_seen.values] == [Outcome.FAILED] * 3
    assert all(isinstance(e.exception, BigBoom) for e in errors_seen.values)
    assert later_runs.count == 3


def test_a_raising_listener_or_monitor_hook_is_reported_and_changes_nothing(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    class RaisingMonitor(RecordingMonitor):
        def run_finished(self, event: gnomon.RunEvent) -> None:
            super().run_finished(event)
            raise Boom("monitor hook failed")

    monitor = RaisingMonitor()
    s = make_scheduler(monitor=monitor)
    runs = Tally()

    def raising_after_run(event: gnomon.RunEvent) -> None:
        raise Boom("listener failed")

    s.add_job(runs.hit, gnomon.every(1), after_run=raising_after_run)
    s.start()
    clock.advance(3 * SECOND)
    s.wait_idle(timeout=WAIT)
    assert runs.count == 3
    assert [e.outcome for e in monitor.finished()] == [Outcome.SUCCESS] * 3


def test_a_raising_before_run_skips_the_run_and_records_why(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    runs = Tally()

    def veto(event: gnomon.RunEvent) -> None:
        raise Boom("vetoed")

    job = s.add_job(runs.hit, gnomon.every(1), before_run=veto)
    s.start()
    clock.advance(2 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert runs.count == 0
    skipped = monitor.skips(Outcome.SKIPPED_BEFORE_RUN)
    assert [e.scheduled_at for e in skipped] == [T0 + SECOND, T0 + 2 * SECOND]
    assert all(isinstance(e.exception, Boom) and e.job_id == job.id for e in skipped)
    assert job.last_run is None, "a skipped run is not a run"


def test_async_listeners_and_tasks_work_on_the_thread_scheduler(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    afters = Tally()

    async def async_task() -> str:
        await asyncio.sleep(0)
        return "from a coroutine"

    def returns_awaitable() -> Awaitable[str]:
        return async_task()

    async def async_after_run(event: gnomon.RunEvent) -> None:
        afters.hit(event.result)

    scheduler.add_job(async_task, gnomon.every(1), after_run=async_after_run)
    scheduler.add_job(returns_awaitable, gnomon.every(1), after_run=async_after_run)
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert afters.values == ["from a coroutine", "from a coroutine"]


def test_a_timed_out_run_is_signalled_and_reported_on_the_fake_clock(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    started, errors_seen, saw_cancel = Tally(), Tally(), Tally()

    def cooperative(ctx: gnomon.JobContext) -> None:
        started.hit()
        saw_cancel.hit(ctx.cancelled.wait(WAIT))

    scheduler.add_job(cooperative, gnomon.every(60), timeout=5, after_error=errors_seen.hit)
    scheduler.start()
    clock.advance(60 * SECOND)
    started.wait_for(1)
    clock.advance(4 * SECOND)
    assert saw_cancel.count == 0, "the deadline has not passed on the fake clock"
    clock.advance(SECOND)
    errors_seen.wait_for(1)
    scheduler.wait_idle(timeout=WAIT)

    assert saw_cancel.values == [True]
    assert [e.outcome for e in errors_seen.values] == [Outcome.TIMED_OUT]


def test_an_async_task_is_cancelled_at_its_timeout(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    started, cancelled, errors_seen = Tally(), Tally(), Tally()

    async def sleeps_forever() -> None:
        started.hit()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.hit()
            raise

    scheduler.add_job(sleeps_forever, gnomon.every(60), timeout="2s", after_error=errors_seen.hit)
    scheduler.start()
    clock.advance(60 * SECOND)
    started.wait_for(1)
    clock.advance(2 * SECOND)
    errors_seen.wait_for(1)
    assert cancelled.count == 1
    assert [e.outcome for e in errors_seen.values] == [Outcome.TIMED_OUT]


def test_run_durations_use_the_injected_clock(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, started, afters = gates(), Tally(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    scheduler.add_job(blocks, gnomon.every(3600), after_run=afters.hit)
    scheduler.start()
    clock.advance(3600 * SECOND)
    started.wait_for(1)
    clock.advance(5 * SECOND)
    gate.open()
    scheduler.wait_idle(timeout=WAIT)

    [event] = afters.values
    assert event.started_at == T0 + 3600 * SECOND
    assert event.finished_at == T0 + 3605 * SECOND


@pytest.mark.timeout(30)
def test_jitter_delays_the_start_but_keeps_the_scheduled_time(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    afters = Tally()
    for _ in range(20):  # many random delays: some are not whole microseconds
        s.add_job(lambda: None, gnomon.every(60), jitter=10, after_run=afters.hit)
    s.start()
    clock.advance(60 * SECOND)
    assert afters.count == 0
    clock.advance(10 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert len(afters.values) == 20
    for event in afters.values:
        assert event.scheduled_at == T0 + 60 * SECOND
        assert event.started_at is not None
        assert T0 + 60 * SECOND <= event.started_at <= T0 + 70 * SECOND
    assert len(monitor.delays.values) == 20
    assert all(0 <= delay <= 10 for delay in monitor.delays.values)
    assert len(set(monitor.delays.values)) > 1, "each start draws its own delay"


def test_the_monitor_counts_every_run_and_reports_no_delay_on_time(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    s.add_job(lambda: None, gnomon.every(1))
    s.start()
    for _ in range(5):
        clock.advance(SECOND)
        s.wait_idle(timeout=WAIT)
    assert monitor.run_started_events.count == 5
    assert monitor.run_finished_events.count == 5
    assert monitor.delays.values == [0.0] * 5


def test_a_failing_locker_skips_the_run_and_calls_after_lock_error(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler(locker=BrokenLocker())
    runs, lock_errors = Tally(), Tally()
    s.add_job(runs.hit, gnomon.every(1), name="locked-out", after_lock_error=lock_errors.hit)
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)

    assert runs.count == 0
    [event] = lock_errors.values
    assert event.outcome is Outcome.SKIPPED_LOCK_ERROR
    assert isinstance(event.exception, Boom)


def three_nodes(
    make_scheduler: SchedulerFactory, **options: object
) -> tuple[list[gnomon.Scheduler], list[RecordingMonitor]]:
    monitors = [RecordingMonitor() for _ in range(3)]
    nodes = [make_scheduler(monitor=m, **options) for m in monitors]
    return nodes, monitors


def test_a_shared_locker_runs_each_occurrence_on_one_node_only(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    locker = SharedLocker()
    nodes, monitors = three_nodes(make_scheduler, locker=locker)
    runs, lock_errors = Tally(), Tally()
    for node in nodes:
        node.add_job(runs.hit, gnomon.every(1), name="report", after_lock_error=lock_errors.hit)
        node.start()
    clock.advance(SECOND)
    for node in nodes:
        node.wait_idle(timeout=WAIT)

    assert runs.count == 1
    assert [e.outcome for e in lock_errors.values] == [Outcome.SKIPPED_LOCKED] * 2
    assert set(locker.attempts.values) == {occurrence_key("report", T0 + SECOND)}
    assert sum(len(m.skips(Outcome.SKIPPED_LOCKED)) for m in monitors) == 2


def test_a_job_level_locker_takes_the_place_of_the_schedulers(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    job_locker = SharedLocker()
    nodes, _ = three_nodes(make_scheduler, locker=BrokenLocker())
    runs = Tally()
    for node in nodes:
        node.add_job(runs.hit, gnomon.every(1), name="report", locker=job_locker)
        node.start()
    clock.advance(SECOND)
    for node in nodes:
        node.wait_idle(timeout=WAIT)
    assert runs.count == 1
    assert job_locker.attempts.count == 3


def test_a_job_opted_out_of_the_locker_runs_on_every_node(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    locker = SharedLocker()
    nodes, _ = three_nodes(make_scheduler, locker=locker)
    runs = Tally()
    for node in nodes:
        node.add_job(runs.hit, gnomon.every(1), name="local-cleanup", locker=False)
        node.start()
    clock.advance(SECOND)
    for node in nodes:
        node.wait_idle(timeout=WAIT)
    assert runs.count == 3
    assert locker.attempts.count == 0


def test_only_the_leader_runs_and_the_others_report_not_leader(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    electors = [FixedElector(7), FixedElector(None), FixedElector(None)]
    monitors = [RecordingMonitor() for _ in electors]
    tokens = Tally()

    def task(ctx: gnomon.JobContext) -> None:
        tokens.hit(ctx.fencing_token)

    nodes = [make_scheduler(elector=e, monitor=m) for e, m in zip(electors, monitors, strict=True)]
    for node in nodes:
        node.add_job(task, gnomon.every(1), name="report")
        node.start()
    clock.advance(2 * SECOND)
    for node in nodes:
        node.wait_idle(timeout=WAIT)

    assert tokens.values == [7, 7]
    assert len(monitors[0].skips(Outcome.SKIPPED_NOT_LEADER)) == 0
    assert [len(m.skips(Outcome.SKIPPED_NOT_LEADER)) for m in monitors[1:]] == [2, 2]


def test_duplicate_names_are_an_invalid_job_once_a_locker_is_set(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(locker=SharedLocker())
    s.add_job(lambda: None, gnomon.every(1), name="report")
    with pytest.raises(gnomon.InvalidJob, match="report"):
        s.add_job(lambda: None, gnomon.every(1), name="report")


def test_interval_from_completion_with_a_locker_is_an_invalid_job(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(locker=SharedLocker())
    with pytest.raises(gnomon.InvalidJob, match="interval_from_completion"):
        s.add_job(lambda: None, gnomon.every(1), interval_from_completion=True)


def test_a_run_event_carries_its_occurrence_key(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    errors_seen = Tally()

    def fails() -> None:
        raise Boom("with occurrence")

    scheduler.add_job(fails, gnomon.every(1), name="keyed", after_error=errors_seen.hit)
    scheduler.start()
    clock.advance(seconds(1))
    scheduler.wait_idle(timeout=WAIT)
    [event] = errors_seen.values
    assert event.occurrence_key == occurrence_key("keyed", T0 + SECOND)


def test_normal_runs_log_below_info_and_skips_log_at_info_with_name_and_occurrence(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    gates: Gates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gnomon")
    s = make_scheduler()
    gate, started = gates(), Tally()

    def blocks() -> None:
        started.hit()
        gate.wait()

    s.add_job(lambda: None, gnomon.every(1), name="quiet-job")
    s.add_job(blocks, gnomon.every(1), name="busy-job", singleton=gnomon.LimitMode.RESCHEDULE)
    s.start()
    clock.advance(SECOND)
    started.wait_for(1)
    clock.advance(SECOND)
    gate.open()
    s.wait_idle(timeout=WAIT)

    records = [r for r in caplog.records if r.name.startswith("gnomon")]
    quiet = [r for r in records if "quiet-job" in r.getMessage()]
    assert quiet, "normal runs are logged at DEBUG"
    assert all(r.levelno < logging.INFO for r in quiet)
    [skip] = [r for r in records if "busy-job" in r.getMessage() and r.levelno == logging.INFO]
    assert getattr(skip, "occurrence", None) == occurrence_key("busy-job", T0 + 2 * SECOND)
    for record in quiet:
        assert getattr(record, "job_name", None) == "quiet-job"
        assert str(getattr(record, "occurrence", "")).startswith("quiet-job@")


class JumpingClock:
    """The real clock plus an offset a test can jump: a suspend, or a stepped wall clock."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def big_misses(monitor: RecordingMonitor) -> list[gnomon.RunEvent]:
    return [
        e
        for e in monitor.skips(Outcome.SKIPPED_MISSED)
        if isinstance(e.result, int) and e.result >= 40
    ]


def test_ticks_missed_in_a_clock_jump_are_skipped_and_reported_once_with_a_count(
    make_scheduler: SchedulerFactory,
) -> None:
    monitor, clock = RecordingMonitor(), JumpingClock()
    s = make_scheduler(clock=clock, monitor=monitor)
    runs = Tally()
    s.add_job(runs.hit, gnomon.every("200ms"), name="jumpy")
    s.start()
    runs.wait_for(1)
    clock.offset += timedelta(seconds=10)
    # A loaded machine may wake late and miss a tick or two now and then; the jump itself
    # (about fifty 200 ms ticks) must come as one report with its count.
    wait_until(lambda: bool(big_misses(monitor)), "the jump is reported")
    runs.wait_for(runs.count + 3)

    skipped = monitor.run_skipped_events.values
    assert {e.outcome for e in skipped} == {Outcome.SKIPPED_MISSED}
    [jump] = big_misses(monitor)
    assert isinstance(jump.result, int)
    assert jump.result <= 75
    assert runs.count < 20, "missed ticks are not replayed"


ASYNC_TASK_PAST_THE_STOP_TIMEOUT = textwrap.dedent(
    """
    import asyncio, threading, time
    from datetime import UTC, datetime
    import gnomon
    from gnomon.testing import FakeClock

    clock = FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    s = gnomon.Scheduler(clock=clock, timezone="UTC", stop_timeout=0.2)
    started, cancelled, outcomes = threading.Event(), threading.Event(), []

    async def ignores_stop():
        started.set()
        try:
            await asyncio.sleep(0.1)
            # Hold the loop while shutdown gives up waiting, so that everything shutdown
            # asks of the loop is queued before the loop runs again.
            time.sleep(0.5)
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    s.add_job(ignores_stop, gnomon.every(1), name="async-stubborn",
              after_error=lambda event: outcomes.append(event.outcome))
    s.start()
    clock.advance(1)
    assert started.wait(10)
    try:
        s.shutdown()
    except gnomon.ShutdownTimedOut as exc:
        assert [u.split(" @ ")[0] for u in exc.unfinished] == ["async-stubborn"]
    else:
        raise AssertionError("shutdown did not time out")
    assert cancelled.wait(2), "the task never received CancelledError"
    deadline = time.monotonic() + 2
    while not outcomes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcomes == [gnomon.Outcome.CANCELLED], outcomes
    print("ok")
    """
)


def test_an_async_task_still_running_after_the_stop_timeout_is_cancelled() -> None:
    # In a subprocess: a pending task left behind by this failure must not reach the
    # garbage collector of the test process.
    finished = subprocess.run(
        [sys.executable, "-c", ASYNC_TASK_PAST_THE_STOP_TIMEOUT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "ok"


def test_a_claimed_run_gets_the_leases_fencing_token_and_releases_it_once(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    locker = SharedLocker()
    s = make_scheduler(locker=locker)
    tokens, afters = Tally(), Tally()

    def task(ctx: gnomon.JobContext) -> None:
        tokens.hit(ctx.fencing_token)

    s.add_job(task, gnomon.every(1), name="fenced", after_run=afters.hit)
    s.start()
    clock.advance(2 * SECOND)
    s.wait_idle(timeout=WAIT)

    assert tokens.values == [100, 101]
    assert [e.fencing_token for e in afters.values] == [100, 101]
    assert sorted(locker.released.values) == sorted(locker.attempts.values)
    assert len(locker.released.values) == 2


def test_backends_are_started_and_closed_exactly_once(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    locker, elector = SharedLocker(), FixedElector(1)
    s = make_scheduler(locker=locker, elector=elector)
    s.add_job(lambda: None, gnomon.every(1), name="any")
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)
    s.shutdown()
    s.shutdown()

    assert elector.started.count == 1
    assert (elector.closed.count, locker.closed.count) == (1, 1)


def test_with_a_locker_an_interval_is_anchored_so_every_node_agrees(
    make_scheduler: SchedulerFactory,
) -> None:
    clock = FakeClock(T0 + seconds(7))
    s = make_scheduler(clock=clock, locker=SharedLocker())
    job = s.add_job(lambda: None, gnomon.every(60), name="anchored")
    s.start()
    assert job.next_run == T0 + 60 * SECOND


def nodes_starting_milliseconds_apart(
    make_scheduler: SchedulerFactory, locker: SharedLocker, rule: gnomon.Rule, **options: object
) -> Tally:
    """Three nodes whose clocks read a few milliseconds apart, as real nodes starting together."""
    runs = Tally()
    for n in range(3):
        clock = FakeClock(T0 + seconds(7 + 0.003 * n))
        node = make_scheduler(clock=clock, locker=locker)
        node.add_job(runs.hit, rule, name="boot", **options)
        node.start()
        node.wait_idle(timeout=WAIT)
    return runs


def test_an_immediate_first_run_on_nodes_starting_together_runs_once(
    make_scheduler: SchedulerFactory,
) -> None:
    locker = SharedLocker()
    runs = nodes_starting_milliseconds_apart(
        make_scheduler, locker, gnomon.every(60), start_immediately=True
    )
    assert runs.count == 1
    assert set(locker.attempts.values) == {occurrence_key("boot", T0)}


def test_an_immediate_one_time_run_on_nodes_starting_together_runs_once(
    make_scheduler: SchedulerFactory,
) -> None:
    locker = SharedLocker()
    runs = nodes_starting_milliseconds_apart(make_scheduler, locker, gnomon.once())
    assert runs.count == 1
    assert len(set(locker.attempts.values)) == 1, "once() has one fixed key"


def test_run_now_on_several_nodes_is_a_local_run_on_each(
    make_scheduler: SchedulerFactory,
) -> None:
    locker = SharedLocker()
    nodes, _ = three_nodes(make_scheduler, locker=locker)
    runs = Tally()
    jobs = [node.add_job(runs.hit, gnomon.every(60), name="manual") for node in nodes]
    for node, job in zip(nodes, jobs, strict=True):
        node.start()
        job.run_now()
    for node in nodes:
        node.wait_idle(timeout=WAIT)
    assert runs.count == 3
    assert len(set(locker.attempts.values)) == len(locker.attempts.values)


def test_renaming_a_job_onto_another_jobs_name_is_invalid_with_a_locker(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(locker=SharedLocker())
    s.add_job(lambda: None, gnomon.every(1), name="first")
    second = s.add_job(lambda: None, gnomon.every(1), name="second")
    with pytest.raises(gnomon.InvalidJob, match="first"):
        s.update_job(second.id, name="first")
    assert second.name == "second"


class IgnoresCancel:
    """A sync task that ignores cancellation until the test opens its gate."""

    def __init__(self, gate: Gate) -> None:
        self.gate, self.started = gate, Tally()

    def __call__(self) -> None:
        self.started.hit()
        self.gate.wait()


def test_a_sync_run_ignoring_its_timeout_keeps_its_slot_and_times_out_once(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    task, errors_seen, afters = IgnoresCancel(gates()), Tally(), Tally()
    s.add_job(
        task,
        gnomon.every(10),
        timeout=5,
        singleton=gnomon.LimitMode.RESCHEDULE,
        after_error=errors_seen.hit,
        after_run=afters.hit,
    )
    s.start()
    clock.advance(10 * SECOND)
    task.started.wait_for(1)
    clock.advance(10 * SECOND)
    monitor.run_skipped_events.wait_for(1)
    assert [e.outcome for e in monitor.run_skipped_events.values] == [Outcome.SKIPPED_SINGLETON]

    task.gate.open()
    s.wait_idle(timeout=WAIT)
    assert task.started.count == 1
    assert [e.outcome for e in errors_seen.values] == [Outcome.TIMED_OUT]
    assert afters.values == [], "a run that timed out is not also a success"


def test_a_sync_run_ignoring_its_timeout_is_reported_timed_out_at_its_deadline(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    task, errors_seen = IgnoresCancel(gates()), Tally()
    s.add_job(task, gnomon.every(10), timeout=5, after_error=errors_seen.hit)
    s.start()
    clock.advance(10 * SECOND)
    task.started.wait_for(1)
    clock.advance(5 * SECOND)
    errors_seen.wait_for(1, timeout=2)
    monitor.run_finished_events.wait_for(1, timeout=2)
    assert [e.outcome for e in errors_seen.values] == [Outcome.TIMED_OUT]


def test_a_wall_clock_stepped_back_never_runs_a_tick_twice(
    make_scheduler: SchedulerFactory,
) -> None:
    clock = JumpingClock()
    s = make_scheduler(clock=clock)
    ticks = Tally()

    def record(ctx: gnomon.JobContext) -> None:
        ticks.hit(ctx.scheduled_at)

    s.add_job(record, gnomon.every("100ms"))
    s.start()
    ticks.wait_for(3)
    clock.offset -= timedelta(seconds=1)
    ticks.wait_for(ticks.count + 3)
    s.stop_jobs()
    s.wait_idle(timeout=WAIT)

    seen = ticks.values
    assert len(set(seen)) == len(seen), "a scheduled instant ran twice"


def test_hooks_of_one_run_come_in_order_before_the_task_and_after_it(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    order = Tally()

    class OrderMonitor(gnomon.Monitor):
        def run_started(self, event: gnomon.RunEvent) -> None:
            order.hit("monitor.run_started")

        def run_finished(self, event: gnomon.RunEvent) -> None:
            order.hit("monitor.run_finished")

    s = make_scheduler(monitor=OrderMonitor())
    s.add_job(
        lambda: order.hit("task"),
        gnomon.every(1),
        before_run=lambda event: order.hit("before_run"),
        after_run=lambda event: order.hit("after_run"),
    )
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)

    seen = order.values
    assert seen[:3] == ["before_run", "monitor.run_started", "task"]
    assert sorted(seen[3:]) == ["after_run", "monitor.run_finished"]
