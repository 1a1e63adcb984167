"""A job's rule as written in a schedule file, turned into a ``gnomon`` time rule."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gnomon import _rules as rules
from gnomon._errors import InvalidJob, InvalidRule
from gnomon._rules import Rule

__all__ = ["RULE_KEYS", "read_moment", "read_rule"]

RULE_KEYS = ("cron", "every", "every_random", "daily", "weekly", "monthly", "once")
_CALENDAR_KEYS = {"daily": ("at", "interval"), "weekly": ("days", "at", "interval")}
_CALENDAR_KEYS["monthly"] = _CALENDAR_KEYS["weekly"]


def read_rule(key: str, value: object, zone: ZoneInfo) -> Rule:
    """Build the rule that ``key = value`` describes; raises ``InvalidRule``/``InvalidJob``."""
    readers: dict[str, Callable[[object, ZoneInfo], Rule]] = {
        "cron": _cron,
        "every": _every,
        "every_random": _every_random,
        "daily": _daily,
        "weekly": _weekly,
        "monthly": _monthly,
        "once": _once,
    }
    return readers[key](value, zone)


def read_moment(name: str, value: object, zone: ZoneInfo) -> datetime:
    """A TOML datetime or an ISO 8601 string; a local (naive) one is in ``zone``."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise InvalidJob(
            f"{name} must be a datetime such as 2026-05-01T09:30:00 (local to the scheduler's "
            f"timezone) or 2026-05-01T09:30:00+02:00, got {value!r}"
        )
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def has_seconds_field(expression: str) -> bool:
    """True for a 6-field expression (after any ``CRON_TZ=``/``TZ=`` prefix)."""
    fields = expression.split()
    if fields and fields[0].upper().startswith(("CRON_TZ=", "TZ=")):
        fields = fields[1:]
    return len(fields) == 6 and not fields[0].startswith("@")


def _cron(value: object, zone: ZoneInfo) -> Rule:
    if not isinstance(value, str):
        raise InvalidRule(f"must be a cron expression such as '30 9 * * mon-fri', got {value!r}")
    return rules.cron(value, seconds=has_seconds_field(value))


def _every(value: Any, zone: ZoneInfo) -> Rule:
    return rules.every(value)


def _every_random(value: Any, zone: ZoneInfo) -> Rule:
    if not isinstance(value, list) or len(value) != 2:
        raise InvalidRule(
            f"must be a list of two durations, minimum and maximum, such as ['1m', '5m'], "
            f"got {value!r}"
        )
    return rules.every_random(value[0], value[1])


def _calendar_table(kind: str, value: object) -> Mapping[str, Any]:
    """The rule's table; its values are TOML's, checked by the rule's constructor."""
    if kind == "daily" and not isinstance(value, dict):
        return {"at": value}
    valid = _CALENDAR_KEYS[kind]
    if not isinstance(value, dict):
        raise InvalidRule(f"must be a table with {', '.join(valid)}, got {value!r}")
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise InvalidRule(f"unknown key {unknown[0]!r}; valid keys are {', '.join(valid)}")
    for required in valid[:-1]:
        if required not in value:
            raise InvalidRule(f"{required} is required")
    return value


def _interval(table: Mapping[str, Any]) -> int:
    interval = table.get("interval", 1)
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise InvalidRule(f"interval must be a whole number of at least 1, got {interval!r}")
    return interval


def _daily(value: object, zone: ZoneInfo) -> Rule:
    table = _calendar_table("daily", value)
    return rules.daily(table["at"], interval=_interval(table))


def _weekly(value: object, zone: ZoneInfo) -> Rule:
    table = _calendar_table("weekly", value)
    return rules.weekly(
        table["days"],
        table["at"],
        interval=_interval(table),
    )


def _monthly(value: object, zone: ZoneInfo) -> Rule:
    table = _calendar_table("monthly", value)
    return rules.monthly(
        table["days"],
        table["at"],
        interval=_interval(table),
    )


def _once(value: object, zone: ZoneInfo) -> Rule:
    if value == "now":
        return rules.once()
    if isinstance(value, list) and value:
        return rules.once([read_moment("once", item, zone) for item in value])
    try:
        return rules.once(read_moment("once", value, zone))
    except InvalidJob:
        raise InvalidRule(
            f'must be "now", a datetime such as 2026-05-01T09:30:00, or a list of datetimes, '
            f"got {value!r}"
        ) from None
