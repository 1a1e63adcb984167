"""Jobs after a function's first take a fast path that validates only per-job options;
it must build exactly the spec (and raise exactly the errors) of the full path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scheduler_support import SchedulerFactory

import gnomon
from gnomon._options import build_spec
from gnomon.testing import FakeClock

START = datetime(2030, 1, 1, tzinfo=UTC)


def plain(a: int, b: int = 2, *, c: int = 3) -> None:
    pass


def with_context(ctx: gnomon.JobContext, amount: int) -> None:
    pass


def variadic(*args: object, **kwargs: object) -> None:
    pass


CASES: list[tuple[Any, dict[str, Any]]] = [
    (plain, {"args": (1,)}),
    (plain, {"args": [1, 5], "kwargs": {"c": 9}, "name": "n", "tags": ["x", "y"]}),
    (plain, {"kwargs": {"a": 1}, "start_at": START, "stop_at": START + timedelta(days=1)}),
    (with_context, {"args": (5,)}),
    (with_context, {"kwargs": {"amount": 5}, "name": "ctx"}),
    (variadic, {"args": (1, 2, 3), "kwargs": {"k": 1}}),
]


@pytest.mark.parametrize(("func", "options"), CASES)
def test_a_later_job_of_a_function_gets_the_spec_the_full_validation_builds(
    make_scheduler: SchedulerFactory, func: Any, options: dict[str, Any]
) -> None:
    s = make_scheduler(job_defaults={"singleton": gnomon.LimitMode.WAIT, "timeout": "5s"})
    first = s.add_job(func, gnomon.every("1h"), **{**options, "name": "first"})
    later = s.add_job(func, gnomon.every("1h"), **options)
    expected = build_spec(
        func,
        {"singleton": gnomon.LimitMode.WAIT, "timeout": "5s", **options},
        scheduler_locker=None,
        clustered=False,
    )
    assert later._state.spec == expected
    assert later._state.spec is not first._state.spec
    assert later._state.spec.options == {
        "singleton": gnomon.LimitMode.WAIT,
        "timeout": "5s",
        **options,
    }


@pytest.mark.parametrize(
    "options",
    [
        {"args": (1, 2, 3)},
        {"kwargs": {"nope": 1}, "args": (1,)},
        {"args": (1,), "kwargs": {"a": 2}},
        {},
        {"args": "1"},
        {"args": (1,), "tags": "x"},
        {"args": (1,), "name": ""},
        {"args": (1,), "start_at": datetime(2030, 1, 1)},
        {"args": (1,), "start_at": START, "stop_at": START},
    ],
)
def test_a_later_job_with_bad_options_fails_as_the_first_would(
    make_scheduler: SchedulerFactory, options: dict[str, Any]
) -> None:
    fresh = make_scheduler()
    with pytest.raises(gnomon.InvalidJob) as first:
        fresh.add_job(plain, gnomon.every("1h"), **options)
    s = make_scheduler()
    s.add_job(plain, gnomon.every("1h"), args=(1,))  # now plain has a template
    with pytest.raises(gnomon.InvalidJob) as later:
        s.add_job(plain, gnomon.every("1h"), **options)
    assert type(later.value) is type(first.value)
    assert str(later.value) == str(first.value)


def test_the_context_goes_where_the_signature_says_on_later_jobs(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    seen: list[tuple[str, int]] = []

    def task(amount: int, ctx: gnomon.JobContext) -> None:
        seen.append((ctx.job_name, amount))

    s = make_scheduler()
    s.add_job(task, gnomon.every("1m"), args=(1,), name="one")
    s.add_job(task, gnomon.every("1m"), args=(2,), name="two")
    s.add_job(task, gnomon.every("1m"), kwargs={"amount": 3}, name="three")
    s.start()
    clock.advance("1m")
    s.wait_idle()
    assert sorted(seen) == [("one", 1), ("three", 3), ("two", 2)]


def test_defaults_that_set_a_per_job_option_take_the_full_path(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(job_defaults={"tags": ["team"]})
    s.add_job(plain, gnomon.every("1h"), args=(1,))
    job = s.add_job(plain, gnomon.every("1h"), args=(2,), name="two")
    assert job.tags == frozenset({"team"})
    assert job._state.spec.options == {"tags": ["team"], "args": (2,), "name": "two"}
