"""Helpers shared by the scheduler tests: error watching, gates, tallies, a recording monitor.

Real-time waits in these tests always block on an event or a condition with a generous
timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import gnomon

SchedulerFactory = Callable[..., gnomon.Scheduler]
"""Builds a scheduler on the test's fake clock, shut down when the test ends."""

UTC_ZONE = ZoneInfo("UTC")

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""The fake clock's starting instant: a Monday morning, far from any DST change."""

WAIT = 10.0
"""Seconds a real-time wait may take before the test fails: generous, for loaded CI."""

SECOND = timedelta(seconds=1)


class Boom(Exception):
    """A deliberate failure raised by test code; ERROR records caused by it are expected."""


class BigBoom(BaseException):
    """A deliberate ``BaseException`` that is neither KeyboardInterrupt nor SystemExit."""


def read(value: object) -> object:
    """Return ``value`` unchanged, typed as ``object``.

    Live properties such as ``running`` change between two reads; passing each read
    through here keeps the type checker from narrowing it as if it were a constant.
    """
    return value


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


@dataclass(frozen=True, slots=True)
class Trouble:
    """One unexpected problem seen by an :class:`ErrorWatch`."""

    where: str
    detail: str


WATCHED_LOGGERS = ("gnomon", "asyncio")


class ErrorWatch:
    """Collects every sign of an unexpected failure while a test runs.

    It hooks ``threading.excepthook``, ``sys.unraisablehook``, ERROR-level handlers on the
    ``gnomon`` and ``asyncio`` loggers (the default exception handler of the scheduler's
    own event loop logs there), and (through :meth:`loop_handler`) the tests' own loops. ERROR
    records whose exception is a :class:`Boom` (or :class:`BigBoom`) are deliberate and
    allowed; so are records a test explicitly allows with :meth:`allow_log`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._troubles: list[Trouble] = []
        self._allowed_fragments: list[str] = []
        self._handler = _ForwardingHandler(self._on_record)
        self._old_thread_hook = threading.excepthook
        self._old_unraisable_hook = sys.unraisablehook

    def install(self) -> None:
        threading.excepthook = self._on_thread_exception
        sys.unraisablehook = self._on_unraisable
        for name in WATCHED_LOGGERS:
            logging.getLogger(name).addHandler(self._handler)

    def uninstall(self) -> None:
        threading.excepthook = self._old_thread_hook
        sys.unraisablehook = self._old_unraisable_hook
        for name in WATCHED_LOGGERS:
            logging.getLogger(name).removeHandler(self._handler)

    def allow_log(self, fragment: str) -> None:
        """Allow ERROR records whose message contains ``fragment`` (a test expects them)."""
        with self._lock:
            self._allowed_fragments.append(fragment)

    @property
    def troubles(self) -> list[Trouble]:
        with self._lock:
            return list(self._troubles)

    def check(self) -> None:
        troubles = self.troubles
        assert not troubles, "unexpected failures:\n" + "\n".join(
            f"[{t.where}] {t.detail}" for t in troubles
        )

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An asyncio exception handler: ``loop.set_exception_handler(watch.loop_handler)``."""
        self._add("asyncio loop", f"{context.get('message')}: {context.get('exception')!r}")

    def _add(self, where: str, detail: str) -> None:
        with self._lock:
            self._troubles.append(Trouble(where, detail))

    def _on_thread_exception(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        self._add(f"thread {name}", f"{args.exc_type.__name__}: {args.exc_value!r}")

    def _on_unraisable(self, unraisable: Any) -> None:
        self._add("unraisable", f"{unraisable.exc_value!r} in {unraisable.object!r}")

    def _on_record(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR or self._is_expected(record):
            return
        self._add(f"log {record.name}", record.getMessage())

    def _is_expected(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], Boom | BigBoom):
            return True
        message = record.getMessage()
        with self._lock:
            return any(fragment in message for fragment in self._allowed_fragments)


class _ForwardingHandler(logging.Handler):
    def __init__(self, sink: Callable[[logging.LogRecord], None]) -> None:
        super().__init__(level=logging.ERROR)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink(record)


class Gate:
    """An event a task blocks on until the test opens it; never blocks past ``WAIT``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def open(self) -> None:
        self._event.set()

    def wait(self) -> None:
        if not self._event.wait(WAIT):
            raise Boom("a gate stayed closed for the whole wait")

    @property
    def is_open(self) -> bool:
        return self._event.is_set()


class Gates:
    """Hands out gates and opens every one of them when the test ends."""

    def __init__(self) -> None:
        self._gates: list[Gate] = []

    def __call__(self) -> Gate:
        gate = Gate()
        self._gates.append(gate)
        return gate

    def open_all(self) -> None:
        for gate in self._gates:
            gate.open()


class Tally:
    """A thread-safe list of hits that a test can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._hits: list[Any] = []

    def hit(self, value: Any = None) -> None:
        with self._cond:
            self._hits.append(value)
            self._cond.notify_all()

    @property
    def count(self) -> int:
        with self._cond:
            return len(self._hits)

    @property
    def values(self) -> list[Any]:
        with self._cond:
            return list(self._hits)

    def wait_for(self, n: int, timeout: float = WAIT) -> None:
        with self._cond:
            reached = self._cond.wait_for(lambda: len(self._hits) >= n, timeout)
            assert reached, f"waited {timeout}s for {n} hits, got {len(self._hits)}"


class RecordingMonitor(gnomon.Monitor):
    """Records every monitor call; tallies let tests wait for them."""

    def __init__(self) -> None:
        self.started = Tally()
        self.stopped = Tally()
        self.registered = Tally()
        self.unregistered = Tally()
        self.run_started_events = Tally()
        self.run_finished_events = Tally()
        self.run_skipped_events = Tally()
        self.delays = Tally()

    def scheduler_started(self) -> None:
        self.started.hit()

    def scheduler_stopped(self) -> None:
        self.stopped.hit()

    def job_registered(self, job: Any) -> None:
        self.registered.hit(job.id)

    def job_unregistered(self, job: Any) -> None:
        self.unregistered.hit(job.id)

    def run_started(self, event: gnomon.RunEvent) -> None:
        self.run_started_events.hit(event)

    def run_finished(self, event: gnomon.RunEvent) -> None:
        self.run_finished_events.hit(event)

    def run_skipped(self, event: gnomon.RunEvent) -> None:
        self.run_skipped_events.hit(event)

    def scheduling_delay(self, event: gnomon.RunEvent, delay: float) -> None:
        self.delays.hit(delay)

    def skips(self, outcome: gnomon.Outcome) -> list[gnomon.RunEvent]:
        return [e for e in self.run_skipped_events.values if e.outcome is outcome]

    def finished(self, job_id: uuid.UUID | None = None) -> list[gnomon.RunEvent]:
        events: list[gnomon.RunEvent] = self.run_finished_events.values
        return [e for e in events if job_id is None or e.job_id == job_id]


def run_async(
    watch: ErrorWatch, scenario: Callable[[], Coroutine[Any, Any, None]], limit: float = 60.0
) -> None:
    """Run an async scenario on a fresh loop whose exception handler reports to ``watch``."""

    async def guarded() -> None:
        asyncio.get_running_loop().set_exception_handler(watch.loop_handler)
        await asyncio.wait_for(scenario(), limit)

    asyncio.run(guarded())


BURST_LEAD = timedelta(seconds=1)
"""How far ahead a test's burst is due: its jobs are all armed before, however slow."""


def start_burst(
    scheduler: gnomon.Scheduler, jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> None:
    """Add one-off jobs all due at one instant ``BURST_LEAD`` ahead, then start: they are
    armed together and fired at one wake-up, however slow the adding was."""
    due = gnomon.once(datetime.now(UTC) + BURST_LEAD)
    for func, args in jobs:
        scheduler.add_job(func, due, args=args)
    scheduler.start()


def burst_ends(scheduler: gnomon.Scheduler) -> bool:
    """Wait until no burst is going on (its runner clears it just after its last run)."""
    with scheduler._engine.lock:
        return scheduler._timer_wake.wait_for(lambda: scheduler._burster is None, WAIT)


def wait_until(predicate: Callable[[], bool], message: str, timeout: float = WAIT) -> None:
    """Poll a condition that has no event to wait on (thread counts, queue lengths)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout}s for: {message}"
        time.sleep(0.005)


def job_ids(jobs: list[Any]) -> list[uuid.UUID]:
    return [job.id for job in jobs]


@contextmanager
def background(target: Callable[[], object], name: str = "test-helper") -> Iterator[Tally]:
    """Run ``target`` on a thread; the tally records its result or exception when done."""
    done = Tally()

    def run() -> None:
        try:
            done.hit(("ok", target()))
        except BaseException as exc:
            done.hit(("raised", exc))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(WAIT)
        assert not thread.is_alive(), f"{name} did not finish within {WAIT}s"


class SimpleLease(gnomon.Lease):
    """A lease that never expires; enough for lockers that live inside one test."""

    def __init__(self, key: str, token: int, ttl: timedelta, released: Tally) -> None:
        self.key, self.token, self.attempt, self.ttl = key, token, 1, ttl
        self._released = released

    async def renew(self) -> None:
        """Nothing to extend: the lease lives as long as the test."""

    async def release(self) -> None:
        """The claim is kept, so a late node still finds the occurrence done."""
        self._released.hit(self.key)


class SharedLocker(gnomon.Locker):
    """An in-test locker shared by several schedulers: the first claim of a key wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, int] = {}
        self.attempts = Tally()
        self.released = Tally()
        self.closed = Tally()

    async def acquire(
        self,
        key: str,
        ttl: timedelta,
        *,
        recovery: gnomon.Recovery = gnomon.Recovery.AT_MOST_ONCE,
    ) -> gnomon.Lease:
        self.attempts.hit(key)
        with self._lock:
            if key in self._claims:
                raise gnomon.LockHeld(key)
            token = self._claims[key] = len(self._claims) + 100
        return SimpleLease(key, token, ttl, self.released)

    async def close(self) -> None:
        self.closed.hit()


class BrokenLocker(gnomon.Locker):
    """A locker whose store is unreachable: every claim is a lock error."""

    async def acquire(
        self,
        key: str,
        ttl: timedelta,
        *,
        recovery: gnomon.Recovery = gnomon.Recovery.AT_MOST_ONCE,
    ) -> gnomon.Lease:
        raise Boom(f"the lock store is unreachable for {key}")


class FixedElector(gnomon.Elector):
    """An elector whose answer a test fixes: a fencing token (leader) or None."""

    def __init__(self, token: int | None) -> None:
        self.token = token
        self.asked = Tally()
        self.started = Tally()
        self.closed = Tally()

    async def is_leader(self) -> int | None:
        self.asked.hit()
        return self.token

    async def start(self) -> None:
        self.started.hit()

    async def close(self) -> None:
        self.closed.hit()
