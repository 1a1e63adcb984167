"""Durations: a ``timedelta``, a number of seconds, or a Go-style string such as ``"1h30m"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TypeAlias

from gnomon._errors import GnomonError, InvalidRule

__all__ = ["Duration", "format_duration", "parse_duration"]

Duration: TypeAlias = "timedelta | int | float | str"

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_VALID = 'a timedelta, a number of seconds, or a string such as "500ms", "90s", "1h30m", "2d"'


def parse_duration(
    value: object,
    *,
    field: str,
    error: type[GnomonError] = InvalidRule,
    positive: bool = True,
) -> timedelta:
    """Read ``value`` as a duration; ``field`` names it in the error message.

    With ``positive`` (the default) zero and negative durations are rejected too.
    """
    result = _to_timedelta(value, field=field, error=error)
    if positive and result <= timedelta(0):
        raise error(f"{field} must be a positive duration, got {value!r}")
    return result


def _to_timedelta(value: object, *, field: str, error: type[GnomonError]) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise error(f"{field} must be {_VALID}, got the boolean {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise error(f"{field} must be a finite number of seconds, got {value!r}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        return _parse_text(value, field=field, error=error)
    raise error(f"{field} must be {_VALID}, got {value!r} ({type(value).__name__})")


def _parse_text(text: str, *, field: str, error: type[GnomonError]) -> timedelta:
    compact = text.strip().lower()
    sign = 1
    if compact.startswith("-"):
        sign, compact = -1, compact[1:]
    if not _WHOLE.fullmatch(compact):
        raise error(f"{field} must be {_VALID}, got {text!r}")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    try:
        return timedelta(seconds=sign * seconds)
    except OverflowError:
        raise error(f"{field} is too long: {text!r}") from None


def format_duration(value: timedelta) -> str:
    """Render a duration in the same Go-style grammar, e.g. ``1h30m`` or ``500ms``."""
    micros = value // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    parts: list[str] = []
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)):
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    if micros % 1_000_000 == 0:
        if micros:
            parts.append(f"{micros // 1_000_000}s")
    elif micros % 1000 == 0 and micros < 1_000_000:
        parts.append(f"{micros // 1000}ms")
    else:
        parts.append(f"{micros / 1_000_000:g}s")
    return sign + "".join(parts)
