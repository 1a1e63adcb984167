"""A durable job's definition (rule, arguments, options) as JSON text, and back.

No pickle, and nothing named in the data is ever imported: the decoder maps every name it
reads (rule kinds, envelope tags, enum classes) through fixed tables, and zone keys, once
they have the shape of an IANA key, through ``zoneinfo`` alone.

Values use an envelope, so that nothing a user stores is read back as something else:

- ``None``, ``bool``, ``int``, ``float``, ``str`` and ``list`` are written as themselves
  (an int too long for JSON's decimal digits as ``{"$int": "<hex>"}``).
- Every other value, *every dict included*, is a JSON object with exactly one ``$``-key
  naming its type: ``{"$dict": {...}}`` (the keys inside are the user's, never read as
  tags), ``{"$tuple": [...]}``, ``{"$date": "2024-05-01"}``, ``{"$uuid": "..."}``,
  ``{"$decimal": "1.10"}``, ``{"$timedelta": <microseconds>}``.
- ``{"$datetime": ...}`` and ``{"$time": ...}`` hold the ISO text alone when its offset, or
  its lack of one, is the whole zone (no tzinfo, ``timezone.utc`` or an unnamed fixed
  ``timezone``, and ``fold=0``): ``"2024-05-01T09:30:00+00:00"``. Otherwise
  ``[<naive ISO>, <zone>]``, plus ``1`` when ``fold=1``; a zone is a ``ZoneInfo`` key
  (``"Europe/Riga"``), ``[<offset in microseconds>, <name>]`` for a named fixed
  ``timezone``, ``[<offset in microseconds>]`` for an unnamed one, or ``null``.
- Options may also hold ``{"$frozenset": [<sorted str>...]}`` (tags),
  ``{"$enum": ["LimitMode" | "Recovery", <value>]}`` and ``{"$retry": {...}}`` (a
  ``Retry`` as its plain data; one that names exception classes is not stored);
  arguments may not.

Aware datetimes only (a naive one names no instant); a ``time`` may be naive (a time of
day) or carry one of the zones above. Types are matched exactly: a ``str`` subclass or an
``IntEnum`` member is rejected rather than coerced, so each value comes back equal, of the
same type and with the same ``repr``. A rule is stored as its constructor's inputs
(``{"kind": "cron", "expr": ..., "seconds": ..., "timezone": ...}``) and rebuilt by its
validating constructor; rebuilt rules are cached, being immutable values.
"""

from __future__ import annotations

import functools
import json
import math
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Final, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gnomon._errors import InvalidJob
from gnomon._events import LimitMode, Recovery
from gnomon._retry import Retry
from gnomon._rules import (
    CronRule,
    Daily,
    Every,
    EveryRandom,
    Monthly,
    Once,
    Rule,
    Weekly,
    daily,
    every,
    every_random,
    monthly,
    once,
    weekly,
)

__all__ = [
    "FORMAT",
    "Definition",
    "UndecodableDefinition",
    "decode_definition",
    "decode_rule",
    "decode_value",
    "encode_arguments",
    "encode_definition",
    "encode_rule",
    "encode_value",
    "forget_decoded",
]

FORMAT: Final = 1
"""The definition format this version writes; a higher one is undecodable here."""

_T = TypeVar("_T")
_Moment = TypeVar("_Moment", datetime, time)

_MAX_DEPTH: Final = 100
# Decimal ints longer than sys.get_int_max_str_digits() (640 at the lowest) cannot be
# written or read as JSON numbers; hex conversion has no such limit.
_MAX_PLAIN_INT_BITS: Final = 2000
_MICROSECOND: Final = timedelta(microseconds=1)
_RULE_CACHE_SIZE: Final = 4096
_ARGUMENTS_ALLOWED: Final = (
    "durable job arguments must be JSON values (None, bool, int, float, str, list, dict "
    "with str keys) or tuple, aware datetime, date, time, timedelta, UUID, Decimal "
    "(exactly these types, not subclasses)"
)
_OPTIONS_ALLOWED: Final = (
    "durable job options must be JSON values (None, bool, int, float, str, list, dict with "
    "str keys) or tuple, aware datetime, date, time, timedelta, UUID, Decimal, a frozenset "
    "of str, LimitMode, Recovery or Retry"
)
_ZONES_ALLOWED: Final = (
    "datetime.timezone.utc, a fixed datetime.timezone or a zoneinfo.ZoneInfo made from a key"
)
_ENUMS: Final[Mapping[str, type[LimitMode] | type[Recovery]]] = {
    "LimitMode": LimitMode,
    "Recovery": Recovery,
}


