"""The worker pool's one-at-a-time wake-ups and the asyncio face's precise wake-up thread.

Real threads and real time, but every wait is on an event with a generous timeout.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scheduler_support import burst_ends, start_burst, wait_until

import gnomon
import gnomon._pool
import gnomon._scheduler
from gnomon import JobContext
from gnomon._engine import _Timed
from gnomon._pool import WorkerPool
from gnomon._waker import EARLY, Headstart, LoopWaker, arrive, sharpen_timers
from gnomon.testing import FakeClock

_PATIENCE = 10.0


def test_work_handed_over_while_a_worker_is_waking_still_gets_its_own_worker() -> None:
    pool = WorkerPool(4)
    second_ran = threading.Event()
    first_saw_second = threading.Event()

    def first() -> None:  # holds its worker until the second task has run elsewhere
        if second_ran.wait(_PATIENCE):
            first_saw_second.set()

    try:
        pool.spawn(first)
        pool.spawn(second_ran.set)  # queued while the first worker is still starting
        assert first_saw_second.wait(_PATIENCE)
    finally:
        pool.shutdown(wait=True)


def test_a_burst_of_blocking_tasks_spreads_over_every_worker() -> None:
    workers = 5
    pool = WorkerPool(workers)
    everyone_in = threading.Barrier(workers, timeout=_PATIENCE)
    passed: list[bool] = []
    done = threading.Semaphore(0)

    def task() -> None:
        try:
            everyone_in.wait()  # only passes when all five run at once
            passed.append(True)
        except threading.BrokenBarrierError:
            passed.append(False)
        done.release()

    try:
        for _ in range(workers):
            pool.spawn(task)
        for _ in range(workers):
            assert done.acquire(timeout=_PATIENCE)
        assert passed == [True] * workers
        assert pool.thread_count <= workers
    finally:
        pool.shutdown(wait=True)


def test_a_burst_is_drained_by_the_worker_taking_it_while_the_next_stands_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The standby never joins while the queue is being drained, however slowly.
    monkeypatch.setattr(gnomon._pool, "SLOW_SECONDS", 60.0)
    pool = WorkerPool(4)
    pool._stall = 60.0
    threads: list[threading.Thread] = []
    done = threading.Semaphore(0)

    def short() -> None:
        threads.append(threading.current_thread())
        time.sleep(0.001)  # releases the interpreter: a second worker could take work
        done.release()

    def first() -> None:
        threads.append(threading.current_thread())
        for _ in range(50):
            pool.spawn(short)  # wakes the next worker, which stands by

    try:
        pool.spawn(first)
        for _ in range(50):
            assert done.acquire(timeout=_PATIENCE)
        assert len(set(threads)) == 1
        # The standby went idle when the queue emptied: new work is taken at once.
        pool.spawn(done.release)
        assert done.acquire(timeout=_PATIENCE)
    finally:
        pool.shutdown(wait=True)


def test_a_standby_joins_a_queue_drained_slowly_by_tasks_that_block() -> None:
    pool = WorkerPool(4)
    pool._stall = 60.0  # joins for the queue's pace alone
    threads: list[threading.Thread] = []
    done = threading.Semaphore(0)

    def blocking() -> None:
        threads.append(threading.current_thread())
        time.sleep(0.005)  # a queue's pace of 5 ms per task: slower than SLOW_SECONDS
        done.release()

    def first() -> None:
        for _ in range(20):
            pool.spawn(blocking)

    try:
        pool.spawn(first)
        for _ in range(20):
            assert done.acquire(timeout=_PATIENCE)
        assert len(set(threads)) > 1
    finally:
        pool.shutdown(wait=True)


def test_a_standby_joins_once_the_workers_are_held_by_long_tasks() -> None:
    pool = WorkerPool(4)
    release = threading.Event()
    second_ran = threading.Event()

    def long() -> None:
        pool.spawn(second_ran.set)  # the next worker stands by: this one took work now
        release.wait(_PATIENCE)

    try:
        pool.spawn(long)
        assert second_ran.wait(_PATIENCE)  # it joined after the stall, on its own
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_every_task_of_a_burst_of_short_tasks_runs_exactly_once() -> None:
    pool = WorkerPool(6)
    seen: list[int] = []
    lock = threading.Lock()
    all_done = threading.Event()
    total = 2_000

    def task(i: int) -> None:
        with lock:
            seen.append(i)
            if len(seen) == total:
                all_done.set()

    try:
        for i in range(total):
            pool.spawn(lambda i=i: task(i))  # type: ignore[misc]
        assert all_done.wait(_PATIENCE)
        assert sorted(seen) == list(range(total))
        assert pool.thread_count <= 6
    finally:
        pool.shutdown(wait=True)


def test_the_waker_calls_back_on_the_loop_thread_just_before_the_deadline_with_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()
        calls: list[tuple[threading.Thread, float, float]] = []

        def callback(deadline: float, early: float) -> None:
            calls.append((threading.current_thread(), time.time(), deadline))
            fired.set()

        waker = LoopWaker(loop, callback)
        try:
            deadline = time.time() + 0.05
            waker.set(deadline)
            await asyncio.wait_for(fired.wait(), _PATIENCE)
        finally:
            waker.close()
        assert len(calls) == 1
        thread, called_at, given = calls[0]
        assert thread is threading.current_thread()
        assert given == deadline
        assert called_at >= deadline - EARLY  # the first headstart, EARLY, at most

    asyncio.run(scenario())


def test_an_earlier_deadline_replaces_a_later_one_and_a_cleared_one_never_fires() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()
        calls: list[tuple[float, float]] = []

        def callback(deadline: float, early: float) -> None:
            calls.append((time.time(), deadline))
            fired.set()

        waker = LoopWaker(loop, callback)
        try:
            now = time.time()
            waker.set(now + 3_600)  # replaced before it could fire
            waker.set(now + 0.05)
            await asyncio.wait_for(fired.wait(), _PATIENCE)
            fired.clear()
            now = time.time()
            waker.set(now + 0.02)
            waker.set(None)  # cleared: must not fire
            waker.set(now + 0.2)
            await asyncio.wait_for(fired.wait(), _PATIENCE)
        finally:
            waker.close()
        assert len(calls) == 2
        assert calls[1][1] == now + 0.2
        assert calls[1][0] >= now + 0.2 - Headstart._CEILING  # learned: a headstart at most

    asyncio.run(scenario())


def test_closing_the_waker_ends_its_thread() -> None:
    async def scenario() -> None:
        waker = LoopWaker(asyncio.get_running_loop(), lambda _deadline, _early: None)
        thread = waker._thread
        assert thread.is_alive()
        waker.close()
        assert not thread.is_alive()

    asyncio.run(scenario())


def test_an_async_scheduler_wakes_through_its_waker_and_ends_it_on_shutdown() -> None:
    async def scenario() -> None:
        ran = asyncio.Event()

        async def task() -> None:
            ran.set()

        async with gnomon.AsyncScheduler() as scheduler:
            await scheduler.add_job(task, gnomon.every(0.05))
            waker = scheduler._waker
            assert waker is not None
            await asyncio.wait_for(ran.wait(), _PATIENCE)
        assert scheduler._waker is None
        assert not waker._thread.is_alive()

    asyncio.run(scenario())


def test_a_run_blocking_the_thread_that_woke_for_it_does_not_stop_the_timer() -> None:
    first_may_end = threading.Event()
    second_ran = threading.Event()
    threads: dict[str, threading.Thread] = {}

    def first() -> None:
        threads["first"] = threading.current_thread()
        first_may_end.wait(_PATIENCE)

    def second() -> None:
        threads["second"] = threading.current_thread()
        second_ran.set()
        first_may_end.set()

    scheduler = gnomon.Scheduler(max_workers=2)
    try:
        scheduler.start()
        soon = datetime.now(UTC)
        scheduler.add_job(first, gnomon.once(soon + timedelta(seconds=0.05)))
        # due while the first still runs
        scheduler.add_job(second, gnomon.once(soon + timedelta(seconds=0.3)))
        assert second_ran.wait(_PATIENCE)
        scheduler.wait_idle(_PATIENCE)
    finally:
        scheduler.shutdown()
    assert threads["first"] is not threads["second"]


def test_a_leader_runs_nothing_itself_while_max_workers_runs_are_going() -> None:
    lock = threading.Lock()
    going = [0]
    most = [0]
    finished = threading.Semaphore(0)
    soon = datetime.now(UTC)
    busy_until = (soon + timedelta(seconds=0.4)).timestamp()

    def task(hold: bool) -> None:
        with lock:
            going[0] += 1
            most[0] = max(most[0], going[0])
        while hold and time.time() < busy_until:  # the task's own work, past the late job
            time.sleep(0.01)
        with lock:
            going[0] -= 1
        finished.release()

    scheduler = gnomon.Scheduler(max_workers=2)
    try:
        scheduler.start()
        for _ in range(2):
            scheduler.add_job(task, gnomon.once(soon + timedelta(seconds=0.05)), args=(True,))
        # due while both workers are busy: it waits for one of them
        scheduler.add_job(task, gnomon.once(soon + timedelta(seconds=0.2)), args=(False,))
        for _ in range(3):
            assert finished.acquire(timeout=_PATIENCE)
    finally:
        scheduler.shutdown()
    assert most[0] == 2


def test_stop_jobs_ends_the_timer_loop_and_start_leads_again() -> None:
    ran = threading.Semaphore(0)
    scheduler = gnomon.Scheduler()
    try:
        scheduler.start()
        scheduler.add_job(ran.release, gnomon.every(0.02))
        assert ran.acquire(timeout=_PATIENCE)
        scheduler.stop_jobs()
        assert scheduler._timer_loops == 0
        assert scheduler._timer is None
        scheduler.start()
        while ran.acquire(blocking=False):  # drain what ran before the stop
            pass
        assert ran.acquire(timeout=_PATIENCE)
    finally:
        scheduler.shutdown()
    assert scheduler._timer_loops == 0


_PR_GET_TIMERSLACK = 30


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timer slack is Linux's")
def test_the_threads_that_wait_for_deadlines_ask_for_no_timer_slack() -> None:
    libc = ctypes.CDLL(None)
    slack: dict[str, int] = {}
    ran = threading.Event()

    def task() -> None:  # on a worker thread, any of which may lead the timer loop
        slack["worker"] = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
        ran.set()

    def in_a_thread() -> None:
        slack["before"] = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
        sharpen_timers()
        slack["after"] = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)

    scheduler = gnomon.Scheduler()
    try:
        scheduler.start()
        scheduler.add_job(task, gnomon.once())
        assert ran.wait(_PATIENCE)
    finally:
        scheduler.shutdown()
    helper = threading.Thread(target=in_a_thread)
    helper.start()
    helper.join(_PATIENCE)
    assert slack["before"] > 1  # the kernel's default (50 µs), which the waker lowers
    assert slack["after"] == 1
    assert slack["worker"] == 1


def test_a_burst_of_quick_runs_is_fired_and_run_by_the_one_thread_it_was_handed_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = 200
    done = threading.Semaphore(0)
    handed: list[bool] = []
    threads: set[threading.Thread] = set()
    scheduler = gnomon.Scheduler()
    scheduler._burst_stall = 3600.0  # no take-over, however slow this machine is
    monkeypatch.setattr(gnomon._scheduler, "SLOW_SECONDS", 3600.0)  # nor a slow pace
    hand_over = scheduler._pool.hand_over

    def counting_hand_over(work: Callable[[], object]) -> bool:
        agreed = hand_over(work)
        handed.append(agreed)
        return agreed

    def task() -> None:
        threads.add(threading.current_thread())
        done.release()

    scheduler._pool.hand_over = counting_hand_over  # type: ignore[method-assign]
    try:
        start_burst(scheduler, [(task, ())] * runs)
        for _ in range(runs):
            assert done.acquire(timeout=_PATIENCE)
        scheduler.wait_idle(_PATIENCE)
        assert burst_ends(scheduler)  # the leader waits for deadlines again
    finally:
        scheduler.shutdown()
    # 200 runs due at once take 7 batches: the lead is handed over once, as the burst
    # begins, and the thread that fired the first batch fires and runs all of them.
    assert handed == [True]
    assert len(threads) == 1


@pytest.mark.parametrize("slow", [0, 40, 100])
def test_a_run_holding_a_burst_lets_the_leader_take_the_rest_of_it_over(slow: int) -> None:
    runs = 200
    others_ran = threading.Semaphore(0)
    released = threading.Event()
    held = threading.Event()

    def task(index: int) -> None:
        if index != slow:
            others_ran.release()
            return
        held.set()
        released.wait(_PATIENCE)  # holds the burst's thread until every other run ran

    scheduler = gnomon.Scheduler()
    try:
        start_burst(scheduler, [(task, (index,)) for index in range(runs)])
        assert held.wait(_PATIENCE)
        for _ in range(runs - 1):  # they run elsewhere while the slow one holds its thread
            assert others_ran.acquire(timeout=_PATIENCE)
        # And they are finished meanwhile, those the burst's thread ran before the slow
        # one included (the take-over finishes what its runner left for later).
        wait_until(
            lambda: len(scheduler.history(limit=runs)) == runs - 1,
            "every run but the held one recorded",
        )
        assert not released.is_set()
        released.set()
        scheduler.wait_idle(_PATIENCE)
    finally:
        released.set()
        scheduler.shutdown()


def test_a_burst_of_runs_that_each_block_a_while_is_spread_over_the_workers() -> None:
    runs = 200
    done = threading.Semaphore(0)
    lock = threading.Lock()
    going = [0]
    overlapped = threading.Event()

    def task(index: int) -> None:
        with lock:
            going[0] += 1
            if going[0] >= 2:
                overlapped.set()
        try:
            time.sleep(0.001)  # at least 1 ms: slower than SLOW_SECONDS, short of a stall
            if index >= 10:  # past the few the burst's thread runs before its pace shows
                overlapped.wait(_PATIENCE)  # held until another run goes at the same time
        finally:
            with lock:
                going[0] -= 1
            done.release()

    scheduler = gnomon.Scheduler()
    scheduler._burst_stall = 3600.0  # only the runs' pace may end the burst
    try:
        start_burst(scheduler, [(task, (index,)) for index in range(runs)])
        # Run one after the other on the burst's thread, the runs would never overlap.
        assert overlapped.wait(_PATIENCE)
        for _ in range(runs):
            assert done.acquire(timeout=_PATIENCE)
        scheduler.wait_idle(_PATIENCE)
        assert burst_ends(scheduler)
        assert not scheduler._burst_slow  # the deadline's work drained: bursts try again
    finally:
        overlapped.set()
        scheduler.shutdown()


def test_stopping_during_a_burst_skips_its_fired_runs_while_one_of_them_still_runs() -> None:
    runs = 200
    released = threading.Event()
    started = threading.Event()
    skipped = threading.Semaphore(0)

    def task() -> None:
        started.set()
        released.wait(3 * _PATIENCE)  # longer than the test waits for the skips

    class Skips(gnomon.Monitor):
        def run_skipped(self, event: gnomon.RunEvent) -> None:
            if event.outcome is gnomon.Outcome.SKIPPED_STOPPING:
                skipped.release()

    scheduler = gnomon.Scheduler(monitor=Skips())
    scheduler._burst_stall = 3600.0  # no take-over: only the stop ends the burst
    try:
        start_burst(scheduler, [(task, ())] * runs)
        assert started.wait(_PATIENCE)  # the burst's thread is held by its first run
        scheduler.stop_jobs()
        # The other 31 runs of the first batch are skipped now, not once it returns.
        for _ in range(31):
            assert skipped.acquire(timeout=_PATIENCE)
        assert not released.is_set()
        released.set()
        scheduler.wait_idle(_PATIENCE)
        assert scheduler._burster is None
    finally:
        released.set()
        scheduler.shutdown()


def test_a_burst_starts_its_async_runs_on_the_loop_and_runs_its_sync_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[tuple[str, str]] = []
    lock = threading.Lock()
    all_ran = threading.Event()
    runs = 100

    def note(kind: str) -> None:
        with lock:
            ran.append((kind, threading.current_thread().name))
            if len(ran) == runs:
                all_ran.set()

    def sync_task() -> None:
        note("sync")

    async def async_task() -> None:
        note("async")

    scheduler = gnomon.Scheduler()
    scheduler._burst_stall = 3600.0  # no take-over, however slow this machine is
    monkeypatch.setattr(gnomon._scheduler, "SLOW_SECONDS", 3600.0)  # nor a slow pace
    through_sync_path: list[object] = []
    run_coroutine = scheduler._engine.run_coroutine

    def noting_run_coroutine(coroutine: Any) -> Any:
        through_sync_path.append(coroutine)  # an async task run by a sync pipeline
        return run_coroutine(coroutine)

    scheduler._engine.run_coroutine = noting_run_coroutine
    try:
        start_burst(
            scheduler, [(async_task if index % 3 == 0 else sync_task, ()) for index in range(runs)]
        )
        assert all_ran.wait(_PATIENCE)
        scheduler.wait_idle(_PATIENCE)
    finally:
        scheduler.shutdown()
    kinds = [kind for kind, _ in ran]
    assert kinds.count("async") == 34
    assert len(ran) == runs
    assert {name for kind, name in ran if kind == "async"} == {"gnomon-loop"}
    assert len({name for kind, name in ran if kind == "sync"}) == 1  # the burst's thread
    assert through_sync_path == []


def test_monitor_hooks_of_jobs_a_burst_expires_do_not_hold_its_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = 200
    done = threading.Semaphore(0)
    hooks_may_end = threading.Event()

    class SlowHooks(gnomon.Monitor):
        def job_unregistered(self, job: gnomon.Job) -> None:
            hooks_may_end.wait(_PATIENCE)  # a hook that takes its time

    scheduler = gnomon.Scheduler(monitor=SlowHooks())
    scheduler._burst_stall = 3600.0  # no take-over, however slow this machine is
    monkeypatch.setattr(gnomon._scheduler, "SLOW_SECONDS", 3600.0)  # nor a slow pace
    try:
        start_burst(scheduler, [(done.release, ())] * runs)  # each expires as it fires
        # The hooks go to the pool, as from the timer: the burst's thread runs on.
        for _ in range(runs):
            assert done.acquire(timeout=_PATIENCE)
        assert not hooks_may_end.is_set()
    finally:
        hooks_may_end.set()
        scheduler.shutdown()


def test_a_shutdown_during_a_burst_ends_it_and_skips_the_fired_runs_not_started() -> None:
    runs = 200
    outcomes: list[gnomon.Outcome] = []
    lock = threading.Lock()
    first_started = threading.Event()
    may_end = threading.Event()

    def task() -> None:
        first_started.set()
        may_end.wait(_PATIENCE)

    class Outcomes(gnomon.Monitor):
        def run_finished(self, event: gnomon.RunEvent) -> None:
            with lock:
                outcomes.append(event.outcome)  # type: ignore[arg-type]

        def run_skipped(self, event: gnomon.RunEvent) -> None:
            self.run_finished(event)

    scheduler = gnomon.Scheduler(monitor=Outcomes(), max_workers=1)
    try:
        start_burst(scheduler, [(task, ())] * runs)
        assert first_started.wait(_PATIENCE)
    finally:
        threading.Timer(0.2, may_end.set).start()
        scheduler.shutdown(_PATIENCE)
    assert scheduler._burster is None
    # The first batch (32) was fired before the shutdown; what was not fired by then is
    # not fired any more. Every fired run either ran or was skipped as stopping.
    assert outcomes.count(gnomon.Outcome.SUCCESS) == 1
    assert 32 <= len(outcomes) <= runs
    assert set(outcomes) == {gnomon.Outcome.SUCCESS, gnomon.Outcome.SKIPPED_STOPPING}


def test_the_headstart_follows_the_98th_percentile_of_how_late_waits_end() -> None:
    assert Headstart().seconds == EARLY
    mean = 100e-6  # exponential overshoot: its 98th percentile is mean * ln(50)
    learned = []
    for seed in range(8):
        headstart, rng = Headstart(), random.Random(seed)
        for _ in range(20_000):
            headstart.learn(rng.expovariate(1 / mean))
        learned.append(headstart.seconds)
    expected = mean * math.log(50) + Headstart._WORK  # the 97th percentile: 40 us less
    assert expected - 25e-6 < statistics.mean(learned) < expected + 25e-6


def test_one_very_late_wait_moves_the_headstart_by_one_step_and_it_stays_bounded() -> None:
    headstart = Headstart()
    headstart.learn(3_600.0)  # a suspended process, a clock stepped forward
    assert headstart.seconds == pytest.approx(EARLY + Headstart._STEP * 0.98)
    for _ in range(10_000):
        headstart.learn(-3_600.0)  # a clock stepped back: never below the floor
    assert headstart.seconds == Headstart._FLOOR
    for _ in range(10_000):
        headstart.learn(1.0)
    assert headstart.seconds == Headstart._CEILING


@pytest.mark.parametrize("face", ["thread", "async"])
def test_a_scheduler_on_the_system_clock_learns_its_headstart_from_its_wake_ups(
    face: str,
) -> None:
    # Every timed wait that runs its span moves the headstart by a step, up or down.
    ran = threading.Semaphore(0)

    def task() -> None:
        ran.release()

    if face == "thread":
        scheduler = gnomon.Scheduler()
        try:
            scheduler.add_job(task, gnomon.every(0.02))
            scheduler.start()
            for _ in range(5):
                assert ran.acquire(timeout=_PATIENCE)
            learned = scheduler._headstart.seconds
        finally:
            scheduler.shutdown()
    else:

        async def scenario() -> float:
            async with gnomon.AsyncScheduler() as scheduler:
                await scheduler.add_job(task, gnomon.every(0.02))
                for _ in range(5):
                    assert await asyncio.to_thread(ran.acquire, timeout=_PATIENCE)
                return scheduler._headstart.seconds

        learned = asyncio.run(scenario())
    assert learned != EARLY


def test_arrive_returns_once_the_deadline_has_come_and_at_once_for_a_past_one() -> None:
    deadline = time.time() + 0.002
    arrive(deadline, 0.01)
    assert time.time() >= deadline
    began = time.perf_counter()
    arrive(time.time() - 1.0)
    assert time.perf_counter() - began < 0.5  # no wait at all for a past deadline


def test_arrive_sleeps_until_its_last_stretch_when_told_how_late_a_sleep_ends() -> None:
    # A wake-up made early for work that took less time than foreseen: the rest of the
    # wait is slept, and only the last stretch (here 5 ms) is spun.
    wait = 0.1
    deadline = time.time() + wait
    cpu = time.thread_time()
    arrive(deadline, 2 * wait, asleep_until=0.005)
    assert time.time() >= deadline
    assert time.thread_time() - cpu < wait / 5  # a spin of 0.1 s costs 30 ms or more


def test_arrive_gives_up_soon_on_a_deadline_further_than_it_waits_for() -> None:
    # As when the wall clock is stepped back during the last stretch.
    began = time.monotonic()
    arrive(time.time() + 3_600)
    assert time.monotonic() - began < 1.0


def test_runs_fired_ahead_of_their_deadline_start_only_when_it_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The leader wakes its headstart (first EARLY) before a deadline and fires the batch
    # as of the deadline; an EARLY of 0.3 s makes that certain and any run started too
    # soon plain to see.
    monkeypatch.setattr(gnomon._waker, "EARLY", 0.3)
    scheduler = gnomon.Scheduler()
    wakes: list[tuple[float, float]] = []
    wake = scheduler._engine.wake

    def recording_wake(now: datetime, **options: Any) -> bool:
        wakes.append((time.time(), now.timestamp()))
        return wake(now, **options)

    scheduler._engine.wake = recording_wake  # type: ignore[method-assign]
    starts: list[tuple[float, float]] = []
    done = threading.Semaphore(0)

    def sync_task(ctx: JobContext) -> None:
        starts.append((ctx.scheduled_at.timestamp(), time.time()))
        done.release()

    async def async_task(ctx: JobContext) -> None:
        starts.append((ctx.scheduled_at.timestamp(), time.time()))
        done.release()

    try:
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        for _ in range(3):  # one runs on the leader's thread, two go to the pool
            scheduler.add_job(sync_task, gnomon.once(due))
        scheduler.add_job(async_task, gnomon.once(due))  # goes to the scheduler's loop
        scheduler.start()
        for _ in range(4):
            assert done.acquire(timeout=_PATIENCE)
    finally:
        scheduler.shutdown()
    assert any(woke < fired_as_of - 0.1 for woke, fired_as_of in wakes)  # it fired ahead
    assert len(starts) == 4
    assert all(started >= scheduled == due.timestamp() for scheduled, started in starts)


def test_async_runs_fired_ahead_of_their_deadline_start_only_when_it_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The waker wakes the loop its headstart (first EARLY) before a deadline and the batch
    # is fired as of it; an EARLY of 0.3 s makes that certain and any run started too
    # soon plain to see.
    monkeypatch.setattr(gnomon._waker, "EARLY", 0.3)
    starts: list[tuple[float, float]] = []
    wakes: list[tuple[float, float]] = []

    async def scenario() -> None:
        done = asyncio.Semaphore(0)

        async def async_task(ctx: JobContext) -> None:
            starts.append((ctx.scheduled_at.timestamp(), time.time()))
            done.release()

        def sync_task(ctx: JobContext) -> None:  # runs in the pool, still started on time
            starts.append((ctx.scheduled_at.timestamp(), time.time()))

        async with gnomon.AsyncScheduler() as scheduler:
            wake = scheduler._engine.wake

            def recording_wake(now: datetime, **options: Any) -> bool:
                wakes.append((time.time(), now.timestamp()))
                return wake(now, **options)

            scheduler._engine.wake = recording_wake  # type: ignore[method-assign]
            due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
            for _ in range(3):
                await scheduler.add_job(async_task, gnomon.once(due))
            await scheduler.add_job(sync_task, gnomon.once(due))
            for _ in range(3):
                await asyncio.wait_for(done.acquire(), _PATIENCE)
            await scheduler.wait_idle(_PATIENCE)

    asyncio.run(scenario())
    assert any(woke < fired_as_of - 0.1 for woke, fired_as_of in wakes)  # it fired ahead
    assert len(starts) == 4
    assert all(started >= scheduled for scheduled, started in starts)


@pytest.mark.parametrize("gate", ["singleton", "max_concurrent"])
def test_a_gated_job_is_not_fired_ahead_so_a_slot_freed_early_does_not_start_it_early(
    monkeypatch: pytest.MonkeyPatch, gate: str
) -> None:
    # The leader fires due work a headstart (here EARLY, 0.3 s) before its deadline. A
    # job behind a gate, fired then, would be queued behind the run holding its slot,
    # and started the moment that run ends: before its own time.
    monkeypatch.setattr(gnomon._waker, "EARLY", 0.3)
    holding, release = threading.Event(), threading.Event()
    starts: list[tuple[float, float]] = []
    done = threading.Event()
    calls = 0

    def task(ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the run now: it holds the slot until released
            holding.set()
            release.wait(_PATIENCE)
            return
        starts.append((ctx.scheduled_at.timestamp(), time.time()))
        done.set()

    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    if gate == "singleton":  # the job's own earlier run holds its slot
        scheduler = gnomon.Scheduler()
        holder = scheduler.add_job(task, gnomon.once(due), singleton=gnomon.LimitMode.WAIT)
    else:  # another job's run holds the scheduler's only slot
        scheduler = gnomon.Scheduler(max_concurrent=1, limit_mode=gnomon.LimitMode.WAIT)
        holder = scheduler.add_job(task, gnomon.once(due + timedelta(seconds=60)))
        scheduler.add_job(task, gnomon.once(due))
    fired_ahead = threading.Event()
    wake = scheduler._engine.wake

    def recording_wake(now: datetime, **options: Any) -> bool:
        more = wake(now, **options)
        if options.get("timed_by") is not None:
            fired_ahead.set()  # the leader's wake-up a headstart before the deadline
        return more

    scheduler._engine.wake = recording_wake  # type: ignore[method-assign]
    try:
        scheduler.start()
        holder.run_now()
        assert holding.wait(_PATIENCE)
        assert fired_ahead.wait(_PATIENCE)
        release.set()  # the slot is free about 0.3 s before the job's time
        assert done.wait(_PATIENCE)
    finally:
        release.set()
        scheduler.shutdown()
    [(scheduled, started)] = starts
    assert scheduled == due.timestamp() <= started


class _Recorded(_Timed):
    """A heap entry that is not a job's fire time (like a timeout), recording its firing."""

    __slots__ = ("fired",)

    def __init__(self) -> None:
        self.fired: list[datetime] = []

    def fire(self, engine: object, now: datetime, effects: object) -> None:
        self.fired.append(now)


def test_a_wake_ahead_fires_jobs_but_leaves_timeouts_and_retries_for_their_time() -> None:
    clock = FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    runs: list[datetime] = []
    scheduler = gnomon.Scheduler(clock=clock)
    deadline = clock.now() + timedelta(seconds=10)

    def task(ctx: JobContext) -> None:
        runs.append(ctx.scheduled_at)

    scheduler.add_job(task, gnomon.once(deadline))
    engine = scheduler._engine
    try:
        scheduler.start()
        timed = _Recorded()
        with engine.lock:
            engine.push_timed(deadline, timed)
        before = deadline.timestamp() - 0.0001  # the clock, just before the deadline
        assert engine.wake(deadline, timed_by=before) is True  # the timeout is left
        assert timed.fired == []
        assert engine.wake(deadline) is False  # on time: now it acts
        assert timed.fired == [deadline]
        scheduler.wait_idle(_PATIENCE)
        assert runs == [deadline]  # the job's fire time was taken ahead
    finally:
        scheduler.shutdown()
