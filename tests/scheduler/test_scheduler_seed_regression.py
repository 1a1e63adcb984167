"""The failure gnomon exists to prevent: a job removed by its own ``before_run`` listener.

gocron v2.2.5-2.2.6 crashed the host process when a job tagged ``t`` called
``RemoveByTags("t")`` from its before-run listener: the finished run came back for
rescheduling and the loop dereferenced the missing job. Here the same scenario must
produce no exception anywhere (threads, loop, ``gnomon`` ERROR logs: see the autouse
``errors`` fixture), remove the job, and never run it again, while the scheduler goes on
running its other jobs.
"""

from __future__ import annotations

from typing import Any

import pytest
from scheduler_support import (
    SECOND,
    T0,
    UTC_ZONE,
    WAIT,
    ErrorWatch,
    RecordingMonitor,
    SchedulerFactory,
    Tally,
    run_async,
)

import gnomon
from gnomon.testing import FakeClock

HALF_SECOND = SECOND / 2

CONCURRENCY_SETUPS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "plain": ({}, {}),
    "singleton-reschedule": ({}, {"singleton": gnomon.LimitMode.RESCHEDULE}),
    "singleton-wait": ({}, {"singleton": gnomon.LimitMode.WAIT}),
    "limit-wait": ({"max_concurrent": 1, "limit_mode": gnomon.LimitMode.WAIT}, {}),
    "limit-reschedule": ({"max_concurrent": 1, "limit_mode": gnomon.LimitMode.RESCHEDULE}, {}),
}


@pytest.mark.parametrize("setup", CONCURRENCY_SETUPS.values(), ids=CONCURRENCY_SETUPS.keys())
def test_removing_a_job_by_tag_from_its_own_before_run_listener_stops_it(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    setup: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    scheduler_options, job_options = setup
    monitor = RecordingMonitor()
    s = make_scheduler(monitor=monitor, **scheduler_options)
    runs, bystander_runs, removed_counts = Tally(), Tally(), Tally()

    def remove_own_tag(event: gnomon.RunEvent) -> None:
        removed_counts.hit(s.remove_by_tags("t"))

    job = s.add_job(
        runs.hit, gnomon.every(1), tags=("t",), before_run=remove_own_tag, **job_options
    )
    # Half a second out of phase, so that a concurrency limit never makes it compete.
    s.add_job(bystander_runs.hit, gnomon.every(1), tags=("other",), start_at=T0 + 3 * HALF_SECOND)
    s.start()
    clock.advance(SECOND)
    s.wait_idle(timeout=WAIT)

    assert removed_counts.values == [1]
    assert job.id not in [j.id for j in s.jobs()]
    assert [j.tags for j in s.jobs()] == [frozenset({"other"})]
    monitor.unregistered.wait_for(1)
    assert monitor.unregistered.values == [job.id]
    runs_so_far = runs.count
    assert runs_so_far <= 1, "at most the run whose listener removed the job may go on"

    for _ in range(10):
        clock.advance(SECOND)
        s.wait_idle(timeout=WAIT)
    assert runs.count == runs_so_far
    assert removed_counts.count == 1
    assert bystander_runs.count == 10, "the scheduler must keep running its other jobs"
    with pytest.raises(gnomon.JobNotFound):
        job.run_now()


def test_removing_a_job_by_tag_from_its_before_run_listener_on_the_real_clock(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(clock=None, max_concurrent=1, limit_mode=gnomon.LimitMode.WAIT)
    runs, bystander_runs, removed_counts = Tally(), Tally(), Tally()

    def remove_own_tag(event: gnomon.RunEvent) -> None:
        removed_counts.hit(s.remove_by_tags("t"))

    s.add_job(runs.hit, gnomon.every("5ms"), tags=("t",), before_run=remove_own_tag)
    s.add_job(bystander_runs.hit, gnomon.every("5ms"))
    s.start()
    removed_counts.wait_for(1)
    runs_when_removed = bystander_runs.count
    bystander_runs.wait_for(runs_when_removed + 20)

    assert removed_counts.values == [1]
    assert len(s.jobs()) == 1
    assert runs.count <= 1


def test_removing_a_job_by_tag_from_its_own_async_before_run_listener_stops_it(
    errors: ErrorWatch,
) -> None:
    clock = FakeClock(T0)
    runs, bystander_runs, removed_counts = Tally(), Tally(), Tally()

    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:

            async def remove_own_tag(event: gnomon.RunEvent) -> None:
                removed_counts.hit(await s.remove_by_tags("t"))

            async def task() -> None:
                runs.hit()

            async def bystander() -> None:
                bystander_runs.hit()

            job = await s.add_job(task, gnomon.every(1), tags=("t",), before_run=remove_own_tag)
            await s.add_job(bystander, gnomon.every(1))
            clock.advance(SECOND)
            await s.wait_idle(timeout=WAIT)
            assert job.id not in [j.id for j in await s.jobs()]
            runs_so_far = runs.count
            clock.advance(10 * SECOND)
            await s.wait_idle(timeout=WAIT)
            assert runs.count == runs_so_far <= 1
            assert bystander_runs.count == 11
            with pytest.raises(gnomon.JobNotFound):
                await job.run_now()

    run_async(errors, scenario)
    assert removed_counts.values == [1]


def test_removing_a_job_by_tag_from_a_sync_task_listener_on_the_async_scheduler(
    errors: ErrorWatch,
) -> None:
    """A sync task (worker thread) with an async listener on the loop: the mixed case."""
    clock = FakeClock(T0)
    runs, removed_counts = Tally(), Tally()

    async def scenario() -> None:
        async with gnomon.AsyncScheduler(clock=clock, timezone=UTC_ZONE) as s:

            async def remove_own_tag(event: gnomon.RunEvent) -> None:
                removed_counts.hit(await s.remove_by_tags("t"))

            await s.add_job(runs.hit, gnomon.every(1), tags=("t",), before_run=remove_own_tag)
            clock.advance(SECOND)
            await s.wait_idle(timeout=WAIT)
            clock.advance(5 * SECOND)
            await s.wait_idle(timeout=WAIT)
            assert await s.jobs() == []

    run_async(errors, scenario)
    assert removed_counts.values == [1]
    assert runs.count <= 1