class UndecodableDefinition(ValueError):
    """A stored definition this gnomon cannot read; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Definition:
    """A decoded definition: what ``encode_definition`` was given."""

    rule: Rule
    args: tuple[object, ...]
    kwargs: dict[str, object]
    options: dict[str, object]
    """Shared between definitions with the same options text: read, never change it."""
    options_key: str = field(default="", compare=False)
    """The options' JSON text as stored (equal options, equal key), or ``""``."""


# ---------------------------------------------------------------------------------------
# Definitions


def encode_definition(
    rule: Rule,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    options: Mapping[str, object],
) -> str:
    """The definition as JSON text; ``InvalidJob`` names anything that cannot be stored."""
    encoded_args, encoded_kwargs = encode_arguments(args, kwargs)
    document = {
        "format": FORMAT,
        "rule": encode_rule(rule),
        "args": encoded_args,
        "kwargs": encoded_kwargs,
        "options": {name: _encode_option(options[name], name) for name in sorted(options)},
    }
    return json.dumps(document, separators=(",", ":"), allow_nan=False)


_RULE_MARK: Final = '"rule":'
_ARGS_MARK: Final = ',"args":'
_OPTIONS_MARK: Final = ',"options":'


def decode_definition(text: str) -> Definition:
    """The definition in ``text``; anything unreadable is an ``UndecodableDefinition``.

    Many stored jobs share their rule and options: as ``encode_definition`` lays a
    definition out (format, rule, args, kwargs, options), the rule's and the options'
    texts are decoded once per distinct text, so loading many rows decodes mostly
    arguments. Text laid out otherwise is decoded whole.
    """
    parts = _layout(text)
    if parts is not None:
        arguments_text, rule_text, options_text = parts
        arguments = _arguments(arguments_text)
        if arguments is not None:
            rule = _cached_rule(rule_text)
            options = _cached_options(options_text)
            return Definition(rule, *arguments, options, options_text)
    return _decode_whole(text)


_LAID_OUT: Final = f'{{"format":{FORMAT},{_RULE_MARK}'


def _layout(text: object) -> tuple[str, str, str] | None:
    """``text`` split as ``encode_definition`` writes it (in this format), or ``None``:
    the arguments as a JSON object of their own, the rule's text, the options' text."""
    if type(text) is not str or not text.startswith(_LAID_OUT) or not text.endswith("}"):
        return None
    args = text.find(_ARGS_MARK, len(_LAID_OUT))
    options = text.rfind(_OPTIONS_MARK)
    if not len(_LAID_OUT) < args < options:
        return None
    return (
        "{" + text[args + 1 : options] + "}",
        text[len(_LAID_OUT) : args],
        text[options + len(_OPTIONS_MARK) : -1],
    )


def _arguments(text: str) -> tuple[tuple[object, ...], dict[str, object]] | None:
    """The arguments in ``{"args": [...], "kwargs": {...}}``; ``None`` if ``text`` holds
    anything else (then the whole definition is decoded, and judged, as one)."""
    try:
        document = _JSON.decode(text)
    except (ValueError, TypeError, RecursionError):
        return None
    if type(document) is not dict or len(document) != 2:
        return None
    args, kwargs = document.get("args"), document.get("kwargs")
    if type(args) is not list or type(kwargs) is not dict:
        return None
    try:
        plain = all(type(item) in _PLAIN_TYPES for item in args)
        values = tuple(args) if plain else tuple([decode_value(item) for item in args])
        return values, _decode_mapping(kwargs) if kwargs else kwargs
    except RecursionError:
        raise UndecodableDefinition("values are nested too deeply") from None


