"""The measuring half of the store workloads (S1-S4), shared by gnomon and APScheduler 3.

Standard library only. Each function takes the library-specific part as callables, so
that both contestants are timed by the same code.
"""

from __future__ import annotations

import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

SENTINEL_ARG = 987654321
"""The argument of the template job every prepared job is cloned from."""

SPREAD_SECONDS = 3600
"""Prepared hourly jobs start spread over this many seconds, an hour from now."""


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_bytes() -> int:
    """This process's resident set size now (not its peak)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def sleep_until(deadline: float) -> None:
    while (remaining := deadline - time.time()) > 0:
        time.sleep(remaining)


def cpu_seconds() -> float:
    """CPU time of the whole process (every thread), user plus system."""
    return time.process_time()


# ---------------------------------------------------------------- S1: add cost


def time_adds(add: Callable[[int], object], count: int, warmup: int) -> dict[str, float]:
    """µs per call of ``add(i)``: mean, p50, p99, and CPU µs per call."""
    for i in range(warmup):
        add(-1 - i)
    gc.collect()
    each: list[float] = []
    wall, cpu = time.perf_counter(), cpu_seconds()
    for i in range(count):
        started = time.perf_counter()
        add(i)
        each.append(time.perf_counter() - started)
    total = time.perf_counter() - wall
    cpu_used = cpu_seconds() - cpu
    each.sort()
    return {
        "add_us": total / count * 1e6,
        "add_p50_us": statistics.median(each) * 1e6,
        "add_p99_us": percentile(each, 0.99) * 1e6,
        "add_cpu_us": cpu_used / count * 1e6,
        "adds": float(count),
    }


# ---------------------------------------------------------------- S2: start


class FirstFire:
    """What a due task reports: when it first ran."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.at: float | None = None

    def __call__(self, *args: object) -> None:
        if self.at is None:
            self.at = time.time()
        self.event.set()


def time_start(
    store_due: Callable[[float], None],
    start: Callable[[], object],
    fired: FirstFire,
    loaded: Callable[[object], int],
    stop: Callable[[object], None],
    *,
    jobs: int,
    lead: float,
    timeout: float,
) -> dict[str, float]:
    """Construct and start a scheduler over ``jobs`` stored jobs plus one that runs every
    second from ``lead`` seconds after the construction begins; seconds to ``start()``
    returning and to that job's first run, and the resident memory the start added per
    stored job.

    ``store_due(at)`` stores the every-second job before the clock starts (by a scheduler
    that never loads the others); ``start()`` constructs and starts the measured one.
    """
    margin = 0.5
    begin = time.time() + margin
    due_at = begin + lead
    store_due(due_at)
    gc.collect()
    rss_before = rss_bytes()
    sleep_until(begin)
    t0 = time.time()
    scheduler = start()
    started = time.time()
    fired.event.wait(timeout)
    rss_after = rss_bytes()
    try:
        count = loaded(scheduler)
    finally:
        stop(scheduler)
    first = fired.at
    return {
        "start_s": started - t0,
        "first_fire_s": float("nan") if first is None else first - t0,
        "first_fire_late_ms": float("nan") if first is None else (first - due_at) * 1000,
        "rss_bytes_per_job": (rss_after - rss_before) / jobs,
        "loaded_jobs": float(count),
        "lead_s": lead,
    }


def trace_start(
    start: Callable[[], object], stop: Callable[[object], None], jobs: int
) -> dict[str, float]:
    """Bytes per stored job that a started scheduler keeps, traced by ``tracemalloc``."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        scheduler = start()
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stop(scheduler)
    return {
        "bytes_per_job": (after - before) / jobs,
        "peak_bytes_per_job": (peak - before) / jobs,
    }


# ---------------------------------------------------------------- S3: propagation


def change_plan(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` changes, cycling add, rule update, pause, resume on fresh jobs."""
    rng = random.Random(seed)
    plan: list[dict[str, Any]] = []
    job = ""
    for i in range(count):
        step = i % 4
        if step == 0:
            job = f"{rng.getrandbits(128):032x}"
            plan.append({"op": "add", "job": job, "arg": i})
        elif step == 1:
            plan.append({"op": "rule", "job": job, "seconds": 3600 + i})
        elif step == 2:
            plan.append({"op": "pause", "job": job})
        else:
            plan.append({"op": "resume", "job": job})
    return plan


def propagate(
    perform: Callable[[dict[str, Any]], None],
    observer: list[str],
    *,
    changes: int,
    max_pause: float,
    timeout: float,
) -> dict[str, float]:
    """Make ``changes`` changes here while another process (``observer``, a command
    running :func:`observe`) watches for each; latency is from the start of the call that
    makes a change to the observer seeing it. A random pause before each change keeps
    the changes out of step with the observer's polling."""
    rng = random.Random(changes)
    process = subprocess.Popen(
        observer, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert process.stdin is not None
    assert process.stdout is not None
    latencies: list[float] = []
    calls: list[float] = []
    missed = 0
    try:
        _expect(process, "ready", timeout=120)
        for change in change_plan(changes, seed=changes):
            process.stdin.write(json.dumps(change) + "\n")
            process.stdin.flush()
            _expect(process, "watching", timeout=timeout)
            time.sleep(rng.uniform(0, max_pause))
            called = time.time()
            perform(change)
            calls.append(time.time() - called)
            seen = json.loads(_line(process, timeout=timeout + 5))["seen"]
            if seen is None:
                missed += 1
            else:
                latencies.append(seen - called)
        process.stdin.write(json.dumps({"op": "stop"}) + "\n")
        process.stdin.flush()
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    latencies.sort()
    result = {
        "changes": float(changes),
        "missed": float(missed),
        "call_ms": statistics.median(calls) * 1000,
    }
    if latencies:
        result.update(
            {
                "latency_p50_ms": statistics.median(latencies) * 1000,
                "latency_p99_ms": percentile(latencies, 0.99) * 1000,
                "latency_max_ms": latencies[-1] * 1000,
            }
        )
    return result


def _line(process: subprocess.Popen[str], timeout: float) -> str:
    """The observer's next line; its failure, if it ended instead."""
    assert process.stdout is not None
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not found or not found[0]:
        process.kill()
        raise RuntimeError(f"the observer process stopped answering (exit {process.wait()})")
    return found[0].strip()


def _expect(process: subprocess.Popen[str], word: str, timeout: float) -> None:
    line = _line(process, timeout)
    if line != word:
        raise RuntimeError(f"the observer said {line!r}, expected {word!r}")


def observe(seen: Callable[[dict[str, Any]], bool], *, timeout: float, poll: float = 0.001) -> None:
    """The observer's side: for each change read from stdin, say "watching", poll
    ``seen(change)`` every ``poll`` seconds, and report when it first held."""
    print("ready", flush=True)
    for line in sys.stdin:
        change = json.loads(line)
        if change["op"] == "stop":
            break
        print("watching", flush=True)
        deadline = time.time() + timeout
        at: float | None = None
        while True:
            if seen(change):
                at = time.time()
                break
            if time.time() > deadline:
                break
            time.sleep(poll)
        print(json.dumps({"seen": at}), flush=True)


# ---------------------------------------------------------------- S4: idle


def idle_cpu(seconds: float, settle: float) -> dict[str, float]:
    """CPU seconds the whole process uses over ``seconds``, after ``settle`` seconds."""
    time.sleep(settle)
    cpu = cpu_seconds()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_seconds": cpu_seconds() - cpu,
        "rusage_seconds": (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime),
        "idle_seconds": seconds,
    }
