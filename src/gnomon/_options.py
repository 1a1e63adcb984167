"""Validation of ``add_job`` / ``update_job`` options into a :class:`JobSpec`."""

from __future__ import annotations

import difflib
import enum
import functools
import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

from gnomon import _rules
from gnomon._clock import require_aware
from gnomon._distributed import Locker
from gnomon._durations import Duration, parse_duration
from gnomon._errors import InvalidJob, InvalidJobArguments
from gnomon._events import JobContext, LimitMode, Recovery, RunEvent
from gnomon._job import PER_JOB_FIELDS, JobSpec, JobTraits, OwnSpecState, new_spec
from gnomon._retry import Retry
from gnomon._rules import Every, EveryRandom, Rule
from gnomon._stores.contract import IfExists

__all__ = [
    "ADD_ONLY_OPTIONS",
    "CATCH_UP_POLICIES",
    "JOB_OPTIONS",
    "AddOptions",
    "DecoratorOptions",
    "JobOptions",
    "UpdateOptions",
    "build_spec",
    "check_option_names",
    "check_rule",
    "derive_state",
    "is_async_callable",
]

Listener = Callable[[RunEvent], object]


class _Options(TypedDict, total=False):
    args: tuple[object, ...] | list[object]
    kwargs: Mapping[str, object] | None
    tags: Iterable[str]
    singleton: LimitMode | None
    max_runs: int | None
    start_at: datetime | None
    start_immediately: bool
    stop_at: datetime | None
    jitter: Duration | None
    timeout: Duration | None
    before_run: Listener | None
    after_run: Listener | None
    after_error: Listener | None
    after_lock_error: Listener | None
    locker: Locker | Literal[False] | None
    recovery: Recovery
    interval_from_completion: bool
    catch_up: Literal["latest", "skip", "all"]
    catch_up_window: Duration | None
    catch_up_limit: int
    retry: Retry | None


class JobOptions(_Options, total=False):
    """A job's options, for type checkers: ``**options: Unpack[JobOptions]`` on
    ``add_job``, ``update_job`` and ``@s.job``, and ``job_defaults: JobOptions``."""

    name: str | None


class AddOptions(_Options, total=False):
    """``add_job``'s keywords besides ``name`` (which its overloads type themselves)."""

    id: uuid.UUID | None
    durable: bool
    if_exists: IfExists | Literal["replace", "keep", "error"]


class DecoratorOptions(JobOptions, total=False):
    """``@s.job``'s keywords: a job's options and ``add_job``'s own."""

    id: uuid.UUID | None
    durable: bool
    if_exists: IfExists | Literal["replace", "keep", "error"]


class UpdateOptions(JobOptions, total=False):
    """``update_job``'s keywords: a job's options, a new task or rule, a version check."""

    func: Callable[..., Any] | str
    rule: Rule
    expected_version: int | None


JOB_OPTIONS: Mapping[str, object] = {
    "args": (),
    "kwargs": None,
    "name": None,
    "tags": (),
    "singleton": None,
    "max_runs": None,
    "start_at": None,
    "start_immediately": False,
    "stop_at": None,
    "jitter": None,
    "timeout": None,
    "before_run": None,
    "after_run": None,
    "after_error": None,
    "after_lock_error": None,
    "locker": None,
    "recovery": Recovery.AT_MOST_ONCE,
    "interval_from_completion": False,
    "catch_up": "latest",
    "catch_up_window": None,
    "catch_up_limit": 100,
    "retry": None,
}
ADD_ONLY_OPTIONS = frozenset({"durable", "if_exists"})
"""Options ``add_job`` takes that describe the call, not the job (not in a ``JobSpec``)."""
CATCH_UP_POLICIES = ("latest", "skip", "all")
_PLAIN_RULES = frozenset(
    cls for cls in vars(_rules).values() if isinstance(cls, type) and issubclass(cls, Rule)
)
_LISTENERS = ("before_run", "after_run", "after_error", "after_lock_error")


def check_option_names(
    options: Mapping[str, object], where: str, *, extra: frozenset[str] = frozenset()
) -> None:
    unknown = sorted(set(options) - set(JOB_OPTIONS) - extra)
    if unknown:
        valid = sorted({*JOB_OPTIONS, *extra})
        hints = [
            f"did you mean {close[0]!r} for {name!r}?"
            for name in unknown
            if (close := difflib.get_close_matches(name, valid, n=1, cutoff=0.6))
        ]
        hint = f" ({' '.join(hints)})" if hints else ""
        raise TypeError(
            f"{where} got unknown option(s) {', '.join(repr(n) for n in unknown)}{hint}; "
            f"valid options are {', '.join(valid)}"
        )


