"""schedule: one ``Scheduler`` polled by a 1 ms ``run_pending`` loop, its documented usage."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import version

import schedule
from _harness import (
    HOURLY_PERIODS,
    Observation,
    Sample,
    TimedSpec,
    measure_memory,
    measure_scale,
    run_timed,
)
from _plan import W1_TAGS

POLL_SECONDS = 0.001
"""schedule never wakes itself; this loop period gives it latency comparable to the others."""


def _noop() -> None:
    pass


def _task(i: int) -> None:
    del i


def versions() -> dict[str, str]:
    """The versions of what this side measures."""
    return {"schedule": version("schedule")}


def _adder(scheduler: schedule.Scheduler) -> Callable[[int], schedule.Job]:
    def add(i: int) -> schedule.Job:
        job: schedule.Job = scheduler.every(HOURLY_PERIODS[i % len(HOURLY_PERIODS)]).seconds
        job.do(_noop)
        return job

    return add


def scale(n: int, removals: int) -> dict[str, float]:
    """W1 timing: ``every(...).seconds.do`` and ``cancel_job``."""
    scheduler = schedule.Scheduler()
    return measure_scale(_adder(scheduler), scheduler.cancel_job, n, removals)


def scale_options(n: int, removals: int) -> dict[str, float]:
    """W1 with options: ``every(...).seconds.do(task, i).tag(...)`` (jobs have neither a
    name nor a start time), and ``cancel_job``."""
    scheduler = schedule.Scheduler()

    def add(i: int) -> schedule.Job:
        job: schedule.Job = scheduler.every(HOURLY_PERIODS[i % len(HOURLY_PERIODS)]).seconds
        return job.do(_task, i).tag(*W1_TAGS)

    return measure_scale(add, scheduler.cancel_job, n, removals)


def memory(n: int) -> dict[str, float]:
    """W1 memory: bytes the scheduler keeps per job."""
    return measure_memory(_adder(schedule.Scheduler()), n)


class LoopSide:
    """The poll loop; a run's intended time is its job's ``next_run`` before the run."""

    def __init__(self) -> None:
        self.scheduler = schedule.Scheduler()
        self.samples: list[Sample] = []

    def _record(self, job: schedule.Job) -> None:
        started = time.time()
        assert job.next_run is not None
        self.samples.append((job.next_run.timestamp(), started))

    def add(self, interval: float, first_fire: float) -> None:
        job = self.scheduler.every(round(interval)).seconds
        job.do(self._record, job)
        job.next_run = datetime.fromtimestamp(first_fire)  # schedule keeps naive local times

    def start(self) -> None:
        pass

    def idle_until(self, deadline: float) -> None:
        while time.time() < deadline:
            self.scheduler.run_pending()
            time.sleep(POLL_SECONDS)

    def shutdown(self) -> None:
        self.scheduler.clear()


def timed(spec: TimedSpec, face: str) -> Observation:
    """W2-W4 driven by the poll loop."""
    del face
    return run_timed(LoopSide(), spec)
