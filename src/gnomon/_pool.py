"""A worker pool of daemon threads.

The standard ``ThreadPoolExecutor`` joins its threads at interpreter exit, so a task that
ignores cancellation would keep the process alive. Python threads cannot be killed; the
next best promise is that a stuck task never blocks exit, so these workers are daemons.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from gnomon._waker import sharpen_timers

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SLOW_SECONDS", "WorkerPool"]

P = ParamSpec("P")
T = TypeVar("T")
_IDLE_SECONDS = 30.0
SLOW_SECONDS = 0.5e-3
"""A queue drained slower than one task per this long is drained by more workers."""


class WorkerPool(Executor):
    """Up to ``max_workers`` daemon threads, started on demand, ended when idle.

    Workers are woken one at a time: work handed over while a wake-up is already on its
    way waits for that worker, which wakes the next one if work is still queued when it
    takes its own. That next one *stands by* while the queue is being drained by tasks
    that are quick: it joins in when the queue's pace (the running average of the time
    between two takes while work stayed queued) is slower than ``SLOW_SECONDS`` (the
    tasks block or compute), when no worker has taken work for twice the interpreter's
    switch interval (10 ms by default: a worker merely waiting for the interpreter is not
    stalled, the workers are held by long tasks), when a lead is queued or when no task
    runs; then it wakes the next in turn. A burst of short tasks is then drained by one
    thread, as fast as the interpreter allows, instead of by every thread fighting for
    the lock and the interpreter (which doubled the CPU a run costs), while a burst of
    tasks that block still spreads over every worker.

    One piece of work may *lead*: the scheduler's timer loop, run on a worker beside at
    most ``max_workers`` tasks (``lead``). The leader can hand the lead to another thread
    and become a plain worker, to run a due task itself without a hand-off
    (``hand_over``); the pool agrees only while a thread is free for the new leader and
    the task stays within ``max_workers``.
    """

    def __init__(self, max_workers: int, name: str = "gnomon-worker") -> None:
        self._max = max_workers
        self._name = name
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._work: deque[Callable[[], object]] = deque()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._waking = 0
        """Workers notified (or started) that have not taken work yet."""
        self._leads = 0
        """Lead work queued or running (0 or 1): it does not count against the maximum."""
        self._leads_queued = 0
        """Lead work queued, at the head of the queue (0 or 1): taken at once."""
        self._standing = 0
        """Workers standing by while another drains the queue (see the class)."""
        self._running = 0
        """Workers running a task they took from the queue (not the lead)."""
        self._standby = threading.Condition(self._lock)
        self._taken = 0.0
        """When a worker last took work (``time.monotonic()``)."""
        self._backlog = False
        """Work stayed queued after the last take: the next take shows the queue's pace."""
        self._pace = 0.0
        """The running average of the time between two takes while work stayed queued."""
        self._signals = 0
        """Notifies of idle workers not yet consumed (a notify can meet a wait's timeout:
        whoever wakes next consumes it, so ``_waking`` never counts one twice)."""
        self._stall = max(2e-3, 2 * sys.getswitchinterval())
        """How long queued work waits while no worker takes any before a standby joins."""
        self._closed = False
        self._serial = 0

    def spawn(self, work: Callable[[], object]) -> None:
        """Run ``work`` on a worker thread; no future, for the hot path."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._work.append(work)
            if not self._waking and not self._standing:
                self._wake_one()

    def lead(self, work: Callable[[], object]) -> None:
        """Run ``work``, the lead, on a thread at once: before any queued work, on an idle
        worker or a thread of its own. It calls ``end_lead()`` when it stops leading
        without handing over."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._leads += 1
            self._start_lead(work)

    def hand_over(self, work: Callable[[], object]) -> bool:
        """Called by the lead: let ``work`` lead on another thread at once, so that the
        caller can run one task itself. False (nothing done) when that task would exceed
        ``max_workers`` running tasks, or when the pool is shut down."""
        with self._lock:
            if self._closed:
                return False
            # Threads neither idle nor leading run tasks (or are on their way to one, as a
            # standby is).
            tasks = len(self._threads) - self._idle - self._leads
            if tasks >= self._max:
                return False
            self._start_lead(work)
            return True

    def end_lead(self) -> None:
        """The lead stopped without handing over."""
        with self._lock:
            self._leads -= 1

    def _start_lead(self, work: Callable[[], object]) -> None:
        self._work.appendleft(work)
        self._leads_queued += 1
        if self._idle > self._waking:
            self._waking += 1
            self._signals += 1
            self._ready.notify()
        else:
            self._waking += 1
            self._start_thread()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self.spawn(work)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; idle workers exit at once, busy ones when their task returns."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                self._work.clear()
            self._ready.notify_all()
            self._standby.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the workers to exit (after ``shutdown``)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    @property
    def thread_count(self) -> int:
        return len(self._threads)

    def _wake_one(self) -> None:
        """Wake an idle worker, or start one if none is idle (under the lock)."""
        if self._idle > 0:
            self._waking += 1
            self._signals += 1
            self._ready.notify()
        elif len(self._threads) < self._max + self._leads:
            self._waking += 1
            self._start_thread()

    def _start_thread(self) -> None:
        self._serial += 1
        thread = threading.Thread(
            target=self._worker, name=f"{self._name}-{self._serial}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def _worker(self) -> None:
        sharpen_timers()  # any worker may lead the timer loop, which waits for deadlines
        with self._lock:
            self._waking -= 1  # started to take work: it is here
        joining, counted = True, False
        try:
            while True:
                work, counted = self._next_work(joining, counted)
                if work is None:
                    return
                work()
                del work
                joining = False
        finally:
            with self._lock:
                if counted:  # the task raised, and ends this thread
                    self._running -= 1
                self._threads.discard(threading.current_thread())

    def _next_work(self, joining: bool, finished: bool) -> tuple[Callable[[], Any] | None, bool]:
        """The next work for this worker, and whether it is a task (not the lead).
        ``joining``: the worker ran nothing just before (one that did drains the queue
        without standing by); ``finished``: it just ran a task."""
        with self._lock:
            if finished:
                self._running -= 1
            while True:
                while not self._work:
                    if self._standing:
                        self._standby.notify_all()  # nothing is left to stand by for
                    if self._closed or not self._idle_wait():
                        return None, False
                    joining = True
                if not joining or not self._stand_by():
                    break
            work = self._work.popleft()
            now = time.monotonic()
            if self._backlog:
                self._pace += (now - self._taken - self._pace) / 8
            self._taken, self._backlog = now, bool(self._work)
            task = not self._leads_queued
            if task:
                self._running += 1
            else:
                self._leads_queued -= 1  # the lead, at the head
            if self._standing and (not task or self._pace >= SLOW_SECONDS):
                self._standby.notify()  # the queue is slow or no task may run: join in
            if self._work and not self._waking and not self._standing:
                self._wake_one()  # more is queued: the next worker stands by
            return work, task

    def _idle_wait(self) -> bool:
        """Wait for work as an idle worker (under the lock); False when idle too long."""
        self._idle += 1
        woke = self._ready.wait(_IDLE_SECONDS)
        self._idle -= 1
        if self._signals:
            self._signals -= 1
            self._waking -= 1
            woke = True
        return woke or bool(self._work)

    def _stand_by(self) -> bool:
        """Work is queued: wait while other workers drain it quickly (under the lock).
        False when this worker should take work now: a lead is queued, no worker runs a
        task, the queue's pace is slow, or no worker took any for ``_stall`` seconds;
        True when the queue emptied meanwhile."""
        self._standing += 1
        try:
            while self._work and not self._leads_queued and self._running:
                if self._pace >= SLOW_SECONDS:
                    return False
                left = self._taken + self._stall - time.monotonic()
                if left <= 0:
                    return False
                self._standby.wait(left)
            return not self._work
        finally:
            self._standing -= 1
