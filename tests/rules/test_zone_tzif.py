"""Zone offsets read from the TZif data a ``ZoneInfo`` was loaded from agree with probing
the zone: change for change from 1970 to 2100 (the footer's TZ rule included, for the
years past the table), and a zone whose data cannot be found, read or trusted is probed."""

from __future__ import annotations

import importlib.resources
import random
import zoneinfo
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gnomon import _rule_zone, _tzif
from gnomon._rule_zone import forget_offsets
from gnomon._rules import Rule, cron, daily, monthly, weekly

FROM = int(datetime(1970, 1, 1, tzinfo=UTC).timestamp())
UNTIL = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
# Zones whose footers cover each kind of TZ rule: northern and southern daylight time,
# negative daylight time (Dublin), 30-minute daylight time (Lord Howe), rule times past
# midnight or negative (Jerusalem 26:00, Nuuk -1:00, Santiago 24:00), odd offsets
# (Chatham +12:45), no rule past a long table (Casablanca), and no daylight time at all.
ZONES = (
    "America/New_York",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/Nuuk",
    "America/St_Johns",
    "Europe/Dublin",
    "Europe/London",
    "Europe/Riga",
    "Asia/Jerusalem",
    "Asia/Gaza",
    "Asia/Tehran",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Pacific/Auckland",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "UTC",
)
RULES: tuple[Rule, ...] = (
    cron("30 2 * * *"),
    cron("0 1-3 * * *"),
    cron("0 0 29 2 *"),
    cron("0 0 1 1 *"),
    cron("*/20 1 * * 0"),
    daily("02:30"),
    weekly("sun", "01:30"),
    monthly([-1, 15], "00:30", interval=2),
)


def _changes(offsets: _rule_zone._Offsets, start: int, stop: int) -> list[tuple[int, int]]:
    """(instant, offset from then on) at ``start`` and at each change until ``stop``."""
    found: list[tuple[int, int]] = []
    instant = start
    while instant < stop:
        segment_start, end, offset, _ = offsets.segment(instant)
        assert segment_start <= instant < end
        if not found or found[-1][1] != offset:
            found.append((instant, offset))
        instant = end
    return found


def _table(key: str) -> _rule_zone._TableOffsets:
    offsets = _rule_zone._table_offsets(ZoneInfo(key))
    assert offsets is not None, f"no TZif data read for {key}"
    return offsets


@pytest.mark.parametrize("key", ZONES)
def test_the_tzif_table_and_footer_agree_with_probing_on_every_change_from_1970_to_2100(
    key: str,
) -> None:
    zone = ZoneInfo(key)
    table = _table(key)
    read = _changes(table, FROM, UNTIL)
    assert table._trusted, "the table disagreed with the zone and was dropped for probing"
    assert read == _changes(_rule_zone._ZoneOffsets(zone), FROM, UNTIL)


def test_every_zone_read_from_tzif_data_has_the_probed_offset_around_each_change() -> None:
    picker = random.Random(20)
    for key in sorted(zoneinfo.available_timezones()):
        zone = ZoneInfo(key)
        probe = _rule_zone._ZoneOffsets(zone).offset
        read = _changes(_table(key), FROM, UNTIL)
        instants = [at + shift for at, _ in read for shift in (-1, 0, 3600)]
        instants += [picker.randrange(FROM, UNTIL) for _ in range(20)]
        table = _table(key)  # fresh: nothing learnt from the walk above
        for at in instants:
            start, end, offset, _ = table.segment(at)
            assert offset == probe(at), (key, at)
            if start > FROM:  # not the start of a zone's time
                assert table.before(start, end) == probe(start - 1), (key, start)
        assert table._trusted, key


@pytest.mark.parametrize("key", ["America/New_York", "Australia/Sydney", "Europe/Dublin"])
def test_a_table_cut_short_leaves_the_following_years_to_the_footer_rule(key: str) -> None:
    # Slim TZif files end their tables when the current rule began (New York: 2007).
    changes, kinds, offsets, footer = _parsed(key)
    year_2008 = int(datetime(2008, 1, 1, tzinfo=UTC).timestamp())
    cut = next(i for i, at in enumerate(changes) if at > year_2008)
    zone = ZoneInfo(key)
    slim = _rule_zone._TableOffsets((changes[:cut], kinds[:cut], offsets, footer), zone)
    assert _changes(slim, FROM, UNTIL) == _changes(_rule_zone._ZoneOffsets(zone), FROM, UNTIL)
    assert slim._trusted