@functools.lru_cache(maxsize=4096)
def _cached_rule(text: str) -> Rule:
    return decode_rule(_json_member(text, "rule"))


@functools.lru_cache(maxsize=4096)
def _cached_options(text: str) -> dict[str, object]:
    data = _json_member(text, "options")
    if type(data) is not dict:
        raise UndecodableDefinition(f"definition 'options' is {_shown(data)}, not a dict")
    try:
        return _decode_mapping(data)
    except RecursionError:
        raise UndecodableDefinition("values are nested too deeply") from None


def forget_decoded() -> None:
    """Drop the rules and options kept by their text to decode many rows: after a load,
    what the loaded jobs use is theirs, and the rest is only memory."""
    _cached_rule.cache_clear()
    _cached_options.cache_clear()


def _json_member(text: str, name: str) -> object:
    try:
        return _JSON.decode(text)
    except (ValueError, TypeError, RecursionError) as error:
        raise UndecodableDefinition(f"definition {name!r} is not valid JSON: {error}") from None


def _decode_whole(text: str) -> Definition:
    document = _load(text)
    try:
        rule = decode_rule(_member(document, "rule"))
        args = [decode_value(item) for item in _member(document, "args", list)]
        kwargs = _decode_mapping(_member(document, "kwargs", dict))
        options = _decode_mapping(_member(document, "options", dict))
    except RecursionError:
        raise UndecodableDefinition("values are nested too deeply") from None
    return Definition(rule, tuple(args), kwargs, options)


def encode_arguments(
    args: Sequence[object], kwargs: Mapping[str, object]
) -> tuple[list[object], dict[str, object]]:
    """The job's arguments as JSON-able values, positions and names as written."""
    encoded_args = [encode_value(value, where=f"args[{index}]") for index, value in enumerate(args)]
    encoded_kwargs: dict[str, object] = {}
    for name, value in kwargs.items():
        if type(name) is not str:
            raise InvalidJob(f"kwargs has the key {_shown(name)}; keyword names must be str")
        encoded_kwargs[name] = encode_value(value, where=f"kwargs[{name!r}]")
    return encoded_args, encoded_kwargs


def _load(text: str) -> dict[str, object]:
    try:
        document = _JSON.decode(text)
    except (ValueError, TypeError, RecursionError) as error:
        raise UndecodableDefinition(f"not valid JSON: {error}") from None
    if type(document) is not dict:
        raise UndecodableDefinition(f"a definition is a JSON object, got {_shown(document)}")
    version = document.get("format")
    if type(version) is not int or version < 1:
        raise UndecodableDefinition(f"definition format {_shown(version)} is not valid")
    if version > FORMAT:
        raise UndecodableDefinition(
            f"definition format {version} is newer than this gnomon's ({FORMAT})"
        )
    return document


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a finite number")


_JSON: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _member(document: dict[str, object], key: str, kind: type = object) -> Any:
    if key not in document:
        raise UndecodableDefinition(f"definition has no {key!r}")
    value = document[key]
    if kind is not object and type(value) is not kind:
        raise UndecodableDefinition(f"definition {key!r} is {_shown(value)}, not a {kind.__name__}")
    return value


def _decode_mapping(data: dict[str, object]) -> dict[str, object]:
    return {name: decode_value(value) for name, value in data.items()}


# ---------------------------------------------------------------------------------------
# Encoding values


def encode_value(value: object, *, where: str) -> object:
    """``value`` as a JSON-able object; ``where`` names it in an ``InvalidJob``."""
    return _Encoder(_ARGUMENT_ENCODERS, _ARGUMENTS_ALLOWED).encode(value, where)


def _encode_option(value: object, where: str) -> object:
    """Like ``encode_value``, also allowing frozensets of str and gnomon's option enums."""
    return _Encoder(_OPTION_ENCODERS, _OPTIONS_ALLOWED).encode(value, where)


_ValueEncoder = Callable[["_Encoder", Any, str], object]


