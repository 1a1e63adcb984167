"""The definition codec: values, rules and whole definitions as JSON text, and back."""

from __future__ import annotations

import builtins
import collections
import contextlib
import enum
import io
import json
import struct
import sys
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gnomon._errors import InvalidJob
from gnomon._events import LimitMode, Recovery
from gnomon._rules import (
    CronRule,
    Rule,
    cron,
    daily,
    every,
    every_random,
    monthly,
    once,
    weekly,
)
from gnomon._stores.codec import (
    FORMAT,
    Definition,
    UndecodableDefinition,
    decode_definition,
    decode_rule,
    decode_value,
    encode_arguments,
    encode_definition,
    encode_rule,
    encode_value,
)

RIGA = ZoneInfo("Europe/Riga")
NEW_YORK = ZoneInfo("America/New_York")
PLUS_0530 = timezone(timedelta(hours=5, minutes=30))
NAMED = timezone(timedelta(hours=-3), "BRT")
NAMED_UTC = timezone(timedelta(0), "UTC")
ODD_OFFSET = timezone(timedelta(seconds=1, microseconds=500_000))
QUICK = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def round_trip(value: object) -> object:
    """``value`` through a whole stored definition, as a store would keep it."""
    text = encode_definition(every(60), [value], {}, {})
    return decode_definition(text).args[0]


def assert_same(decoded: object, original: object) -> None:
    assert type(decoded) is type(original)
    assert decoded == original
    assert repr(decoded) == repr(original)


# ---------------------------------------------------------------------------------------
# Values that round-trip

VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    0.0,
    -0.0,
    1.5,
    1e300,
    5e-324,
    "",
    "héllo ✓",
    "\ud800",
    [],
    [1, [2, [3.0]]],
    (),
    (1,),
    ((), [()], ([],)),
    {},
    {"a": 1, "b": [True, None]},
    {"z": 1, "a": 2},
    datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
    datetime(2024, 5, 1, 9, 30, 0, 1, tzinfo=PLUS_0530),
    datetime(2024, 5, 1, 9, 30, tzinfo=NAMED),
    datetime(2024, 5, 1, 9, 30, tzinfo=NAMED_UTC),
    datetime(2024, 5, 1, 9, 30, tzinfo=ODD_OFFSET),
    datetime(2024, 5, 1, 9, 30, tzinfo=RIGA),
    datetime(2024, 10, 27, 3, 30, tzinfo=RIGA, fold=1),  # the repeated hour
    datetime(2024, 3, 31, 3, 30, tzinfo=RIGA),  # in the spring gap: no such wall time
    datetime(2024, 5, 1, tzinfo=UTC, fold=1),
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=NEW_YORK),
    date(2024, 2, 29),
    date.min,
    date.max,
    time(9, 30),
    time(23, 59, 59, 999_999),
    time(9, 30, fold=1),
    time(9, 30, tzinfo=UTC),
    time(9, 30, tzinfo=PLUS_0530),
    time(9, 30, tzinfo=NAMED),
    time(9, 30, tzinfo=RIGA),
    time(9, 30, tzinfo=RIGA, fold=1),
    timedelta(0),
    timedelta(microseconds=-1),
    timedelta(days=3, seconds=7, microseconds=11),
    timedelta.max,
    timedelta.min,
    UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("1E+2"),
    Decimal("0E-7"),
    Decimal("3.14159265358979323846264338327950288419716939937510582097494459"),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_each_allowed_value_comes_back_equal_of_the_same_type_and_repr(value: object) -> None:
    assert_same(round_trip(value), value)


def test_an_int_too_long_for_json_digits_comes_back_exactly() -> None:
    for value in (2**2000 - 1, 2**2000, -(2**50_000) + 12345):
        decoded = round_trip(value)
        assert type(decoded) is int
        assert decoded == value


def test_a_bool_stays_a_bool_and_an_int_stays_an_int_inside_containers() -> None:
    decoded = round_trip([True, 1, (False, 0), {"t": True, "one": 1}, 1.0])
    assert isinstance(decoded, list)
    assert decoded == [True, 1, (False, 0), {"t": True, "one": 1}, 1.0]
    assert [type(item) for item in decoded] == [bool, int, tuple, dict, float]
    assert repr(decoded) == "[True, 1, (False, 0), {'t': True, 'one': 1}, 1.0]"


