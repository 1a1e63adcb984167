"""gnomon's cron engine against two independent engines: cronsim (Debian cron semantics,
the reference for 5-field rules and the DST policy) and croniter (for ``nW``).

Every disagreement the tests tolerate is one that ``docs/time-rules.md`` explains, and
each tolerated case is checked against an independent minute-by-minute walk.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnomon._errors import InvalidRule
from gnomon._rules import CronRule, cron

ZONES: tuple[tzinfo, ...] = (
    UTC,
    ZoneInfo("America/New_York"),
    ZoneInfo("Europe/Riga"),
    ZoneInfo("Australia/Lord_Howe"),
    ZoneInfo("Asia/Tokyo"),
)
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
FIRES_COMPARED = 5
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _transitions(zone: tzinfo, years: range) -> list[datetime]:
    """Instants where ``zone`` changes offset, found by an hourly walk."""
    found = []
    moment = datetime(years.start, 1, 1, tzinfo=UTC)
    end = datetime(years.stop, 1, 1, tzinfo=UTC)
    previous = moment.astimezone(zone).utcoffset()
    while moment < end:
        moment += timedelta(hours=1)
        offset = moment.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(moment)
        previous = offset
    return found


TRANSITIONS = {zone: _transitions(zone, range(2024, 2028)) for zone in ZONES}


def _plain_field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    span = st.tuples(st.integers(low, high - 1), st.integers(1, high - low))
    ranges = span.map(lambda pair: f"{pair[0]}-{min(high, pair[0] + pair[1])}")
    options = [
        st.just("*"),
        st.integers(1, high - low + 1).map(lambda step: f"*/{step}"),
        value.map(str),
        ranges,
        st.tuples(ranges, st.integers(1, 7)).map(lambda pair: f"{pair[0]}/{pair[1]}"),
        st.lists(value, min_size=2, max_size=4).map(lambda items: ",".join(map(str, items))),
    ]
    if names:
        options.append(st.sampled_from(names + tuple(name.upper() for name in names)))
        options.append(st.tuples(*[st.sampled_from(names)] * 2).map("-".join))
    return st.one_of(options)


SECONDS = _plain_field(0, 59)
MINUTES = _plain_field(0, 59)
HOURS = _plain_field(0, 23)
DAYS = st.one_of(st.sampled_from(["L", "LW", "1,L", "15,LW"]), *[_plain_field(1, 31)] * 9)
MONTHS = _plain_field(1, 12, MONTH_NAMES)
WEEKDAY_TERMS = st.one_of(st.integers(0, 7).map(str), st.sampled_from(DAY_NAMES))
WEEKDAYS = st.one_of(
    st.integers(0, 7).map(lambda day: f"{day}L"),
    st.tuples(WEEKDAY_TERMS, st.integers(1, 5)).map(lambda pair: f"{pair[0]}#{pair[1]}"),
    *[_plain_field(0, 7, DAY_NAMES)] * 8,
)
EXPRESSIONS = st.tuples(MINUTES, HOURS, DAYS, MONTHS, WEEKDAYS).map(" ".join)
UNIFORM_INSTANTS = st.datetimes(datetime(1971, 1, 1), datetime(2099, 1, 1), timezones=st.just(UTC))


@st.composite
def _starts(draw: st.DrawFn) -> datetime:
    zone = draw(st.sampled_from(ZONES))
    if draw(st.booleans()) and TRANSITIONS[zone]:
        near = draw(st.sampled_from(TRANSITIONS[zone]))
        instant = near + timedelta(seconds=draw(st.integers(-2 * 86_400, 2 * 86_400)))
    else:
        instant = draw(UNIFORM_INSTANTS)
    if draw(st.booleans()):
        instant = instant.replace(second=0, microsecond=0)
    return instant.astimezone(zone)


def _cronsim_fires(expr: str, start: datetime) -> list[datetime | None]:
    """cronsim's next fires strictly after ``start`` (it may yield an earlier instant for
    a fixed-time rule asked from inside a repeated hour; those are dropped)."""
    iterator = CronSim(expr, start)
    fires: list[datetime | None] = []
    while len(fires) < FIRES_COMPARED:
        try:
            fire = next(iterator)
        except StopIteration:
            return [*fires, None]
        if fire.astimezone(UTC) > start.astimezone(UTC):
            fires.append(fire)
    return fires


def _walk_minutes(rule_expr: str, start: datetime, until: datetime) -> datetime | None:
    """The first real minute after ``start`` (up to ``until``) that cronsim's own field
    sets accept, walking every minute of UTC time on the days those sets allow: an oracle
    for rules that are not fixed-time."""
    parsed = CronSim(rule_expr, start)
    zone = start.tzinfo
    moment = start.astimezone(UTC).replace(second=0, microsecond=0)
    while moment <= until:
        local = moment.astimezone(zone)
        if local.month not in parsed.months or not parsed.match_day(local.date()):
            midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone)
            moment = midnight.astimezone(UTC)
            continue
        if (
            local.minute in parsed.minutes
            and local.hour in parsed.hours
            and moment > start.astimezone(UTC)
        ):
            return local
        moment += timedelta(minutes=1)
    return None


def _explain_disagreement(
    expr: str, rule: CronRule, start: datetime, ours: datetime | None, theirs: datetime | None
) -> None:
    # cronsim steps by whole hours and by "minutes until the target minute" in UTC, which
    # overshoots across Lord Howe's 30-minute changes for rules that are not fixed-time;
    # the walk settles which engine is right.
    assert start.tzinfo is LORD_HOWE, (expr, start, ours, theirs)
    assert not rule._spec.fixed_time, (expr, start, ours, theirs)
    assert ours is not None, (expr, start, theirs)
    until = ours if theirs is None else max(ours.astimezone(UTC), theirs.astimezone(UTC))
    assert _walk_minutes(expr, start, until) == ours, (expr, start, ours, theirs)


def _same_instant(ours: datetime | None, theirs: datetime) -> bool:
    # Aware datetimes of one zone compare by wall time, ignoring fold: compare in UTC.
    return ours is not None and ours.astimezone(UTC) == theirs.astimezone(UTC)


def _compare_with_cronsim(expr: str, start: datetime) -> None:
    try:
        expected = _cronsim_fires(expr, start)
    except CronSimError:
        with pytest.raises(InvalidRule):
            cron(expr)
        return
    try:
        rule = cron(expr)
    except InvalidRule:
        # gnomon proves at construction that a rule never fires; cronsim gives up later.
        assert expected == [None], (expr, expected)
        return
    assert isinstance(rule, CronRule)
    moment = start
    for theirs in expected:
        ours = rule.next_after(moment)
        if theirs is None:
            # cronsim stops searching after 50 years; gnomon searches a full 400-year cycle.
            assert ours is None or ours - moment > timedelta(days=50 * 365), (expr, ours)
            return
        if not _same_instant(ours, theirs):
            _explain_disagreement(expr, rule, moment, ours, theirs)
            return
        moment = ours


@settings(
    max_examples=2000,
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(expr=EXPRESSIONS, start=_starts())
def test_five_field_rules_fire_when_cronsim_fires(expr: str, start: datetime) -> None:
    _compare_with_cronsim(expr, start)


@settings(max_examples=300, derandomize=False, deadline=None)
@given(seconds=SECONDS, expr=EXPRESSIONS, start=_starts())
def test_six_field_rules_fire_when_cronsim_fires(seconds: str, expr: str, start: datetime) -> None:
    text = f"{seconds} {expr}"
    try:
        iterator = CronSim(text, start)
        theirs = next(iterator)
    except CronSimError:
        with pytest.raises(InvalidRule):
            cron(text, seconds=True)
        return
    except StopIteration:
        theirs = None
    try:
        rule = cron(text, seconds=True)
    except InvalidRule:
        assert theirs is None, text
        return
    ours = rule.next_after(start)
    if theirs is None:
        assert ours is None or ours - start > timedelta(days=50 * 365)
    elif not _same_instant(ours, theirs) and start.tzinfo is LORD_HOWE:
        # cronsim overshoots across Lord Howe's 30-minute changes: gnomon's earlier fire
        # must be a real wall time that every field allows.
        assert ours is not None
        assert ours.astimezone(UTC) < theirs.astimezone(UTC), (text, start, ours, theirs)
        local = ours.astimezone(LORD_HOWE)
        assert local.astimezone(UTC).astimezone(LORD_HOWE) == local
        assert local.second in iterator.seconds
        assert local.minute in iterator.minutes
        assert local.hour in iterator.hours
        assert local.month in iterator.months
        assert iterator.match_day(local.date())
    else:
        assert _same_instant(ours, theirs), (text, start, ours, theirs)


@settings(max_examples=300, derandomize=False, deadline=None)
@given(
    minute=MINUTES,
    hour=HOURS,
    day=st.integers(1, 31),
    month=_plain_field(1, 12),
    start=UNIFORM_INSTANTS,
)
def test_nearest_weekday_fires_when_croniter_fires(
    minute: str, hour: str, day: int, month: str, start: datetime
) -> None:
    expr = f"{minute} {hour} {day}W {month} *"
    rule = cron(expr)
    iterator = croniter(expr, start)
    moment = start
    for _ in range(3):
        theirs = iterator.get_next(datetime)
        ours = rule.next_after(moment)
        assert ours == theirs, (expr, moment, ours, theirs)
        assert ours is not None
        moment = ours


@pytest.mark.parametrize(
    "expr",
    [
        # cronsim's own rejection cases (its TestValidation), which gnomon rejects too
        "5-1 * * * *",
        "*/0 * * * *",
        "0 0 * * 1#0",
        "0 0 * * 1#6",
        "* * 30 2 *",
        "0 0 * * 5L-6",
        "0 0 * * MONL",
        "-1 * * * *",
        "1- * * * *",
        "a * * * *",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 0 *",
        "* * * 13 *",
        "* * * * 8",
        "*/ * * * *",
        "1,,2 * * * *",
        "* * * * 1#",
        "* * * * #1",
        "* * L5 * *",
        "* * * * L",
    ],
)
def test_expressions_cronsim_rejects_are_rejected(expr: str) -> None:
    with pytest.raises(CronSimError):
        CronSim(expr, datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidRule):
        cron(expr)


NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("expr", "start", "cronsim_says", "gnomon_says"),
    [
        # strictly after: from the second 01:10, cronsim goes back to the first 01:45
        (
            "45 1 * * *",
            datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=NEW_YORK),
            "2026-11-01T01:45:00-04:00",
            "2026-11-02T01:45:00-05:00",
        ),
        # a 30-minute change: cronsim overshoots 02:45, which really happens
        (
            "45 * * * *",
            datetime(2026, 10, 4, 1, 50, tzinfo=LORD_HOWE),
            "2026-10-04T03:45:00+11:00",
            "2026-10-04T02:45:00+11:00",
        ),
        # a one-value range with a step is that value, not "from it to the end"
        (
            "58-58/1 * * * *",
            datetime(2026, 1, 1, 0, 58, tzinfo=UTC),
            "2026-01-01T00:59:00+00:00",
            "2026-01-01T01:58:00+00:00",
        ),
    ],
)
def test_documented_differences_from_cronsim(
    expr: str, start: datetime, cronsim_says: str, gnomon_says: str
) -> None:
    assert next(CronSim(expr, start)).isoformat() == cronsim_says
    fire = cron(expr).next_after(start)
    assert fire is not None
    assert fire.isoformat() == gnomon_says


@pytest.mark.parametrize("expr", ["0 0 L/2 * *", "0 0 LW/3 * *", "* 2 */10 9 4L"])
def test_expressions_cronsim_accepts_but_gnomon_rejects(expr: str) -> None:
    iterator = CronSim(expr, datetime(2026, 1, 1, tzinfo=UTC))
    if expr.endswith("4L"):  # cronsim accepts it, then finds nothing in 50 years
        with pytest.raises(StopIteration):
            next(iterator)
    with pytest.raises(InvalidRule):
        cron(expr)
