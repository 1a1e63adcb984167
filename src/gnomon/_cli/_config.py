"""The schedule file: TOML in, validated job specifications out.

Every problem is collected, not just the first, and each one names the job (or the
``[scheduler]`` table) and the field, so that ``gnomon check`` reports a whole file at once.
"""

from __future__ import annotations

import difflib
import importlib
import shlex
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gnomon._cli._dispatch import (
    DISPATCH_KEYS,
    DISPATCH_OPTION_KEYS,
    DispatchAction,
    read_broker_url,
    read_dispatch,
)
from gnomon._cli._rules import RULE_KEYS, read_moment, read_rule
from gnomon._cli._store import StoreLocation, read_store
from gnomon._durations import parse_duration
from gnomon._errors import GnomonError, InvalidJob
from gnomon._events import LimitMode
from gnomon._options import CATCH_UP_POLICIES
from gnomon._retry import Retry
from gnomon._rules import Rule
from gnomon._scheduler import _local_zone

__all__ = [
    "CallAction",
    "CommandAction",
    "InvalidSchedule",
    "JobSpec",
    "Schedule",
    "SchedulerSpec",
    "configured_store",
    "load_schedule",
    "local_timezone",
]

_T = TypeVar("_T")
_D = TypeVar("_D")

CATCH_UP_KEYS = ("catch_up", "catch_up_window", "catch_up_limit")
SCHEDULER_KEYS = (
    "timezone",
    "max_concurrent",
    "stop_timeout",
    "state",
    "store",
    "locker",
    "elector",
    "broker",
    *CATCH_UP_KEYS,
)
ACTION_KEYS = ("command", "call", *DISPATCH_KEYS)
JOB_KEYS = (
    "name",
    *RULE_KEYS,
    *ACTION_KEYS,
    "cwd",
    "env",
    "args",
    "kwargs",
    "tags",
    "singleton",
    "retry",
    "timeout",
    "max_runs",
    "start_at",
    "stop_at",
    "jitter",
    "start_immediately",
    *DISPATCH_OPTION_KEYS,
    *CATCH_UP_KEYS,
)
DEFAULT_STOP_TIMEOUT = timedelta(seconds=10)
BACKEND_SCHEMES = ("redis", "rediss", "unix", "postgres", "postgresql")


class InvalidSchedule(GnomonError, ValueError):
    """A schedule file cannot be used; ``problems`` lists every reason, one line each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))


@dataclass(frozen=True, slots=True)
class CommandAction:
    """Run a program: ``argv`` directly, or ``shell`` through ``/bin/sh -c``."""

    shell: str | None
    argv: tuple[str, ...] | None
    cwd: Path
    env: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if self.shell is not None:
            return f"command: {self.shell}"
        return "command: " + shlex.join(self.argv or ())

    def program(self) -> list[str]:
        if self.shell is not None:
            return ["/bin/sh", "-c", self.shell]
        return list(self.argv or ())


@dataclass(frozen=True, slots=True)
class CallAction:
    """Call a Python function named ``"package.module:function"``."""

    target: str
    func: Callable[..., object] = field(compare=False)
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        return f"call: {self.target}"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One ``[[jobs]]`` entry, validated."""

    name: str
    rule: Rule
    action: CommandAction | CallAction | DispatchAction
    tags: frozenset[str] = frozenset()
    singleton: LimitMode | None = None
    retry: Retry | None = None
    timeout: timedelta | None = None
    max_runs: int | None = None
    start_at: datetime | None = None
    stop_at: datetime | None = None
    jitter: timedelta | None = None
    start_immediately: bool = False
    catch_up: str | None = None
    catch_up_window: timedelta | None = None
    catch_up_limit: int | None = None
    """The catch-up keys are ``None`` where the job leaves them to ``[scheduler]``."""

    def options(self) -> dict[str, object]:
        """The ``add_job`` keywords (besides the task, its arguments and the name)."""
        catch_up = {key: getattr(self, key) for key in CATCH_UP_KEYS}
        return {
            **{key: value for key, value in catch_up.items() if value is not None},
            "tags": self.tags,
            "singleton": self.singleton,
            "retry": self.retry,
            "timeout": self.timeout,
            "max_runs": self.max_runs,
            "start_at": self.start_at,
            "stop_at": self.stop_at,
            "jitter": self.jitter,
            "start_immediately": self.start_immediately,
        }