def build_spec(
    func: object,
    options: Mapping[str, Any],
    *,
    scheduler_locker: Locker | None,
    clustered: bool,
) -> JobSpec:
    """Validate everything about a job that does not depend on the scheduler's state."""
    opts = {**JOB_OPTIONS, **options}
    task = _check_callable(func, "task")
    args, kwargs = _check_arguments(opts["args"], opts["kwargs"])
    context_parameter, context_position = _check_signature(task, args, kwargs)
    locker = _check_locker(opts["locker"], scheduler_locker)
    listeners = {name: _check_listener(opts[name], name) for name in _LISTENERS}
    name = _check_name(opts["name"], task)
    tags = _check_tags(opts["tags"])
    singleton = _check_enum(opts["singleton"], LimitMode, "singleton", optional=True)
    max_runs = _check_max_runs(opts["max_runs"])
    start_at = _check_moment(opts["start_at"], "start_at")
    start_immediately = _check_bool(opts["start_immediately"], "start_immediately")
    stop_at = _check_moment(opts["stop_at"], "stop_at")
    jitter = _check_duration(opts["jitter"], "jitter")
    timeout = _check_duration(opts["timeout"], "timeout")
    recovery = _check_enum(opts["recovery"], Recovery, "recovery", optional=False)
    interval_from_completion = _check_bool(
        opts["interval_from_completion"], "interval_from_completion"
    )
    is_async = is_async_callable(task)
    traits = JobTraits(
        func=task,
        singleton=singleton,
        max_runs=max_runs,
        start_immediately=start_immediately,
        jitter=jitter,
        timeout=timeout,
        locker=locker,
        recovery=recovery,
        interval_from_completion=interval_from_completion,
        is_async=is_async,
        context_parameter=context_parameter,
        context_position=context_position,
        needs_loop=(
            is_async
            or locker is not None
            or clustered
            or any(is_async_callable(fn) for fn in listeners.values() if fn is not None)
        ),
        options={k: v for k, v in options.items() if k not in PER_JOB_OPTIONS},
        catch_up=_check_catch_up(opts["catch_up"]),
        catch_up_window=_check_duration(opts["catch_up_window"], "catch_up_window"),
        catch_up_limit=_check_catch_up_limit(opts["catch_up_limit"]),
        retry=_check_retry(opts["retry"]),
        **listeners,
    )
    spec = new_spec(name, args, kwargs, tags, start_at, stop_at, traits)
    _check_combinations(spec)
    return spec


PER_JOB_OPTIONS = frozenset(PER_JOB_FIELDS)
"""Options that differ from job to job of one function: the fast path of ``add_job``."""

_NO_TAGS: frozenset[str] = frozenset()
"""The tags of every job derived without any."""

_NO_KWARGS: Mapping[str, object] = {}
"""The keyword arguments of every job derived without any (a spec is never changed)."""


def derive_state(
    template: JobSpec, options: Mapping[str, Any], job_id: int, rule: Rule
) -> OwnSpecState | None:
    """A new job's state for ``template``'s function with ``options``, validating only
    the per-job options, which the state holds as its own spec; ``None`` when
    ``options`` hold others (then use ``build_spec``).

    ``template`` is any spec built for the function with the scheduler's defaults
    (which set no per-job option) and per-job options only: its traits (listeners,
    locker, coroutine-ness...), validated once there, are shared by the new job.
    """
    if not PER_JOB_OPTIONS.issuperset(options):
        return None
    traits = template.traits
    func = traits.func
    args, kwargs = options.get("args", ()), options.get("kwargs")
    if type(args) is not tuple or kwargs is not None:
        args, kwargs = _check_arguments(args, kwargs)
    if not _fits(func, args, kwargs or _NO_KWARGS):
        parameter, position = _check_signature(func, args, kwargs or {})  # or says why not
        traits = traits.with_context(parameter, position)
    elif traits.context_parameter is not None or traits.context_position is not None:
        traits = traits.with_context(None, None)
    name = _check_name(options.get("name"), func)  # in build_spec's order
    tags = options.get("tags")
    tags = _NO_TAGS if tags is None else _check_tags(tags)
    start_at, stop_at = options.get("start_at"), options.get("stop_at")
    if start_at is not None:
        start_at = require_aware(start_at, "start_at", InvalidJob)
    if stop_at is not None:
        stop_at = require_aware(stop_at, "stop_at", InvalidJob)
    state = OwnSpecState(
        job_id, rule, name, args, kwargs or _NO_KWARGS, tags, start_at, stop_at, traits
    )
    if start_at is not None and (stop_at is not None or traits.start_immediately):
        _check_combinations(state)
    return state


