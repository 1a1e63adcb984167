"""APScheduler 4 (pre-release), run from its own environment.

W1 uses its synchronous ``Scheduler`` (a portal onto the async core, as users of threads
see it); W2-W4 use ``AsyncScheduler`` with ``async`` tasks, its native face.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

from _harness import (
    HOURLY_PERIODS,
    Observation,
    Sample,
    TimedSpec,
    async_sleep_until,
    measure_memory,
    measure_scale,
    run_timed_async,
)
from _plan import w1_start_times
from apscheduler import AsyncScheduler, Scheduler, current_job
from apscheduler.triggers.interval import IntervalTrigger

SAMPLES: list[Sample] = []


def _noop() -> None:
    pass


def _task(i: int) -> None:
    del i


async def _record() -> None:
    started = time.time()
    SAMPLES.append((current_job.get().scheduled_fire_time.timestamp(), started))


def _hourly_trigger(i: int) -> Any:
    # Triggers in APScheduler 4 carry state, so every schedule needs its own.
    period = HOURLY_PERIODS[i % len(HOURLY_PERIODS)]
    start = datetime.now(UTC) + timedelta(seconds=period)
    return IntervalTrigger(seconds=period, start_time=start)


def versions() -> dict[str, str]:
    """The versions of what this side measures."""
    return {"apscheduler": version("apscheduler")}


def scale(n: int, removals: int) -> dict[str, float]:
    """W1 timing: ``add_schedule`` and ``remove_schedule`` on a running sync ``Scheduler``."""
    triggers = [_hourly_trigger(i) for i in range(n)]
    with Scheduler() as scheduler:
        scheduler.start_in_background()
        return measure_scale(
            lambda i: scheduler.add_schedule(_noop, triggers[i]),
            scheduler.remove_schedule,
            n,
            removals,
        )


def scale_options(n: int, removals: int) -> dict[str, float]:
    """W1 with options: ``add_schedule`` with ``id``, ``args`` and a start time (schedules
    have neither a name nor tags); each trigger carries its start time and is made before
    the timed loop."""
    starts = w1_start_times(n)
    triggers = [
        IntervalTrigger(seconds=HOURLY_PERIODS[i % len(HOURLY_PERIODS)], start_time=starts[i])
        for i in range(n)
    ]
    with Scheduler() as scheduler:
        scheduler.start_in_background()
        return measure_scale(
            lambda i: scheduler.add_schedule(_task, triggers[i], id=f"job-{i}", args=(i,)),
            scheduler.remove_schedule,
            n,
            removals,
        )


def memory(n: int) -> dict[str, float]:
    """W1 memory: bytes a running sync ``Scheduler`` keeps per schedule, trigger included."""
    with Scheduler() as scheduler:
        scheduler.start_in_background()
        return measure_memory(lambda i: scheduler.add_schedule(_noop, _hourly_trigger(i)), n)


class AsyncSide:
    """``AsyncScheduler`` running ``async`` tasks that read their job's scheduled time."""

    def __init__(self) -> None:
        self.scheduler = AsyncScheduler()
        self.samples = SAMPLES
        self._services = AsyncExitStack()
        self._entered = False

    async def add(self, interval: float, first_fire: float) -> None:
        if not self._entered:
            await self._services.enter_async_context(self.scheduler)
            self._entered = True
        start = datetime.fromtimestamp(first_fire, UTC)
        await self.scheduler.add_schedule(
            _record, IntervalTrigger(seconds=interval, start_time=start)
        )

    async def start(self) -> None:
        await self.scheduler.start_in_background()

    async def idle_until(self, deadline: float) -> None:
        await async_sleep_until(deadline)

    async def shutdown(self) -> None:
        await self.scheduler.stop()
        await self.scheduler.wait_until_stopped()
        await self._services.aclose()


def timed(spec: TimedSpec, face: str) -> Observation:
    """W2-W4 on ``AsyncScheduler``."""
    del face

    async def on_loop() -> Observation:
        return await run_timed_async(AsyncSide(), spec)

    return asyncio.run(on_loop())
