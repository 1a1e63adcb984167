"""A precise wake-up for an asyncio loop, and the last stretch before a deadline.

``loop.call_later`` cannot wake a loop on time: the selector's timeout is a whole number
of milliseconds, rounded up, so a timer fires on average half a millisecond late, and up
to a whole one. A thread waits on a condition variable instead, which wakes within a
fraction of a millisecond, and hands the wake-up to the loop through its self-pipe
(``call_soon_threadsafe``), which the selector notices at once. It does so ``EARLY``
before the deadline: the loop fires what is due ahead, then ``arrive``s at the deadline
before it starts any run. The thread face's leading thread does the same.

The thread waits only while a deadline is set; it never touches the scheduler's state,
only calls ``callback`` on the loop, once per deadline.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["EARLY", "LoopWaker", "arrive", "sharpen_timers"]

_MAX_SLEEP = 60.0
EARLY = 200e-6
"""How long before a deadline a timer thread ends its timed wait (seconds).

A timed wait on a condition ends about 0.1 ms late at the median on an idle machine,
more at the tail; the thread wakes this much early and covers the rest with ``arrive``.
"""
_PR_SET_TIMERSLACK = 29
_SLACK_NS = 1


def sharpen_timers() -> None:
    """Ask Linux to end this thread's timed waits on time.

    By default the kernel may end a timed wait up to 50 µs late, to group wake-ups;
    gnomon's timer threads wait for deadlines, so they ask for no such slack (the
    setting is per thread). Elsewhere, or if the call fails, nothing changes.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_TIMERSLACK, _SLACK_NS, 0, 0, 0)


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, loaded once (a ``CDLL`` is a reference cycle left to the
    garbage collector, one per worker thread otherwise); None where it does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # only where the call exists

        prctl: Callable[..., int] = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def arrive(deadline: float, early: float = EARLY) -> None:
    """Return when ``time.time()`` reaches ``deadline``, at most ``early`` away.

    The last stretch before a deadline, after a timed wait that ended early on purpose:
    the thread yields (``time.sleep(0)``, which releases the interpreter to other
    threads) until the deadline, so it is running when the deadline comes instead of
    being woken by the kernel after it. It costs at most ``early`` of CPU per deadline.
    If the wall clock is stepped back meanwhile, it still returns within ``2 * early``.
    """
    clock, pause, elapsed = time.time, time.sleep, time.monotonic
    cap = elapsed() + 2 * early
    while clock() < deadline and elapsed() < cap:
        pause(0)


class LoopWaker:
    """Calls ``callback(deadline)`` on ``loop`` just before the wall clock reaches the set
    deadline: ``EARLY`` before it, or at once if that has passed. The callback does what
    it can ahead of time, then ``arrive``s before anything that must not start early."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[float], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._deadline: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._main, name="gnomon-waker", daemon=True)
        self._thread.start()

    def set(self, deadline: float | None) -> None:
        """Wake the loop at ``deadline`` (a ``time.time()`` stamp); None: not at all.

        Replaces any earlier deadline; safe from any thread.
        """
        with self._lock:
            earlier = self._deadline
            self._deadline = deadline
            if deadline is not None and (earlier is None or deadline < earlier):
                self._changed.notify()

    def close(self) -> None:
        """Stop the thread (it ends at once; a pending deadline is dropped)."""
        with self._lock:
            self._closed = True
            self._deadline = None
            self._changed.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _main(self) -> None:
        sharpen_timers()
        clock = time.time
        with self._lock:
            while not self._closed:
                deadline = self._deadline
                if deadline is None:
                    self._changed.wait(_MAX_SLEEP)
                    continue
                wait = deadline - clock()
                if wait > EARLY:
                    self._changed.wait(min(wait - EARLY, _MAX_SLEEP))
                    continue
                self._deadline = None  # one wake-up per deadline; the callback sets the next
                loop = self._loop
                if loop.is_closed():
                    return
                try:
                    loop.call_soon_threadsafe(self._callback, deadline)
                except RuntimeError:  # the loop closed meanwhile
                    return
