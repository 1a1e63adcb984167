"""Stored jobs loaded at start share one validated template per task and options; each
job keeps its own name, arguments and progress, and a change to one reaches no other."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from durable_support import T0, SchedulerFactory

import gnomon


def record(value: int, label: str = "") -> None:
    del value, label


def loaded(make: SchedulerFactory, count: int) -> tuple[gnomon.Scheduler, list[gnomon.Job]]:
    """``count`` jobs of one task stored by one scheduler, loaded by another."""
    writer = make()
    writer.register(record, name="record")
    for i in range(count):
        writer.add_job("record", gnomon.every("1h"), name=f"job-{i}", args=(i,), tags=["t"])
    reader = make()
    reader.register(record, name="record")
    reader.start()
    jobs = sorted(reader.jobs(), key=lambda job: job.name)
    return reader, jobs


def test_loaded_jobs_of_one_task_share_its_traits_and_keep_their_own_arguments(
    make: SchedulerFactory,
) -> None:
    _, jobs = loaded(make, 3)
    specs = [job._state.spec for job in jobs]
    assert len({id(spec.traits) for spec in specs}) == 1
    assert [(spec.name, spec.args) for spec in specs] == [
        ("job-0", (0,)),
        ("job-1", (1,)),
        ("job-2", (2,)),
    ]
    assert [spec.options["args"] for spec in specs] == [(0,), (1,), (2,)]


def test_loaded_jobs_on_a_template_hold_their_spec_themselves_until_removed(
    make: SchedulerFactory,
) -> None:
    # The first row of a template is built in full; the others keep their name and
    # arguments on their state, which is their spec: one object per job, not two.
    reader, jobs = loaded(make, 3)
    own = [job for job in jobs if job._state.spec is job._state]
    assert len(own) == 2
    removed = own[0]
    state = removed._state
    held = state.spec.fields()
    reader.remove_job(removed.id)
    assert state.spec is not state
    assert state.spec.fields() == held
    assert removed.name == held[0]


@pytest.mark.parametrize(
    "changes",
    [
        {"args": (9,)},
        {"kwargs": {"label": "x"}},
        {"tags": ["changed"]},
        {"timeout": "1s", "max_runs": 3},
        {"rule": gnomon.every("5m")},
        {"start_at": T0 + timedelta(days=1)},
    ],
)
def test_updating_a_loaded_job_never_changes_another_that_shares_its_template(
    make: SchedulerFactory, changes: dict[str, Any]
) -> None:
    reader, jobs = loaded(make, 3)
    first, changed, last = jobs
    before = {job.name: (job._state.spec, repr(job._state.spec), job.rule) for job in jobs}
    reader.update_job(changed.id, **changes)
    for job in (first, last):
        spec, shown, rule = before[job.name]
        assert job._state.spec is spec
        assert repr(job._state.spec) == shown
        assert job.rule == rule
    assert changed._state.spec.traits is not first._state.spec.traits
    assert changed._state.spec.args == changes.get("args", (1,))


def test_updating_a_loaded_job_keeps_its_own_arguments_not_its_templates(
    make: SchedulerFactory,
) -> None:
    reader, jobs = loaded(make, 2)
    reader.update_job(jobs[1].id, tags=["other"])
    again = make()
    again.register(record, name="record")
    again.start()
    stored = {job.name: job._state.spec for job in again.jobs()}
    assert stored["job-1"].args == (1,)
    assert stored["job-1"].tags == frozenset({"other"})
    assert (stored["job-0"].args, stored["job-0"].tags) == ((0,), frozenset({"t"}))
