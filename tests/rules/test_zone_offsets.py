"""Zone offsets are learnt where a rule's search asks about them: the answers never depend
on what was cached before, and a sparse rule probes a few days of each year it reaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from gnomon._rule_zone import forget_offsets
from gnomon._rules import Rule, cron, daily, monthly, weekly

# Zones with irregular histories: 30-minute DST, Ramadan breaks, a skipped day, the date line.
ZONES = (
    "America/New_York",
    "Australia/Lord_Howe",
    "Africa/Casablanca",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Asia/Gaza",
)
RULES: tuple[Rule, ...] = (
    cron("0 0 29 2 *"),
    cron("0 6 1 */3 *"),
    cron("30 2 * * *"),
    cron("0 1-3 * * *"),
    cron("*/20 1 * * *"),
    cron("0 12 * * 5L"),
    daily("02:30"),
    weekly("sun", "01:30"),
    monthly([-1, 15], "00:30", interval=2),
)
STARTS = tuple(
    datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=37 * year % 365)
    for year in (1911, 1975, 1993, 2011, 2019, 2026, 2061)
)


class CountingZone(tzinfo):
    """A zone that counts how often its offsets are looked up from an instant."""

    def __init__(self, key: str) -> None:
        self.zone = ZoneInfo(key)
        self.lookups = 0

    def fromutc(self, dt: datetime) -> datetime:
        self.lookups += 1
        return self.zone.fromutc(dt.replace(tzinfo=self.zone)).replace(tzinfo=self)

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None if dt is None else dt.replace(tzinfo=self.zone).utcoffset()

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None if dt is None else dt.replace(tzinfo=self.zone).dst()

    def tzname(self, dt: datetime | None) -> str | None:
        return None if dt is None else dt.replace(tzinfo=self.zone).tzname()


def _chain(rule: Rule, start: datetime, count: int, *, cold: bool) -> list[str]:
    found: list[str] = []
    moment: datetime | None = start
    for _ in range(count):
        if cold:
            forget_offsets()
        assert moment is not None
        moment = rule.next_after(moment)
        if moment is None:
            break
        found.append(moment.isoformat())
    return found


@pytest.mark.parametrize("key", ZONES)
def test_fire_times_from_a_cold_cache_equal_those_from_a_warm_one(key: str) -> None:
    zone = ZoneInfo(key)
    for rule in RULES:
        for start in STARTS:
            moment = start.astimezone(zone)
            cold = _chain(rule, moment, 6, cold=True)
            forget_offsets()
            _chain(rule, moment - timedelta(days=400), 40, cold=False)  # fills the cache
            assert _chain(rule, moment, 6, cold=False) == cold, (rule, moment)


def test_a_daily_time_on_the_day_samoa_skipped_fires_as_that_day_ends() -> None:
    # 2011-12-30 never happened in Pacific/Apia (UTC-10 to UTC+14): its 12:00 lies in a
    # gap, so the fixed-time rule fires at the first instant after it, then as usual.
    rule = daily("12:00", timezone="Pacific/Apia")
    start = datetime(2011, 12, 29, 13, tzinfo=ZoneInfo("Pacific/Apia"))
    assert _chain(rule, start, 3, cold=True) == [
        "2011-12-31T00:00:00+14:00",
        "2011-12-31T12:00:00+14:00",
        "2012-01-01T12:00:00+14:00",
    ]


def test_a_leap_day_rule_from_a_cold_cache_looks_up_a_few_days_of_each_leap_year() -> None:
    zone = CountingZone("America/New_York")
    forget_offsets()
    fires = _chain(cron("0 0 29 2 *"), datetime(2026, 3, 3, tzinfo=zone), 10, cold=False)
    assert fires[0] == "2028-02-29T00:00:00-05:00"
    assert fires[-1] == "2064-02-29T00:00:00-05:00"
    # One lookup per day probed, a few days per fire (about 15,000 if every year were).
    assert zone.lookups <= 10 * 12
