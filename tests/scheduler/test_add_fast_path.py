"""Jobs after a function's first take a fast path that validates only per-job options;
it must build exactly the spec (and raise exactly the errors) of the full path."""

from __future__ import annotations

import gc
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
    assert later._state.spec.fields() == expected.fields()
    assert later._state.spec is not first._state.spec
    assert later._state.spec.traits is first._state.spec.traits
    assert later._state.spec.options == expected.options
    rebuilt = build_spec(func, later._state.spec.options, scheduler_locker=None, clustered=False)
    assert rebuilt.fields() == later._state.spec.fields()


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
        {"args": (1,), "name": "", "start_at": datetime(2030, 1, 1)},  # which is named first
        {"args": (1,), "tags": "x", "stop_at": datetime(2030, 1, 1)},
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


def test_a_later_jobs_start_at_contradicts_a_default_start_immediately(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(job_defaults={"start_immediately": True})
    s.add_job(plain, gnomon.every("1h"), args=(1,))  # now plain has a template
    with pytest.raises(gnomon.InvalidJob) as raised:
        s.add_job(plain, gnomon.every("1h"), args=(1,), start_at=START)
    assert "start_immediately=True and start_at are contradictory" in str(raised.value)
    assert len(s.jobs()) == 1


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
    assert job._state.spec.options == {
        "tags": frozenset({"team"}),
        "args": (2,),
        "kwargs": {},
        "name": "two",
        "start_at": None,
        "stop_at": None,
    }


def test_jobs_of_one_function_share_one_copy_of_what_they_have_in_common(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler(job_defaults={"singleton": gnomon.LimitMode.WAIT})
    one = s.add_job(plain, gnomon.every("1h"), args=(1,), name="one", tags=("a",))
    two = s.add_job(plain, gnomon.every("1h"), args=(2,), name="two", tags=["a"])
    assert two._state.spec.traits is one._state.spec.traits
    assert two._state.spec.tags is one._state.spec.tags  # equal tag sets kept once
    assert (two.name, two._state.spec.args, two._state.spec.singleton) == (
        "two",
        (2,),
        gnomon.LimitMode.WAIT,
    )


def test_a_job_with_per_job_options_leaves_the_collector_only_its_state_and_the_callers_handle(
    make_scheduler: SchedulerFactory,
) -> None:
    # A later job of a function holds its per-job options on its state, which is its
    # spec; its arguments hold numbers only, so CPython stops tracking them, and the
    # timer's entry for it is an int: a full collection scans two objects per job, and
    # an add allocates no tracked object but those two (and the caller's arguments), so
    # that full collections come no sooner than they must.
    s = make_scheduler()
    s.start()
    hourly = gnomon.every("1h")
    s.add_job(plain, hourly, args=(0,), name="template")  # the full path
    arguments = [(i,) for i in range(200)]
    gc.collect()
    tracked = len(gc.get_objects())
    gc.disable()
    try:
        allocated = gc.get_count()[0]
        jobs = [s.add_job(plain, hourly, args=args, name=f"j{args[0]}") for args in arguments]
        allocated = gc.get_count()[0] - allocated
    finally:
        gc.enable()
    assert allocated < 2.5 * len(jobs)  # 3 per job with a timer entry that is a tuple
    gc.collect()
    assert len(gc.get_objects()) - tracked < 2.5 * len(jobs)  # 3 per job with a spec apart
    assert all(job._state.spec is job._state for job in jobs)
    engine = s._engine
    assert len(engine._heap) == len(jobs) + 1
    assert all(type(key) is int for key in engine._heap)
    armed = {key & ((1 << 128) - 1): key >> 129 & ((1 << 64) - 1) for key in engine._heap}
    assert {job._state.id: job._state.armed for job in jobs}.items() <= armed.items()


def test_a_removed_job_with_per_job_options_keeps_its_values_and_is_no_reference_cycle(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler()
    s.add_job(plain, gnomon.every("1h"), args=(0,), name="template")
    job = s.add_job(plain, gnomon.every("1h"), args=(1,), name="later", tags=["t"])
    state = job._state
    assert state.spec is state
    s.remove_job(job.id)
    assert state.spec is not state
    assert (job.name, job.tags, state.spec.args, state.spec.traits) == (
        "later",
        frozenset({"t"}),
        (1,),
        state.traits,
    )
    assert state not in gc.get_referents(state.spec)


@pytest.mark.parametrize(
    "changes",
    [
        {"args": (9,)},
        {"tags": ["changed"], "name": "renamed"},
        {"singleton": gnomon.LimitMode.RESCHEDULE, "timeout": "1s"},
        {"start_at": START, "stop_at": START + timedelta(days=1)},
        {"rule": gnomon.every("5m")},
    ],
)
def test_updating_a_job_never_changes_another_that_shares_its_template(
    make_scheduler: SchedulerFactory, changes: dict[str, Any]
) -> None:
    s = make_scheduler(job_defaults={"timeout": "5s"})
    template = s.add_job(plain, gnomon.every("1h"), args=(1,), name="template", tags=["t"])
    other = s.add_job(plain, gnomon.every("1h"), args=(2,), name="other", tags=["t"])
    changed = s.add_job(plain, gnomon.every("1h"), args=(3,), name="changed", tags=["t"])
    before = {job.name: (job._state.spec, job.rule) for job in (template, other)}
    shown = {job.name: repr(job._state.spec) for job in (template, other)}
    s.update_job(changed.id, **changes)
    for job in (template, other):
        spec, rule = before[job.name]
        assert job._state.spec is spec
        assert repr(job._state.spec) == shown[job.name]
        assert job.rule == rule
    assert changed._state.spec.traits is not template._state.spec.traits
    assert changed._state.spec.args == changes.get("args", (3,))


def test_updating_a_later_job_keeps_its_own_per_job_options(
    make_scheduler: SchedulerFactory,
) -> None:
    s = make_scheduler()
    s.add_job(plain, gnomon.every("1h"), args=(1,), name="first", tags=["x"], start_at=START)
    later = s.add_job(plain, gnomon.every("1h"), kwargs={"a": 2, "c": 7}, name="later")
    s.update_job(later.id, singleton=gnomon.LimitMode.RESCHEDULE)
    spec = later._state.spec
    assert (spec.name, spec.args, dict(spec.kwargs), spec.tags, spec.start_at) == (
        "later",
        (),
        {"a": 2, "c": 7},
        frozenset(),
        None,
    )
    assert spec.singleton is gnomon.LimitMode.RESCHEDULE
