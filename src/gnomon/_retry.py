"""``Retry``: what happens after a run fails or times out.

A retry is the same occurrence run again: same scheduled time and key, ``attempt`` one
higher. The wait before attempt n+1 runs from the end of attempt n and is
``min(max_delay, delay * factor ** (n - 1))``, drawn uniformly from ``[0, that]`` with
``jitter`` ("full jitter": retries of many jobs that failed together spread out).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from gnomon._durations import Duration, format_duration, parse_duration
from gnomon._errors import InvalidJob
from gnomon._events import Outcome

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Retry"]

_MIN_MAX_DELAY = timedelta(minutes=10)


@dataclass(frozen=True, slots=True, init=False)
class Retry:
    """Retry a failed (or timed-out) run of a job, with exponential backoff.

    ``attempts`` counts the first run: ``Retry(attempts=3)`` allows up to two retries.
    ``max_delay=None`` means ``max(10m, delay)``. Only runs that raised an exception
    matching ``on`` and not ``never_on`` are retried, and runs that timed out when
    ``on_timeout``. A retry that would start at or after the job's next scheduled fire
    time is dropped unless ``past_next``.
    """

    attempts: int
    delay: timedelta
    factor: float
    max_delay: timedelta
    jitter: bool
    on: tuple[type[BaseException], ...]
    never_on: tuple[type[BaseException], ...]
    on_timeout: bool
    past_next: bool
    _given_max_delay: bool = field(repr=False, compare=False)

    def __init__(
        self,
        attempts: int = 3,
        delay: Duration = "10s",
        *,
        factor: float = 2.0,
        max_delay: Duration | None = None,
        jitter: bool = True,
        on: tuple[type[BaseException], ...] = (Exception,),
        never_on: tuple[type[BaseException], ...] = (),
        on_timeout: bool = True,
        past_next: bool = False,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidJob(
                f"Retry attempts must be a whole number of at least 1 (it counts the first "
                f"run), got {attempts!r}"
            )
        first = parse_duration(delay, field="Retry delay", error=InvalidJob)
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor >= 1:
            raise InvalidJob(f"Retry factor must be a number of at least 1, got {factor!r}")
        if max_delay is None:
            ceiling = max(_MIN_MAX_DELAY, first)
        else:
            ceiling = parse_duration(max_delay, field="Retry max_delay", error=InvalidJob)
            if ceiling < first:
                raise InvalidJob(
                    f"Retry max_delay ({format_duration(ceiling)}) must be at least the delay "
                    f"({format_duration(first)})"
                )
        set_ = object.__setattr__
        set_(self, "attempts", attempts)
        set_(self, "delay", first)
        set_(self, "factor", float(factor))
        set_(self, "max_delay", ceiling)
        set_(self, "jitter", _flag(jitter, "jitter"))
        set_(self, "on", _exception_classes(on, "on"))
        set_(self, "never_on", _exception_classes(never_on, "never_on"))
        set_(self, "on_timeout", _flag(on_timeout, "on_timeout"))
        set_(self, "past_next", _flag(past_next, "past_next"))
        set_(self, "_given_max_delay", max_delay is not None)

    def retries(self, outcome: Outcome | None, error: BaseException | None) -> bool:
        """True if an attempt that ended with ``outcome`` (raising ``error``) is retried."""
        if outcome is Outcome.TIMED_OUT:
            return self.on_timeout
        if outcome is not Outcome.FAILED or error is None:
            return False
        return isinstance(error, self.on) and not isinstance(error, self.never_on)

    def ceiling(self, attempt: int) -> timedelta:
        """The longest wait after attempt ``attempt`` (1 for the first run) failed."""
        seconds = self.delay.total_seconds() * self.factor ** min(attempt - 1, 1000)
        return min(self.max_delay, timedelta(seconds=min(seconds, self.max_delay.total_seconds())))

    def wait(self, attempt: int) -> timedelta:
        """The wait before the attempt after ``attempt``, jitter drawn."""
        ceiling = self.ceiling(attempt)
        if not self.jitter:
            return ceiling
        return timedelta(seconds=ceiling.total_seconds() * random.random())

    def to_data(self) -> dict[str, object]:
        """The policy as plain data (durations as text); exceptions by qualified name."""
        data: dict[str, object] = {
            "attempts": self.attempts,
            "delay": format_duration(self.delay),
            "factor": self.factor,
            "jitter": self.jitter,
            "on_timeout": self.on_timeout,
            "past_next": self.past_next,
        }
        if self._given_max_delay:
            data["max_delay"] = format_duration(self.max_delay)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Retry:
        """A policy from ``to_data``'s output (``on``/``never_on`` are not stored)."""
        known = {"attempts", "delay", "factor", "max_delay", "jitter", "on_timeout", "past_next"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidJob(
                f"retry got unknown key(s) {', '.join(unknown)}; valid keys are "
                f"{', '.join(sorted(known))}"
            )
        return cls(**data)  # type: ignore[arg-type]  # each value is validated by __init__


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidJob(f"Retry {name} must be True or False, got {value!r}")
    return value


def _exception_classes(value: object, name: str) -> tuple[type[BaseException], ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(item, type) and issubclass(item, BaseException) for item in value
    ):
        raise InvalidJob(
            f"Retry {name} must be a tuple of exception classes, such as (OSError,), got {value!r}"
        )
    return value