def test_a_zoneinfo_comes_back_as_the_zone_of_the_same_key() -> None:
    decoded = round_trip(datetime(2024, 5, 1, 9, 30, tzinfo=RIGA))
    assert decoded.tzinfo is RIGA  # type: ignore[attr-defined]


def test_the_same_list_twice_is_not_a_cycle() -> None:
    shared = [1, 2]
    assert round_trip([shared, shared, (shared,)]) == [[1, 2], [1, 2], ([1, 2],)]


ZONES: list[tzinfo] = [UTC, PLUS_0530, NAMED, NAMED_UTC, RIGA, NEW_YORK]
ENVELOPE_TAGS = ["$dict", "$tuple", "$datetime", "$int", "$enum", "$frozenset"]
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
EXTRA_SCALARS = (
    st.datetimes(timezones=st.sampled_from(ZONES))
    | st.dates()
    | st.times(timezones=st.none() | st.sampled_from(ZONES))
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False)
)
VALUES_TREE = st.recursive(
    JSON_SCALARS | st.sampled_from(ENVELOPE_TAGS) | EXTRA_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(ENVELOPE_TAGS), inner, max_size=4)
    ),
    max_leaves=12,
)


@QUICK
@given(VALUES_TREE)
def test_any_nested_value_of_the_allowed_types_round_trips(value: object) -> None:
    assert_same(round_trip(value), value)


# ---------------------------------------------------------------------------------------
# The envelope


def test_a_user_dict_with_dollar_keys_comes_back_as_that_dict() -> None:
    tricky = {
        "$dict": {"a": 1},
        "$tuple": [1, 2],
        "$datetime": "2024-05-01T09:30:00+00:00",
        "$enum": ["LimitMode", "wait"],
    }
    assert encode_value(tricky, where="args[0]") == {
        "$dict": {
            "$dict": {"$dict": {"a": 1}},
            "$tuple": [1, 2],
            "$datetime": "2024-05-01T09:30:00+00:00",
            "$enum": ["LimitMode", "wait"],
        }
    }
    assert_same(round_trip(tricky), tricky)
    assert_same(round_trip({"$tuple": [1, 2]}), {"$tuple": [1, 2]})


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T09:30:00+00:00",
        "2024-05-01",
        "12345678-1234-5678-1234-567812345678",
        '{"$tuple": [1]}',
        "$tuple",
        "1.10",
    ],
)
def test_a_string_shaped_like_an_envelope_stays_a_string(text: str) -> None:
    assert encode_value(text, where="args[0]") == text
    assert_same(round_trip(text), text)


WIRE_FORMAT: list[tuple[object, object]] = [
    ({"a": (1,)}, {"$dict": {"a": {"$tuple": [1]}}}),
    (2**2001, {"$int": format(2**2001, "x")}),
    (datetime(2024, 5, 1, 9, 30, tzinfo=UTC), {"$datetime": "2024-05-01T09:30:00+00:00"}),
    (
        datetime(2024, 5, 1, 9, 30, tzinfo=RIGA),
        {"$datetime": ["2024-05-01T09:30:00", "Europe/Riga"]},
    ),
    (
        datetime(2024, 10, 27, 3, 30, tzinfo=RIGA, fold=1),
        {"$datetime": ["2024-10-27T03:30:00", "Europe/Riga", 1]},
    ),
    (
        datetime(2024, 5, 1, 9, 30, tzinfo=NAMED),
        {"$datetime": ["2024-05-01T09:30:00", [-10_800_000_000, "BRT"]]},
    ),
    (date(2024, 5, 1), {"$date": "2024-05-01"}),
    (time(9, 30), {"$time": "09:30:00"}),
    (time(9, 30, fold=1), {"$time": ["09:30:00", None, 1]}),
    (timedelta(minutes=5), {"$timedelta": 300_000_000}),
    (UUID(int=1), {"$uuid": "00000000-0000-0000-0000-000000000001"}),
    (Decimal("1.10"), {"$decimal": "1.10"}),
]


