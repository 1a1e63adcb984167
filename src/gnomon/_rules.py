"""Time rules: pure, frozen values that say when a job fires next.

Calendar rules (cron, daily, weekly, monthly) match wall-clock times in a zone: their own,
else the zone of the moment they are asked about. Interval rules (every, every_random)
measure elapsed time. ``once`` lists instants. See ``docs/time-rules.md``.
"""

from __future__ import annotations

import abc
import bisect
import enum
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gnomon._cron import CronMatcher, CronSpec, parse_cron
from gnomon._durations import format_duration, parse_duration
from gnomon._errors import InvalidRule
from gnomon._rule_calendar import DailyMatcher, MonthlyMatcher, WeeklyMatcher
from gnomon._rule_describe import describe_cron, describe_times, join_words, weekday_names
from gnomon._rule_zone import WallMatcher, next_fire

__all__ = [
    "CronRule",
    "Daily",
    "Every",
    "EveryRandom",
    "Monthly",
    "Once",
    "Rule",
    "Weekday",
    "Weekly",
    "cron",
    "daily",
    "every",
    "every_random",
    "monthly",
    "once",
    "weekly",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_AT_TIME: Final = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
# Zones whose utcoffset() is never None (datetime.timezone is the type of UTC).
_ALWAYS_AWARE: Final = (ZoneInfo, type(UTC))
_ZONE_PREFIX: Final = re.compile(r"(?:CRON_TZ|TZ)=(\S+)\s+", re.IGNORECASE)


class Rule(abc.ABC):
    """A pure, frozen description of when a job fires."""

    __slots__ = ()

    timezone: ZoneInfo | None

    @abc.abstractmethod
    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after the aware ``moment``, or ``None``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The rule in plain English."""


class Weekday(enum.Enum):
    """Days of the week; weeks start on Sunday, as in gocron."""

    SUNDAY = 0
    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6


# ---------------------------------------------------------------------------------------
# Shared checks


def _check_moment(moment: object) -> datetime:
    if isinstance(moment, datetime) and isinstance(moment.tzinfo, _ALWAYS_AWARE):
        return moment
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        shown = f"the naive {moment.isoformat()}" if isinstance(moment, datetime) else repr(moment)
        raise InvalidRule(
            f"next_after needs a timezone-aware datetime, got {shown}; "
            "attach a zone, e.g. moment.replace(tzinfo=ZoneInfo('UTC'))"
        )
    return moment


def _zone(value: object, *, field_name: str = "timezone") -> ZoneInfo | None:
    if value is None or isinstance(value, ZoneInfo):
        return value
    valid = "an IANA zone name such as 'Europe/Riga' or 'UTC', a zoneinfo.ZoneInfo, or None"
    if isinstance(value, str):
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise InvalidRule(
                f"{field_name} {value!r} is not a known time zone; valid: {valid}"
            ) from None
    raise InvalidRule(f"{field_name} must be {valid}, got {value!r} ({type(value).__name__})")


def _zone_repr(zone: ZoneInfo | None) -> str:
    return "" if zone is None else f", timezone={zone.key!r}"


def _zone_words(zone: ZoneInfo | None) -> str:
    return "" if zone is None else f" ({zone.key})"


def _interval(value: object, kind: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRule(f"{kind} interval must be a whole number of 1 or more, got {value!r}")
    return value


def _timedelta_repr(value: timedelta) -> str:
    return repr(value).removeprefix("datetime.")


# ---------------------------------------------------------------------------------------
# Interval rules


@dataclass(frozen=True, slots=True, repr=False)
class Every(Rule):
    """Every ``interval`` of elapsed time: ``next_after(m)`` is ``m + interval`` in UTC."""

    interval: timedelta
    timezone: ZoneInfo | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", parse_duration(self.interval, field="every interval"))

    def next_after(self, moment: datetime) -> datetime | None:
        moment = _check_moment(moment)
        try:
            return (moment.astimezone(UTC) + self.interval).astimezone(moment.tzinfo)
        except OverflowError:
            return None

    def anchored_after(self, anchor: datetime, moment: datetime) -> datetime:
        """The first ``anchor + k * interval`` (k >= 0) strictly after ``moment``."""
        zone = _check_moment(moment).tzinfo
        # In UTC: aware datetimes of one zone compare and subtract by wall time.
        anchor, moment = _check_moment(anchor).astimezone(UTC), moment.astimezone(UTC)
        if anchor > moment:
            return anchor.astimezone(zone)
        steps = (moment - anchor) // self.interval + 1
        return (anchor + steps * self.interval).astimezone(zone)

    def describe(self) -> str:
        return f"every {format_duration(self.interval)}"

    def __repr__(self) -> str:
        return f"every({_timedelta_repr(self.interval)})"


@dataclass(frozen=True, slots=True, repr=False)
class EveryRandom(Rule):
    """An interval drawn from ``[minimum, maximum)``, as a pure function of the rule and
    the previous fire time, so that every node and every preview agree."""

    minimum: timedelta
    maximum: timedelta
    timezone: ZoneInfo | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        minimum = parse_duration(self.minimum, field="every_random minimum")
        maximum = parse_duration(self.maximum, field="every_random maximum")
        if minimum >= maximum:
            raise InvalidRule(
                f"every_random minimum ({format_duration(minimum)}) must be less than "
                f"its maximum ({format_duration(maximum)})"
            )
        object.__setattr__(self, "minimum", minimum)
        object.__setattr__(self, "maximum", maximum)

    def next_after(self, moment: datetime) -> datetime | None:
        moment = _check_moment(moment)
        try:
            return (moment.astimezone(UTC) + self.minimum + self._draw(moment)).astimezone(
                moment.tzinfo
            )
        except OverflowError:
            return None

    def _draw(self, moment: datetime) -> timedelta:
        span = (self.maximum - self.minimum) // _MICROSECOND
        stamp = (moment - _EPOCH) // _MICROSECOND
        seed = f"{stamp}:{self.minimum // _MICROSECOND}:{self.maximum // _MICROSECOND}"
        digest = hashlib.blake2b(seed.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % span * _MICROSECOND

    def describe(self) -> str:
        low, high = format_duration(self.minimum), format_duration(self.maximum)
        return f"every {low} to {high}, drawn at random"

    def __repr__(self) -> str:
        low, high = _timedelta_repr(self.minimum), _timedelta_repr(self.maximum)
        return f"every_random({low}, {high})"


# ---------------------------------------------------------------------------------------
# Cron


@dataclass(frozen=True, slots=True, repr=False)
class CronRule(Rule):
    """A cron expression (without its ``CRON_TZ=`` prefix, which becomes ``timezone``)."""

    expression: str
    seconds: bool = False
    timezone: ZoneInfo | None = None
    _spec: CronSpec = field(init=False, compare=False)
    _matcher: CronMatcher = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise InvalidRule(f"cron expression must be a string, got {self.expression!r}")
        if not isinstance(self.seconds, bool):
            raise InvalidRule(f"cron seconds must be True or False, got {self.seconds!r}")
        object.__setattr__(self, "timezone", _zone(self.timezone))
        spec = parse_cron(self.expression, seconds=self.seconds)
        matcher = CronMatcher(spec)
        if not matcher.fires_ever():
            raise InvalidRule(
                f"cron expression {self.expression!r} can never fire: no month it allows "
                "has a day that its day-of-month and day-of-week fields allow"
            )
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_matcher", matcher)

    def next_after(self, moment: datetime) -> datetime | None:
        moment = _check_moment(moment)
        zone = self.timezone or moment.tzinfo
        assert zone is not None  # _check_moment guarantees it  # noqa: S101
        return next_fire(self._matcher, moment, zone, fixed=self._spec.fixed_time)

    def describe(self) -> str:
        return describe_cron(self._spec) + _zone_words(self.timezone)

    def __repr__(self) -> str:
        seconds = ", seconds=True" if self.seconds else ""
        return f"cron({self.expression!r}{seconds}{_zone_repr(self.timezone)})"


def cron(
    expr: str, *, seconds: bool = False, timezone: ZoneInfo | str | None = None
) -> CronRule | Every:
    """A cron rule; ``@every <duration>`` gives an :class:`Every`."""
    if not isinstance(expr, str):
        raise InvalidRule(f"cron expression must be a string, got {expr!r}")
    text = " ".join(expr.split())
    if not text:
        raise InvalidRule("cron expression is empty; valid: 5 fields such as '*/5 * * * *'")
    zone = _zone(timezone)
    prefix = _ZONE_PREFIX.match(text + " ")
    if prefix:
        named = _zone(prefix.group(1), field_name=f"cron expression {expr!r}: zone prefix")
        if zone is not None and named is not None and zone.key != named.key:
            raise InvalidRule(
                f"cron expression {expr!r} names the zone {prefix.group(1)!r} but "
                f"timezone={zone.key!r} was passed as well; give one of them"
            )
        zone, text = named, text[prefix.end() :].strip()
    if text.lower().startswith("@every"):
        return Every(
            parse_duration(text[6:].strip(), field=f"cron expression {expr!r}: @every duration")
        )
    return CronRule(text, seconds=seconds, timezone=zone)


# ---------------------------------------------------------------------------------------
# Daily, weekly, monthly


def _at_times(value: object, kind: str) -> tuple[time, ...]:
    items = [value] if isinstance(value, str | time) else value
    if not isinstance(items, Iterable):
        raise InvalidRule(f"{kind} at-times must be {_AT_VALID}, got {value!r}")
    times = {_at_time(item, kind) for item in items}
    if not times:
        raise InvalidRule(f"{kind} at-times must not be empty; valid: {_AT_VALID}")
    return tuple(sorted(times))


_AT_VALID: Final = (
    "'HH:MM' or 'HH:MM:SS' (hours 0-23, minutes and seconds 0-59), a naive datetime.time, "
    "or a list of these"
)


def _at_time(item: object, kind: str) -> time:
    if isinstance(item, time):
        if item.tzinfo is not None or item.microsecond:
            raise InvalidRule(
                f"{kind} at-time {item!r} must have no tzinfo (use timezone=) and whole seconds"
            )
        return item.replace(fold=0)
    match = _AT_TIME.fullmatch(item) if isinstance(item, str) else None
    if match is None:
        raise InvalidRule(f"{kind} at-time {item!r} is not valid; valid: {_AT_VALID}")
    hour, minute, second = (int(group or 0) for group in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidRule(f"{kind} at-time {item!r} is out of range; valid: {_AT_VALID}")
    return time(hour, minute, second)


def _seconds_of_day(times: tuple[time, ...]) -> tuple[int, ...]:
    return tuple(at.hour * 3600 + at.minute * 60 + at.second for at in times)


def _at_repr(times: tuple[time, ...]) -> str:
    texts = [at.strftime("%H:%M:%S" if at.second else "%H:%M") for at in times]
    return repr(texts[0]) if len(texts) == 1 else repr(texts)


def _every_words(interval: int, unit: str) -> str:
    return f"every {unit}" if interval == 1 else f"every {interval} {unit}s"


def _calendar_next(
    rule: Daily | Weekly | Monthly, matcher: WallMatcher, moment: datetime
) -> datetime | None:
    moment = _check_moment(moment)
    zone = rule.timezone or moment.tzinfo
    assert zone is not None  # _check_moment guarantees it  # noqa: S101
    return next_fire(matcher, moment, zone, fixed=True)


@dataclass(frozen=True, slots=True, repr=False)
class Daily(Rule):
    """Every ``interval`` days at each of the ``at`` times of day."""

    at: tuple[time, ...]
    interval: int = 1
    timezone: ZoneInfo | None = None
    _matcher: DailyMatcher = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _at_times(self.at, "daily"))
        object.__setattr__(self, "interval", _interval(self.interval, "daily"))
        object.__setattr__(self, "timezone", _zone(self.timezone))
        matcher = DailyMatcher(_seconds_of_day(self.at), self.interval)
        object.__setattr__(self, "_matcher", matcher)

    def next_after(self, moment: datetime) -> datetime | None:
        return _calendar_next(self, self._matcher, moment)

    def describe(self) -> str:
        days = _every_words(self.interval, "day")
        return f"{describe_times(self.at)} {days}{_zone_words(self.timezone)}"

    def __repr__(self) -> str:
        interval = "" if self.interval == 1 else f", interval={self.interval}"
        return f"daily({_at_repr(self.at)}{interval}{_zone_repr(self.timezone)})"


def daily(
    at: str | time | Iterable[str | time],
    *,
    interval: int = 1,
    timezone: ZoneInfo | str | None = None,
) -> Daily:
    """Every ``interval`` days at one or more times of day."""
    return Daily(_at_times(at, "daily"), _interval(interval, "daily"), _zone(timezone))


_DAY_NAMES: Final = {
    **{day.name.lower(): day for day in Weekday},
    **{day.name.lower()[:3]: day for day in Weekday},
}


def _weekdays(value: object) -> tuple[Weekday, ...]:
    items = [value] if isinstance(value, str | Weekday | int) else value
    if not isinstance(items, Iterable):
        raise InvalidRule(f"weekly days must be {_DAYS_VALID}, got {value!r}")
    days = {_weekday(item) for item in items}
    if not days:
        raise InvalidRule(f"weekly days must not be empty; valid: {_DAYS_VALID}")
    return tuple(sorted(days, key=lambda day: day.value))


_DAYS_VALID: Final = (
    "weekday names such as 'mon' or 'monday' (any case), gnomon.Weekday members, or a list of these"
)


def _weekday(item: object) -> Weekday:
    if isinstance(item, Weekday):
        return item
    if isinstance(item, str) and item.strip().lower() in _DAY_NAMES:
        return _DAY_NAMES[item.strip().lower()]
    if isinstance(item, int):
        raise InvalidRule(
            f"weekly day {item!r} is ambiguous (is 0 Sunday or Monday?); valid: {_DAYS_VALID}"
        )
    raise InvalidRule(f"weekly day {item!r} is not valid; valid: {_DAYS_VALID}")


@dataclass(frozen=True, slots=True, repr=False)
class Weekly(Rule):
    """The given weekdays of every ``interval``-th week (weeks start on Sunday)."""

    days: tuple[Weekday, ...]
    at: tuple[time, ...]
    interval: int = 1
    timezone: ZoneInfo | None = None
    _matcher: WeeklyMatcher = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", _weekdays(self.days))
        object.__setattr__(self, "at", _at_times(self.at, "weekly"))
        object.__setattr__(self, "interval", _interval(self.interval, "weekly"))
        object.__setattr__(self, "timezone", _zone(self.timezone))
        numbers = frozenset(day.value for day in self.days)
        matcher = WeeklyMatcher(_seconds_of_day(self.at), numbers, self.interval)
        object.__setattr__(self, "_matcher", matcher)

    def next_after(self, moment: datetime) -> datetime | None:
        return _calendar_next(self, self._matcher, moment)

    def describe(self) -> str:
        days = weekday_names(day.value for day in self.days)
        every = "" if self.interval == 1 else f", {_every_words(self.interval, 'week')}"
        return f"{describe_times(self.at)} on {days}{every}{_zone_words(self.timezone)}"

    def __repr__(self) -> str:
        days = [day.name.lower()[:3] for day in self.days]
        interval = "" if self.interval == 1 else f", interval={self.interval}"
        zone = _zone_repr(self.timezone)
        return f"weekly({days!r}, {_at_repr(self.at)}{interval}{zone})"


def weekly(
    days: str | Weekday | Iterable[str | Weekday],
    at: str | time | Iterable[str | time],
    *,
    interval: int = 1,
    timezone: ZoneInfo | str | None = None,
) -> Weekly:
    """The given weekdays of every ``interval``-th week, at one or more times of day."""
    return Weekly(
        _weekdays(days), _at_times(at, "weekly"), _interval(interval, "weekly"), _zone(timezone)
    )


def _month_days(value: object) -> tuple[int, ...]:
    items = [value] if isinstance(value, int) else value
    if not isinstance(items, Iterable) or isinstance(items, str):
        raise InvalidRule(f"monthly days must be {_MONTH_DAYS_VALID}, got {value!r}")
    days = {_month_day(item) for item in items}
    if not days:
        raise InvalidRule(f"monthly days must not be empty; valid: {_MONTH_DAYS_VALID}")
    return tuple(sorted(days, key=lambda day: (day < 0, abs(day))))


_MONTH_DAYS_VALID: Final = "days 1 to 31 or -1 to -31 (-1 is the last day), or a list of these"


def _month_day(item: object) -> int:
    if isinstance(item, bool) or not isinstance(item, int) or not 1 <= abs(item) <= 31:
        raise InvalidRule(f"monthly day {item!r} is not valid; valid: {_MONTH_DAYS_VALID}")
    return item


def _month_day_words(days: tuple[int, ...]) -> str:
    positive = [day for day in days if day > 0]
    words = [f"day {join_words([str(day) for day in positive])}"] if positive else []
    words.extend(
        "the last day" if day == -1 else f"{-day - 1} days before the last day"
        for day in sorted((day for day in days if day < 0), reverse=True)
    )
    return join_words(words)


@dataclass(frozen=True, slots=True, repr=False)
class Monthly(Rule):
    """The given days of every ``interval``-th month; a day a month lacks is skipped."""

    days: tuple[int, ...]
    at: tuple[time, ...]
    interval: int = 1
    timezone: ZoneInfo | None = None
    _matcher: MonthlyMatcher = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", _month_days(self.days))
        object.__setattr__(self, "at", _at_times(self.at, "monthly"))
        object.__setattr__(self, "interval", _interval(self.interval, "monthly"))
        object.__setattr__(self, "timezone", _zone(self.timezone))
        matcher = MonthlyMatcher(_seconds_of_day(self.at), frozenset(self.days), self.interval)
        object.__setattr__(self, "_matcher", matcher)

    def next_after(self, moment: datetime) -> datetime | None:
        return _calendar_next(self, self._matcher, moment)

    def describe(self) -> str:
        days = _month_day_words(self.days)
        every = _every_words(self.interval, "month")
        return f"{describe_times(self.at)} on {days} of {every}{_zone_words(self.timezone)}"

    def __repr__(self) -> str:
        interval = "" if self.interval == 1 else f", interval={self.interval}"
        zone = _zone_repr(self.timezone)
        return f"monthly({list(self.days)!r}, {_at_repr(self.at)}{interval}{zone})"


def monthly(
    days: int | Iterable[int],
    at: str | time | Iterable[str | time],
    *,
    interval: int = 1,
    timezone: ZoneInfo | str | None = None,
) -> Monthly:
    """The given days (1..31, or -1..-31 from the end) of every ``interval``-th month."""
    return Monthly(
        _month_days(days), _at_times(at, "monthly"), _interval(interval, "monthly"), _zone(timezone)
    )


# ---------------------------------------------------------------------------------------
# Once


def _instants(value: object) -> tuple[datetime, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, datetime) else value
    if not isinstance(items, Iterable) or isinstance(items, str):
        raise InvalidRule(f"once at must be {_ONCE_VALID}, got {value!r}")
    by_instant: dict[datetime, None] = {}
    for item in items:
        if not isinstance(item, datetime) or item.tzinfo is None or item.utcoffset() is None:
            raise InvalidRule(f"once at-instant {item!r} is not valid; valid: {_ONCE_VALID}")
        by_instant[item.astimezone(UTC)] = None
    return tuple(sorted(by_instant))


_ONCE_VALID: Final = "None (run immediately), a timezone-aware datetime, or a list of them"


@dataclass(frozen=True, slots=True, repr=False)
class Once(Rule):
    """One run at each listed instant (kept in UTC, sorted, without duplicates); an empty
    list means one run as soon as the job starts, which the scheduler performs itself."""

    instants: tuple[datetime, ...] = ()
    timezone: ZoneInfo | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "instants", _instants(self.instants))

    def next_after(self, moment: datetime) -> datetime | None:
        moment = _check_moment(moment)
        index = bisect.bisect_right(self.instants, moment)
        if index == len(self.instants):
            return None
        return self.instants[index].astimezone(moment.tzinfo)

    def describe(self) -> str:
        if not self.instants:
            return "once, immediately"
        texts = [instant.isoformat(sep=" ") for instant in self.instants]
        return f"once at {join_words(texts)}"

    def __repr__(self) -> str:
        texts = [f"datetime.fromisoformat({instant.isoformat()!r})" for instant in self.instants]
        if not texts:
            return "once()"
        return f"once({texts[0]})" if len(texts) == 1 else f"once([{', '.join(texts)}])"


def once(at: datetime | Iterable[datetime] | None = None) -> Once:
    """One run: immediately (``None``), at one instant, or at each of several."""
    return Once(_instants(at))


def every(interval: timedelta | float | str) -> Every:
    """Every ``interval`` of elapsed time."""
    return Every(parse_duration(interval, field="every interval"))


def every_random(minimum: timedelta | float | str, maximum: timedelta | float | str) -> EveryRandom:
    """An interval drawn from ``[minimum, maximum)`` after each fire."""
    return EveryRandom(
        parse_duration(minimum, field="every_random minimum"),
        parse_duration(maximum, field="every_random maximum"),
    )