@dataclass(frozen=True, slots=True)
class SchedulerSpec:
    """The ``[scheduler]`` table, validated."""

    timezone: ZoneInfo
    max_concurrent: int | None
    stop_timeout: timedelta
    store: StoreLocation
    locker: str | None = None
    elector: str | None = None
    broker: str | None = None
    """The task queue's broker URL, for dispatch jobs (never stored)."""
    catch_up: str = "latest"
    catch_up_window: timedelta | None = None
    catch_up_limit: int = 100

    def job_defaults(self) -> dict[str, object]:
        """What every job gets unless it says otherwise."""
        return {key: getattr(self, key) for key in CATCH_UP_KEYS}


@dataclass(frozen=True, slots=True)
class Schedule:
    """A whole schedule file."""

    path: Path
    scheduler: SchedulerSpec
    jobs: tuple[JobSpec, ...]


def local_timezone() -> ZoneInfo:
    """The local zone as a ``ZoneInfo``, found the way a ``Scheduler`` finds it."""
    return _local_zone()


def default_state_path(schedule_path: Path) -> Path:
    """The state file beside the schedule file: ``gnomon.toml`` → ``gnomon.state.sqlite3``."""
    return schedule_path.with_name(f"{schedule_path.stem}.state.sqlite3")


def configured_store(path: Path) -> tuple[StoreLocation, ZoneInfo]:
    """Where the schedule file keeps its jobs and history, and the zone it shows times in,
    read without loading its jobs (or their modules): its ``[scheduler]`` store or state,
    else the file beside it; its timezone, else the local one.

    An unreadable schedule file means the defaults; a bad setting is an
    ``InvalidSchedule``, since guessing another store would show the wrong history.
    """
    default = StoreLocation(path=default_state_path(path))
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return default, local_timezone()
    table = document.get("scheduler")
    if not isinstance(table, dict):
        return default, local_timezone()
    problems: list[str] = []
    fields = _Fields(table, "[scheduler]", problems)
    location = _read_store(fields, path, default)
    zone = fields.take("timezone", _timezone, local_timezone())
    if problems:
        raise InvalidSchedule(path, problems)
    return location, zone