@pytest.mark.parametrize(("value", "wire"), WIRE_FORMAT, ids=repr)
def test_the_stored_form_of_each_type_is_pinned(value: object, wire: object) -> None:
    # Rows written by this version must stay readable: changing these needs a new FORMAT.
    assert encode_value(value, where="args[0]") == wire
    assert_same(decode_value(wire), value)


# ---------------------------------------------------------------------------------------
# Rejected values


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    __slots__ = ()


class Point(NamedTuple):
    x: int
    y: int


class Berlin(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "CET"


def keyless_utc() -> ZoneInfo:
    """A zone read from a file: it has no key to store."""
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, 4)
    tzif = b"TZif" + bytes(16) + counts + struct.pack(">lbb", 0, 0, 0) + b"UTC\x00"
    return ZoneInfo.from_file(io.BytesIO(tzif))


def cyclic_list() -> list[object]:
    items: list[object] = [1]
    items.append(items)
    return items


def cyclic_dict() -> dict[str, object]:
    mapping: dict[str, object] = {}
    mapping["self"] = mapping
    return mapping


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


HERE = __name__  # how pytest named this module: the types defined here carry it

REJECTED: list[tuple[object, str]] = [
    ({1: "one"}, r"args\[0\] has the key 1; dict keys must be str"),
    (float("nan"), r"args\[0\] is nan; .*finite"),
    (float("inf"), r"args\[0\] is inf; .*finite"),
    (-float("inf"), r"args\[0\] is -inf; .*finite"),
    (Decimal("NaN"), r"args\[0\] is Decimal\('NaN'\); .*finite"),
    (Decimal("sNaN"), r"args\[0\] is Decimal\('sNaN'\); .*finite"),
    (Decimal("-Infinity"), r"args\[0\] is Decimal\('-Infinity'\); .*finite"),
    (datetime(2024, 5, 1, 9, 30), r"args\[0\] is the naive datetime 2024-05-01T09:30:00"),
    (
        datetime(2024, 5, 1, tzinfo=Berlin()),
        rf"args\[0\] has the tzinfo .* of type {HERE}.Berlin; .*ZoneInfo",
    ),
    (time(9, 30, tzinfo=Berlin()), rf"args\[0\] has the tzinfo .* of type {HERE}.Berlin"),
    (datetime(2024, 5, 1, tzinfo=keyless_utc()), r"of type zoneinfo.ZoneInfo; .*made from a key"),
    ({1, 2}, r"args\[0\] is \{1, 2\} of type set; durable job arguments must be JSON values"),
    (frozenset({"a"}), r"args\[0\] is frozenset\(\{'a'\}\) of type frozenset"),
    (b"bytes", r"args\[0\] is b'bytes' of type bytes"),
    (bytearray(b"x"), r"of type bytearray"),
    (object(), r"of type object;"),
    (Color.RED, rf"args\[0\] is <Color.RED: 1> of type {HERE}.Color"),
    (LimitMode.WAIT, r"of type gnomon._events.LimitMode"),
    (Name("x"), rf"args\[0\] is 'x' of type {HERE}.Name"),
    (Point(1, 2), rf"of type {HERE}.Point"),
    (collections.OrderedDict(a=1), r"of type collections.OrderedDict"),
    (collections.defaultdict(list), r"of type collections.defaultdict"),
    (cyclic_list(), r"args\[0\]\[1\] contains itself"),
    (cyclic_dict(), r"args\[0\]\['self'\] contains itself"),
    (nested(150), r"nested more than 100 containers deep"),
    (len, r"args\[0\] is <built-in function len>"),
]


@pytest.mark.parametrize(("value", "message"), REJECTED, ids=repr)
def test_a_value_that_cannot_be_stored_is_an_invalid_job_naming_its_path(
    value: object, message: str
) -> None:
    with pytest.raises(InvalidJob, match=message):
        encode_definition(every(60), [value], {}, {})


def test_the_path_names_the_keyword_and_the_position_inside_it() -> None:
    when = [1, 2, [datetime(2024, 5, 1)]]
    with pytest.raises(InvalidJob, match=r"^kwargs\['when'\]\[2\]\[0\] is the naive datetime"):
        encode_arguments([], {"when": when})
    with pytest.raises(InvalidJob, match=r"^args\[1\]\[0\]\['x'\] is nan"):
        encode_arguments(["ok", ({"x": float("nan")},)], {})


