"""Helpers for testing code that uses gnomon: a fake clock and in-process cluster backends.

``FakeClock`` drives a scheduler deterministically::

    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    with Scheduler(clock=clock) as s:
        s.add_job(task, gnomon.every("1m"))
        clock.advance("10m")      # dispatches the ten runs, in order
        s.wait_idle()             # ... and this waits for them to finish

``OffsetClock`` is the real clock shifted by an offset (a node with a skewed clock).
``MemoryLocker`` and ``MemoryElector`` honour the Locker and Elector contracts within one
process, so cluster behaviour can be tested without Redis or PostgreSQL; ``MemoryStore``
does the same for the store contract (durable jobs, claims, history).
"""

from __future__ import annotations

from gnomon._clock import FakeClock, OffsetClock, SystemClock
from gnomon._memory import MemoryElector, MemoryLocker
from gnomon._stores.memory import MemoryStore

__all__ = [
    "FakeClock",
    "MemoryElector",
    "MemoryLocker",
    "MemoryStore",
    "OffsetClock",
    "SystemClock",
]