@dataclass(slots=True)
class _Encoder:
    table: Mapping[type, _ValueEncoder]
    allowed: str
    # The containers being encoded: meeting one again is a cycle.
    active: set[int] = field(default_factory=set)

    def encode(self, value: object, where: str) -> object:
        encoder = self.table.get(type(value))
        if encoder is None:
            raise InvalidJob(
                f"{where} is {_shown(value)} of type {_type_name(value)}; {self.allowed}"
            )
        return encoder(self, value, where)

    def enter(self, container: object, where: str) -> None:
        if id(container) in self.active:
            raise InvalidJob(f"{where} contains itself; {self.allowed}, without cycles")
        if len(self.active) >= _MAX_DEPTH:
            raise InvalidJob(f"{where} is nested more than {_MAX_DEPTH} containers deep")
        self.active.add(id(container))

    def items(self, values: Sequence[object], where: str) -> list[object]:
        self.enter(values, where)
        encoded = [self.encode(item, f"{where}[{index}]") for index, item in enumerate(values)]
        self.active.discard(id(values))
        return encoded


def _plain(encoder: _Encoder, value: object, where: str) -> object:
    return value


def _encode_int(encoder: _Encoder, value: int, where: str) -> object:
    if value.bit_length() > _MAX_PLAIN_INT_BITS:
        return {"$int": format(value, "x")}
    return value


def _encode_float(encoder: _Encoder, value: float, where: str) -> object:
    if not math.isfinite(value):
        raise InvalidJob(f"{where} is {value!r}; {encoder.allowed}, and numbers must be finite")
    return value


def _encode_list(encoder: _Encoder, value: list[object], where: str) -> object:
    return encoder.items(value, where)


def _encode_tuple(encoder: _Encoder, value: tuple[object, ...], where: str) -> object:
    return {"$tuple": encoder.items(value, where)}


def _encode_dict(encoder: _Encoder, value: dict[object, object], where: str) -> object:
    encoder.enter(value, where)
    encoded: dict[str, object] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise InvalidJob(f"{where} has the key {_shown(key)}; dict keys must be str")
        encoded[key] = encoder.encode(item, f"{where}[{key!r}]")
    encoder.active.discard(id(value))
    return {"$dict": encoded}


def _encode_datetime(encoder: _Encoder, value: datetime, where: str) -> object:
    if value.tzinfo is None:
        raise InvalidJob(
            f"{where} is the naive datetime {value.isoformat()}; durable jobs need aware "
            "datetimes, e.g. value.replace(tzinfo=datetime.timezone.utc)"
        )
    return {"$datetime": _encode_moment(value, where)}


def _encode_time(encoder: _Encoder, value: time, where: str) -> object:
    return {"$time": _encode_moment(value, where)}


def _encode_moment(value: datetime | time, where: str) -> object:
    zone = value.tzinfo
    # The ISO text alone when its offset (or its lack of one) is the whole zone: reading
    # it back rebuilds that zone, several times faster than replace(tzinfo=...).
    if not value.fold and (zone is None or _is_plain_offset(zone)):
        return value.isoformat()
    payload = [value.replace(tzinfo=None).isoformat(), _encode_zone(zone, where)]
    return [*payload, 1] if value.fold else payload


def _is_plain_offset(zone: tzinfo) -> bool:
    return type(zone) is timezone and repr(zone) == repr(timezone(zone.utcoffset(None)))


def _encode_zone(zone: tzinfo | None, where: str) -> object:
    if zone is None:
        return None
    if type(zone) is ZoneInfo and zone.key is not None:
        return zone.key
    if type(zone) is timezone:
        offset = zone.utcoffset(None)
        unnamed = timezone(offset)
        micros = offset // _MICROSECOND
        return [micros] if repr(zone) == repr(unnamed) else [micros, zone.tzname(None)]
    raise InvalidJob(
        f"{where} has the tzinfo {_shown(zone)} of type {_type_name(zone)}; "
        f"durable jobs allow {_ZONES_ALLOWED}"
    )


def _encode_date(encoder: _Encoder, value: date, where: str) -> object:
    return {"$date": value.isoformat()}


