"""The measuring half of every workload, shared by all contestants.

Standard library only: this module runs inside every contestant's own interpreter,
including environments where gnomon is not installed.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

Handle = TypeVar("Handle")

HOURLY_PERIODS = tuple(3600 + i for i in range(3600))
"""W1 job periods, 1-2 h, so that no job fires while it is measured."""

Sample = tuple[float, float]
"""One run: (intended fire time, start time), both as Unix timestamps."""


@dataclass(frozen=True, slots=True)
class TimedSpec:
    """A real-time workload; times are seconds relative to the anchor ``t0``.

    Job ``i`` first fires at ``t0 + first_fire + i * stagger`` and every ``interval``
    after that. CPU is read over ``cpu_span`` seconds starting at ``t0 + cpu_from``, or
    ``settle`` seconds after setup, whichever is later. Runs intended in
    ``[t0, t0 + counted)`` are the ones summarised.
    """

    jobs: int
    interval: float
    first_fire: float
    stagger: float
    lead: float
    cpu_from: float
    cpu_span: float
    settle: float
    grace: float
    counted: float


@dataclass(slots=True)
class Observation:
    """What one real-time workload saw."""

    t0: float
    setup_seconds: float
    cpu_seconds: float
    cpu_window: tuple[float, float]
    samples: list[Sample] = field(default_factory=list)


class SyncSide(Protocol):
    """A contestant driven from the main thread."""

    samples: list[Sample]

    def add(self, interval: float, first_fire: float) -> None: ...
    def start(self) -> None: ...
    def idle_until(self, deadline: float) -> None: ...
    def shutdown(self) -> None: ...


class AsyncSide(Protocol):
    """A contestant that lives on an asyncio loop."""

    samples: list[Sample]

    async def add(self, interval: float, first_fire: float) -> None: ...
    async def start(self) -> None: ...
    async def idle_until(self, deadline: float) -> None: ...
    async def shutdown(self) -> None: ...


def cpu_seconds() -> float:
    """CPU time of the whole process (every thread), user plus system."""
    return time.process_time()


def sleep_until(deadline: float) -> None:
    """Sleep until the wall clock reaches ``deadline``."""
    while (remaining := deadline - time.time()) > 0:
        time.sleep(remaining)


async def async_sleep_until(deadline: float) -> None:
    """Sleep on the running loop until about when the wall clock reaches ``deadline``."""
    await asyncio.sleep(max(0.0, deadline - time.time()))


def fire_times(spec: TimedSpec, t0: float) -> list[float]:
    """The first fire time of every job of ``spec``."""
    return [t0 + spec.first_fire + i * spec.stagger for i in range(spec.jobs)]


def expected_runs(spec: TimedSpec) -> int:
    """How many runs ``spec`` intends in ``[t0, t0 + counted)``."""
    total = 0
    for first in fire_times(spec, 0.0):
        if first < spec.counted:
            total += math.ceil((spec.counted - first) / spec.interval)
    return total


def cpu_window(spec: TimedSpec, t0: float, ready: float) -> tuple[float, float]:
    """Where the CPU reading starts and ends, given when setup finished."""
    start = max(t0 + spec.cpu_from, ready + spec.settle)
    return start, start + spec.cpu_span


def run_timed(side: SyncSide, spec: TimedSpec) -> Observation:
    """Set ``side`` up with the jobs of ``spec``, let it run, and read what it did."""
    begun = time.time()
    t0 = begun + spec.lead
    for first in fire_times(spec, t0):
        side.add(spec.interval, first)
    side.start()
    ready = time.time()
    window = cpu_window(spec, t0, ready)
    side.idle_until(window[0])
    cpu_before = cpu_seconds()
    side.idle_until(window[1])
    cpu_used = cpu_seconds() - cpu_before
    side.idle_until(window[1] + spec.grace)
    side.shutdown()
    return Observation(t0, ready - begun, cpu_used, window, list(side.samples))


async def run_timed_async(side: AsyncSide, spec: TimedSpec) -> Observation:
    """``run_timed`` for a contestant on an asyncio loop."""
    begun = time.time()
    t0 = begun + spec.lead
    for first in fire_times(spec, t0):
        await side.add(spec.interval, first)
    await side.start()
    ready = time.time()
    window = cpu_window(spec, t0, ready)
    await side.idle_until(window[0])
    cpu_before = cpu_seconds()
    await side.idle_until(window[1])
    cpu_used = cpu_seconds() - cpu_before
    await side.idle_until(window[1] + spec.grace)
    await side.shutdown()
    return Observation(t0, ready - begun, cpu_used, window, list(side.samples))


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def lateness_ms(samples: Sequence[Sample]) -> dict[str, float]:
    """Lateness (start minus intended fire time) p50, p99 and max, in milliseconds."""
    if not samples:
        return {
            "lateness_p50_ms": float("nan"),
            "lateness_p99_ms": float("nan"),
            "lateness_max_ms": float("nan"),
        }
    ordered = sorted((started - intended) * 1000 for intended, started in samples)
    return {
        "lateness_p50_ms": statistics.median(ordered),
        "lateness_p99_ms": percentile(ordered, 0.99),
        "lateness_max_ms": ordered[-1],
    }


def counted_samples(observation: Observation, spec: TimedSpec) -> list[Sample]:
    """The runs whose intended fire time lies in the summarised span."""
    start, end = observation.t0 - 0.001, observation.t0 + spec.counted - 0.001
    return [s for s in observation.samples if start <= s[0] < end]


def summarise_timed(observation: Observation, spec: TimedSpec) -> dict[str, float]:
    """The figures W2, W3 and W4 report from one observation."""
    counted = counted_samples(observation, spec)
    in_window = [
        s
        for s in observation.samples
        if observation.cpu_window[0] <= s[1] < observation.cpu_window[1]
    ]
    summary = {
        "runs_done": float(len(counted)),
        "runs_expected": float(expected_runs(spec)),
        "runs_total": float(len(observation.samples)),
        "cpu_seconds": observation.cpu_seconds,
        "setup_seconds": observation.setup_seconds,
    }
    if in_window:
        summary["cpu_us_per_run"] = observation.cpu_seconds / len(in_window) * 1e6
    summary.update(lateness_ms(counted))
    return summary


def measure_scale(
    add: Callable[[int], Handle], remove: Callable[[Handle], None], n: int, removals: int
) -> dict[str, float]:
    """µs per add of ``n`` jobs, then µs per removal in insertion order and at random.

    Each figure is wall time; ``add_cpu_us`` is the process's CPU time per add, which
    other work on a busy machine inflates less.
    """
    gc.collect()
    wall, cpu = time.perf_counter(), cpu_seconds()
    handles = [add(i) for i in range(n)]
    add_us = (time.perf_counter() - wall) / n * 1e6
    add_cpu_us = (cpu_seconds() - cpu) / n * 1e6
    k = min(removals, n // 2)
    in_order = _time_each(remove, handles[:k])
    chosen = random.Random(n).sample(handles[k:], k)
    at_random = _time_each(remove, chosen)
    return {
        "add_us": add_us,
        "add_cpu_us": add_cpu_us,
        "remove_in_order_us": in_order,
        "remove_random_us": at_random,
        "removals": float(k),
    }


def _time_each(remove: Callable[[Handle], None], handles: Sequence[Handle]) -> float:
    started = time.perf_counter()
    for handle in handles:
        remove(handle)
    return (time.perf_counter() - started) / len(handles) * 1e6


def measure_memory(add: Callable[[int], object], n: int) -> dict[str, float]:
    """Bytes the scheduler keeps per job, traced by ``tracemalloc`` over ``n`` adds.

    The handles ``add`` returns are dropped, so only what the scheduler retains counts.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            add(i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {"bytes_per_job": (after - before) / n}