def test_asking_about_years_in_any_order_gives_the_same_segments_as_in_order() -> None:
    key = "Australia/Lord_Howe"  # daylight time across the new year, 30 minutes of it
    picker = random.Random(7)
    instants = [picker.randrange(FROM, UNTIL + 400 * 365 * 86_400) for _ in range(400)]
    in_order = _table(key)
    expected = {at: in_order.segment(at) for at in sorted(instants)}
    shuffled = _table(key)
    for at in instants:
        start, end, offset, _ = shuffled.segment(at)
        assert (start, end, offset) == expected[at][:3] or (
            # a segment may be cut at a UTC new year where nothing changes
            offset == expected[at][2] and start <= at < end
        ), at
    assert in_order._trusted
    assert shuffled._trusted


@pytest.mark.parametrize("key", ZONES)
def test_fire_times_read_from_tzif_data_equal_those_from_probing(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = ZoneInfo(key)
    starts = [
        datetime(year, 1, 1, tzinfo=UTC).astimezone(zone) + timedelta(days=37 * year % 365)
        for year in (1975, 1996, 2011, 2026, 2037, 2061, 2093)
    ]
    forget_offsets()
    read = [_fires(rule, start) for rule in RULES for start in starts]
    monkeypatch.setattr(_rule_zone, "_table_offsets", lambda _zone: None)
    forget_offsets()
    assert read == [_fires(rule, start) for rule in RULES for start in starts]


def test_a_zone_from_a_file_object_is_probed() -> None:
    with Path(_tzif_path("Europe/Riga")).open("rb") as file:
        zone = ZoneInfo.from_file(file)
    assert _rule_zone._table_offsets(zone) is None
    forget_offsets()
    assert isinstance(_rule_zone._offsets_of(zone), _rule_zone._ZoneOffsets)


def test_a_zone_whose_file_is_not_found_is_probed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(zoneinfo, "TZPATH", (str(tmp_path),))
    monkeypatch.setattr(importlib.resources, "files", _no_tzdata)
    assert _tzif.tzif_data("America/New_York") is None
    assert _rule_zone._table_offsets(ZoneInfo("America/New_York")) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a zone file at all",
        b"TZif\0" + bytes(60),  # version 1 only
        b"TZif2" + bytes(15) + bytes(24),  # no version 2 header after the first block
    ],
)
def test_data_that_is_not_version_2_tzif_is_not_read(data: bytes) -> None:
    assert _tzif.parse_tzif(data) is None


