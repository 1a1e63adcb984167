"""Time zones and DST through the whole engine: runs land where the rules say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler_support import WAIT, SchedulerFactory, Tally

import gnomon
from gnomon.testing import FakeClock

NEW_YORK = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)


def scheduled_times(
    make_scheduler: SchedulerFactory, start: datetime, rule: gnomon.Rule, span: timedelta
) -> list[datetime]:
    """Run ``rule`` on a New York scheduler from ``start`` for ``span``, hour by hour."""
    clock = FakeClock(start)
    s = make_scheduler(clock=clock, timezone=NEW_YORK)
    seen = Tally()

    def record(ctx: gnomon.JobContext) -> None:
        seen.hit(ctx.scheduled_at)

    s.add_job(record, rule)
    s.start()
    for _ in range(int(span / HOUR)):
        clock.advance(HOUR)
        s.wait_idle(timeout=WAIT)
    return sorted(seen.values)


def test_an_hourly_cron_rule_runs_25_times_on_the_fall_back_day(
    make_scheduler: SchedulerFactory,
) -> None:
    start = datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK)
    times = scheduled_times(make_scheduler, start, gnomon.cron("0 * * * *"), 25 * HOUR)
    assert [t.astimezone(UTC) for t in times] == [
        start.astimezone(UTC) + n * HOUR for n in range(1, 26)
    ]


def test_a_fixed_time_cron_rule_runs_once_on_the_fall_back_day_at_the_first_occurrence(
    make_scheduler: SchedulerFactory,
) -> None:
    start = datetime(2026, 10, 31, 12, 0, tzinfo=NEW_YORK)
    times = scheduled_times(make_scheduler, start, gnomon.cron("30 1 * * *"), 48 * HOUR)
    assert [t.astimezone(UTC) for t in times] == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first 01:30
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # 01:30 EST
    ]


def test_a_fixed_time_rule_in_the_spring_forward_gap_runs_right_after_it(
    make_scheduler: SchedulerFactory,
) -> None:
    start = datetime(2026, 3, 7, 12, 0, tzinfo=NEW_YORK)
    times = scheduled_times(make_scheduler, start, gnomon.daily("02:30"), 48 * HOUR)
    assert [t.astimezone(UTC) for t in times] == [
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT, the first instant after the gap
        datetime(2026, 3, 9, 6, 30, tzinfo=UTC),  # 02:30 EDT
    ]


def test_an_interval_rule_counts_elapsed_time_across_a_dst_change(
    make_scheduler: SchedulerFactory,
) -> None:
    start = datetime(2026, 3, 7, 22, 0, tzinfo=NEW_YORK)
    times = scheduled_times(make_scheduler, start, gnomon.every("3h"), 12 * HOUR)
    assert [t.astimezone(UTC) for t in times] == [
        start.astimezone(UTC) + n * 3 * HOUR for n in range(1, 5)
    ]


def test_a_rule_with_its_own_zone_ignores_the_schedulers(
    make_scheduler: SchedulerFactory,
) -> None:
    clock = FakeClock(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))
    s = make_scheduler(clock=clock, timezone=NEW_YORK)
    tokyo = s.add_job(lambda: None, gnomon.daily("09:00", timezone="Asia/Tokyo"))
    local = s.add_job(lambda: None, gnomon.daily("09:00"))
    s.start()
    assert tokyo.next_run == datetime(2026, 1, 6, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    assert local.next_run == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)  # 09:00 in New York