def _encode_timedelta(encoder: _Encoder, value: timedelta, where: str) -> object:
    return {"$timedelta": value // _MICROSECOND}


def _encode_uuid(encoder: _Encoder, value: UUID, where: str) -> object:
    return {"$uuid": str(value)}


def _encode_decimal(encoder: _Encoder, value: Decimal, where: str) -> object:
    if not value.is_finite():
        raise InvalidJob(f"{where} is {value!r}; {encoder.allowed}, and numbers must be finite")
    return {"$decimal": str(value)}


def _encode_frozenset(encoder: _Encoder, value: frozenset[object], where: str) -> object:
    items: list[str] = []
    for item in value:
        if type(item) is not str:
            raise InvalidJob(f"{where} holds {_shown(item)}; a frozenset option holds only str")
        items.append(item)
    return {"$frozenset": sorted(items)}


def _encode_enum(encoder: _Encoder, value: LimitMode | Recovery, where: str) -> object:
    return {"$enum": [type(value).__name__, value.value]}


def _encode_retry(encoder: _Encoder, value: Retry, where: str) -> object:
    if value.on != (Exception,) or value.never_on:
        raise InvalidJob(
            f"{where} names exception classes (on={value.on!r}, never_on={value.never_on!r}), "
            "which a stored job cannot hold (nothing read from a store is imported): give "
            "this policy to the task instead, s.register(func, retry=...)"
        )
    return {"$retry": value.to_data()}


_ARGUMENT_ENCODERS: Final[Mapping[type, _ValueEncoder]] = {
    type(None): _plain,
    bool: _plain,
    str: _plain,
    int: _encode_int,
    float: _encode_float,
    list: _encode_list,
    tuple: _encode_tuple,
    dict: _encode_dict,
    datetime: _encode_datetime,
    date: _encode_date,
    time: _encode_time,
    timedelta: _encode_timedelta,
    UUID: _encode_uuid,
    Decimal: _encode_decimal,
}
_OPTION_ENCODERS: Final[Mapping[type, _ValueEncoder]] = {
    **_ARGUMENT_ENCODERS,
    frozenset: _encode_frozenset,
    LimitMode: _encode_enum,
    Recovery: _encode_enum,
    Retry: _encode_retry,
}


def _shown(value: object) -> str:
    return _REPR.repr(value)


def _type_name(value: object) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


_REPR: Final = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def _all_of_type(values: list[object], kind: type) -> bool:
    return set(map(type, values)) <= {kind}


# ---------------------------------------------------------------------------------------
# Decoding values

_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None)})


def decode_value(data: object) -> object:
    """The value that ``encode_value`` turned into ``data``."""
    if type(data) in _PLAIN_TYPES:
        return data
    if type(data) is list:
        return [decode_value(item) for item in data]
    if type(data) is dict:
        return _decode_envelope(data)
    raise UndecodableDefinition(f"{_shown(data)} is not a JSON value")


def _decode_envelope(data: dict[Any, object]) -> object:
    if len(data) != 1:
        raise UndecodableDefinition(f"a value envelope has one key, got {_shown(list(data))}")
    ((tag, payload),) = data.items()
    reader = _VALUE_READERS.get(tag)
    if reader is None:
        raise UndecodableDefinition(f"unknown value envelope {_shown(tag)}")
    return reader(payload)


def _payload(tag: str, payload: object, kind: type) -> Any:
    if type(payload) is not kind:
        raise UndecodableDefinition(f"{tag} holds {_shown(payload)}, not a {kind.__name__}")
    return payload


def _read_dict(payload: object) -> object:
    items: dict[str, object] = _payload("$dict", payload, dict)
    return {key: decode_value(value) for key, value in items.items()}


def _read_tuple(payload: object) -> object:
    return tuple([decode_value(item) for item in _payload("$tuple", payload, list)])


def _read_int(payload: object) -> object:
    return _parsed("$int", payload, functools.partial(int, base=16))


def _read_date(payload: object) -> object:
    return _parsed("$date", payload, date.fromisoformat)