def test_tzif_data_cut_short_is_not_read() -> None:
    data = _tzif_bytes("America/New_York")
    for length in (50, len(data) // 2, len(data) - 30):
        assert _tzif.parse_tzif(data[:length]) is None, length


def test_an_offset_index_out_of_range_drops_the_table_for_probing() -> None:
    key = "America/New_York"
    changes, kinds, offsets, footer = _parsed(key)
    year_2000 = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
    broken = bytearray(kinds)
    broken[next(i for i, at in enumerate(changes) if at > year_2000)] = len(offsets)
    zone = ZoneInfo(key)
    table = _rule_zone._TableOffsets((changes, bytes(broken), offsets, footer), zone)
    assert _changes(table, FROM, UNTIL) == _changes(_rule_zone._ZoneOffsets(zone), FROM, UNTIL)
    assert not table._trusted


def test_a_footer_this_reader_does_not_know_leaves_the_years_past_the_table_to_probing() -> None:
    key = "America/New_York"
    changes, kinds, offsets, _ = _parsed(key)
    zone = ZoneInfo(key)
    odd = _rule_zone._TableOffsets((changes, kinds, offsets, "EST5EDT,X3.2.0,M11.1.0"), zone)
    assert _changes(odd, FROM, UNTIL) == _changes(_rule_zone._ZoneOffsets(zone), FROM, UNTIL)


def test_a_file_that_disagrees_with_its_zone_is_dropped_for_probing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when the zone files are updated while a process runs: ZoneInfo keeps the old.
    paris = _tzif_bytes("Europe/Paris")
    monkeypatch.setattr(_tzif, "tzif_data", lambda _key: paris)
    zone = ZoneInfo("America/New_York")
    offsets = _rule_zone._table_offsets(zone)
    assert offsets is not None
    expected = _changes(_rule_zone._ZoneOffsets(zone), FROM, UNTIL)
    assert _changes(offsets, FROM, UNTIL) == expected
    forget_offsets()
    rule = cron("30 2 * * *")
    start = datetime(2026, 3, 1, tzinfo=zone)
    fires = _fires(rule, start)
    monkeypatch.setattr(_rule_zone, "_table_offsets", lambda _zone: None)
    forget_offsets()
    assert fires == _fires(rule, start)


def test_a_segment_that_disagrees_only_where_a_walk_fires_is_caught_and_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Standard time agrees with the zone, daylight time is an hour off: the walk from
    # February enters daylight time and fires there before anything else checks it.
    key = "America/New_York"
    changes, kinds, offsets, footer = _parsed(key)
    wrong = [-3 * 3600 if offset == -4 * 3600 else offset for offset in offsets]
    zone = ZoneInfo(key)
    table = _rule_zone._TableOffsets((changes, kinds, wrong, footer), zone)
    monkeypatch.setattr(_rule_zone, "_table_offsets", lambda _zone: table)
    forget_offsets()
    rule = cron("0 0 1 * *")
    start = datetime(2026, 2, 1, 12, tzinfo=zone)
    fires = _fires(rule, start)
    assert not table._trusted
    monkeypatch.setattr(_rule_zone, "_table_offsets", lambda _zone: None)
    forget_offsets()
    assert fires == _fires(rule, start)
    assert fires[1] == "2026-04-01T00:00:00-04:00"


def test_forgetting_offsets_drops_what_was_read_from_tzif_data() -> None:
    zone = ZoneInfo("America/New_York")
    forget_offsets()
    first = _rule_zone._offsets_of(zone)
    assert isinstance(first, _rule_zone._TableOffsets)
    assert _rule_zone._offsets_of(zone) is first
    forget_offsets()
    assert _rule_zone._offsets_of(zone) is not first


def _fires(rule: Rule, start: datetime, count: int = 6) -> list[str]:
    found: list[str] = []
    moment: datetime | None = start
    for _ in range(count):
        assert moment is not None
        moment = rule.next_after(moment)
        if moment is None:
            break
        found.append(moment.isoformat())
    return found


def _tzif_path(key: str) -> str:
    for directory in zoneinfo.TZPATH:
        if (Path(directory) / key).is_file():
            return str(Path(directory) / key)
    pytest.fail(f"no zone file for {key} on zoneinfo.TZPATH")


def _tzif_bytes(key: str) -> bytes:
    data = _tzif.tzif_data(key)
    assert data is not None
    return data


def _parsed(key: str) -> tuple[array[int], bytes, list[int], str]:
    table = _tzif.parse_tzif(_tzif_bytes(key))
    assert table is not None
    return table


def _no_tzdata(_package: str) -> Path:
    raise ModuleNotFoundError("tzdata")


@pytest.mark.parametrize("key", ["America/New_York", "Australia/Lord_Howe", "Pacific/Apia"])
def test_asking_about_the_fire_time_just_returned_equals_asking_about_an_equal_copy(
    key: str,
) -> None:
    # The last fire time returned is remembered with its instant; a copy is converted.
    zone = ZoneInfo(key)
    for rule in (*RULES, cron("*/30 * * * *"), daily("01:30", timezone="Europe/Riga")):
        moment = datetime(2011, 3, 20, tzinfo=UTC).astimezone(zone)
        for _ in range(40):
            returned = rule.next_after(moment)
            assert returned is not None
            copy = returned.replace(fold=returned.fold)
            assert copy is not returned
            chained = rule.next_after(returned)
            assert chained is not None
            from_copy = rule.next_after(copy)
            assert from_copy is not None
            assert from_copy.isoformat() == chained.isoformat()  # the offset too, not only
            moment = chained
