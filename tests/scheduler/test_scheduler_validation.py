"""Validation: every bad input is a typed gnomon error naming the value.

gocron's ``NewJobErrors`` table runs each case both as a job option and as a global
option; here the global form is ``job_defaults``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from scheduler_support import (
    SECOND,
    T0,
    WAIT,
    SchedulerFactory,
    Tally,
)

import gnomon
from gnomon.testing import FakeClock

NAIVE = datetime(2026, 1, 5, 12, 0)
BARE_INT_DAY: Any = 1  # ambiguous (is 1 Monday or Sunday?), so weekly() must refuse it


def nothing() -> None:
    """A task that accepts no arguments."""


def assert_named(exc: BaseException, *fragments: str) -> None:
    message = str(exc)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not named in {message!r}"


# (job option keyword arguments, message fragments that must appear)
BAD_JOB_OPTIONS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "empty-name": ({"name": ""}, ("name",)),
    "zero-max-runs": ({"max_runs": 0}, ("max_runs", "0")),
    "negative-max-runs": ({"max_runs": -3}, ("max_runs", "-3")),
    "fractional-max-runs": ({"max_runs": 1.5}, ("max_runs", "1.5")),
    "negative-jitter": ({"jitter": "-1s"}, ("jitter", "-1s")),
    "unreadable-jitter": ({"jitter": "soonish"}, ("jitter", "soonish")),
    "zero-timeout": ({"timeout": 0}, ("timeout", "0")),
    "unreadable-timeout": ({"timeout": "forever"}, ("timeout", "forever")),
    "nil-id": ({"id": uuid.UUID(int=0)}, ("id",)),
    "malformed-id": ({"id": "not-a-uuid"}, ("id", "not-a-uuid")),
    "singleton-not-a-mode": ({"singleton": 3}, ("singleton", "3")),
    "before-run-not-callable": ({"before_run": "print"}, ("before_run", "print")),
    "after-run-not-callable": ({"after_run": 42}, ("after_run", "42")),
    "after-error-not-callable": ({"after_error": 42}, ("after_error", "42")),
    "after-lock-error-not-callable": ({"after_lock_error": 42}, ("after_lock_error", "42")),
    "non-string-tag": ({"tags": ("ok", 7)}, ("tag", "7")),
    "recovery-not-a-mode": ({"recovery": "sometimes"}, ("recovery", "sometimes")),
    "stop-at-in-the-past": ({"stop_at": T0 - SECOND}, ("stop_at",)),
    "stop-at-before-start-at": (
        {"start_at": T0 + 10 * SECOND, "stop_at": T0 + 5 * SECOND},
        ("stop_at", "start_at"),
    ),
    "start-immediately-with-start-at": (
        {"start_immediately": True, "start_at": T0 + SECOND},
        ("start_immediately", "start_at"),
    ),
}

# Options that make sense as scheduler-wide defaults too.
DEFAULTABLE = [
    "zero-max-runs",
    "negative-jitter",
    "zero-timeout",
    "singleton-not-a-mode",
    "before-run-not-callable",
    "non-string-tag",
    "recovery-not-a-mode",
]


@pytest.mark.parametrize("case", BAD_JOB_OPTIONS.keys())
def test_a_bad_job_option_is_an_invalid_job_naming_the_value(
    scheduler: gnomon.Scheduler, case: str
) -> None:
    options, fragments = BAD_JOB_OPTIONS[case]
    with pytest.raises(gnomon.InvalidJob) as raised:
        scheduler.add_job(nothing, gnomon.every(1), **options)
    assert_named(raised.value, *fragments)
    assert scheduler.jobs() == []


@pytest.mark.parametrize("case", DEFAULTABLE)
def test_a_bad_job_default_is_an_invalid_job_naming_the_value(
    make_scheduler: SchedulerFactory, case: str
) -> None:
    options, fragments = BAD_JOB_OPTIONS[case]

    def build_then_add() -> None:
        make_scheduler(job_defaults=options).add_job(nothing, gnomon.every(1))

    with pytest.raises(gnomon.InvalidJob) as raised:
        build_then_add()
    assert_named(raised.value, *fragments)


@pytest.mark.parametrize("case", DEFAULTABLE)
def test_a_bad_option_given_to_update_job_is_rejected_and_changes_nothing(
    scheduler: gnomon.Scheduler, case: str
) -> None:
    options, fragments = BAD_JOB_OPTIONS[case]
    job = scheduler.add_job(nothing, gnomon.every(1), name="unchanged")
    with pytest.raises(gnomon.InvalidJob) as raised:
        scheduler.update_job(job.id, **options)
    assert_named(raised.value, *fragments)
    assert job.name == "unchanged"


@pytest.mark.parametrize("field", ["start_at", "stop_at"])
def test_a_naive_datetime_is_a_value_error(scheduler: gnomon.Scheduler, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        scheduler.add_job(nothing, gnomon.every(1), **{field: NAIVE})


def test_a_fake_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="2026"):
        FakeClock(NAIVE)


def test_interval_from_completion_needs_an_interval_rule(scheduler: gnomon.Scheduler) -> None:
    with pytest.raises(gnomon.InvalidJob) as raised:
        scheduler.add_job(nothing, gnomon.cron("*/5 * * * *"), interval_from_completion=True)
    assert_named(raised.value, "interval_from_completion")


def test_a_duplicate_id_is_an_invalid_job(scheduler: gnomon.Scheduler) -> None:
    job = scheduler.add_job(nothing, gnomon.every(1))
    with pytest.raises(gnomon.InvalidJob) as raised:
        scheduler.add_job(nothing, gnomon.every(2), id=job.id)
    assert_named(raised.value, str(job.id))
    assert len(scheduler.jobs()) == 1


def test_a_caller_chosen_id_is_kept(scheduler: gnomon.Scheduler) -> None:
    chosen = uuid.uuid4()
    job = scheduler.add_job(nothing, gnomon.every(1), id=chosen)
    assert job.id == chosen
    assert scheduler.get_job(chosen).id == chosen


def test_store_options_on_a_scheduler_without_a_store(scheduler: gnomon.Scheduler) -> None:
    # durable=False is what such a scheduler does anyway; if_exists needs a store.
    chosen = uuid.uuid4()
    first = scheduler.add_job(nothing, gnomon.every(1), durable=False)
    second = scheduler.add_job(nothing, gnomon.every(1), durable=False, id=chosen, name="kept")
    assert (first.name, second.id, second.name) == (first.name, chosen, "kept")
    with pytest.raises(gnomon.InvalidJob) as raised:
        scheduler.add_job(nothing, gnomon.every(1), if_exists="skip", name="n")
    assert_named(raised.value, "'skip'")
    assert_named(raised.value, "no store")
    assert len(scheduler.jobs()) == 2


@pytest.mark.parametrize("func", [None, "nothing", 42], ids=["none", "string", "number"])
def test_a_task_that_is_not_callable_is_an_invalid_job(
    scheduler: gnomon.Scheduler, func: object
) -> None:
    with pytest.raises(gnomon.InvalidJob) as raised:
        scheduler.add_job(func, gnomon.every(1))  # type: ignore[arg-type]
    assert_named(raised.value, repr(func))


def two(a: object, b: object) -> None:
    """Two positional parameters."""


def variadic(*names: str) -> None:
    """Any number of positional arguments."""


def fixed_then_variadic(first: object, *rest: object) -> None:
    """One required positional argument, then any number."""


def keyword_only(*, key: object) -> None:
    """One required keyword-only argument."""


def any_keywords(**options: object) -> None:
    """Any keyword arguments."""


# (function, args, kwargs)
MISFITS: dict[str, tuple[Callable[..., object], tuple[object, ...], dict[str, object]]] = {
    "too-few": (two, (1,), {}),
    "too-many": (two, (1, 2, 3), {}),
    "unknown-keyword": (two, (1,), {"c": 3}),
    "args-for-no-parameters": (nothing, (1,), {}),
    "missing-fixed-before-variadic": (fixed_then_variadic, (), {}),
    "missing-keyword-only": (keyword_only, (), {}),
    "positional-for-keyword-only": (keyword_only, (1,), {}),
    "keyword-for-variadic-positional": (variadic, (), {"names": "x"}),
}

FITS: dict[str, tuple[Callable[..., object], tuple[object, ...], dict[str, object]]] = {
    "exact": (two, (1, 2), {}),
    "by-keyword": (two, (), {"a": 1, "b": 2}),
    "variadic-empty": (variadic, (), {}),
    "variadic-many": (variadic, ("a", "b", "c"), {}),
    "fixed-then-variadic": (fixed_then_variadic, (1, 2, 3), {}),
    "keyword-only": (keyword_only, (), {"key": 1}),
    "any-keywords": (any_keywords, (), {"x": 1, "y": 2}),
    "partial": (functools.partial(two, 1), (2,), {}),
    "lambda": (lambda x: x, (1,), {}),
}


@pytest.mark.parametrize("case", MISFITS.keys())
def test_arguments_that_do_not_fit_the_signature_are_rejected_at_add_job(
    scheduler: gnomon.Scheduler, case: str
) -> None:
    func, args, kwargs = MISFITS[case]
    with pytest.raises(gnomon.InvalidJobArguments) as raised:
        scheduler.add_job(func, gnomon.every(1), args=args, kwargs=kwargs)
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, gnomon.InvalidJob)


@pytest.mark.parametrize("case", FITS.keys())
def test_arguments_that_fit_the_signature_are_accepted_and_passed(
    scheduler: gnomon.Scheduler, clock: FakeClock, case: str
) -> None:
    func, args, kwargs = FITS[case]
    calls = Tally()

    def spy(*a: object, **k: object) -> None:
        calls.hit((a, k))
        func(*a, **k)

    scheduler.add_job(func, gnomon.every(1), args=args, kwargs=kwargs)
    scheduler.add_job(spy, gnomon.every(1), args=args, kwargs=kwargs)
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert calls.values == [(args, kwargs)]


def test_update_job_rechecks_arguments_against_the_new_function(
    scheduler: gnomon.Scheduler,
) -> None:
    job = scheduler.add_job(two, gnomon.every(1), args=(1, 2))
    with pytest.raises(gnomon.InvalidJobArguments):
        scheduler.update_job(job.id, func=nothing)
    scheduler.update_job(job.id, func=nothing, args=())


def test_update_job_rejects_unknown_keys_and_the_id(scheduler: gnomon.Scheduler) -> None:
    job = scheduler.add_job(nothing, gnomon.every(1))
    with pytest.raises(TypeError, match="colour"):
        scheduler.update_job(job.id, colour="blue")
    with pytest.raises(TypeError, match="id"):
        scheduler.update_job(job.id, id=uuid.uuid4())


def test_update_job_of_an_unknown_id_is_job_not_found(scheduler: gnomon.Scheduler) -> None:
    unknown = uuid.uuid4()
    with pytest.raises(gnomon.JobNotFound) as raised:
        scheduler.update_job(unknown, name="x")
    assert_named(raised.value, str(unknown))
    assert scheduler.jobs() == []


def test_a_job_context_parameter_after_the_arguments_is_injected(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    seen = Tally()

    def task(amount: int, ctx: gnomon.JobContext) -> None:
        seen.hit((ctx.job_id, ctx.scheduled_at, amount))

    job = scheduler.add_job(task, gnomon.every(1), args=(5,))
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert seen.values == [(job.id, T0 + SECOND, 5)]


def test_a_leading_job_context_parameter_is_injected_beside_the_given_arguments(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    seen = Tally()

    def task(ctx: gnomon.JobContext, amount: int) -> None:
        seen.hit((ctx.job_id, ctx.scheduled_at, amount))

    job = scheduler.add_job(task, gnomon.every(1), args=(5,))
    scheduler.start()
    clock.advance(SECOND)
    scheduler.wait_idle(timeout=WAIT)
    assert seen.values == [(job.id, T0 + SECOND, 5)]


# (scheduler keyword arguments, message fragments that must appear)
BAD_SCHEDULER_OPTIONS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "zero-max-concurrent": ({"max_concurrent": 0}, ("max_concurrent", "0")),
    "negative-max-concurrent": ({"max_concurrent": -1}, ("max_concurrent", "-1")),
    "zero-max-workers": ({"max_workers": 0}, ("max_workers", "0")),
    "zero-stop-timeout": ({"stop_timeout": 0}, ("stop_timeout", "0")),
    "negative-stop-timeout": ({"stop_timeout": -1}, ("stop_timeout", "-1")),
    "unknown-timezone": ({"timezone": "Mars/Olympus_Mons"}, ("Mars/Olympus_Mons",)),
    "limit-mode-not-a-mode": ({"limit_mode": 5}, ("limit_mode", "5")),
    "monitor-not-a-monitor": ({"monitor": "stdout"}, ("monitor", "stdout")),
    "elector-not-an-elector": ({"elector": "me"}, ("elector", "me")),
    "locker-not-a-locker": ({"locker": "redis"}, ("locker", "redis")),
    "logger-not-a-logger": ({"logger": "gnomon"}, ("logger", "gnomon")),
    "clock-without-now": ({"clock": "wall"}, ("clock", "wall")),
}


@pytest.mark.parametrize("case", BAD_SCHEDULER_OPTIONS.keys())
def test_a_bad_scheduler_option_is_a_typed_error_naming_the_value(
    clock: FakeClock, case: str
) -> None:
    bad, fragments = BAD_SCHEDULER_OPTIONS[case]
    with pytest.raises(gnomon.GnomonError) as raised:
        gnomon.Scheduler(**({"clock": clock} | bad))
    assert isinstance(raised.value, ValueError)
    assert_named(raised.value, *fragments)


def test_unknown_job_defaults_are_a_type_error(clock: FakeClock) -> None:
    with pytest.raises(TypeError, match="colour"):
        gnomon.Scheduler(clock=clock, job_defaults={"colour": "blue"})


# (rule constructor, message fragments that must appear)
BAD_RULES: dict[str, tuple[Callable[[], object], tuple[str, ...]]] = {
    "every-zero": (lambda: gnomon.every(0), ("0",)),
    "every-negative": (lambda: gnomon.every(-1), ("-1",)),
    "every-unreadable": (lambda: gnomon.every("soon"), ("soon",)),
    "random-min-above-max": (lambda: gnomon.every_random(5, 1), ("5", "1")),
    "random-negative": (lambda: gnomon.every_random(-1, 5), ("-1",)),
    "daily-hour-100": (lambda: gnomon.daily("100:00"), ("100:00",)),
    "daily-minute-100": (lambda: gnomon.daily("09:100"), ("09:100",)),
    "daily-second-100": (lambda: gnomon.daily("09:30:100"), ("09:30:100",)),
    "daily-interval-zero": (lambda: gnomon.daily("09:30", interval=0), ("interval", "0")),
    "daily-no-times": (lambda: gnomon.daily([]), ("at",)),
    "weekly-no-days": (lambda: gnomon.weekly([], "09:00"), ("days",)),
    "weekly-unknown-day": (lambda: gnomon.weekly(["funday"], "09:00"), ("funday",)),
    "weekly-bare-int": (lambda: gnomon.weekly([BARE_INT_DAY], "09:00"), ("1",)),
    "weekly-interval-zero": (
        lambda: gnomon.weekly(["mon"], "09:00", interval=0),
        ("interval", "0"),
    ),
    "monthly-day-zero": (lambda: gnomon.monthly([0], "09:00"), ("0",)),
    "monthly-day-32": (lambda: gnomon.monthly([32], "09:00"), ("32",)),
    "monthly-day-minus-32": (lambda: gnomon.monthly([-32], "09:00"), ("-32",)),
    "monthly-no-days": (lambda: gnomon.monthly([], "09:00"), ("days",)),
    "monthly-interval-zero": (
        lambda: gnomon.monthly([1], "09:00", interval=0),
        ("interval", "0"),
    ),
    "cron-unparsable": (lambda: gnomon.cron("every tuesday"), ("every tuesday",)),
    "cron-minute-61": (lambda: gnomon.cron("61 * * * *"), ("61",)),
    "cron-never-fires": (lambda: gnomon.cron("0 0 31 2 *"), ("0 0 31 2 *",)),
    "cron-unknown-zone": (
        lambda: gnomon.cron("* * * * *", timezone="Nowhere/Land"),
        ("Nowhere/Land",),
    ),
}


@pytest.mark.parametrize("case", BAD_RULES.keys())
def test_a_bad_rule_is_an_invalid_rule_naming_the_value(case: str) -> None:
    build, fragments = BAD_RULES[case]
    with pytest.raises(gnomon.InvalidRule) as raised:
        build()
    assert_named(raised.value, *fragments)


def test_a_one_time_rule_refuses_a_naive_instant() -> None:
    with pytest.raises(ValueError, match="2026"):
        gnomon.once(NAIVE)


def test_a_past_start_at_is_allowed_and_walks_forward_in_its_phase(
    scheduler: gnomon.Scheduler,
) -> None:
    job = scheduler.add_job(
        nothing, gnomon.every(timedelta(minutes=10)), start_at=T0 - timedelta(minutes=25)
    )
    scheduler.start()
    assert job.next_run == T0 + timedelta(minutes=5)
