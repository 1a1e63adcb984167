"""Stress: eight threads change a running real-time scheduler at random while its jobs fire
every few milliseconds and its listeners change it too.

Invariants: no unexpected exception anywhere and no ERROR record (the autouse ``errors``
fixture); no run of a job starts after ``remove_job`` for it returned; the thread count
returns to its baseline after shutdown; the whole thing finishes in bounded time.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from scheduler_support import UTC_ZONE, WAIT, Tally, wait_until

import gnomon

THREADS = 8
OPERATIONS_PER_THREAD = 5_000
JOBS_PER_THREAD = 6
TAGS = ("red", "green", "blue", "amber")
TAG_WEIGHTS = (30, 30, 30, 10)
"""Few jobs are amber: ``remove_by_tags("amber")`` should thin the jobs, not wipe them."""
OPERATIONS = ("remove_job", "update_job", "remove_by_tags", "run_now", "jobs", "next_runs")
WEIGHTS = (5, 15, 2, 20, 28, 30)
PACE = 0.0004
"""Upper bound of the random pause between one thread's operations, in seconds."""
TIME_LIMIT = 60.0
"""Seconds the whole stress run may take on a 2-core CI machine."""


@dataclass
class Ledger:
    """What the threads did and saw, shared between them under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    removed: set[uuid.UUID] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    runs: int = 0
    operations: int = 0
    shutting_down: threading.Event = field(default_factory=threading.Event)

    def record_removed(self, job_id: uuid.UUID) -> None:
        with self.lock:
            self.removed.add(job_id)

    def record_run(self, ctx: gnomon.JobContext) -> None:
        # A run that was in flight when its job was removed has been signalled; a run
        # that is neither signalled nor allowed started after remove_job returned.
        with self.lock:
            self.runs += 1
            if ctx.job_id in self.removed and not ctx.cancelled.is_set():
                self.violations.append(f"{ctx.job_id} ran after removal at {ctx.scheduled_at}")

    def record_unexpected(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.unexpected.append(f"{where}: {type(exc).__name__}: {exc}")


class Workload:
    """Random operations against one scheduler; listeners that mutate it as well."""

    def __init__(self, scheduler: gnomon.Scheduler, ledger: Ledger) -> None:
        self.s = scheduler
        self.ledger = ledger

    def task(self, ctx: gnomon.JobContext) -> None:
        self.ledger.record_run(ctx)

    def before_run(self, event: gnomon.RunEvent) -> None:
        roll = random.random()
        if roll < 0.003:
            self.guarded("listener remove_job", lambda: self.remove(event.job_id))
        elif roll < 0.006:
            self.guarded("listener add_job", lambda: self.add(random.Random(), max_runs=3))

    def after_run(self, event: gnomon.RunEvent) -> None:
        roll = random.random()
        if roll < 0.003:
            self.guarded("listener remove_by_tags", lambda: self.s.remove_by_tags("amber"))
        elif roll < 0.006:
            self.guarded("listener run_now", lambda: self.s.get_job(event.job_id).run_now())

    def add(self, rng: random.Random, max_runs: int | None = None) -> uuid.UUID:
        job = self.s.add_job(
            self.task,
            gnomon.every(timedelta(milliseconds=rng.randint(5, 25))),
            tags=tuple(rng.choices(TAGS, weights=TAG_WEIGHTS)),
            max_runs=max_runs if max_runs is not None else rng.choice([None, None, 5]),
            singleton=rng.choice([None, gnomon.LimitMode.RESCHEDULE, gnomon.LimitMode.WAIT]),
            before_run=self.before_run,
            after_run=self.after_run,
        )
        return job.id

    def remove(self, job_id: uuid.UUID) -> None:
        self.s.remove_job(job_id)
        self.ledger.record_removed(job_id)

    def guarded(self, where: str, operation: Callable[[], object]) -> bool:
        """Run one operation; False if its job was gone (removed elsewhere, or max_runs)."""
        try:
            operation()
        except gnomon.JobNotFound:
            return False
        except gnomon.SchedulerShutDown as exc:
            # Documented once shutdown has begun: a listener still running then may get it.
            if not self.ledger.shutting_down.is_set():
                self.ledger.record_unexpected(where, exc)
        except Exception as exc:
            self.ledger.record_unexpected(where, exc)
        return True

    def operate(self, seed: int, deadline: float) -> None:
        rng = random.Random(seed)
        mine: list[uuid.UUID] = []
        for _ in range(OPERATIONS_PER_THREAD):
            if time.monotonic() > deadline:
                self.ledger.record_unexpected("operate", TimeoutError("ran past the deadline"))
                return
            self.one_operation(rng, mine)
            with self.ledger.lock:
                self.ledger.operations += 1
            # Spread the operations over time so that they interleave with many firings.
            time.sleep(rng.random() * PACE)

    def one_operation(self, rng: random.Random, mine: list[uuid.UUID]) -> None:
        if not mine or (len(mine) < JOBS_PER_THREAD and rng.random() < 0.2):
            self.guarded("add_job", lambda: mine.append(self.add(rng)))
            return
        job_id = rng.choice(mine)
        operation = rng.choices(OPERATIONS, weights=WEIGHTS)[0]
        if operation == "remove_job":
            mine.remove(job_id)
            self.guarded(operation, lambda: self.remove(job_id))
        elif not self.guarded(operation, lambda: self.on_job(operation, rng, job_id)):
            mine.remove(job_id)

    def on_job(self, operation: str, rng: random.Random, job_id: uuid.UUID) -> object:
        if operation == "update_job":
            return self.update(rng, job_id)
        if operation == "remove_by_tags":
            return self.s.remove_by_tags("amber")
        if operation == "run_now":
            return self.s.get_job(job_id).run_now()
        if operation == "jobs":
            return self.s.jobs(tags=[rng.choice(TAGS)])
        return self.s.get_job(job_id).next_runs(3)

    def update(self, rng: random.Random, job_id: uuid.UUID) -> gnomon.Job:
        return self.s.update_job(
            job_id,
            rule=gnomon.every(timedelta(milliseconds=rng.randint(5, 25))),
            tags=tuple(rng.choices(TAGS, weights=TAG_WEIGHTS)),
        )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_random_concurrent_changes_to_a_running_scheduler_keep_every_invariant() -> None:
    baseline = threading.active_count()
    ledger = Ledger()
    started_at = time.monotonic()
    deadline = started_at + TIME_LIMIT
    scheduler = gnomon.Scheduler(timezone=UTC_ZONE, stop_timeout=WAIT)
    workload = Workload(scheduler, ledger)
    scheduler.start()
    finished = Tally()

    def operator(seed: int) -> None:
        workload.operate(seed, deadline)
        finished.hit(seed)

    threads = [
        threading.Thread(target=operator, args=(seed,), name=f"stress-{seed}", daemon=True)
        for seed in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    finished.wait_for(THREADS, timeout=TIME_LIMIT + WAIT)
    for thread in threads:
        thread.join(WAIT)
    ledger.shutting_down.set()
    scheduler.shutdown()
    elapsed = time.monotonic() - started_at

    wait_until(lambda: threading.active_count() <= baseline, "threads back to the baseline")
    print(f"stress: {ledger.operations} operations, {ledger.runs} runs in {elapsed:.1f}s")
    assert ledger.unexpected == []
    assert ledger.violations == []
    assert ledger.operations == THREADS * OPERATIONS_PER_THREAD
    assert ledger.removed, "the workload must have removed jobs"
    assert ledger.runs > 500, "the jobs must have fired while the threads worked"
    assert elapsed < TIME_LIMIT