def _fits(
    func: Callable[..., object], args: tuple[object, ...], kwargs: Mapping[str, object]
) -> bool:
    """Whether ``args`` and ``kwargs`` bind to a plain function's parameters: a quick
    check for the common shape (no ``*args``, ``**kwargs``, positional-only or context
    parameter); False means "ask ``inspect``", not "they do not fit"."""
    try:
        shape = _shape(func)
    except TypeError:  # unhashable
        return False
    if shape is None:
        return False
    positional, keywords, required, fewest = shape
    if len(args) > len(positional):
        return False
    if not kwargs:
        return len(args) >= fewest
    taken = positional[: len(args)]
    for key in kwargs:
        if key not in keywords or key in taken:
            return False
    return all(name in kwargs or name in taken for name in required)


@functools.lru_cache(maxsize=4096)
def _shape(
    func: Callable[..., object],
) -> tuple[tuple[str, ...], frozenset[str], tuple[str, ...], int] | None:
    """A plain function's positional parameters, all its parameter names, the required
    ones, and the fewest positional arguments that fill every required one without
    keyword arguments (one more than it takes, if a keyword-only one is required)."""
    binder = _signature_binder(func)
    if binder is None or binder[1] is not None:
        return None
    kinds = inspect.Parameter
    positional: list[str] = []
    keywords: set[str] = set()
    required: list[str] = []
    for parameter in binder[0].parameters.values():
        if parameter.kind is kinds.POSITIONAL_OR_KEYWORD:
            positional.append(parameter.name)
        elif parameter.kind is not kinds.KEYWORD_ONLY:
            return None
        keywords.add(parameter.name)
        if parameter.default is kinds.empty:
            required.append(parameter.name)
    fewest = 0
    for name in required:
        needs = positional.index(name) + 1 if name in positional else len(positional) + 1
        fewest = max(fewest, needs)
    return tuple(positional), frozenset(keywords), tuple(required), fewest


def is_async_callable(func: object) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


def _check_callable(func: object, what: str) -> Callable[..., object]:
    if func is None or not callable(func):
        raise InvalidJob(f"the {what} must be callable, got {func!r}")
    return func


def check_rule(spec: JobSpec, rule: object, *, clustered: bool) -> Rule:
    """Check the rule itself, and the options that only make sense with some rules."""
    traits = spec.traits
    if type(rule) in _PLAIN_RULES and not traits.interval_from_completion and traits.locker is None:
        return rule  # type: ignore[return-value]  # the common case, kept cheap
    if not isinstance(rule, Rule):
        raise InvalidJob(
            f"rule must be a gnomon rule (gnomon.cron, every, every_random, daily, weekly, "
            f"monthly or once), got {rule!r}"
        )
    interval_rule = isinstance(rule, Every | EveryRandom)
    if spec.interval_from_completion and not interval_rule:
        raise InvalidJob(
            f"interval_from_completion=True needs an every() or every_random() rule, got {rule!r}"
        )
    if spec.interval_from_completion and (clustered or spec.locker is not None):
        raise InvalidJob(
            "interval_from_completion=True cannot be used with a locker or elector: "
            "nodes cannot agree on fire times measured from a local completion"
        )
    if spec.locker is not None and isinstance(rule, EveryRandom) and spec.start_at is None:
        raise InvalidJob(
            f"{rule!r} with a locker needs start_at, so that every node draws the same "
            "fire times from the same anchor"
        )
    return rule