def test_the_rejection_says_what_is_allowed() -> None:
    with pytest.raises(InvalidJob) as caught:
        encode_value({1.5}, where="args[0]")
    message = str(caught.value)
    for allowed in ("None, bool, int, float, str, list, dict", "tuple", "aware datetime"):
        assert allowed in message
    assert "not subclasses" in message


def test_a_keyword_name_must_be_a_str() -> None:
    with pytest.raises(InvalidJob, match="kwargs has the key 1; keyword names must be str"):
        encode_arguments([], {1: "x"})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------
# Options

OPTIONS: dict[str, object] = {
    "tags": frozenset({"reports", "daily"}),
    "singleton": LimitMode.WAIT,
    "recovery": Recovery.AT_LEAST_ONCE,
    "start_at": datetime(2024, 5, 1, 9, 30, tzinfo=RIGA),
    "stop_at": None,
    "jitter": timedelta(seconds=5),
    "timeout": timedelta(minutes=1),
    "catch_up": "latest",
    "catch_up_limit": 100,
    "start_immediately": False,
}


def test_options_round_trip_with_tags_and_enums() -> None:
    decoded = decode_definition(encode_definition(every(60), [], {}, OPTIONS)).options
    assert decoded == OPTIONS
    for name, value in OPTIONS.items():
        assert type(decoded[name]) is type(value)
        # A frozenset's repr follows its str hashes, which differ between processes.
        assert name == "tags" or repr(decoded[name]) == repr(value)


def test_empty_tags_come_back_as_an_empty_frozenset() -> None:
    options = decode_definition(encode_definition(every(60), [], {}, {"tags": frozenset()}))
    assert_same(options.options["tags"], frozenset())


def test_tags_are_stored_sorted_and_options_by_name_so_equal_jobs_store_equal_text() -> None:
    first = encode_definition(every(60), [], {}, OPTIONS)
    shuffled = dict(reversed(list(OPTIONS.items())))
    shuffled["tags"] = frozenset(sorted(OPTIONS["tags"], reverse=True))  # type: ignore[call-overload]
    assert encode_definition(every(60), [], {}, shuffled) == first
    assert '"tags":{"$frozenset":["daily","reports"]}' in first


def test_an_option_frozenset_holds_only_str() -> None:
    with pytest.raises(InvalidJob, match=r"^tags holds 1; a frozenset option holds only str"):
        encode_definition(every(60), [], {}, {"tags": frozenset({1})})


# ---------------------------------------------------------------------------------------
# Rules

RULES: list[Rule] = [
    cron("*/5 * * * *"),
    cron("0 9 * * 1-5", timezone="Europe/Riga"),
    cron("*/10 * * * * *", seconds=True, timezone=NEW_YORK),
    cron("CRON_TZ=Asia/Tokyo 30 8 1 * *"),
    cron("@daily"),
    cron("@every 90s"),
    CronRule("0  9 * * *"),
    every(90),
    every("1h30m"),
    every(timedelta(microseconds=1)),
    every(timedelta(days=400, microseconds=7)),
    every_random(60, 120),
    every_random("1m", timedelta(hours=1, microseconds=3)),
    daily("09:30"),
    daily(["17:45:30", "09:30"], interval=3, timezone="Asia/Tokyo"),
    weekly("mon", "09:30"),
    weekly(["sunday", "sat"], ["08:00", "20:00:01"], interval=2, timezone=RIGA),
    monthly(1, "09:30"),
    monthly([15, -1, 1, -31], "00:00", interval=6, timezone="UTC"),
    once(),
    once(datetime(2024, 5, 1, 9, 30, tzinfo=RIGA)),
    once([datetime(2030, 1, 1, tzinfo=UTC), datetime(2024, 5, 1, 9, 30, 0, 5, tzinfo=NAMED)]),
]


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_every_rule_kind_round_trips_to_an_equal_rule(rule: Rule) -> None:
    decoded = decode_definition(encode_definition(rule, [], {}, {})).rule
    assert type(decoded) is type(rule)
    assert decoded == rule
    assert hash(decoded) == hash(rule)
    assert repr(decoded) == repr(rule)
    assert decoded.timezone == rule.timezone