def _read_uuid(payload: object) -> object:
    return _parsed("$uuid", payload, UUID)


def _read_decimal(payload: object) -> object:
    value = _parsed("$decimal", payload, Decimal)
    if not value.is_finite():
        raise UndecodableDefinition(f"$decimal {payload!r} is not a finite number")
    return value


def _parsed(tag: str, payload: object, parse: Callable[[str], _T]) -> _T:
    text: str = _payload(tag, payload, str)
    try:
        return parse(text)
    except (ValueError, ArithmeticError):
        raise UndecodableDefinition(f"{tag} {_shown(text)} is not valid") from None


def _read_timedelta(payload: object) -> object:
    micros: int = _payload("$timedelta", payload, int)
    try:
        return timedelta(0, 0, micros)  # positional: several times faster than keywords
    except OverflowError:
        raise UndecodableDefinition(f"$timedelta {micros} is out of range") from None


def _read_datetime(payload: object) -> object:
    value = _read_moment("$datetime", payload, datetime.fromisoformat)
    if value.tzinfo is None:
        raise UndecodableDefinition(f"$datetime {_shown(payload)} has no zone")
    return value


def _read_time(payload: object) -> object:
    return _read_moment("$time", payload, time.fromisoformat)


def _read_moment(tag: str, payload: object, parse: Callable[[str], _Moment]) -> _Moment:
    if type(payload) is str:
        return _parsed(tag, payload, parse)
    if type(payload) is not list or len(payload) not in (2, 3) or payload[2:] not in ([], [1]):
        raise UndecodableDefinition(f"{tag} holds {_shown(payload)}; expected text or [text, zone]")
    naive = _parsed(tag, payload[0], parse)
    if naive.tzinfo is not None:
        raise UndecodableDefinition(f"{tag} {payload!r} has both an offset and a zone")
    return naive.replace(tzinfo=_read_zone(payload[1]), fold=len(payload) - 2)


def _read_zone(data: object) -> tzinfo | None:
    if data is None or type(data) is str:
        return _zone_info(data)
    if type(data) is list and 1 <= len(data) <= 2 and type(data[0]) is int:
        name = data[1] if len(data) == 2 else None
        if name is not None and type(name) is not str:
            raise UndecodableDefinition(f"fixed zone name {_shown(name)} is not a str")
        return _fixed_zone(data[0], name)
    raise UndecodableDefinition(f"zone {_shown(data)} is not a zone key or [offset(, name)]")


@functools.lru_cache(maxsize=256)
def _fixed_zone(micros: int, name: str | None) -> timezone:
    try:
        offset = timedelta(microseconds=micros)
        return timezone(offset) if name is None else timezone(offset, name)
    except (ValueError, OverflowError):
        raise UndecodableDefinition(f"fixed zone offset {micros} is out of range") from None


@functools.lru_cache(maxsize=1024)
def _zone_info(key: str | None) -> ZoneInfo | None:
    if key is None:
        return None
    # Only IANA-shaped keys reach zoneinfo, whose fallback looks the key up as a resource
    # of the tzdata package.
    if _ZONE_KEY.fullmatch(key) is None:
        raise UndecodableDefinition(f"unknown time zone {_shown(key)}")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UndecodableDefinition(f"unknown time zone {key!r}") from None


_ZONE_KEY: Final = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


def _read_frozenset(payload: object) -> object:
    items: list[object] = _payload("$frozenset", payload, list)
    if not _all_of_type(items, str):
        raise UndecodableDefinition(f"$frozenset {_shown(items)} holds more than str")
    return frozenset(items)


def _read_enum(payload: object) -> object:
    parts: list[object] = _payload("$enum", payload, list)
    if len(parts) != 2 or type(parts[0]) is not str or type(parts[1]) is not str:
        raise UndecodableDefinition(f"$enum holds {_shown(parts)}; expected [class, value]")
    member = _ENUM_MEMBERS.get((parts[0], parts[1]))
    if member is not None:
        return member
    if parts[0] not in _ENUMS:
        raise UndecodableDefinition(f"unknown enum {parts[0]!r}")
    raise UndecodableDefinition(f"{parts[1]!r} is not a {parts[0]}")


