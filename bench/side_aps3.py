"""APScheduler 3: ``BackgroundScheduler`` with its default thread pool and memory store."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from _harness import (
    HOURLY_PERIODS,
    Observation,
    Sample,
    TimedSpec,
    measure_memory,
    measure_scale,
    run_timed,
    sleep_until,
)
from _plan import w1_start_times
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger


def _noop() -> None:
    pass


def _task(i: int) -> None:
    del i


def _started() -> float:
    # The scheduled time reaches only listeners, so the task hands its start time to one.
    return time.time()


def _hourly_triggers() -> list[Any]:
    # Triggers in APScheduler 3 are stateless, so jobs may share them.
    return [IntervalTrigger(seconds=period, timezone=UTC) for period in HOURLY_PERIODS]


def versions() -> dict[str, str]:
    """The versions of what this side measures."""
    return {"apscheduler": version("apscheduler")}


def _started_scheduler() -> Any:
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start()
    return scheduler


def scale(n: int, removals: int) -> dict[str, float]:
    """W1 timing: ``add_job`` and ``remove_job`` on a started scheduler."""
    scheduler = _started_scheduler()
    triggers = _hourly_triggers()
    try:
        return measure_scale(
            lambda i: scheduler.add_job(_noop, triggers[i % len(triggers)]).id,
            scheduler.remove_job,
            n,
            removals,
        )
    finally:
        scheduler.shutdown()


def scale_options(n: int, removals: int) -> dict[str, float]:
    """W1 with options: ``add_job`` with ``id``, ``name``, ``args`` and a start date
    (APScheduler 3 has no tags); each job's trigger carries its start date and is made
    before the timed loop."""
    scheduler = _started_scheduler()
    starts = w1_start_times(n)
    triggers = [
        IntervalTrigger(
            seconds=HOURLY_PERIODS[i % len(HOURLY_PERIODS)], start_date=starts[i], timezone=UTC
        )
        for i in range(n)
    ]
    try:
        return measure_scale(
            lambda i: (
                scheduler.add_job(_task, triggers[i], id=f"job-{i}", name=f"job-{i}", args=(i,)).id
            ),
            scheduler.remove_job,
            n,
            removals,
        )
    finally:
        scheduler.shutdown()


def memory(n: int) -> dict[str, float]:
    """W1 memory: bytes a started scheduler keeps per job."""
    scheduler = _started_scheduler()
    triggers = _hourly_triggers()
    try:
        return measure_memory(lambda i: scheduler.add_job(_noop, triggers[i % len(triggers)]), n)
    finally:
        scheduler.shutdown()


class ThreadSide:
    """``BackgroundScheduler`` with a listener pairing each run with its scheduled time."""

    def __init__(self) -> None:
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.samples: list[Sample] = []
        self.scheduler.add_listener(self._executed, EVENT_JOB_EXECUTED)

    def _executed(self, event: JobExecutionEvent) -> None:
        self.samples.append((event.scheduled_run_time.timestamp(), event.retval))

    def add(self, interval: float, first_fire: float) -> None:
        start = datetime.fromtimestamp(first_fire, UTC)
        trigger = IntervalTrigger(seconds=interval, start_date=start, timezone=UTC)
        self.scheduler.add_job(_started, trigger)

    def start(self) -> None:
        self.scheduler.start()

    def idle_until(self, deadline: float) -> None:
        sleep_until(deadline)

    def shutdown(self) -> None:
        self.scheduler.shutdown()


def timed(spec: TimedSpec, face: str) -> Observation:
    """W2-W4 on the thread face (the only one measured for APScheduler 3)."""
    del face
    return run_timed(ThreadSide(), spec)