def _check_arguments(args: object, kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
    if type(args) is tuple and kwargs is None:
        return args, {}  # the common case, kept cheap
    if isinstance(args, str | bytes) or not isinstance(args, tuple | list):
        raise InvalidJobArguments(f"args must be a tuple or list, got {args!r}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise InvalidJobArguments(f"kwargs must be a mapping of names to values, got {kwargs!r}")
    return tuple(args), dict(kwargs)


def _check_signature(
    func: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, int | None]:
    """Bind the arguments now, so a mismatch fails at ``add_job``, not at the first run.

    Returns where the ``JobContext`` goes: the parameter's name, and its position when it
    is passed positionally (``def task(ctx: JobContext, amount)`` with ``args=(5,)``).
    """
    binder = _signature_binder(func)
    if binder is None:
        return None, None
    signature, context_parameter = binder
    position = None
    bound_args, bound_kwargs = args, dict(kwargs)
    if context_parameter is not None and context_parameter not in kwargs:
        position = _context_position(signature, context_parameter, len(args))
        if position is None:
            bound_kwargs[context_parameter] = None
        else:
            bound_args = (*args[:position], None, *args[position:])
    try:
        signature.bind(*bound_args, **bound_kwargs)
    except TypeError as exc:
        raise InvalidJobArguments(
            f"args {args!r} and kwargs {kwargs!r} do not fit {_describe(func)}{signature}: {exc}"
        ) from None
    return context_parameter, position


def _context_position(signature: inspect.Signature, name: str, given: int) -> int | None:
    positional = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if name in positional and positional.index(name) <= given:
        return positional.index(name)
    return None


def _signature_binder(func: Callable[..., object]) -> tuple[inspect.Signature, str | None] | None:
    try:
        return _cached_binder(func)
    except TypeError:  # an unhashable callable: inspect it every time
        return _cached_binder.__wrapped__(func)


@functools.lru_cache(maxsize=4096)
def _cached_binder(func: Callable[..., object]) -> tuple[inspect.Signature, str | None] | None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: nothing to check
    context_parameter = None
    for parameter in signature.parameters.values():
        if _is_context_annotation(parameter.annotation):
            context_parameter = parameter.name
            break
    return signature, context_parameter


def _is_context_annotation(annotation: object) -> bool:
    if annotation is JobContext:
        return True
    return isinstance(annotation, str) and annotation.split(".")[-1] == "JobContext"


def _describe(func: Callable[..., object]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def _check_name(name: object, func: Callable[..., object]) -> str:
    if name is None:
        module = getattr(func, "__module__", None) or ""
        qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
        return f"{module}.{qualname}" if module else qualname
    if not isinstance(name, str) or not name.strip():
        raise InvalidJob(f"name must be a non-empty string, got {name!r}")
    return name


def _check_tags(tags: object) -> frozenset[str]:
    if type(tags) is tuple:
        try:
            known = _TAG_SETS.get(tags)
        except TypeError:  # an unhashable item: found wanting below
            known = None
        if known is not None:
            return known
    if isinstance(tags, str):
        raise InvalidJob(f"tags must be a collection of strings, got the string {tags!r}")
    if not isinstance(tags, Iterable):
        raise InvalidJob(f"tags must be a collection of strings, got {tags!r}")
    result = frozenset(tags)
    bad = [t for t in result if not isinstance(t, str) or not t]
    if bad:
        raise InvalidJob(f"every one of tags must be a non-empty string, got {bad[0]!r}")
    if len(_TAG_SETS) >= _TAG_SETS_KEPT:
        _TAG_SETS.clear()
    result = _TAG_SETS.setdefault(result, result)
    if type(tags) is tuple:
        _TAG_SETS[tags] = result
    return result


_TAG_SETS: dict[object, frozenset[str]] = {}
"""Equal tag sets, kept once (many jobs carry the same few tags, and each set is a couple
of hundred bytes), found by the set or by the tuple it was made of."""
_TAG_SETS_KEPT = 4096


def _check_enum(value: object, kind: type[enum.Enum], field: str, *, optional: bool) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, kind):
        return value
    valid = ", ".join(f"{kind.__name__}.{m.name}" for m in kind)
    raise InvalidJob(f"{field} must be one of {valid}, got {value!r}")


def _check_max_runs(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJob(f"max_runs must be a whole number of at least 1, got {value!r}")
    return value


def _check_moment(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    return require_aware(value, field, InvalidJob)  # type: ignore[arg-type]


def _check_catch_up(value: object) -> Any:
    if value in CATCH_UP_POLICIES and isinstance(value, str):
        return value
    valid = ", ".join(repr(p) for p in CATCH_UP_POLICIES)
    raise InvalidJob(f"catch_up must be one of {valid}, got {value!r}")


def _check_catch_up_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJob(f"catch_up_limit must be a whole number of at least 1, got {value!r}")
    return value


def _check_retry(value: object) -> Retry | None:
    if value is None or isinstance(value, Retry):
        return value
    raise InvalidJob(
        f"retry must be a gnomon.Retry (such as Retry(attempts=3, delay='10s')) or None, "
        f"got {value!r}"
    )


def _check_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidJob(f"{field} must be True or False, got {value!r}")
    return value


def _check_duration(value: object, field: str) -> timedelta | None:
    if value is None:
        return None
    return parse_duration(value, field=field, error=InvalidJob)


def _check_listener(value: object, field: str) -> Callable[..., object] | None:
    if value is None:
        return None
    if not callable(value):
        raise InvalidJob(f"{field} must be a callable taking a RunEvent, got {value!r}")
    return value


def _check_locker(value: object, scheduler_locker: Locker | None) -> Locker | None:
    if value is False:
        return None
    if value is None:
        return scheduler_locker
    if isinstance(value, Locker):
        return value
    raise InvalidJob(f"locker must be a gnomon.Locker, False or None, got {value!r}")


def _check_combinations(spec: JobSpec) -> None:
    if spec.start_immediately and spec.start_at is not None:
        raise InvalidJob(
            "start_immediately=True and start_at are contradictory: choose one "
            f"(start_at={spec.start_at.isoformat()})"
        )
    start, stop = spec.start_at, spec.stop_at
    if start is not None and stop is not None and stop.timestamp() <= start.timestamp():
        raise InvalidJob(
            f"stop_at ({stop.isoformat()}) must be later than start_at ({start.isoformat()})"
        )
