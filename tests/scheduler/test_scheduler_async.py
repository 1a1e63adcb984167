"""The asyncio face: the same contract as ``Scheduler``, with coroutine methods."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from datetime import timedelta

import pytest
from scheduler_support import (
    SECOND,
    T0,
    UTC_ZONE,
    WAIT,
    Boom,
    ErrorWatch,
    RecordingMonitor,
    SharedLocker,
    Tally,
    run_async,
)

import gnomon
from gnomon._run import Run
from gnomon.testing import FakeClock, MemoryLocker

Outcome = gnomon.Outcome


def test_the_async_scheduler_runs_async_and_sync_tasks_and_reports_their_results(
    errors: ErrorWatch,
) -> None:
    clock, afters = FakeClock(T0), Tally()

    async def scenario() -> None:
        async def coroutine_task() -> str:
            await asyncio.sleep(0)
            return "async"

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            await s.add_job(coroutine_task, gnomon.every(1), after_run=afters.hit)
            await s.add_job(lambda: "sync", gnomon.every(1), after_run=afters.hit)
            clock.advance(SECOND)
            await s.wait_idle(timeout=WAIT)

    run_async(errors, scenario)
    assert sorted(e.result for e in afters.values) == ["async", "sync"]


def test_async_job_actions_are_coroutines_with_the_same_meaning(errors: ErrorWatch) -> None:
    clock = FakeClock(T0)

    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            job = await s.add_job(lambda: 7, gnomon.every(60), tags=("a",))
            event = await job.run_now(wait=True)
            assert isinstance(event, gnomon.RunEvent)
            assert (event.outcome, event.result) == (Outcome.SUCCESS, 7)
            assert job.next_runs(2) == [T0 + 60 * SECOND, T0 + 120 * SECOND]
            await job.pause()
            assert job.paused is True
            assert job.next_run is None
            await job.resume()
            assert job.next_run == T0 + 60 * SECOND
            assert (await s.get_job(job.id)).id == job.id
            assert [j.id for j in await s.jobs(tags=["a"])] == [job.id]
            updated = await s.update_job(job.id, name="renamed")
            assert updated.name == "renamed"
            assert await s.remove_by_tags("a") == 1
            with pytest.raises(gnomon.JobNotFound):
                await job.remove()

    run_async(errors, scenario)


def test_async_wait_idle_from_inside_a_run_raises_instead_of_hanging(errors: ErrorWatch) -> None:
    clock, raised = FakeClock(T0), Tally()

    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:

            async def waits_for_itself() -> None:
                try:
                    await s.wait_idle(timeout=WAIT)
                except RuntimeError as exc:
                    raised.hit(exc)

            await s.add_job(waits_for_itself, gnomon.every(1))
            clock.advance(SECOND)
            await s.wait_idle(timeout=WAIT)

    run_async(errors, scenario)
    assert raised.count == 1


def test_async_shutdown_waits_for_runs_in_flight(errors: ErrorWatch) -> None:
    clock, finished = FakeClock(T0), Tally()
    monitor = RecordingMonitor()

    async def scenario() -> None:
        release = asyncio.Event()
        started = asyncio.Event()

        async def slow(ctx: gnomon.JobContext) -> None:
            started.set()
            await release.wait()
            finished.hit(ctx.cancelled.is_set())

        s = gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE, monitor=monitor)
        await s.start()
        await s.add_job(slow, gnomon.every(1))
        clock.advance(SECOND)
        await asyncio.wait_for(started.wait(), WAIT)
        shutting_down = asyncio.ensure_future(s.shutdown())
        await asyncio.sleep(0)
        assert not shutting_down.done(), "shutdown waits for the run in flight"
        release.set()
        await asyncio.wait_for(shutting_down, WAIT)
        with pytest.raises(gnomon.SchedulerShutDown):
            await s.add_job(slow, gnomon.every(1))

    run_async(errors, scenario)
    assert finished.values == [True], "shutdown signals the run to cancel"
    assert len(monitor.finished()) == 1


def test_async_shutdown_cancels_a_task_still_running_after_the_stop_timeout(
    errors: ErrorWatch,
) -> None:
    clock, cancelled = FakeClock(T0), Tally()

    async def scenario() -> None:
        started = asyncio.Event()

        async def ignores_stop() -> None:
            started.set()
            try:
                await asyncio.sleep(WAIT)
            except asyncio.CancelledError:
                cancelled.hit()
                raise

        s = gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE, stop_timeout=0.1)
        await s.start()
        await s.add_job(ignores_stop, gnomon.every(1), name="stubborn")
        clock.advance(SECOND)
        await asyncio.wait_for(started.wait(), WAIT)
        with pytest.raises(gnomon.ShutdownTimedOut) as raised:
            await s.shutdown()
        assert [u.split(" @ ")[0] for u in raised.value.unfinished] == ["stubborn"]

    run_async(errors, scenario)
    assert cancelled.count == 1


def test_an_async_listener_that_raises_is_contained(errors: ErrorWatch) -> None:
    clock, runs = FakeClock(T0), Tally()

    async def scenario() -> None:
        async def fails(event: gnomon.RunEvent) -> None:
            raise Boom("async listener failed")

        async def task() -> None:
            runs.hit()

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            await s.add_job(task, gnomon.every(1), after_run=fails)
            clock.advance(3 * SECOND)
            await s.wait_idle(timeout=WAIT)

    run_async(errors, scenario)
    assert runs.count == 3


def test_async_run_forever_returns_when_another_task_shuts_down(errors: ErrorWatch) -> None:
    clock, runs = FakeClock(T0), Tally()

    async def scenario() -> None:
        s = gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE)

        async def task() -> None:
            runs.hit()

        await s.add_job(task, gnomon.every(1))
        await s.start()
        forever = asyncio.ensure_future(s.run_forever())
        await asyncio.sleep(0)
        clock.advance(SECOND)
        await s.wait_idle(timeout=WAIT)
        assert not forever.done()
        await s.shutdown()
        await asyncio.wait_for(forever, WAIT)

    run_async(errors, scenario)
    assert runs.count == 1


def test_async_stop_jobs_then_start_resumes(errors: ErrorWatch) -> None:
    clock, runs = FakeClock(T0), Tally()

    async def scenario() -> None:
        async def task() -> None:
            runs.hit()

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            job = await s.add_job(task, gnomon.every(1))
            await s.stop_jobs()
            assert s.running is False
            assert job.next_run is None
            clock.advance(5 * SECOND)
            await s.wait_idle(timeout=WAIT)
            assert runs.count == 0
            await s.start()
            clock.advance(SECOND)
            await s.wait_idle(timeout=WAIT)

    run_async(errors, scenario)
    assert runs.count == 1


def test_async_removal_while_the_job_runs_signals_it_and_stops_the_schedule(
    errors: ErrorWatch,
) -> None:
    clock, starts, saw_cancel = FakeClock(T0), Tally(), Tally()

    async def scenario() -> None:
        release, started = asyncio.Event(), asyncio.Event()

        async def slow(ctx: gnomon.JobContext) -> None:
            starts.hit()
            started.set()
            await release.wait()
            saw_cancel.hit(ctx.cancelled.is_set())

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            job = await s.add_job(slow, gnomon.every(1))
            clock.advance(SECOND)
            await asyncio.wait_for(started.wait(), WAIT)
            await s.remove_job(job.id)
            assert await s.jobs() == []
            release.set()
            await s.wait_idle(timeout=WAIT)
            clock.advance(5 * SECOND)
            await s.wait_idle(timeout=WAIT)

    run_async(errors, scenario)
    assert starts.count == 1
    assert saw_cancel.values == [True]


def test_async_run_now_racing_shutdown_either_runs_or_raises_scheduler_shut_down(
    errors: ErrorWatch,
) -> None:
    clock, outcomes = FakeClock(T0), Tally()

    async def scenario() -> None:
        async def task() -> None:
            await asyncio.sleep(0)

        s = gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE)
        await s.start()
        job = await s.add_job(task, gnomon.every(60))
        enough = asyncio.Event()

        async def hammer() -> None:
            while True:
                try:
                    await job.run_now()
                except gnomon.SchedulerShutDown:
                    outcomes.hit("shut down")
                    return
                outcomes.hit("ran")
                if outcomes.count >= 20:
                    enough.set()
                await asyncio.sleep(0)

        hammers = [asyncio.ensure_future(hammer()) for _ in range(4)]
        await asyncio.wait_for(enough.wait(), WAIT)
        await s.shutdown()
        await asyncio.wait_for(asyncio.gather(*hammers), WAIT)

    run_async(errors, scenario)
    assert outcomes.values.count("shut down") == 4


def test_async_run_timeouts_follow_the_fake_clock(errors: ErrorWatch) -> None:
    clock, outcomes, cancelled = FakeClock(T0), Tally(), Tally()

    async def scenario() -> None:
        started = asyncio.Event()

        async def sleeps() -> None:
            started.set()
            try:
                await asyncio.sleep(WAIT)
            except asyncio.CancelledError:
                cancelled.hit()
                raise

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:
            await s.add_job(sleeps, gnomon.every(60), timeout="2s", after_error=outcomes.hit)
            clock.advance(60 * SECOND)
            await asyncio.wait_for(started.wait(), WAIT)
            clock.advance(SECOND)
            await asyncio.sleep(0)
            assert outcomes.count == 0, "the deadline has not passed on the fake clock"
            clock.advance(SECOND)
            await s.wait_idle(timeout=WAIT)

    run_async(errors, scenario)
    assert [e.outcome for e in outcomes.values] == [Outcome.TIMED_OUT]
    assert cancelled.count == 1


def test_async_schedulers_sharing_a_locker_run_each_occurrence_once(errors: ErrorWatch) -> None:
    clock, runs, lock_errors = FakeClock(T0), Tally(), Tally()
    locker = SharedLocker()

    async def scenario() -> None:
        async def task() -> None:
            runs.hit()

        nodes = [
            gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE, locker=locker) for _ in range(3)
        ]
        for node in nodes:
            await node.start()
            await node.add_job(
                task, gnomon.every(1), name="report", after_lock_error=lock_errors.hit
            )
        clock.advance(SECOND)
        for node in nodes:
            await node.wait_idle(timeout=WAIT)
        for node in nodes:
            await node.shutdown()

    run_async(errors, scenario)
    assert runs.count == 1
    assert [e.outcome for e in lock_errors.values] == [Outcome.SKIPPED_LOCKED] * 2
    assert locker.closed.count == 3


class _RenewalSwallowsItsCancel(gnomon.Lease):
    """A lease whose first renewal swallows a cancellation, as a store client can (on
    Python 3.11, ``asyncio.wait_for`` returns a reply that arrives with the cancel), then
    answers that the lease is gone: the run released it meanwhile."""

    def __init__(self, key: str, ttl: timedelta) -> None:
        self.key, self.token, self.attempt, self.ttl = key, 1, 1, ttl
        self.renewing = asyncio.Event()
        self.renewals = 0
        self.keeper: asyncio.Task[object] | None = None

    async def renew(self) -> None:
        self.renewals += 1
        if self.renewals > 1:
            return
        self.keeper = asyncio.current_task()
        self.renewing.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        raise gnomon.LeaseLost(f"{self.key} was released")

    async def release(self) -> None:
        """Nothing is stored."""


class _SwallowingLocker(gnomon.Locker):
    lease_ttl = timedelta(seconds=3)
    renew_interval = timedelta(seconds=1)

    def __init__(self) -> None:
        self.leases: list[_RenewalSwallowsItsCancel] = []

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: gnomon.Recovery = gnomon.Recovery.AT_MOST_ONCE
    ) -> gnomon.Lease:
        self.leases.append(_RenewalSwallowsItsCancel(key, ttl))
        return self.leases[-1]


def test_a_lease_keeper_stops_with_its_run_even_when_the_renewal_swallows_the_cancel(
    errors: ErrorWatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock, locker = FakeClock(T0), _SwallowingLocker()

    async def scenario() -> None:
        async def task() -> None:
            await locker.leases[0].renewing.wait()  # ends while the renewal is in flight

        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE, locker=locker) as s:
            await s.add_job(task, gnomon.every(60))
            clock.advance(60 * SECOND)
            await s.wait_idle(timeout=WAIT)
            [lease] = locker.leases
            assert lease.keeper is not None
            await asyncio.wait({lease.keeper}, timeout=WAIT)
            assert lease.keeper.done(), "the keeper went on renewing a finished run's lease"
            assert lease.renewals == 1

    caplog.set_level(logging.WARNING, logger="gnomon")
    run_async(errors, scenario)
    assert [r.getMessage() for r in caplog.records if "stops acting" in r.getMessage()] == []


@pytest.mark.parametrize("locked", [False, True], ids=["plain", "under-a-locker"])
def test_finished_async_runs_leave_no_reference_cycle_for_the_collector(
    errors: ErrorWatch, *, locked: bool
) -> None:
    # A cycle per run would be freed only by the garbage collector, whose passes stall
    # the loop: a full one takes tens of milliseconds in a large process.
    clock = FakeClock(T0)
    cyclic: list[Run] = []

    async def scenario() -> None:
        async def coroutine_task() -> None:
            await asyncio.sleep(0)

        locker = MemoryLocker(clock=clock) if locked else None  # each run's lease has a keeper
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE, locker=locker) as s:
            for i in range(10):
                await s.add_job(coroutine_task, gnomon.every(1), name=f"coroutine-{i}")
                await s.add_job(lambda: None, gnomon.every(1), name=f"function-{i}")
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept, to be seen
            try:
                for _ in range(60):  # 1,200 runs: the history keeps the latest 1,000
                    clock.advance(SECOND)
                    await s.wait_idle(timeout=WAIT)
                gc.collect()
                cyclic.extend(o for o in gc.garbage if isinstance(o, Run))
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()

    run_async(errors, scenario)
    assert cyclic == []


def test_a_sync_task_past_its_timeout_is_reported_once_and_keeps_its_slot_until_it_returns(
    errors: ErrorWatch,
) -> None:
    # A thread cannot be stopped: its run is reported timed out at the deadline, once,
    # and holds its singleton slot until the thread returns, as on the thread face.
    clock, monitor = FakeClock(T0), RecordingMonitor()
    timed_out, release, started = Tally(), threading.Event(), threading.Event()

    def blocks() -> None:
        started.set()
        release.wait(WAIT)

    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE, monitor=monitor) as s:
            await s.add_job(
                blocks,
                gnomon.every(60),
                timeout="2s",
                singleton=gnomon.LimitMode.RESCHEDULE,
                after_error=timed_out.hit,
            )
            clock.advance(60 * SECOND)
            assert await asyncio.to_thread(started.wait, WAIT)
            clock.advance(2 * SECOND)
            await asyncio.to_thread(timed_out.wait_for, 1)
            clock.advance(58 * SECOND)  # the next tick, while the thread still runs
            await asyncio.to_thread(monitor.run_skipped_events.wait_for, 1)
            release.set()
            await s.wait_idle(timeout=WAIT)

    run_async(errors, scenario)
    assert [e.outcome for e in timed_out.values] == [Outcome.TIMED_OUT]
    assert [e.outcome for e in monitor.run_finished_events.values] == [Outcome.TIMED_OUT]
    assert [e.outcome for e in monitor.run_skipped_events.values] == [Outcome.SKIPPED_SINGLETON]