_ENUM_MEMBERS: Final[Mapping[tuple[str, str], LimitMode | Recovery]] = {
    (name, member.value): member for name, members in _ENUMS.items() for member in members
}


def _read_retry(payload: object) -> object:
    data: dict[str, object] = _payload("$retry", payload, dict)
    try:
        return Retry.from_data(data)
    except (InvalidJob, TypeError) as error:
        raise UndecodableDefinition(f"invalid $retry {_shown(data)}: {error}") from None


_VALUE_READERS: Final[Mapping[str, Callable[[object], object]]] = {
    "$dict": _read_dict,
    "$tuple": _read_tuple,
    "$int": _read_int,
    "$datetime": _read_datetime,
    "$date": _read_date,
    "$time": _read_time,
    "$timedelta": _read_timedelta,
    "$uuid": _read_uuid,
    "$decimal": _read_decimal,
    "$frozenset": _read_frozenset,
    "$enum": _read_enum,
    "$retry": _read_retry,
}


# ---------------------------------------------------------------------------------------
# Rules


def encode_rule(rule: Rule) -> dict[str, object]:
    """The rule's constructor inputs; ``InvalidJob`` for a rule gnomon does not know."""
    writer = _RULE_WRITERS.get(type(rule))
    if writer is None:
        raise InvalidJob(
            f"durable jobs need one of gnomon's rules (cron, every, every_random, daily, "
            f"weekly, monthly, once), got {_shown(rule)} of type {_type_name(rule)}"
        )
    return writer(rule)


def decode_rule(data: object) -> Rule:
    """The rule that ``encode_rule`` turned into ``data``, validated afresh."""
    if type(data) is not dict:
        raise UndecodableDefinition(f"a rule is a JSON object, got {_shown(data)}")
    kind = data.get("kind")
    reader = _RULE_READERS.get(kind) if type(kind) is str else None
    if reader is None:
        raise UndecodableDefinition(f"unknown rule kind {_shown(kind)}")
    try:
        return reader(data)
    except UndecodableDefinition:
        raise
    except (ValueError, OverflowError) as error:
        raise UndecodableDefinition(f"invalid {kind} rule: {error}") from None


def _zone_key(zone: ZoneInfo | None) -> str | None:
    if zone is not None and zone.key is None:
        raise InvalidJob(f"the rule's time zone {zone!r} has no key; durable jobs need a key")
    return None if zone is None else zone.key


def _micros(duration: timedelta) -> int:
    return duration // _MICROSECOND


def _clock_times(times: tuple[time, ...]) -> list[str]:
    return [at.isoformat() for at in times]


def _write_cron(rule: CronRule) -> dict[str, object]:
    return {
        "kind": "cron",
        "expr": rule.expression,
        "seconds": rule.seconds,
        "timezone": _zone_key(rule.timezone),
    }


def _write_every(rule: Every) -> dict[str, object]:
    return {"kind": "every", "interval_us": _micros(rule.interval)}


def _write_every_random(rule: EveryRandom) -> dict[str, object]:
    return {
        "kind": "every_random",
        "minimum_us": _micros(rule.minimum),
        "maximum_us": _micros(rule.maximum),
    }


def _write_daily(rule: Daily) -> dict[str, object]:
    return {
        "kind": "daily",
        "at": _clock_times(rule.at),
        "interval": rule.interval,
        "timezone": _zone_key(rule.timezone),
    }


def _write_weekly(rule: Weekly) -> dict[str, object]:
    return {
        "kind": "weekly",
        "days": [day.name.lower()[:3] for day in rule.days],
        "at": _clock_times(rule.at),
        "interval": rule.interval,
        "timezone": _zone_key(rule.timezone),
    }


def _write_monthly(rule: Monthly) -> dict[str, object]:
    return {
        "kind": "monthly",
        "days": list(rule.days),
        "at": _clock_times(rule.at),
        "interval": rule.interval,
        "timezone": _zone_key(rule.timezone),
    }


