"""The scheduler on the fake clock against a simple model, driven by hypothesis.

The model knows which jobs exist, how many runs each has had, and when each fires next;
every step compares the scheduler with it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule
from scheduler_support import T0, UTC_ZONE, WAIT, Boom

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


# --------------------------------------------------------------------------------------
# Retries and the singleton modes.
#
# Every job fires on an even number of steps; a retry waits an odd number of steps times
# 2^(n-1), so a retry of an on-time run always falls between two of its job's ticks and
# the model never has to order a tick and a retry of the same job at one instant. A run
# that starts late (a tick queued under WAIT) always succeeds, so it never plans a retry.
# The clock moves one step at a time and each step settles before the next: an attempt
# ends at the instant it started, exactly where the model plans its retry from.

MODES = [
    None,
    gnomon.LimitMode.RESCHEDULE,
    gnomon.LimitMode.WAIT,
    gnomon.LimitMode.WAIT_LATEST,
    gnomon.LimitMode.REPLACE,
]
Record = tuple[datetime, gnomon.Outcome, int]
short_intervals = st.integers(min_value=1, max_value=4).map(lambda n: 2 * n * STEP)


@dataclass
class Pending:
    due: datetime
    occurrence: datetime
    attempt: int  # the attempt that will run


@dataclass
class RetryingJob:
    handle: gnomon.Job
    interval: timedelta
    next_fire: datetime
    fail_first: int
    policy: gnomon.Retry
    delay_steps: int
    mode: gnomon.LimitMode | None
    pending: list[Pending]
    waiting: list[datetime]
    records: list[Record]

    def retry_due(self, attempt: int, ended: datetime) -> datetime:
        return ended + STEP * (self.delay_steps << (attempt - 1))


class RetryMachine(RuleBasedStateMachine):
    labels = Bundle("retrying")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(T0)
        self.scheduler = gnomon.Scheduler(clock=self.clock, timezone=UTC_ZONE)
        self.scheduler.start()
        self.model: dict[int, RetryingJob] = {}
        self.removed: dict[int, RetryingJob] = {}
        self.calls: Counter[tuple[int, datetime, int]] = Counter()
        self.expected: Counter[tuple[int, datetime, int]] = Counter()
        self.calls_lock = threading.Lock()
        self.numbers = itertools.count()

    def task(self, ctx: gnomon.JobContext, label: int, fail_first: int) -> None:
        with self.calls_lock:
            self.calls[label, ctx.scheduled_at, ctx.attempt] += 1
        on_time = ctx.attempt > 1 or self.clock.now() == ctx.scheduled_at
        if on_time and ctx.attempt <= fail_first:
            raise Boom(f"attempt {ctx.attempt} of job {label}")

    @rule(
        target=labels,
        interval=short_intervals,
        fail_first=st.integers(min_value=0, max_value=3),
        attempts=st.integers(min_value=1, max_value=3),
        delay_steps=st.sampled_from([1, 3, 5, 7]),
        past_next=st.booleans(),
        mode=st.sampled_from(MODES),
    )
    def add(
        self,
        *,
        interval: timedelta,
        fail_first: int,
        attempts: int,
        delay_steps: int,
        past_next: bool,
        mode: gnomon.LimitMode | None,
    ) -> int:
        label = next(self.numbers)
        policy = gnomon.Retry(
            attempts, delay_steps * STEP, factor=2, jitter=False, past_next=past_next
        )
        handle = self.scheduler.add_job(
            self.task,
            gnomon.every(interval),
            args=(label, fail_first),
            name=f"retrying-{label}",
            singleton=mode,
            retry=policy,
        )
        assert handle is not None
        now = self.clock.now()
        self.model[label] = RetryingJob(
            handle, interval, now + interval, fail_first, policy, delay_steps, mode, [], [], []
        )
        return label

    @rule(label=labels)
    def remove(self, label: int) -> None:
        job = self.model.pop(label, None)
        if job is None:
            return
        self.scheduler.remove_job(job.handle.id)
        for pending in job.pending:  # dropped: the occurrence keeps its last outcome
            job.records.append((pending.occurrence, gnomon.Outcome.FAILED, pending.attempt - 1))
        job.records += [(tick, gnomon.Outcome.CANCELLED, 1) for tick in job.waiting]
        job.pending, job.waiting = [], []
        self.removed[label] = job

    @precondition(lambda self: bool(self.model))
    @rule(steps=st.integers(min_value=1, max_value=12))
    def advance(self, steps: int) -> None:
        for _ in range(steps):
            self.clock.advance(STEP)
            self.settle()
            now = self.clock.now()
            for label, job in self.model.items():
                self.step_job(label, job, now)

    def settle(self) -> None:
        """Wait until no run is executing (``wait_idle`` would also wait for a tick
        queued behind a pending retry, which only the next steps can release)."""
        deadline = time.monotonic() + WAIT
        while any(job.handle.is_running for job in self.model.values()):
            assert time.monotonic() < deadline, "runs did not finish"
            time.sleep(0.0002)

    def step_job(self, label: int, job: RetryingJob, now: datetime) -> None:
        for pending in [p for p in job.pending if p.due == now]:
            job.pending.remove(pending)
            self.attempt(label, job, pending.occurrence, pending.attempt, now)
        if job.next_fire == now:
            job.next_fire += job.interval
            self.tick(label, job, now)
        while job.waiting and not job.pending:
            self.attempt(label, job, job.waiting.pop(0), 1, now)

    def tick(self, label: int, job: RetryingJob, now: datetime) -> None:
        if job.pending and job.mode is not None:
            if job.mode is gnomon.LimitMode.RESCHEDULE:
                job.records.append((now, gnomon.Outcome.SKIPPED_SINGLETON, 1))
                return
            if job.mode is gnomon.LimitMode.WAIT:
                job.waiting.append(now)
                return
            for pending in job.pending:  # WAIT_LATEST, REPLACE: the tick discards it
                job.records.append((pending.occurrence, gnomon.Outcome.FAILED, pending.attempt - 1))
            job.pending = []
        self.attempt(label, job, now, 1, now)

    def attempt(
        self, label: int, job: RetryingJob, occurrence: datetime, attempt: int, now: datetime
    ) -> None:
        self.expected[label, occurrence, attempt] += 1
        on_time = attempt > 1 or occurrence == now
        if not on_time or attempt > job.fail_first:
            job.records.append((occurrence, gnomon.Outcome.SUCCESS, attempt))
            return
        due = job.retry_due(attempt, now)
        upcoming = occurrence + job.interval
        if attempt < job.policy.attempts and (job.policy.past_next or due < upcoming):
            job.pending.append(Pending(due, occurrence, attempt + 1))
        else:
            job.records.append((occurrence, gnomon.Outcome.FAILED, attempt))

    @invariant()
    def every_attempt_ran_as_the_model_says(self) -> None:
        with self.calls_lock:
            calls = Counter(self.calls)
        assert calls == self.expected

    @invariant()
    def the_history_records_each_occurrence_once_with_its_attempts(self) -> None:
        for label, job in {**self.model, **self.removed}.items():
            records = self.scheduler.history(job=job.handle.id, limit=100_000)
            seen = sorted((r.scheduled_at, r.outcome, r.attempts) for r in records)
            assert seen == sorted(job.records), f"job {label}"

    @invariant()
    def jobs_waiting_counts_queued_ticks_but_not_pending_retries(self) -> None:
        assert self.scheduler.jobs_waiting == sum(len(job.waiting) for job in self.model.values())

    @invariant()
    def every_job_fires_next_when_the_model_says(self) -> None:
        for label, job in self.model.items():
            assert job.handle.next_run == job.next_fire, f"job {label}"

    def teardown(self) -> None:
        self.scheduler.shutdown()


RetryMachine.TestCase.settings = settings(
    max_examples=35,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_retries_and_singleton_modes_agree_with_their_model = RetryMachine.TestCase