def load_schedule(path: Path) -> Schedule:
    """Read and validate a schedule file; raises ``InvalidSchedule`` listing every problem.

    The file's directory is put on ``sys.path`` so that ``call`` finds modules beside it.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidSchedule(path, ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidSchedule(path, [f"cannot be read: {error}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidSchedule(path, [f"is not valid TOML: {error}"]) from None
    _put_on_sys_path(path.resolve().parent)
    problems: list[str] = []
    schedule = _read_document(path, document, problems)
    if problems:
        raise InvalidSchedule(path, problems)
    return schedule


def _put_on_sys_path(directory: Path) -> None:
    entry = str(directory)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _read_document(path: Path, document: dict[str, object], problems: list[str]) -> Schedule:
    top_level = ("scheduler", "jobs")
    problems.extend(
        _unknown(f"top-level key {key!r}", key, top_level)
        for key in document
        if key not in top_level
    )
    scheduler = _read_scheduler(path, document.get("scheduler", {}), problems)
    jobs = _read_jobs(path.resolve().parent, document.get("jobs", []), scheduler, problems)
    return Schedule(path=path, scheduler=scheduler, jobs=jobs)


def _unknown(what: str, key: str, valid: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what}{hint}; valid keys are: {', '.join(valid)}"


class _Fields:
    """Reads the keys of one table, collecting a problem per bad field instead of stopping."""

    def __init__(self, table: Mapping[str, object], where: str, problems: list[str]) -> None:
        self.table = table
        self.where = where
        self.problems = problems

    def take(self, key: str, parse: Callable[[object], _T], default: _D) -> _T | _D:
        if key not in self.table:
            return default
        try:
            return parse(self.table[key])
        except GnomonError as error:
            self.fail(str(error))
            return default

    def fail(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")

    def check_keys(self, valid: tuple[str, ...]) -> None:
        for key in self.table:
            if key not in valid:
                self.fail(_unknown(f"field {key!r}", key, valid))


def _read_scheduler(path: Path, table: object, problems: list[str]) -> SchedulerSpec:
    local = local_timezone()
    default_store = StoreLocation(path=default_state_path(path))
    if not isinstance(table, dict):
        problems.append("[scheduler] must be a table")
        return SchedulerSpec(local, None, DEFAULT_STOP_TIMEOUT, default_store)
    fields = _Fields(table, "[scheduler]", problems)
    fields.check_keys(SCHEDULER_KEYS)
    return SchedulerSpec(
        timezone=fields.take("timezone", _timezone, local),
        max_concurrent=fields.take("max_concurrent", _positive_int("max_concurrent"), None),
        stop_timeout=fields.take("stop_timeout", _duration("stop_timeout"), DEFAULT_STOP_TIMEOUT),
        store=_read_store(fields, path, default_store),
        locker=fields.take("locker", _url("locker"), None),
        elector=fields.take("elector", _url("elector"), None),
        broker=fields.take("broker", read_broker_url, None),
        catch_up=fields.take("catch_up", _catch_up, "latest"),
        catch_up_window=fields.take("catch_up_window", _duration("catch_up_window"), None),
        catch_up_limit=fields.take("catch_up_limit", _positive_int("catch_up_limit"), 100),
    )


def _read_store(fields: _Fields, path: Path, default: StoreLocation) -> StoreLocation:
    """``store``, or ``state`` (a SQLite file), both relative to the schedule file."""
    base = path.resolve().parent
    if "state" in fields.table and "store" in fields.table:
        fields.fail(
            "state and store are both given, and both name the store: give one "
            '(state = PATH is short for store = "sqlite:PATH")'
        )
        return default
    if "store" in fields.table:
        return fields.take("store", lambda value: read_store(value, base), default)
    return fields.take(
        "state", lambda value: StoreLocation(path=base / _text("state")(value)), default
    )


def _read_jobs(
    base: Path, entries: object, scheduler: SchedulerSpec, problems: list[str]
) -> tuple[JobSpec, ...]:
    if not isinstance(entries, list):
        problems.append("jobs must be an array of tables: write each job as [[jobs]]")
        return ()
    jobs: list[JobSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        job = _read_job(base, index, entry, scheduler, problems)
        if job is None:
            continue
        if job.name in seen:
            problems.append(f"job {job.name!r}: name is used by an earlier job; names are unique")
        seen.add(job.name)
        jobs.append(job)
    return tuple(jobs)


def _read_job(
    base: Path, index: int, entry: object, scheduler: SchedulerSpec, problems: list[str]
) -> JobSpec | None:
    if not isinstance(entry, dict):
        problems.append(f"jobs[{index}]: must be a table")
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"jobs[{index}]: name is required: a non-empty string, got {name!r}")
        return None
    before = len(problems)
    fields = _Fields(entry, f"job {name!r}", problems)
    fields.check_keys(JOB_KEYS)
    rule = _read_job_rule(fields, scheduler.timezone)
    action = _read_action(fields, base, scheduler.broker)
    options = _read_options(fields, scheduler.timezone)
    if len(problems) > before or rule is None or action is None:
        return None
    return JobSpec(name=name, rule=rule, action=action, **options)


def _read_job_rule(fields: _Fields, zone: ZoneInfo) -> Rule | None:
    present = [key for key in RULE_KEYS if key in fields.table]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        fields.fail(f"needs exactly one rule ({', '.join(RULE_KEYS)}); found {found}")
        return None
    key = present[0]
    try:
        return read_rule(key, fields.table[key], zone)
    except GnomonError as error:
        fields.fail(f"{key}: {error}")
        return None


def _read_action(
    fields: _Fields, base: Path, broker: str | None
) -> CommandAction | CallAction | DispatchAction | None:
    present = [key for key in ACTION_KEYS if key in fields.table]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        fields.fail(f"needs exactly one action ({', '.join(ACTION_KEYS)}); found {found}")
        return None
    if present[0] in DISPATCH_KEYS:
        _refuse(fields, ("cwd", "env"), "a task queue's worker runs the task")
        kind = present[0]
        return fields.take(kind, lambda _: read_dispatch(kind, fields.table, broker), None)
    _refuse(fields, DISPATCH_OPTION_KEYS, "they belong to celery, dramatiq and rq jobs")
    if present[0] == "command":
        return _read_command(fields, base)
    return _read_call(fields)


def _refuse(fields: _Fields, keys: tuple[str, ...], why: str) -> None:
    for key in keys:
        if key in fields.table:
            fields.fail(f"{key} does not apply to this job: {why}")


def _read_command(fields: _Fields, base: Path) -> CommandAction | None:
    for key in ("args", "kwargs"):
        if key in fields.table:
            fields.fail(f"{key} belongs to call; a command takes its arguments in its text")
    program = fields.take("command", _program, None)
    cwd = fields.take("cwd", lambda value: base / _text("cwd")(value), base)
    env = fields.take("env", _env, ())
    if program is None:
        return None
    shell, argv = program
    return CommandAction(shell=shell, argv=argv, cwd=cwd, env=env)


def _read_call(fields: _Fields) -> CallAction | None:
    for key in ("cwd", "env"):
        if key in fields.table:
            fields.fail(f"{key} belongs to command; a call runs inside the gnomon process")
    args = fields.take("args", _args, ())
    kwargs = fields.take("kwargs", _kwargs, None) or {}
    resolved = fields.take("call", _callable, None)
    if resolved is None:
        return None
    target, func = resolved
    return CallAction(target=target, func=func, args=args, kwargs=kwargs)


def _read_options(fields: _Fields, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "tags": fields.take("tags", _tags, frozenset()),
        "singleton": fields.take("singleton", _limit_mode, None),
        "retry": fields.take("retry", _retry, None),
        "timeout": fields.take("timeout", _duration("timeout"), None),
        "max_runs": fields.take("max_runs", _positive_int("max_runs"), None),
        "start_at": fields.take("start_at", _moment("start_at", zone), None),
        "stop_at": fields.take("stop_at", _moment("stop_at", zone), None),
        "jitter": fields.take("jitter", _duration("jitter"), None),
        "start_immediately": fields.take(
            "start_immediately", _flag("start_immediately"), default=False
        ),
        "catch_up": fields.take("catch_up", _catch_up, None),
        "catch_up_window": fields.take("catch_up_window", _duration("catch_up_window"), None),
        "catch_up_limit": fields.take("catch_up_limit", _positive_int("catch_up_limit"), None),
    }


# -- field parsers: each raises InvalidJob naming the field, the value and what is valid --


def _text(name: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or not value:
            raise InvalidJob(f"{name} must be a non-empty string, got {value!r}")
        return value

    return parse


def _flag(name: str) -> Callable[[object], bool]:
    def parse(value: object) -> bool:
        if not isinstance(value, bool):
            raise InvalidJob(f"{name} must be true or false, got {value!r}")
        return value

    return parse


def _positive_int(name: str) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidJob(f"{name} must be a whole number of at least 1, got {value!r}")
        return value

    return parse


def _duration(name: str) -> Callable[[object], timedelta]:
    def parse(value: object) -> timedelta:
        return parse_duration(value, field=name, error=InvalidJob)

    return parse


def _timezone(value: object) -> ZoneInfo:
    if not isinstance(value, str) or not value:
        raise InvalidJob(
            f"timezone must be an IANA zone name such as 'Europe/Paris', got {value!r}"
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidJob(
            f"timezone {value!r} is not a known IANA zone name (such as 'Europe/Paris' or 'UTC')"
        ) from None


def _url(name: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        from gnomon._cli._secrets import mask_secrets

        text = _text(name)(value)
        if text.partition("://")[0].lower() not in BACKEND_SCHEMES or "://" not in text:
            raise InvalidJob(
                f"{name} must be a Redis or PostgreSQL URL such as 'redis://host:6379/0' or "
                f"'postgresql://user@host/db', got {mask_secrets(text)!r}"
            )
        return text

    return parse


def _moment(name: str, zone: ZoneInfo) -> Callable[[object], datetime]:
    def parse(value: object) -> datetime:
        return read_moment(name, value, zone)

    return parse


def _tags(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(tag, str) and tag for tag in value):
        raise InvalidJob(f"tags must be a list of non-empty strings, got {value!r}")
    return frozenset(value)


def _catch_up(value: object) -> str:
    if not isinstance(value, str) or value not in CATCH_UP_POLICIES:
        valid = ", ".join(repr(policy) for policy in CATCH_UP_POLICIES)
        raise InvalidJob(f"catch_up must be one of {valid}, got {value!r}")
    return value


def _limit_mode(value: object) -> LimitMode:
    choices = {mode.value: mode for mode in LimitMode}
    if not isinstance(value, str) or value.lower() not in choices:
        valid = ", ".join(repr(mode.value) for mode in LimitMode)
        raise InvalidJob(f"singleton must be one of {valid}, got {value!r}")
    return choices[value.lower()]


def _retry(value: object) -> Retry:
    """``retry = { attempts = 3, delay = "10s", ... }`` (exception filters stay in code)."""
    if not isinstance(value, dict):
        raise InvalidJob(
            f'retry must be a table such as {{ attempts = 3, delay = "10s" }}, got {value!r}'
        )
    return Retry.from_data(value)


def _program(value: object) -> tuple[str | None, tuple[str, ...] | None]:
    if isinstance(value, str) and value.strip():
        return value, None
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        return None, tuple(value)
    raise InvalidJob(
        "command must be a shell string such as 'backup.sh --full' or an argv list such as "
        f"['backup.sh', '--full'], got {value!r}"
    )


def _env(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise InvalidJob(f"env must be a table of strings such as {{ LANG = 'C' }}, got {value!r}")
    return tuple(sorted(value.items()))


def _args(value: object) -> tuple[object, ...]:
    if not isinstance(value, list):
        raise InvalidJob(f"args must be an array, got {value!r}")
    return tuple(value)


def _kwargs(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise InvalidJob(f"kwargs must be a table, got {value!r}")
    return dict(value)


def _callable(value: object) -> tuple[str, Callable[..., object]]:
    shape = "'package.module:function'"
    if not isinstance(value, str) or value.count(":") != 1:
        raise InvalidJob(f"call must name a function as {shape}, got {value!r}")
    module_name, _, attribute = value.partition(":")
    if not module_name or not attribute:
        raise InvalidJob(f"call must name a function as {shape}, got {value!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise InvalidJob(f"call {value!r}: cannot import {module_name!r}: {error!r}") from None
    target: object = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise InvalidJob(f"call {value!r}: module {module_name!r} has no {attribute!r}")
    if not callable(target):
        raise InvalidJob(f"call {value!r} is not callable, it is a {type(target).__name__}")
    return value, target
