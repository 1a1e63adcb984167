"""The scheduler on the fake clock against a simple model, driven by hypothesis.

The model knows which jobs exist, how many runs each has had, and when each fires next;
every step compares the scheduler with it.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule
from scheduler_support import T0, UTC_ZONE, WAIT

import gnomon
from gnomon.testing import FakeClock

STEP = timedelta(milliseconds=250)
intervals = st.integers(min_value=1, max_value=8).map(lambda n: 2 * n * STEP)
run_limits = st.none() | st.integers(min_value=1, max_value=4)
tags = st.sampled_from(["red", "blue"])


@dataclass
class ModelJob:
    handle: gnomon.Job
    interval: timedelta
    next_fire: datetime
    runs: int
    max_runs: int | None
    tag: str

    def record_run(self) -> bool:
        """Count one run; True when the job has used up its runs and leaves."""
        self.runs += 1
        return self.max_runs is not None and self.runs >= self.max_runs


class SchedulerMachine(RuleBasedStateMachine):
    labels = Bundle("labels")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(T0)
        self.scheduler = gnomon.Scheduler(clock=self.clock, timezone=UTC_ZONE)
        self.scheduler.start()
        self.model: dict[int, ModelJob] = {}
        self.ever: dict[int, gnomon.Job] = {}
        self.retired: dict[int, int] = {}
        self.counts: Counter[int] = Counter()
        self.counts_lock = threading.Lock()
        self.numbers = itertools.count()

    def task(self, label: int) -> None:
        with self.counts_lock:
            self.counts[label] += 1

    @rule(target=labels, interval=intervals, max_runs=run_limits, tag=tags)
    def add(self, interval: timedelta, max_runs: int | None, tag: str) -> int:
        label = next(self.numbers)
        handle = self.scheduler.add_job(
            self.task, gnomon.every(interval), args=(label,), max_runs=max_runs, tags=(tag,)
        )
        now = self.clock.now()
        self.model[label] = ModelJob(handle, interval, now + interval, 0, max_runs, tag)
        self.ever[label] = handle
        return label

    @rule(label=labels)
    def remove(self, label: int) -> None:
        if label in self.model:
            self.scheduler.remove_job(self.model[label].handle.id)
            self.retire(label)
        else:
            with pytest.raises(gnomon.JobNotFound):
                self.scheduler.remove_job(self.ever[label].id)

    @rule(tag=tags)
    def remove_by_tag(self, tag: str) -> None:
        tagged = [label for label, job in self.model.items() if job.tag == tag]
        assert self.scheduler.remove_by_tags(tag) == len(tagged)
        for label in tagged:
            self.retire(label)

    @rule(label=labels, interval=intervals)
    def update(self, label: int, interval: timedelta) -> None:
        if label not in self.model:
            with pytest.raises(gnomon.JobNotFound):
                self.scheduler.update_job(self.ever[label].id, rule=gnomon.every(interval))
            return
        job = self.model[label]
        self.scheduler.update_job(job.handle.id, rule=gnomon.every(interval))
        job.interval, job.next_fire = interval, self.clock.now() + interval

    @rule(label=labels)
    def run_now(self, label: int) -> None:
        if label not in self.model:
            with pytest.raises(gnomon.JobNotFound):
                self.ever[label].run_now()
            return
        self.model[label].handle.run_now()
        self.scheduler.wait_idle(timeout=WAIT)
        if self.model[label].record_run():
            self.retire(label)

    @precondition(lambda self: bool(self.model))
    @rule(steps=st.integers(min_value=0, max_value=24))
    def advance(self, steps: int) -> None:
        self.clock.advance(steps * STEP)
        self.scheduler.wait_idle(timeout=WAIT)
        now = self.clock.now()
        for label, job in list(self.model.items()):
            while job.next_fire <= now:
                job.next_fire += job.interval
                if job.record_run():
                    self.retire(label)
                    break

    def retire(self, label: int) -> None:
        self.retired[label] = self.model.pop(label).runs

    @invariant()
    def the_same_jobs_exist_in_registration_order(self) -> None:
        live = [job.id for job in self.scheduler.jobs()]
        assert live == [job.handle.id for job in self.model.values()]
        red = [job.id for job in self.scheduler.jobs(tags=["red"])]
        assert red == [job.handle.id for job in self.model.values() if job.tag == "red"]

    @invariant()
    def every_job_ran_as_often_as_the_model_says(self) -> None:
        with self.counts_lock:
            counts = dict(self.counts)
        for label, job in self.model.items():
            assert counts.get(label, 0) == job.runs, f"job {label}"
        for label, runs in self.retired.items():
            assert counts.get(label, 0) == runs, f"removed job {label} ran again"

    @invariant()
    def every_job_fires_next_when_the_model_says(self) -> None:
        for label, job in self.model.items():
            assert job.handle.next_run == job.next_fire, f"job {label}"

    def teardown(self) -> None:
        self.scheduler.shutdown()


SchedulerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_scheduler_agrees_with_its_model = SchedulerMachine.TestCase
