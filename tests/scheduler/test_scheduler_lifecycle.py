"""Lifecycle: start, stop_jobs, shutdown, context managers, run_forever; gocron v2 ports."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from scheduler_support import (
    SECOND,
    T0,
    UTC_ZONE,
    WAIT,
    Boom,
    ErrorWatch,
    Gates,
    RecordingMonitor,
    SchedulerFactory,
    Tally,
    background,
    read,
    run_async,
    seconds,
    wait_until,
)

import gnomon
from gnomon.testing import FakeClock, MemoryStore


def test_a_cron_job_and_an_interval_job_each_run_once_per_second_and_never_after_shutdown(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    cron_runs, interval_runs = Tally(), Tally()
    scheduler.add_job(cron_runs.hit, gnomon.cron("* * * * * *", seconds=True))
    scheduler.add_job(interval_runs.hit, gnomon.every(1))
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert (cron_runs.count, interval_runs.count) == (1, 1)

    scheduler.shutdown()
    clock.advance(5 * SECOND)
    assert (cron_runs.count, interval_runs.count) == (1, 1)


def test_jobs_run_on_the_real_clock(make_scheduler: SchedulerFactory) -> None:
    s = make_scheduler(clock=None)
    runs = Tally()
    s.add_job(runs.hit, gnomon.every("20ms"))
    s.start()
    runs.wait_for(3)


@pytest.mark.parametrize(
    ("job_options", "expected_starts"),
    [
        ({}, 3),
        ({"stop_at": T0 + seconds(1.1)}, 2),
        ({"singleton": gnomon.LimitMode.WAIT}, 3),
    ],
    ids=["overlapping", "stop-at", "singleton-wait"],
)
def test_long_running_jobs_overlap_unless_limited(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    gates: Gates,
    job_options: dict[str, object],
    expected_starts: int,
) -> None:
    """A 500 ms interval with runs that outlast it, for 1.6 s (gocron LongRunningJobs)."""
    s = make_scheduler(max_workers=4)
    gate, starts = gates(), Tally()

    def long_task() -> None:
        starts.hit()
        gate.wait()

    s.add_job(long_task, gnomon.every("500ms"), **job_options)
    s.start()
    clock.advance(seconds(1.6))
    if job_options.get("singleton") is gnomon.LimitMode.WAIT:
        starts.wait_for(1)
        wait_until(lambda: s.jobs_waiting == 2, "two ticks queued behind the running one")
        assert starts.count == 1
    else:
        starts.wait_for(expected_starts)
    gate.open()
    s.wait_idle(timeout=WAIT)
    assert starts.count == expected_starts


def test_updating_the_interval_after_the_first_run_applies_from_then(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every("500ms"))
    scheduler.start()
    clock.advance(seconds(0.5))
    scheduler.wait_idle(timeout=WAIT)
    scheduler.update_job(job.id, rule=gnomon.every(1))
    assert job.next_run == T0 + seconds(1.5)
    clock.advance(seconds(0.9))
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 1
    clock.advance(seconds(0.1))
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 2


@pytest.mark.parametrize("singleton", [None, gnomon.LimitMode.RESCHEDULE], ids=["plain", "single"])
def test_shutdown_reports_a_task_that_ignores_cancellation_past_the_stop_timeout(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    gates: Gates,
    singleton: gnomon.LimitMode | None,
) -> None:
    s = make_scheduler(stop_timeout=0.1)
    gate, starts = gates(), Tally()

    def stubborn() -> None:
        starts.hit()
        gate.wait()

    s.add_job(stubborn, gnomon.every(1), name="stubborn", singleton=singleton)
    s.start()
    clock.advance(SECOND)
    starts.wait_for(1)

    with pytest.raises(gnomon.ShutdownTimedOut) as raised:
        s.shutdown()
    assert len(raised.value.unfinished) == 1
    assert "stubborn" in raised.value.unfinished[0]
    gate.open()


def test_stop_jobs_signals_a_cooperative_task_and_returns_without_error(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    starts, saw_cancel = Tally(), Tally()

    def cooperative(ctx: gnomon.JobContext) -> None:
        starts.hit()
        saw_cancel.hit(ctx.cancelled.wait(WAIT))

    job = scheduler.add_job(cooperative, gnomon.every(1))
    scheduler.start()
    clock.advance(SECOND)
    starts.wait_for(1)
    scheduler.stop_jobs()
    saw_cancel.wait_for(1)
    assert saw_cancel.values == [True]
    assert job.next_run is None, "a paused scheduler has no next run"


def test_stop_jobs_then_start_resumes_without_replaying_missed_ticks(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    job = scheduler.add_job(runs.hit, gnomon.every(1))
    scheduler.start()
    clock.advance(2 * SECOND)
    scheduler.wait_idle(timeout=WAIT)
    scheduler.stop_jobs()
    clock.advance(10 * SECOND)
    assert runs.count == 2, "a stopped scheduler runs nothing"
    scheduler.start()
    assert job.next_run == T0 + 13 * SECOND
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 3
    scheduler.shutdown()


def test_lifecycle_calls_are_idempotent_and_shutdown_is_final(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = scheduler.add_job(lambda: None, gnomon.every(1))
    scheduler.start()
    scheduler.stop_jobs()
    scheduler.stop_jobs()
    scheduler.start()
    scheduler.start()
    assert read(scheduler.running) is True
    scheduler.shutdown()
    scheduler.shutdown()

    assert read(scheduler.running) is False
    with pytest.raises(gnomon.SchedulerShutDown):
        scheduler.add_job(lambda: None, gnomon.every(1))
    with pytest.raises(gnomon.SchedulerShutDown):
        job.run_now()
    with pytest.raises(gnomon.SchedulerShutDown):
        scheduler.update_job(job.id, name="renamed")


def test_removing_jobs_after_shutdown_raises_scheduler_shut_down(
    scheduler: gnomon.Scheduler,
) -> None:
    job = scheduler.add_job(lambda: None, gnomon.every(1), tags=("any",))
    scheduler.start()
    scheduler.shutdown()
    with pytest.raises(gnomon.SchedulerShutDown):
        scheduler.remove_job(job.id)
    with pytest.raises(gnomon.SchedulerShutDown):
        scheduler.remove_by_tags("any")


def test_starting_three_times_is_the_same_as_starting_once(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()
    scheduler.add_job(runs.hit, gnomon.every("100ms"))
    for _ in range(3):
        scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 10


def test_many_jobs_started_immediately_all_run_on_every_tick(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler()
    runs = Tally()
    for _ in range(300):
        s.add_job(runs.hit, gnomon.every("100ms"), start_immediately=True)
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)
    assert runs.count == 300 * 11


def test_the_context_manager_starts_and_shuts_down(clock: FakeClock) -> None:
    runs = Tally()
    with gnomon.Scheduler(clock=clock, timezone=UTC_ZONE) as s:
        assert read(s.running) is True
        s.add_job(runs.hit, gnomon.every(1))
        clock.advance(SECOND)
        s.wait_idle(timeout=WAIT)
    assert read(s.running) is False
    assert runs.count == 1
    with pytest.raises(gnomon.SchedulerShutDown):
        s.add_job(runs.hit, gnomon.every(1))


def test_the_context_manager_never_masks_the_exception_in_flight(clock: FakeClock) -> None:
    used: list[gnomon.Scheduler] = []

    def fail_inside_the_block() -> None:
        with gnomon.Scheduler(clock=clock, timezone=UTC_ZONE) as s:
            used.append(s)
            s.add_job(lambda: None, gnomon.every(1))
            raise Boom("from the with-block")

    with pytest.raises(Boom, match="from the with-block"):
        fail_inside_the_block()
    assert used[0].running is False


def test_the_async_context_manager_starts_and_shuts_down(errors: ErrorWatch) -> None:
    clock, runs = FakeClock(T0), Tally()

    async def scenario() -> None:
        async def task() -> None:
            runs.hit()

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            assert read(s.running) is True
            await s.add_job(task, gnomon.every(1))
            clock.advance(2 * SECOND)
            await s.wait_idle(timeout=WAIT)
        assert read(s.running) is False
        with pytest.raises(gnomon.SchedulerShutDown):
            await s.add_job(task, gnomon.every(1))

    run_async(errors, scenario)
    assert runs.count == 2


def test_run_forever_on_a_worker_thread_returns_when_another_thread_shuts_down(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s = make_scheduler()
    runs = Tally()
    s.add_job(runs.hit, gnomon.every(1))
    with background(s.run_forever, name="run-forever") as done:
        wait_until(lambda: s.running, "run_forever starts the scheduler")
        clock.advance(SECOND)
        runs.wait_for(1)
        assert done.count == 0, "run_forever blocks while the scheduler runs"
        s.shutdown()
        done.wait_for(1)
    assert done.values == [("ok", None)]


RUN_FOREVER_UNTIL_SIGTERM = textwrap.dedent(
    """
    import os, signal, threading
    import gnomon

    s = gnomon.Scheduler()
    ran = threading.Event()
    s.add_job(ran.set, gnomon.every("10ms"))

    def terminate_after_first_run():
        ran.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_after_first_run, daemon=True).start()
    s.run_forever()
    print("returned", s.running)
    """
)


def test_run_forever_on_the_main_thread_returns_on_sigterm() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", RUN_FOREVER_UNTIL_SIGTERM],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "returned False"


def test_the_monitor_sees_one_start_and_one_stop_per_cycle(
    make_scheduler: SchedulerFactory,
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    s.start()
    monitor.started.wait_for(1)
    assert monitor.stopped.count == 0
    s.stop_jobs()
    monitor.stopped.wait_for(1)
    s.start()
    monitor.started.wait_for(2)
    s.shutdown()
    monitor.stopped.wait_for(2)
    assert (monitor.started.count, monitor.stopped.count) == (2, 2)


def test_shutting_down_a_scheduler_that_never_started_calls_no_monitor_hook(
    make_scheduler: SchedulerFactory,
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)
    s.shutdown()
    assert (monitor.started.count, monitor.stopped.count) == (0, 0)


def test_the_monitor_follows_jobs_through_registration_runs_and_removal(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor)

    def fails() -> None:
        raise Boom("task failed on purpose")

    good = s.add_job(lambda: "fine", gnomon.every(1))
    bad = s.add_job(fails, gnomon.every(1))
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)
    s.remove_job(good.id)

    monitor.unregistered.wait_for(1)
    assert sorted(map(str, monitor.registered.values)) == sorted([str(good.id), str(bad.id)])
    assert monitor.unregistered.values == [good.id]
    assert {e.job_id for e in monitor.run_started_events.values} == {good.id, bad.id}
    outcomes = {e.job_id: e for e in monitor.finished()}
    assert outcomes[good.id].outcome is gnomon.Outcome.SUCCESS
    assert outcomes[bad.id].outcome is gnomon.Outcome.FAILED
    assert str(outcomes[bad.id].exception) == "task failed on purpose"


def test_public_calls_from_many_threads_during_start_and_stop_neither_raise_nor_hang(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = scheduler.add_job(lambda: None, gnomon.every(1))
    failures = Tally()
    stop = threading.Event()

    def read_and_poke() -> None:
        while not stop.is_set():
            try:
                scheduler.jobs()
                job.next_runs(3)
                _ = (job.next_run, job.last_run, job.is_running, scheduler.jobs_waiting)
                job.run_now()
            except Exception as exc:
                failures.hit(exc)

    threads = [threading.Thread(target=read_and_poke, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        scheduler.start()
        clock.advance(SECOND)
        scheduler.stop_jobs()
    stop.set()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert failures.values == []


def test_the_job_decorator_registers_at_once_and_returns_the_function_unchanged(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    runs = Tally()

    @scheduler.job(gnomon.every(1), name="decorated", tags=("d",))
    def decorated() -> str:
        runs.hit()
        return "called"

    assert decorated() == "called"
    [job] = scheduler.jobs()
    assert (job.name, job.tags) == ("decorated", frozenset({"d"}))
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert runs.count == 2


def test_the_job_decorator_validates_at_once(scheduler: gnomon.Scheduler) -> None:
    with pytest.raises(gnomon.InvalidJobArguments):

        @scheduler.job(gnomon.every(1), args=(1, 2))
        def takes_nothing() -> None:
            """Cannot take two arguments."""


def test_the_default_timezone_is_the_local_zone_as_a_zoneinfo(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    monkeypatch.setenv("TZ", "Europe/Riga")
    s = gnomon.Scheduler(clock=clock)
    try:
        job = s.add_job(lambda: None, gnomon.daily("10:00"))
        s.start()
        first = job.next_run
        assert first is not None
        assert isinstance(first.tzinfo, ZoneInfo)
        assert first.tzinfo.key == "Europe/Riga"
        assert first == datetime(2026, 1, 6, 10, 0, tzinfo=ZoneInfo("Europe/Riga"))
    finally:
        s.shutdown()


def test_every_thread_a_scheduler_started_is_gone_after_shutdown() -> None:
    baseline = {t.ident for t in threading.enumerate()}
    s = gnomon.Scheduler(timezone=UTC_ZONE, max_workers=4)
    sync_runs, async_runs = Tally(), Tally()

    async def async_task() -> None:
        async_runs.hit()

    s.add_job(sync_runs.hit, gnomon.every("10ms"))
    s.add_job(async_task, gnomon.every("10ms"))
    s.start()
    sync_runs.wait_for(5)
    async_runs.wait_for(5)
    s.shutdown()

    wait_until(
        lambda: {t.ident for t in threading.enumerate()} <= baseline,
        "the scheduler's threads end after shutdown",
    )


def test_rapid_start_stop_cycles_on_the_real_clock_leave_no_threads_behind() -> None:
    baseline = {t.ident for t in threading.enumerate()}
    s = gnomon.Scheduler(timezone=UTC_ZONE, max_workers=4)
    runs = Tally()
    s.add_job(runs.hit, gnomon.every("1ms"), singleton=gnomon.LimitMode.RESCHEDULE)
    for _ in range(50):
        s.start()
        s.stop_jobs()
    s.start()
    runs.wait_for(runs.count + 3)
    s.shutdown()
    wait_until(
        lambda: {t.ident for t in threading.enumerate()} <= baseline,
        "the scheduler's threads end after shutdown",
    )


def test_stop_and_start_with_a_running_singleton_job_then_shutdown_cleanly(
    scheduler: gnomon.Scheduler, clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    def long_task(ctx: gnomon.JobContext) -> None:
        started.hit()
        gate.wait()

    scheduler.add_job(long_task, gnomon.every(1), singleton=gnomon.LimitMode.RESCHEDULE)
    scheduler.start()
    clock.advance(SECOND)
    started.wait_for(1)
    scheduler.stop_jobs()
    scheduler.start()
    gate.open()
    scheduler.shutdown()
    assert started.count == 1


def test_the_context_manager_keeps_the_exception_in_flight_even_when_shutdown_times_out(
    clock: FakeClock, gates: Gates
) -> None:
    gate, started = gates(), Tally()

    def stubborn() -> None:
        started.hit()
        gate.wait()

    def fail_while_a_run_is_stuck() -> None:
        with gnomon.Scheduler(clock=clock, timezone=UTC_ZONE, stop_timeout=0.05) as s:
            s.add_job(stubborn, gnomon.every(1))
            clock.advance(SECOND)
            started.wait_for(1)
            raise Boom("the real problem")

    with pytest.raises(Boom, match="the real problem"):
        fail_while_a_run_is_stuck()


def test_shutdown_timeout_overrides_the_stop_timeout(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    s = make_scheduler(stop_timeout=WAIT * 10)
    gate, started = gates(), Tally()

    def stubborn() -> None:
        started.hit()
        gate.wait()

    s.add_job(stubborn, gnomon.every(1), name="stubborn")
    s.start()
    clock.advance(SECOND)
    started.wait_for(1)
    begun = time.monotonic()
    with pytest.raises(gnomon.ShutdownTimedOut):
        s.shutdown(timeout=0.1)
    assert time.monotonic() - begun < WAIT


USE_AFTER_FORK = textwrap.dedent(
    """
    import os
    import gnomon

    s = gnomon.Scheduler()
    s.add_job(lambda: None, gnomon.every(60))
    s.start()
    pid = os.fork()
    if pid == 0:
        try:
            s.add_job(lambda: None, gnomon.every(60))
        except gnomon.SchedulerForked as exc:
            os._exit(0 if "fork" in str(exc) else 3)
        except BaseException:
            os._exit(2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    s.shutdown()
    print(os.waitstatus_to_exitcode(status))
    """
)


def test_a_scheduler_used_in_a_forked_child_raises_a_clear_error() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", USE_AFTER_FORK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "0", "the child got SchedulerForked naming the fork"


STUCK_RUN_AT_EXIT = textwrap.dedent(
    """
    import sys, threading
    import gnomon

    forever, started = threading.Event(), threading.Event()

    def stuck():
        started.set()
        forever.wait()

    s = gnomon.Scheduler()
    s.add_job(stuck, gnomon.every("10ms"), timeout="50ms", max_runs=1)
    s.start()
    assert started.wait(10)
    if sys.argv[1] == "shutdown":
        try:
            s.shutdown(timeout=0.1)
        except gnomon.ShutdownTimedOut:
            print("timed out")
    print("leaving")
    """
)


@pytest.mark.parametrize("ending", ["shutdown", "no-shutdown"])
def test_a_sync_run_that_never_returns_does_not_block_interpreter_exit(ending: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", STUCK_RUN_AT_EXIT, ending],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    expected = ["timed out", "leaving"] if ending == "shutdown" else ["leaving"]
    assert finished.stdout.split("\n")[:-1] == expected


def _after_on_another_thread(
    action: Callable[[], object], step: Callable[..., None]
) -> Callable[..., None]:
    """``step`` wrapped so that ``action`` runs to its end on another thread first: a
    race between two threads made to land at one point, every time."""

    def racing(*args: object) -> None:
        other = threading.Thread(target=action)
        other.start()
        other.join(WAIT)
        step(*args)

    return racing


def test_a_start_racing_a_stop_in_progress_leaves_the_scheduler_firing() -> None:
    # start() lands between stop_jobs() stopping the engine and stopping its timer: the
    # start came last, so the scheduler must be started and its timer running.
    s = gnomon.Scheduler(timezone=UTC_ZONE)
    runs = Tally()
    s.add_job(runs.hit, gnomon.every("5ms"))
    s.start()
    runs.wait_for(1)
    stop_timer = s._stop_timer
    s._stop_timer = _after_on_another_thread(s.start, stop_timer)  # type: ignore[method-assign]
    try:
        s.stop_jobs()
        s._stop_timer = stop_timer  # type: ignore[method-assign]
        assert s.running
        runs.wait_for(runs.count + 3)
    finally:
        s.shutdown()


class _LifecycleMonitor(gnomon.Monitor):
    """Records the scheduler's starts and stops in the order the monitor hears them."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def scheduler_started(self) -> None:
        self.heard.append("started")

    def scheduler_stopped(self) -> None:
        self.heard.append("stopped")


def test_a_stop_racing_a_start_in_progress_leaves_no_timer_running() -> None:
    # stop_jobs() lands between start() starting the engine and starting its timer: the
    # stop came last, so the scheduler must be stopped with no timer loop leading, and
    # the monitor must hear the start and then the stop, each once.
    monitor = _LifecycleMonitor()
    s = gnomon.Scheduler(timezone=UTC_ZONE, monitor=monitor)
    runs = Tally()
    s.add_job(runs.hit, gnomon.every("5ms"))
    start_timer = s._start_timer
    s._start_timer = _after_on_another_thread(s.stop_jobs, start_timer)  # type: ignore[method-assign]
    try:
        s.start()
        s._start_timer = start_timer  # type: ignore[method-assign]
        assert not s.running
        assert s._timer_loops == 0
        assert monitor.heard == ["started", "stopped"]
        s.start()
        runs.wait_for(3)
        assert s._timer_loops == 1
        assert monitor.heard == ["started", "stopped", "started"]
    finally:
        s.shutdown()
    assert monitor.heard == ["started", "stopped", "started", "stopped"]


def test_a_monitor_that_stops_the_scheduler_as_it_starts_hears_the_start_first() -> None:
    heard: list[str] = []

    class Stopper(gnomon.Monitor):
        def scheduler_started(self) -> None:
            heard.append("started")
            s.stop_jobs()
            heard.append("stop_jobs returned")

        def scheduler_stopped(self) -> None:
            heard.append("stopped")

    s = gnomon.Scheduler(timezone=UTC_ZONE, monitor=Stopper())
    try:
        s.start()
        assert not s.running
        assert heard == ["started", "stopped", "stop_jobs returned"]
    finally:
        s.shutdown()
    assert heard == ["started", "stopped", "stop_jobs returned"]


def test_a_start_racing_a_stop_on_a_fake_clock_leaves_the_clock_driving_the_jobs() -> None:
    # The start lands after the stop looked at the engine and before it let go of the
    # fake clock: the start came last, so advancing the clock must still run the job.
    clock = FakeClock(T0)
    s = gnomon.Scheduler(clock=clock, timezone=UTC_ZONE)
    runs = Tally()
    s.add_job(runs.hit, gnomon.every(60))
    s.start()
    detach = clock.detach
    clock.detach = _after_on_another_thread(s.start, detach)  # type: ignore[method-assign]
    try:
        s.stop_jobs()
    finally:
        clock.detach = detach  # type: ignore[method-assign]
    try:
        assert s.running
        clock.advance(600 * SECOND)
        s.wait_idle(timeout=WAIT)
        assert runs.count == 10
    finally:
        s.shutdown()


def test_a_shutdown_racing_a_start_leaves_no_store_follower_behind() -> None:
    # shutdown() completes between start() starting the engine and following the store:
    # the store is closed, so nothing may go on polling it.
    s = gnomon.Scheduler(timezone=UTC_ZONE, store=MemoryStore())
    s._start_timer = _after_on_another_thread(s.shutdown, s._start_timer)  # type: ignore[method-assign]
    with contextlib.suppress(gnomon.SchedulerShutDown):
        s.start()
    assert not s.running
    assert not [t for t in threading.enumerate() if t.name == "gnomon-follower"]