def test_a_rule_is_stored_as_its_constructor_inputs() -> None:
    assert encode_rule(cron("0 9 * * *", timezone="Europe/Riga")) == {
        "kind": "cron",
        "expr": "0 9 * * *",
        "seconds": False,
        "timezone": "Europe/Riga",
    }
    assert encode_rule(weekly(["fri", "mon"], "09:30", interval=2)) == {
        "kind": "weekly",
        "days": ["mon", "fri"],
        "at": ["09:30:00"],
        "interval": 2,
        "timezone": None,
    }
    assert encode_rule(every(90)) == {"kind": "every", "interval_us": 90_000_000}


def test_a_decoded_rule_is_shared_by_equal_definitions() -> None:
    data = encode_rule(cron("17 3 * * *", timezone="Europe/Riga"))
    assert decode_rule(json.loads(json.dumps(data))) is decode_rule(json.loads(json.dumps(data)))


@QUICK
@given(
    st.lists(st.integers(1, 31) | st.integers(-31, -1), min_size=1, max_size=5),
    st.lists(st.times().map(lambda at: at.replace(microsecond=0)), min_size=1, max_size=3),
    st.integers(1, 12),
    st.sampled_from([None, "UTC", "Europe/Riga", "America/New_York"]),
)
def test_any_monthly_and_daily_rule_round_trips(
    days: list[int], at: list[time], interval: int, zone: str | None
) -> None:
    for rule in (
        monthly(days, at, interval=interval, timezone=zone),
        daily(at, interval=interval, timezone=zone),
    ):
        assert decode_rule(json.loads(json.dumps(encode_rule(rule)))) == rule


@QUICK
@given(
    st.timedeltas(min_value=timedelta(microseconds=1)),
    st.timedeltas(max_value=timedelta(microseconds=-1)),
)
def test_any_every_and_every_random_rule_round_trips(
    interval: timedelta, shorter_by: timedelta
) -> None:
    rules: list[Rule] = [every(interval)]
    if interval + shorter_by > timedelta(0):
        rules.append(every_random(interval + shorter_by, interval))
    for rule in rules:
        assert decode_rule(json.loads(json.dumps(encode_rule(rule)))) == rule


class Hourly(Rule):
    __slots__ = ()
    timezone = None

    def next_after(self, moment: datetime) -> datetime | None:
        return moment + timedelta(hours=1)

    def describe(self) -> str:
        return "hourly"


def test_a_rule_in_a_zone_without_a_key_is_an_invalid_job() -> None:
    with pytest.raises(InvalidJob, match=r"time zone .* has no key; durable jobs need a key"):
        encode_definition(daily("09:00", timezone=keyless_utc()), [], {}, {})


def test_a_rule_gnomon_does_not_know_is_an_invalid_job() -> None:
    with pytest.raises(InvalidJob, match=r"durable jobs need one of gnomon's rules .*Hourly"):
        encode_definition(Hourly(), [], {}, {})


# ---------------------------------------------------------------------------------------
# Definitions that cannot be decoded


def definition(**changes: Any) -> str:
    """A valid stored definition with some top-level members replaced (None: removed)."""
    document: dict[str, Any] = json.loads(encode_definition(every(60), [1], {"a": 2}, {}))
    document.update(changes)
    return json.dumps({key: value for key, value in document.items() if value is not None})


def rule_text(**fields: object) -> str:
    return definition(rule=fields)


def value_text(value: object) -> str:
    return definition(args=[value])


