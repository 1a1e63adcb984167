"""gnomon, as either face: ``Scheduler`` (threads) or ``AsyncScheduler`` (asyncio)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version

from _harness import (
    HOURLY_PERIODS,
    Observation,
    Sample,
    TimedSpec,
    async_sleep_until,
    measure_memory,
    measure_scale,
    run_timed,
    run_timed_async,
    sleep_until,
)
from _plan import W1_TAGS, w1_start_times

import gnomon
from gnomon import JobContext
from gnomon._rules import Rule

SAMPLES: list[Sample] = []


def _noop() -> None:
    pass


def _task(i: int) -> None:
    del i


def _record(ctx: JobContext) -> None:
    started = time.time()
    SAMPLES.append((ctx.scheduled_at.timestamp(), started))


async def _record_async(ctx: JobContext) -> None:
    started = time.time()
    SAMPLES.append((ctx.scheduled_at.timestamp(), started))


def _hourly_rules() -> list[Rule]:
    return [gnomon.every(timedelta(seconds=period)) for period in HOURLY_PERIODS]


def versions() -> dict[str, str]:
    """The versions of what this side measures."""
    return {"gnomon": version("gnomon")}


def scale(n: int, removals: int) -> dict[str, float]:
    """W1 timing: ``Scheduler.add_job`` and ``Scheduler.remove_job`` on a started scheduler."""
    scheduler = gnomon.Scheduler()
    scheduler.start()
    rules = _hourly_rules()
    try:
        return measure_scale(
            lambda i: scheduler.add_job(_noop, rules[i % len(rules)]),
            lambda job: scheduler.remove_job(job.id),
            n,
            removals,
        )
    finally:
        scheduler.shutdown()


def scale_options(n: int, removals: int) -> dict[str, float]:
    """W1 with options: ``add_job`` with ``name``, ``args``, ``tags`` and ``start_at``."""
    scheduler = gnomon.Scheduler()
    scheduler.start()
    rules = _hourly_rules()
    starts = w1_start_times(n)
    try:
        return measure_scale(
            lambda i: scheduler.add_job(
                _task,
                rules[i % len(rules)],
                name=f"job-{i}",
                args=(i,),
                tags=W1_TAGS,
                start_at=starts[i],
            ),
            lambda job: scheduler.remove_job(job.id),
            n,
            removals,
        )
    finally:
        scheduler.shutdown()


def memory(n: int) -> dict[str, float]:
    """W1 memory: bytes a started ``Scheduler`` keeps per job."""
    scheduler = gnomon.Scheduler()
    scheduler.start()
    rules = _hourly_rules()
    try:
        return measure_memory(lambda i: scheduler.add_job(_noop, rules[i % len(rules)]), n)
    finally:
        scheduler.shutdown()


class ThreadSide:
    """``gnomon.Scheduler`` running jobs that record their lateness."""

    def __init__(self) -> None:
        self.scheduler = gnomon.Scheduler()
        self.samples = SAMPLES

    def add(self, interval: float, first_fire: float) -> None:
        start_at = datetime.fromtimestamp(first_fire, UTC)
        self.scheduler.add_job(_record, gnomon.every(interval), start_at=start_at)

    def start(self) -> None:
        self.scheduler.start()

    def idle_until(self, deadline: float) -> None:
        sleep_until(deadline)

    def shutdown(self) -> None:
        self.scheduler.shutdown()


class AsyncSide:
    """``gnomon.AsyncScheduler`` on its own loop, running ``async`` recording jobs."""

    def __init__(self) -> None:
        self.scheduler = gnomon.AsyncScheduler()
        self.samples = SAMPLES

    async def add(self, interval: float, first_fire: float) -> None:
        start_at = datetime.fromtimestamp(first_fire, UTC)
        await self.scheduler.add_job(_record_async, gnomon.every(interval), start_at=start_at)

    async def start(self) -> None:
        await self.scheduler.start()

    async def idle_until(self, deadline: float) -> None:
        await async_sleep_until(deadline)

    async def shutdown(self) -> None:
        await self.scheduler.shutdown()


def timed(spec: TimedSpec, face: str) -> Observation:
    """W2-W4 on the chosen face."""
    if face == "thread":
        return run_timed(ThreadSide(), spec)

    async def on_loop() -> Observation:
        return await run_timed_async(AsyncSide(), spec)

    return asyncio.run(on_loop())
