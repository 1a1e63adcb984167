"""What a burst's run costs at least, beside what ``schedule`` spends on each due job.

W2 asks gnomon's burst lateness to be no worse than ``schedule``'s, which calls each due
job inline on its polling thread. A run's lateness in a burst is the work done for the
runs before it, so the target needs gnomon's whole per-run work to cost no more than
``schedule``'s per-job work. This script measures, in one process:

- ``schedule``: one ``run_pending()`` over 1,000 due jobs (a no-op recording task, as
  in W2), per job;
- the *floor*: the interpreter's price of each step a run must take to keep gnomon's
  promises (fire in time order, count it under the lock, give the task its context,
  record how it ended in the history), each timed alone and summed;
- gnomon's whole run: the median time from one run's start to the next in 1,000-job
  bursts on the system clock (what each run adds to the lateness of those after it),
  on each face.

Run it from the repository root: ``.venv/bin/python bench/floor.py [--reps 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import heapq
import itertools
import statistics
import threading
import time
import timeit
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import schedule

import gnomon
from gnomon import JobContext
from gnomon._events import lazy_context

HEAP = 1_000
"""Timer-heap entries in the firing step (a 1,000-job burst's heap)."""
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _schedule_per_job(jobs: int, bursts: int) -> float:
    """µs per due job in one ``run_pending()``, with every job due."""
    scheduler = schedule.Scheduler()
    samples: list[float] = []
    due = [scheduler.every(1).seconds.do(lambda: samples.append(time.time())) for _ in range(jobs)]
    total = 0.0
    for _ in range(bursts):
        past = datetime.now() - timedelta(seconds=1)
        for job in due:
            job.next_run = past
        started = time.perf_counter()
        scheduler.run_pending()
        total += time.perf_counter() - started
    assert len(samples) == jobs * bursts
    return total / (jobs * bursts) * 1e6


class _Record:
    """The least a run's record holds: what ran, when, and how it ended."""

    __slots__ = (
        "attempt",
        "error",
        "finished_at",
        "job",
        "outcome",
        "result",
        "scheduled_at",
        "started_at",
    )

    def __init__(self, job: object, scheduled_at: datetime) -> None:
        self.job = job
        self.scheduled_at = scheduled_at
        self.attempt = 1
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.result: object = None

    @property
    def key(self) -> str:
        """The occurrence key a context reads when the task asks for it."""
        return "job@key"

    @property
    def cancelled(self) -> threading.Event:
        """The cancellation event a context reads when the task asks for it."""
        return _NEVER_CANCELLED


_NEVER_CANCELLED = threading.Event()


def _floor_steps() -> dict[str, Callable[[], object]]:
    """One callable per step of a run; each does the step once."""
    heap: list[tuple[float, int, int]] = [(float(i), i, i) for i in range(HEAP)]
    heapq.heapify(heap)
    lock = threading.Lock()
    current = contextvars.ContextVar[object]("current")
    history: deque[tuple[object, ...]] = deque(maxlen=1000)
    due = EPOCH
    interval = timedelta(seconds=1)
    job_id = uuid.uuid4()
    record = _Record(job_id, due)

    def fire_in_time_order() -> None:  # take the earliest entry, push its next one
        stamp, seq, target = heapq.heappop(heap)
        heapq.heappush(heap, (stamp + 1.0, seq, target))

    def next_fire_time() -> float:
        return (due + interval).timestamp()

    def counted_under_the_lock() -> None:  # begun (counted), finished (released)
        with lock:
            pass
        with lock:
            pass

    def run_record() -> _Record:
        return _Record(job_id, due)

    def clock_reads() -> tuple[float, float]:  # started, finished (as datetimes when read)
        return time.time(), time.time()

    def task_context() -> JobContext:  # its key and cancellation event made when read
        return lazy_context(record, job_id, "job", due, None, 1)

    def current_run() -> None:  # so that the task's own calls know their run
        token = current.set(job_id)
        current.reset(token)

    def call_the_task() -> None:
        try:
            _noop_task()
        except Exception as exc:  # a run records what its task raises
            history.append((job_id, "failed", exc))

    def history_entry() -> None:
        history.append((job_id, "success", None, due, 1, None))

    return {
        "fire in time order (heap pop and push)": fire_in_time_order,
        "next fire time and its stamp": next_fire_time,
        "counted and released under the engine lock (2 holds)": counted_under_the_lock,
        "the run's record (8 fields)": run_record,
        "start and end stamps (`time.time()` twice)": clock_reads,
        "the task's JobContext": task_context,
        "the current run, set and reset": current_run,
        "the call into the task": call_the_task,
        "the history entry": history_entry,
    }


def _noop_task() -> None:
    pass


def _per_call_us(step: Callable[[], object], reps: int) -> float:
    return min(timeit.repeat(step, number=20_000, repeat=reps)) / 20_000 * 1e6


def _spacing(starts: list[float]) -> float:
    """µs between consecutive run starts within a burst, the median over all bursts:
    what each run adds to the lateness of the runs after it."""
    starts.sort()
    gaps = [b - a for a, b in itertools.pairwise(starts) if b - a < GAP_BETWEEN_BURSTS]
    return statistics.median(gaps) * 1e6


GAP_BETWEEN_BURSTS = 0.5
"""Starts further apart than this (seconds) belong to different bursts."""


def _first_fire() -> datetime:
    """A whole second at least 0.5 s away: the bursts' first instant."""
    return datetime.fromtimestamp(int(time.time()) + 2, UTC)


def _thread_burst(jobs: int, bursts: int) -> float:
    """``Scheduler`` on the system clock: 1,000 jobs due at the same instants."""
    starts: list[float] = []

    def record(ctx: JobContext) -> None:
        starts.append(time.time())

    scheduler = gnomon.Scheduler()
    first = _first_fire()
    for _ in range(jobs):
        scheduler.add_job(record, gnomon.every(1.0), start_at=first)
    scheduler.start()
    try:
        sleep_until = first.timestamp() + bursts - GAP_BETWEEN_BURSTS
        time.sleep(max(0.0, sleep_until - time.time()))
    finally:
        scheduler.shutdown()
    assert len(starts) == jobs * bursts
    return _spacing(starts)


def _async_burst(jobs: int, bursts: int) -> float:
    """``AsyncScheduler`` on the system clock: 1,000 jobs due at the same instants."""
    starts: list[float] = []

    async def record(ctx: JobContext) -> None:
        starts.append(time.time())

    async def on_loop() -> None:
        scheduler = gnomon.AsyncScheduler()
        first = _first_fire()
        for _ in range(jobs):
            await scheduler.add_job(record, gnomon.every(1.0), start_at=first)
        await scheduler.start()
        try:
            sleep_until = first.timestamp() + bursts - GAP_BETWEEN_BURSTS
            await asyncio.sleep(max(0.0, sleep_until - time.time()))
        finally:
            await scheduler.shutdown()

    asyncio.run(on_loop())
    assert len(starts) == jobs * bursts
    return _spacing(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions; the median is shown")
    parser.add_argument("--jobs", type=int, default=1_000, help="jobs due at once (1,000)")
    parser.add_argument("--bursts", type=int, default=3, help="bursts per repetition (3)")
    args = parser.parse_args()
    reps, jobs, bursts = args.reps, args.jobs, args.bursts
    gc.collect()
    steps = _floor_steps()
    rows: dict[str, list[float]] = {name: [] for name in steps}
    peers: dict[str, list[float]] = {"schedule": [], "thread": [], "async": []}
    for _ in range(reps):  # interleaved, so that a slow moment of the machine hits all
        peers["schedule"].append(_schedule_per_job(jobs, bursts))
        for name, step in steps.items():
            rows[name].append(_per_call_us(step, 3))
        peers["thread"].append(_thread_burst(jobs, bursts))
        peers["async"].append(_async_burst(jobs, bursts))
    median = {name: statistics.median(values) for name, values in {**rows, **peers}.items()}
    floor = sum(median[name] for name in steps)
    print(f"Medians of {reps} interleaved repetitions, µs; {jobs:,} jobs due at once.\n")
    print("| step a run must take | µs |\n| --- | --- |")
    for name in steps:
        print(f"| {name} | {median[name]:.2f} |")
    print(f"| **floor: the steps' sum** | **{floor:.2f}** |\n")
    print("| per run (per job for `schedule`) | µs | times `schedule`'s |\n| --- | --- | --- |")
    base = median["schedule"]
    shown: list[tuple[str, float]] = [
        ("`schedule`, one `run_pending()` over the due jobs (wall)", base),
        ("the floor above", floor),
        ("gnomon `Scheduler`, from one run's start to the next in a burst", median["thread"]),
        ("gnomon `AsyncScheduler`, the same", median["async"]),
    ]
    for label, value in shown:
        print(f"| {label} | {value:.2f} | {value / base:.1f} |")


if __name__ == "__main__":
    main()