UNDECODABLE: list[tuple[str, str]] = [
    ("not json", "not valid JSON"),
    ("", "not valid JSON"),
    ('{"format": 1, "rule": NaN}', "not valid JSON: NaN is not a finite number"),
    ("[" * 100_000, "not valid JSON"),
    ('{"format": 1, "args": [' + "9" * 5000 + "]}", "not valid JSON"),
    ("[]", r"a definition is a JSON object, got \[\]"),
    (definition(format=7), r"^definition format 7 is newer than this gnomon's \(1\)$"),
    (definition(format=None), "definition format None is not valid"),
    (definition(format="1"), "definition format '1' is not valid"),
    (definition(format=True), "definition format True is not valid"),
    (definition(format=0), "definition format 0 is not valid"),
    (definition(rule=None), "definition has no 'rule'"),
    (definition(args=None), "definition has no 'args'"),
    (definition(kwargs=None), "definition has no 'kwargs'"),
    (definition(options=None), "definition has no 'options'"),
    (definition(args={"$tuple": []}), "definition 'args' is .*, not a list"),
    (definition(kwargs=[]), "definition 'kwargs' is .*, not a dict"),
    (definition(rule=[]), "a rule is a JSON object"),
    (rule_text(kind="hourly"), r"^unknown rule kind 'hourly'$"),
    (rule_text(), "unknown rule kind None"),
    (rule_text(kind="cron", expr=5, seconds=False), "cron rule field 'expr' is 5, not a str"),
    (rule_text(kind="cron", expr="* * * * *", seconds=1), "field 'seconds' is 1, not a bool"),
    (rule_text(kind="cron", expr="61 * * * *", seconds=False), "invalid cron rule"),
    (
        rule_text(kind="cron", expr="* * * * *", seconds=False, timezone="Mars/Olympus"),
        "unknown time zone 'Mars/Olympus'",
    ),
    (
        rule_text(kind="cron", expr="* * * * *", seconds=False, timezone="../../etc/passwd"),
        "unknown time zone",
    ),
    (
        rule_text(kind="daily", at=["09:00"], interval=1, timezone="os.path/x"),
        r"^unknown time zone 'os.path/x'$",
    ),
    (rule_text(kind="every", interval_us=0), "invalid every rule"),
    (rule_text(kind="every", interval_us=10**30), "invalid every rule"),
    (rule_text(kind="every", interval_us=1.5), "not a int"),
    (rule_text(kind="every_random", minimum_us=5, maximum_us=5), "invalid every_random rule"),
    (rule_text(kind="daily", at=["25:00"], interval=1), "invalid daily rule"),
    (rule_text(kind="daily", at="09:00", interval=1), "field 'at' is '09:00', not a list"),
    (rule_text(kind="daily", at=["09:00"], interval=True), "field 'interval' is True"),
    (rule_text(kind="weekly", days=["funday"], at=["09:00"], interval=1), "invalid weekly"),
    (rule_text(kind="weekly", days=[1], at=["09:00"], interval=1), "not a list of str"),
    (rule_text(kind="monthly", days=[True], at=["09:00"], interval=1), "not a list of int"),
    (rule_text(kind="monthly", days=[32], at=["09:00"], interval=1), "invalid monthly rule"),
    (rule_text(kind="once", at=["tomorrow"]), "invalid once rule"),
    (rule_text(kind="once", at=["2024-05-01T09:30:00"]), "invalid once rule"),
    (rule_text(kind="once", at=[[]]), "not a list of str"),
    (value_text({}), "a value envelope has one key"),
    (value_text({"$tuple": [], "$dict": {}}), "a value envelope has one key"),
    (value_text({"$set": [1]}), r"unknown value envelope '\$set'"),
    (value_text({"dict": {}}), "unknown value envelope 'dict'"),
    (value_text({"$dict": []}), r"\$dict holds \[\], not a dict"),
    (value_text({"$int": "zz"}), r"\$int 'zz' is not valid"),
    (value_text({"$int": 5}), r"\$int holds 5, not a str"),
    (value_text({"$decimal": "NaN"}), "not a finite number"),
    (value_text({"$decimal": "abc"}), r"\$decimal 'abc' is not valid"),
    (value_text({"$date": "2024-13-01"}), r"\$date '2024-13-01' is not valid"),
    (value_text({"$uuid": "xyz"}), r"\$uuid 'xyz' is not valid"),
    (value_text({"$timedelta": 10**20}), "out of range"),
    (value_text({"$timedelta": "5"}), "not a int"),
    (value_text({"$datetime": "2024-05-01T09:30:00"}), "has no zone"),
    (value_text({"$datetime": ["2024-05-01T09:30:00", None]}), "has no zone"),
    (value_text({"$datetime": ["2024-05-01T09:30:00", "Mars/X"]}), "unknown time zone"),
    (value_text({"$datetime": ["2024-05-01T09:30:00", "tzdata.zoneinfo"]}), "unknown time zone"),
    (value_text({"$datetime": ["2024-05-01T09:30:00+01:00", "UTC"]}), "both an offset"),
    (value_text({"$datetime": ["2024-05-01T09:30:00", "UTC", 2]}), "expected text or"),
    (value_text({"$datetime": ["2024-05-01T09:30:00", [86_400_000_000]]}), "out of range"),
    (value_text({"$datetime": ["2024-05-01T09:30:00", [0, 5]]}), "name 5 is not a str"),
    (value_text({"$datetime": ["2024-05-01T09:30:00", {}]}), "is not a zone key"),
    (value_text({"$time": 930}), "expected text or"),
    (value_text({"$enum": ["os.system", "ls"]}), "unknown enum 'os.system'"),
    (value_text({"$enum": ["LimitMode", "nope"]}), "'nope' is not a LimitMode"),
    (value_text({"$enum": ["LimitMode"]}), "expected \\[class, value\\]"),
    (value_text({"$frozenset": [1]}), "holds more than str"),
]