def _write_once(rule: Once) -> dict[str, object]:
    return {"kind": "once", "at": [instant.isoformat() for instant in rule.instants]}


_RULE_WRITERS: Final[Mapping[type[Rule], Callable[[Any], dict[str, object]]]] = {
    CronRule: _write_cron,
    Every: _write_every,
    EveryRandom: _write_every_random,
    Daily: _write_daily,
    Weekly: _write_weekly,
    Monthly: _write_monthly,
    Once: _write_once,
}


def _field(data: dict[str, object], name: str, kind: type) -> Any:
    value = data.get(name)
    if type(value) is not kind:
        raise UndecodableDefinition(
            f"{data['kind']} rule field {name!r} is {_shown(value)}, not a {kind.__name__}"
        )
    return value


def _items(data: dict[str, object], name: str, kind: type) -> tuple[Any, ...]:
    values: list[object] = _field(data, name, list)
    if not _all_of_type(values, kind):
        raise UndecodableDefinition(
            f"{data['kind']} rule field {name!r} is {_shown(values)}, not a list of {kind.__name__}"
        )
    return tuple(values)


def _zone_field(data: dict[str, object]) -> ZoneInfo | None:
    return None if data.get("timezone") is None else _zone_info(_field(data, "timezone", str))


# Rebuilding a rule parses and validates it (a cron expression's matcher is the costly
# part); rules are immutable values, so equal inputs share one rule.
_cached = functools.lru_cache(maxsize=_RULE_CACHE_SIZE)


@_cached
def _cron(expr: str, seconds: bool, zone: ZoneInfo | None) -> Rule:
    # CronRule itself rather than cron(): cron() would re-read a zone prefix or "@every".
    return CronRule(expr, seconds=seconds, timezone=zone)


@_cached
def _daily(at: tuple[str, ...], interval: int, zone: ZoneInfo | None) -> Rule:
    return daily(at, interval=interval, timezone=zone)


@_cached
def _weekly(
    days: tuple[str, ...], at: tuple[str, ...], interval: int, zone: ZoneInfo | None
) -> Rule:
    return weekly(days, at, interval=interval, timezone=zone)


@_cached
def _monthly(
    days: tuple[int, ...], at: tuple[str, ...], interval: int, zone: ZoneInfo | None
) -> Rule:
    return monthly(days, at, interval=interval, timezone=zone)


@_cached
def _once(at: tuple[str, ...]) -> Rule:
    return once([datetime.fromisoformat(instant) for instant in at])


def _read_cron(data: dict[str, object]) -> Rule:
    return _cron(_field(data, "expr", str), _field(data, "seconds", bool), _zone_field(data))


def _read_every(data: dict[str, object]) -> Rule:
    return every(timedelta(microseconds=_field(data, "interval_us", int)))


def _read_every_random(data: dict[str, object]) -> Rule:
    minimum = timedelta(microseconds=_field(data, "minimum_us", int))
    return every_random(minimum, timedelta(microseconds=_field(data, "maximum_us", int)))


def _read_daily(data: dict[str, object]) -> Rule:
    at, interval = _items(data, "at", str), _field(data, "interval", int)
    return _daily(at, interval, _zone_field(data))


def _read_weekly(data: dict[str, object]) -> Rule:
    days, at = _items(data, "days", str), _items(data, "at", str)
    return _weekly(days, at, _field(data, "interval", int), _zone_field(data))


def _read_monthly(data: dict[str, object]) -> Rule:
    days, at = _items(data, "days", int), _items(data, "at", str)
    return _monthly(days, at, _field(data, "interval", int), _zone_field(data))


def _read_once(data: dict[str, object]) -> Rule:
    return _once(_items(data, "at", str))


_RULE_READERS: Final[Mapping[str, Callable[[dict[str, object]], Rule]]] = {
    "cron": _read_cron,
    "every": _read_every,
    "every_random": _read_every_random,
    "daily": _read_daily,
    "weekly": _read_weekly,
    "monthly": _read_monthly,
    "once": _read_once,
}
