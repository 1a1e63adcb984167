"""Clocks: the real one, a shifted real one, and the fake one that drives tests."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gnomon._durations import parse_duration
from gnomon._errors import GnomonError, InvalidOption

if TYPE_CHECKING:
    from collections.abc import Callable

    from gnomon._engine import Engine

__all__ = ["Clock", "FakeClock", "OffsetClock", "SystemClock", "require_aware", "stamp_function"]


def require_aware(moment: datetime, what: str, error: type[GnomonError]) -> datetime:
    """Reject naive datetimes: gnomon never guesses a local time."""
    if not isinstance(moment, datetime):
        raise error(f"{what} must be a timezone-aware datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise error(
            f"{what} must be timezone-aware, got the naive {moment.isoformat()}; "
            "attach a zone, e.g. moment.replace(tzinfo=ZoneInfo('Europe/Riga'))"
        )
    return moment


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now()`` returning an aware datetime can be a scheduler's clock.

    Time flows on its own for such a clock; the scheduler waits in real time.
    :class:`FakeClock` is the exception: it moves only when told to.
    """

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    """The real wall clock, in UTC."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class OffsetClock:
    """The real clock shifted by a fixed offset: a node whose wall clock is skewed."""

    __slots__ = ("offset",)

    def __init__(self, offset: timedelta | float | str) -> None:
        self.offset = parse_duration(offset, field="offset", error=InvalidOption, positive=False)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def __repr__(self) -> str:
        return f"OffsetClock({self.offset!r})"


class FakeClock:
    """A clock that moves only when advanced, driving every scheduler attached to it.

    ``advance(delta)`` steps through every due time in order, dispatching each run (and
    each timeout) at its instant, and returns once they are dispatched — not finished:
    follow it with ``scheduler.wait_idle()``.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        require_aware(start, "FakeClock start", InvalidOption)
        self._now = start.astimezone(UTC)
        self._engines: list[Engine] = []
        self._lock = threading.RLock()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float | str) -> datetime:
        """Move forward by ``delta``, dispatching everything that falls due on the way."""
        step = parse_duration(delta, field="advance delta", error=InvalidOption, positive=False)
        if step < timedelta(0):
            raise InvalidOption(f"a FakeClock cannot go backwards, got advance({delta!r})")
        with self._lock:
            target = self._now + step
            self._run_until(target.timestamp())
            self._now = target
            return target

    def jump(self, delta: timedelta | float | str) -> datetime:
        """Move forward by ``delta`` *without* dispatching what falls due on the way, as
        a suspended process or a stepped wall clock would: the next ``advance`` (even
        ``advance(0)``) finds it all due at once, and each job's catch-up policy decides
        what still runs."""
        step = parse_duration(delta, field="jump delta", error=InvalidOption, positive=False)
        if step < timedelta(0):
            raise InvalidOption(f"a FakeClock cannot go backwards, got jump({delta!r})")
        with self._lock:
            self._now += step
            return self._now

    def _run_until(self, target: float) -> None:
        while True:
            due: list[tuple[float, Engine]] = []
            for engine in self._engines:
                deadline = engine.next_deadline()
                if deadline is not None and deadline <= target:
                    due.append((deadline, engine))
            if not due:
                return
            when = min(deadline for deadline, _ in due)
            moment = datetime.fromtimestamp(when, UTC)
            if moment.timestamp() < when:  # never stop short of a deadline by rounding
                moment += timedelta(microseconds=1)
            self._now = max(self._now, moment)
            for deadline, engine in due:
                if deadline == when:
                    engine.wake(self._now)

    def attach(self, engine: Engine) -> None:
        with self._lock:
            if engine not in self._engines:
                self._engines.append(engine)

    def detach(self, engine: Engine) -> None:
        with self._lock:
            if engine in self._engines:
                self._engines.remove(engine)

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"


def monotonic() -> float:
    """Seconds on the monotonic clock (for lease deadlines and real-time waits)."""
    return time.monotonic()


def stamp_function(clock: Clock) -> Callable[[], float]:
    """A function reading ``clock`` as a ``time.time()`` stamp: ``time.time`` itself for
    the system clock, a quarter of the cost of a datetime."""
    if type(clock) is SystemClock:
        return time.time
    return lambda: clock.now().timestamp()