@pytest.mark.parametrize(("text", "reason"), UNDECODABLE, ids=lambda item: str(item)[:60])
def test_an_undecodable_definition_says_why(text: str, reason: str) -> None:
    with pytest.raises(UndecodableDefinition, match=reason):
        decode_definition(text)


def test_a_non_json_value_is_undecodable() -> None:
    with pytest.raises(UndecodableDefinition, match="is not a JSON value"):
        decode_value({"$tuple": [b"x"]})


JSON_TREE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["$dict", "$tuple", "$datetime", "$enum", "kind", "at", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)


@QUICK
@given(
    st.sampled_from(["rule", "args", "kwargs", "options", "format"]),
    JSON_TREE,
)
def test_decoding_any_json_raises_nothing_but_undecodable(member: str, value: object) -> None:
    with contextlib.suppress(UndecodableDefinition):
        decode_definition(json.dumps({**json.loads(definition()), member: value}))


# ---------------------------------------------------------------------------------------
# Nothing named in the data is imported

HOSTILE: list[str] = [
    rule_text(kind="os.system"),
    rule_text(kind="gnomon._rules.CronRule", expr="* * * * *", seconds=False),
    rule_text(kind="__import__"),
    value_text({"$enum": ["os.system", "ls"]}),
    value_text({"$enum": ["subprocess.Popen", "ls"]}),
    value_text({"$os.system": "ls"}),
    value_text({"$__import__": "subprocess"}),
]


def test_decoding_imports_nothing_that_the_data_names(monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    real_import = builtins.__import__

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return real_import(name, *args, **kwargs)

    modules_before = set(sys.modules)
    errors: list[BaseException] = []
    monkeypatch.setattr(builtins, "__import__", spy)
    for text in HOSTILE:
        try:
            decode_definition(text)
        except Exception as error:  # checked below, once __import__ is itself again
            errors.append(error)
    monkeypatch.undo()
    assert imported == []
    assert set(sys.modules) == modules_before
    assert [type(error) for error in errors] == [UndecodableDefinition] * len(HOSTILE)


# ---------------------------------------------------------------------------------------
# Whole definitions


def test_a_definition_comes_back_as_it_was_given() -> None:
    rule = cron("0 9 * * 1-5", timezone="Europe/Riga")
    args = [42, "x", (1, 2)]
    kwargs = {"when": datetime(2024, 5, 1, tzinfo=UTC), "amount": Decimal("9.90")}
    text = encode_definition(rule, args, kwargs, OPTIONS)
    assert json.loads(text)["format"] == FORMAT
    assert decode_definition(text) == Definition(rule, tuple(args), kwargs, OPTIONS)


def test_arguments_are_encoded_by_position_and_name() -> None:
    assert encode_arguments([(1,), "a"], {"b": {"c": None}}) == (
        [{"$tuple": [1]}, "a"],
        {"b": {"$dict": {"c": None}}},
    )


def test_arguments_named_and_shaped_like_the_parts_of_a_definition_come_back_as_given() -> None:
    rule = every("1h")
    args = [',"options":{}', {"format": 2}, (',"args":',)]
    kwargs: dict[str, object] = {
        "options": {"rule": 1},
        "args": ',"options":',
        "kwargs": [',"args":'],
    }
    text = encode_definition(rule, args, kwargs, OPTIONS)
    assert decode_definition(text) == Definition(rule, tuple(args), kwargs, OPTIONS)
