"""Durable jobs: stored, shared by every scheduler on the store, surviving restarts."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from durable_support import T0, SchedulerFactory, StoreFactory, wait_until

import gnomon
from gnomon import Outcome
from gnomon._stores.codec import decode_definition
from gnomon._stores.contract import StoredJob
from gnomon.sqlite import SQLiteStore
from gnomon.testing import FakeClock, MemoryStore

MINUTE = timedelta(minutes=1)


class Calls:
    """What the tasks were called with, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: list[object] = []
        self.keys: list[str] = []

    def record(self, value: object, ctx: gnomon.JobContext) -> None:
        with self._lock:
            self.values.append(value)
            self.keys.append(ctx.occurrence_key)


def scheduler_with_task(
    make: SchedulerFactory, calls: Calls, **options: object
) -> gnomon.Scheduler:
    s = make(**options)
    s.register(calls.record, name="record")
    return s


# ---------------------------------------------------------------- adding and naming


def test_a_job_added_by_registered_function_is_stored_and_loaded_by_another_scheduler(
    make: SchedulerFactory,
) -> None:
    calls = Calls()
    a = scheduler_with_task(make, calls)
    a.start()
    job = a.add_job(calls.record, gnomon.every("1m"), args=[7])
    b = scheduler_with_task(make, calls)
    b.start()
    [seen] = b.jobs()
    assert seen.id == job.id
    assert seen.durable
    assert seen.name == f"record:{job.id}"
    assert seen.next_run == T0 + MINUTE


def test_a_job_added_by_task_name_runs_the_registered_function(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    s.start()
    s.add_job("record", gnomon.every("1m"), args=[Decimal("1.10")])
    clock.advance(MINUTE)
    s.wait_idle()
    assert calls.values == [Decimal("1.10")]
    assert str(calls.values[0]) == "1.10"


def test_an_unregistered_task_name_is_unknown_task(make: SchedulerFactory) -> None:
    s = make()
    with pytest.raises(gnomon.UnknownTask, match=r"'reports\.daily'"):
        s.add_job("reports.daily", gnomon.every("1m"))


def closure(n: int) -> Callable[[], int]:
    def inner() -> int:
        return n

    return inner


@pytest.mark.parametrize(
    "func",
    [lambda: None, closure(1), threading.Event().set],
    ids=["lambda", "closure", "bound-method"],
)
def test_an_unregistered_callable_is_invalid_and_says_to_register_it(
    make: SchedulerFactory, func: Callable[[], object]
) -> None:
    s = make()
    with pytest.raises(gnomon.InvalidJob, match="register"):
        s.add_job(func, gnomon.every("1m"))
    assert s.jobs() == []


def test_a_lambda_can_be_registered_only_with_a_name(make: SchedulerFactory) -> None:
    s = make()
    with pytest.raises(gnomon.InvalidJob, match="name="):
        s.register(lambda: None)
    assert s.register(lambda: None, name="noop") == "noop"


def test_nested_functions_register_under_their_qualified_name(make: SchedulerFactory) -> None:
    s = make()

    def inner() -> None:
        pass

    assert s.register(inner) == f"{__name__}.{inner.__qualname__}"


def test_the_job_decorator_registers_the_function_it_decorates(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    s = make()
    ran = threading.Event()

    @s.job(gnomon.every("1m"), name="decorated")
    def tick() -> None:
        ran.set()

    s.start()
    clock.advance(MINUTE)
    s.wait_idle()
    assert ran.is_set()
    assert [j.name for j in s.jobs()] == ["decorated"]


def test_jobs_without_a_name_are_each_new(make: SchedulerFactory) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    first = s.add_job("record", gnomon.every("1m"), args=[1])
    second = s.add_job("record", gnomon.every("1m"), args=[1])
    assert first.id != second.id
    assert len(s.jobs()) == 2


def test_declaring_a_named_job_again_replaces_it_in_place_and_keeps_its_version(
    make: SchedulerFactory,
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    first = s.add_job("record", gnomon.every("1m"), args=[1], name="daily")
    again = s.add_job("record", gnomon.every("1m"), args=[1], name="daily")
    assert again is not None
    assert first is not None
    assert again.id == first.id
    assert again.version == first.version == 1
    changed = s.add_job("record", gnomon.every("2m"), args=[1], name="daily")
    assert changed is not None
    assert changed.id == first.id
    assert changed.version == 2
    assert changed.rule == gnomon.every("2m")
    assert len(s.jobs()) == 1


def test_if_exists_keep_returns_the_stored_job_and_error_raises_job_exists(
    make: SchedulerFactory,
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    s.add_job("record", gnomon.every("1m"), args=[1], name="daily")
    kept = s.add_job("record", gnomon.every("5m"), args=[2], name="daily", if_exists="keep")
    assert kept is not None
    assert kept.rule == gnomon.every("1m")
    with pytest.raises(gnomon.JobExists, match="daily"):
        s.add_job("record", gnomon.every("5m"), args=[2], name="daily", if_exists="error")
    with pytest.raises(gnomon.InvalidJob, match="if_exists"):
        s.add_job("record", gnomon.every("5m"), args=[2], name="daily", if_exists="merge")


def test_a_finished_once_job_leaves_a_tombstone_so_declaring_it_again_returns_none(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    s.start()
    when = T0 + MINUTE
    s.add_job("record", gnomon.once(when), args=[1], name="launch")
    clock.advance(MINUTE)
    s.wait_idle()
    assert calls.values == [1]
    wait_until(
        lambda: (
            s.store is not None
            and s.store.get_job(name="launch") is not None
            and s.store.get_job(name="launch").removed is not None
        ),
        "the tombstone is written",
    )
    assert s.add_job("record", gnomon.once(when), args=[1], name="launch") is None
    assert s.jobs() == []


# ---------------------------------------------------------------- bad input


def test_an_argument_the_encoding_cannot_hold_names_the_argument(make: SchedulerFactory) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    with pytest.raises(gnomon.InvalidJob, match=r"args\[0\]"):
        s.add_job("record", gnomon.every("1m"), args=[{1, 2}])
    with pytest.raises(gnomon.InvalidJob, match="naive"):
        s.add_job("record", gnomon.every("1m"), args=[datetime(2026, 1, 1)])
    assert s.jobs() == []


def test_a_listener_on_a_durable_job_is_invalid(make: SchedulerFactory) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    with pytest.raises(gnomon.InvalidJob, match="after_error"):
        s.add_job("record", gnomon.every("1m"), args=[1], after_error=print)


def test_locker_false_on_a_durable_job_is_invalid(make: SchedulerFactory) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    with pytest.raises(gnomon.InvalidJob, match="locker=False"):
        s.add_job("record", gnomon.every("1m"), args=[1], locker=False)


def test_a_non_durable_job_lives_in_memory_and_cannot_take_a_durable_name(
    make: SchedulerFactory, new_store: StoreFactory
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    s.add_job("record", gnomon.every("1m"), args=[1], name="shared")
    local = s.add_job(lambda: None, gnomon.every("1m"), name="local", durable=False)
    assert not local.durable
    with pytest.raises(gnomon.InvalidJob, match="shared"):
        s.add_job(lambda: None, gnomon.every("1m"), name="shared", durable=False)
    other = make()
    other.register(calls.record, name="record")
    other.start()
    assert [j.name for j in other.jobs()] == ["shared"]


def test_a_stale_expected_version_raises_job_changed_and_writes_nothing(
    make: SchedulerFactory,
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    job = s.add_job("record", gnomon.every("1m"), args=[1], name="v")
    assert job is not None
    s.update_job(job.id, args=[2], expected_version=1)
    assert job.version == 2
    with pytest.raises(gnomon.JobChanged):
        s.update_job(job.id, args=[3], expected_version=1)
    assert job.version == 2
    stored = s.store.get_job(job_id=job.id) if s.store else None
    assert stored is not None
    assert stored.version == 2


# ---------------------------------------------------------------- running once


def test_every_occurrence_runs_once_across_three_schedulers(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    schedulers = [scheduler_with_task(make, calls) for _ in range(3)]
    for s in schedulers:
        s.start()
    schedulers[0].add_job("record", gnomon.every("1m"), args=["x"], name="shared")
    for s in schedulers[1:]:
        s._durable.poll()  # type: ignore[union-attr]
        assert [j.name for j in s.jobs()] == ["shared"]
    clock.advance(10 * MINUTE)
    for s in schedulers:
        s.wait_idle()
    counts = Counter(calls.keys)
    assert len(counts) == 10
    assert set(counts.values()) == {1}
    records = schedulers[0].history(job="shared", limit=50)
    assert [r.outcome for r in records] == [Outcome.SUCCESS] * 10
    assert len({r.fencing_token for r in records}) == 10


def test_durable_interval_jobs_are_anchored_where_first_stored(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    a = scheduler_with_task(make, calls)
    a.start()
    clock.advance(timedelta(seconds=17))
    job = a.add_job("record", gnomon.every("1m"), args=[1], name="anchored")
    assert job is not None
    clock.advance(timedelta(seconds=20))
    b = scheduler_with_task(make, calls)
    b.start()
    [seen] = b.jobs()
    assert job.next_run == seen.next_run == T0 + timedelta(seconds=77)


# ---------------------------------------------------------------- restarts and catch-up


def restart_after(
    make: SchedulerFactory, clock: FakeClock, calls: Calls, gap: timedelta, **options: object
) -> gnomon.Scheduler:
    first = scheduler_with_task(make, calls)
    first.start()
    first.add_job("record", gnomon.every("1m"), args=["tick"], name="ticker", **options)
    clock.advance(2 * MINUTE)
    first.wait_idle()
    first.shutdown()
    clock.advance(gap)
    second = scheduler_with_task(make, calls)
    second.start()
    second.wait_idle()
    return second


def test_progress_survives_a_restart(make: SchedulerFactory, clock: FakeClock) -> None:
    calls = Calls()
    s = restart_after(make, clock, calls, timedelta(seconds=30))
    [job] = s.jobs()
    assert job.last_run == T0 + 2 * MINUTE
    assert job.next_run == T0 + 3 * MINUTE
    assert len(calls.values) == 2


@pytest.mark.parametrize(
    ("options", "runs_after_restart", "missed"),
    [
        ({}, 1, 9),
        ({"catch_up": "latest"}, 1, 9),
        ({"catch_up": "skip"}, 0, 10),
        ({"catch_up": "all"}, 10, 0),
        ({"catch_up": "all", "catch_up_limit": 3}, 3, 7),
        ({"catch_up": "all", "catch_up_window": "4m15s"}, 4, 6),
    ],
)
def test_catch_up_after_downtime_follows_the_jobs_policy(
    make: SchedulerFactory,
    clock: FakeClock,
    options: dict[str, object],
    runs_after_restart: int,
    missed: int,
) -> None:
    calls = Calls()
    # down from 00:02 to 00:12:30: the fire times 00:03 .. 00:12 were missed
    s = restart_after(make, clock, calls, timedelta(minutes=10, seconds=30), **options)
    assert len(calls.values) == 2 + runs_after_restart
    skips = s.history(job="ticker", outcome=Outcome.SKIPPED_MISSED)
    if missed:
        [skip] = skips
        assert skip.count == missed
        assert skip.scheduled_at == T0 + 3 * MINUTE
    else:
        assert skips == []
    ran = sorted(
        s.history(job="ticker", outcome=Outcome.SUCCESS, limit=50), key=lambda r: r.scheduled_at
    )
    assert len(ran) == 2 + runs_after_restart
    assert len({r.occurrence_key for r in ran}) == len(ran)
    [job] = s.jobs()
    assert job.next_run == T0 + 13 * MINUTE


def test_an_occurrence_due_within_the_grace_is_late_not_missed(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    s = restart_after(make, clock, calls, timedelta(seconds=60.5), catch_up="skip")
    assert len(calls.values) == 3
    assert s.history(job="ticker", outcome=Outcome.SKIPPED_MISSED) == []


# ---------------------------------------------------------------- sharing changes


def test_changes_on_one_scheduler_take_effect_on_another(make: SchedulerFactory) -> None:
    calls = Calls()
    a = scheduler_with_task(make, calls, clock=None)
    b = scheduler_with_task(make, calls, clock=None)
    a.start()
    b.start()
    job = a.add_job("record", gnomon.every("1h"), args=[1], name="shared")
    assert job is not None
    wait_until(lambda: [j.name for j in b.jobs()] == ["shared"], "b sees the new job")
    a.update_job(job.id, rule=gnomon.every("2h"))
    wait_until(lambda: b.get_job(job.id).rule == gnomon.every("2h"), "b sees the update")
    job.pause("maintenance")
    wait_until(lambda: b.get_job(job.id).paused, "b sees the pause")
    assert b.get_job(job.id).pause_reason == "maintenance"
    job.resume()
    wait_until(lambda: not b.get_job(job.id).paused, "b sees the resume")
    a.remove_job(job.id)
    wait_until(lambda: b.jobs() == [], "b sees the removal")


def test_a_job_whose_task_is_unknown_here_is_kept_and_runs_once_the_task_is_registered(
    make: SchedulerFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    a = scheduler_with_task(make, calls)
    a.add_job("record", gnomon.every("1m"), args=[1], name="needs-record")
    b = make()
    with caplog.at_level(logging.WARNING, logger="gnomon"):
        b.start()
    assert b.jobs() == []
    assert any(
        "needs-record" in r.getMessage() and "not registered" in r.getMessage()
        for r in caplog.records
    )
    b.register(calls.record, name="record")
    assert [j.name for j in b.jobs()] == ["needs-record"]
    clock.advance(MINUTE)
    b.wait_idle()
    assert calls.values == [1]


def test_a_row_that_cannot_be_decoded_is_kept_untouched_and_the_others_run(
    make: SchedulerFactory, new_store: StoreFactory, clock: FakeClock
) -> None:
    calls = Calls()
    a = scheduler_with_task(make, calls)
    a.add_job("record", gnomon.every("1m"), args=[1], name="good")
    store = new_store()
    store.open()
    from gnomon._stores.contract import IfExists, NewJob

    broken, _ = store.put_job(
        NewJob(uuid.uuid4(), "broken", "record", '{"format": 99}'), if_exists=IfExists.ERROR
    )
    assert broken is not None
    b = scheduler_with_task(make, calls)
    b.start()
    assert [j.name for j in b.jobs()] == ["good"]
    clock.advance(MINUTE)
    b.wait_idle()
    assert calls.values == [1]
    kept = store.get_job(name="broken")
    assert kept is not None
    assert kept.definition == '{"format": 99}'
    assert kept.removed is None


# ---------------------------------------------------------------- history, retry, nodes


def test_history_records_failures_with_their_error(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    s = make()

    def explode() -> None:
        raise ValueError("bad input 42")

    s.register(explode, name="explode")
    s.start()
    s.add_job("explode", gnomon.every("1m"), name="exploder")
    clock.advance(MINUTE)
    s.wait_idle()
    [record] = s.history(job="exploder")
    assert record.outcome is Outcome.FAILED
    assert record.error == "ValueError: bad input 42"
    assert record.attempts == 1
    assert s.history(outcome=[Outcome.SUCCESS]) == []
    assert s.history(since=T0 + 2 * MINUTE) == []


def test_retry_runs_a_finished_occurrence_again_with_the_next_attempt(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    s.start()
    s.add_job("record", gnomon.every("1h"), args=[1], name="hourly")
    clock.advance(timedelta(hours=1))
    s.wait_idle()
    [record] = s.history(job="hourly")
    s.retry(record.occurrence_key)
    s.wait_idle()
    assert calls.keys == [record.occurrence_key] * 2
    [again] = s.history(job="hourly")
    assert again.attempt == 2
    assert again.outcome is Outcome.SUCCESS
    with pytest.raises(gnomon.JobNotFound):
        s.retry("nothing@2026-01-01T00:00:00.000000Z")


def test_nodes_lists_every_scheduler_on_the_store(make: SchedulerFactory) -> None:
    a = make(node="alpha", clock=None)
    b = make(node="beta", clock=None)
    a.start()
    b.start()
    wait_until(lambda: {n.node for n in a.nodes()} == {"alpha", "beta"}, "both heartbeat")
    assert len({n.instance_id for n in a.nodes()}) == 2


def test_a_started_scheduler_is_in_the_node_list_before_its_follower_beats(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    follower_may_go = threading.Event()
    upkeep = store.upkeep

    def held_upkeep() -> None:  # the follower's first pass stops here, before its heartbeat
        follower_may_go.wait(10)
        upkeep()

    store.upkeep = held_upkeep  # type: ignore[method-assign]
    s = gnomon.Scheduler(store=store, node="alpha", timezone="UTC")
    try:
        s.start()
        assert [n.node for n in s.nodes()] == ["alpha"]
    finally:
        follower_may_go.set()
        s.shutdown()


def test_history_without_a_store_keeps_the_newest_records_in_memory(clock: FakeClock) -> None:
    s = gnomon.Scheduler(clock=clock, timezone="UTC", history_limit=3)
    try:
        s.start()
        s.add_job(lambda: None, gnomon.every("1m"), name="memory")
        clock.advance(5 * MINUTE)
        s.wait_idle()
        records = s.history()
        assert [r.scheduled_at for r in records] == [T0 + n * MINUTE for n in (5, 4, 3)]
        assert {r.outcome for r in records} == {Outcome.SUCCESS}
    finally:
        s.shutdown()


def test_a_store_that_is_down_makes_job_changes_raise_and_change_nothing(
    make: SchedulerFactory, new_store: StoreFactory, kind: str
) -> None:
    calls = Calls()
    store = new_store()
    s = scheduler_with_task(make, calls, store=store)
    s.start()
    job = s.add_job("record", gnomon.every("1m"), args=[1], name="kept")
    assert job is not None

    def down(*args: object, **kwargs: object) -> object:
        raise gnomon.StoreUnavailable("the store is down (test)")

    for method in ("put_job", "update_job", "remove_job", "set_paused"):
        setattr(store, method, down)
    with pytest.raises(gnomon.StoreUnavailable):
        s.add_job("record", gnomon.every("1m"), args=[2], name="new")
    with pytest.raises(gnomon.StoreUnavailable):
        s.update_job(job.id, args=[3])
    with pytest.raises(gnomon.StoreUnavailable):
        job.pause()
    with pytest.raises(gnomon.StoreUnavailable):
        job.remove()
    assert [j.name for j in s.jobs()] == ["kept"]
    assert not job.paused
    assert job.version == 1


def test_listeners_registered_with_the_task_are_called_for_its_jobs(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    s = make()
    seen: list[Outcome | None] = []

    def explode() -> None:
        raise RuntimeError("no")

    s.register(explode, name="explode", after_error=lambda e: seen.append(e.outcome))
    s.start()
    s.add_job("explode", gnomon.every("1m"))
    clock.advance(MINUTE)
    s.wait_idle()
    assert seen == [Outcome.FAILED]


def test_the_async_face_adds_and_runs_durable_jobs(
    new_store: StoreFactory, clock: FakeClock
) -> None:
    import asyncio

    calls = Calls()

    async def main() -> list[object]:
        async with gnomon.AsyncScheduler(store=new_store(), clock=clock, timezone="UTC") as s:
            s.register(calls.record, name="record")
            job = await s.add_job("record", gnomon.every("1m"), args=[5], name="async")
            assert job is not None
            assert job.durable
            clock.advance(MINUTE)
            await s.wait_idle()
            records = await s.history(job=job)
            assert [r.outcome for r in records] == [Outcome.SUCCESS]
        return calls.values

    assert asyncio.run(main()) == [5]


def test_scheduled_times_are_returned_in_the_schedulers_zone(make: SchedulerFactory) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls, timezone="Europe/Riga")
    s.start()
    job = s.add_job("record", gnomon.daily("09:30"), args=[1], name="riga")
    assert job is not None
    assert job.next_run is not None
    assert str(job.next_run.tzinfo) == "Europe/Riga"
    assert job.next_run.astimezone(UTC) == datetime(2026, 3, 1, 7, 30, tzinfo=UTC)


def test_max_runs_counts_occurrences_across_every_scheduler_on_the_store(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    a = scheduler_with_task(make, calls)
    b = scheduler_with_task(make, calls)
    a.start()
    b.start()
    a.add_job("record", gnomon.every("1m"), args=[1], name="thrice", max_runs=3)
    b._durable.poll()  # type: ignore[union-attr]
    for _ in range(5):
        clock.advance(MINUTE)
        a.wait_idle()
        b.wait_idle()
    assert len(calls.values) == 3
    stored = a.store.get_job(name="thrice") if a.store else None
    assert stored is not None
    assert stored.removed == "exhausted"
    assert stored.runs == 3
    for s in (a, b):
        s._durable.poll()  # type: ignore[union-attr]
        assert s.jobs() == []


def test_a_store_written_by_a_newer_gnomon_is_refused_at_start_and_left_unchanged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(path)
    store.open()
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE gnomon_meta SET value = 99 WHERE name = 'schema_version'")
    before = path.read_bytes()
    newer = SQLiteStore(path)
    s = gnomon.Scheduler(store=newer, timezone="UTC")
    try:
        with pytest.raises(gnomon.StoreVersionError, match="99"):
            s.start()
        assert not s.running
    finally:
        s.shutdown()
        newer.close()
    assert path.read_bytes() == before


def test_a_process_killed_while_adding_jobs_leaves_no_half_written_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    script = (
        "import gnomon, sys\n"
        "from gnomon.sqlite import SQLiteStore\n"
        f"s = gnomon.Scheduler(store=SQLiteStore({str(path)!r}), timezone='UTC')\n"
        "s.register(print, name='print')\n"
        "for n in range(100000):\n"
        "    s.add_job('print', gnomon.every('1h'), args=[n, 'x' * 500], name=f'job-{n}')\n"
        "    if n == 50: print('going', flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "going"
    child.kill()
    child.wait(10)
    child.stdout.close()
    store = SQLiteStore(path)
    try:
        store.open()
        rows = store.jobs()
        assert len(rows) > 50
        for row in rows:
            definition = decode_definition(row.definition)
            assert definition.args[0] == int(row.name.removeprefix("job-"))
        assert sorted(int(r.name.removeprefix("job-")) for r in rows) == list(range(len(rows)))
    finally:
        store.close()


def test_redeclaring_a_named_job_with_a_new_rule_resets_its_stored_next_fire(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    first = scheduler_with_task(make, calls)
    first.add_job("record", gnomon.daily("09:30"), args=[1], name="digest")
    first.start()
    clock.advance(timedelta(hours=2))
    first.wait_idle()
    first.shutdown()
    second = scheduler_with_task(make, calls)
    job = second.add_job("record", gnomon.daily("18:00"), args=[1], name="digest")
    second.start()
    assert job is not None
    assert job.next_run == T0 + timedelta(hours=18)
    third = scheduler_with_task(make, calls)
    third.start()
    assert third.get_job(job.id).next_run == T0 + timedelta(hours=18)


def test_a_durable_once_job_whose_instants_passed_is_invalid(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    s = scheduler_with_task(make, calls)
    clock.advance(MINUTE)
    with pytest.raises(gnomon.InvalidJob, match="in the past"):
        s.add_job("record", gnomon.once(T0), args=[1])
    assert s.jobs() == []


def test_remove_job_removes_a_stored_job_this_process_cannot_load(
    make: SchedulerFactory, new_store: StoreFactory
) -> None:
    calls = Calls()
    a = scheduler_with_task(make, calls)
    job = a.add_job("record", gnomon.every("1m"), args=[1], name="foreign")
    assert job is not None
    b = make()
    b.start()
    assert b.jobs() == []
    b.remove_job(job.id)
    store = new_store()
    stored = store.get_job(job_id=job.id)
    assert stored is not None
    assert stored.removed == "removed"
    with pytest.raises(gnomon.JobNotFound):
        b.remove_job(job.id)


class RefuseAll(gnomon.Locker):
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: gnomon.Recovery = gnomon.Recovery.AT_MOST_ONCE
    ) -> gnomon.Lease:
        self.asked.append(key)
        raise gnomon.LockHeld(key)


def test_a_scheduler_locker_adds_a_condition_on_durable_runs(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    calls = Calls()
    locker = RefuseAll()
    s = scheduler_with_task(make, calls, locker=locker)
    s.start()
    s.add_job("record", gnomon.every("1m"), args=[1], name="guarded")
    clock.advance(MINUTE)
    s.wait_idle()
    assert calls.values == []
    assert locker.asked == ["guarded@2026-03-01T00:01:00.000000Z"]


# ---------------------------------------------------------------- the follower's reads


class CountingStore(MemoryStore):
    """A memory store that counts the job rows it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.rows_read = 0

    def jobs(self, *, since: int = 0, include_removed: bool = False) -> list[StoredJob]:
        rows = super().jobs(since=since, include_removed=include_removed)
        self.rows_read += len(rows)
        return rows


def test_the_follower_reads_back_none_of_its_own_new_jobs_but_every_other_change(
    clock: FakeClock,
) -> None:
    store = CountingStore()
    mine = gnomon.Scheduler(store=store, clock=clock, timezone="UTC")
    theirs = gnomon.Scheduler(store=store, clock=clock, timezone="UTC")
    calls = Calls()
    try:
        for s in (mine, theirs):
            s.register(calls.record, name="record")
        for i in range(3):
            mine.add_job("record", gnomon.every("1h"), args=[i])
        mine._durable.poll()  # type: ignore[union-attr]
        assert store.rows_read == 0
        added = theirs.add_job("record", gnomon.every("1h"), args=[3])
        mine._durable.poll()  # type: ignore[union-attr]
        assert store.rows_read == 1
        assert added is not None
        assert added.id in {job.id for job in mine.jobs()}
    finally:
        mine.shutdown()
        theirs.shutdown()


def test_durable_jobs_get_time_ordered_ids_so_stores_index_them_at_the_end(
    make: SchedulerFactory,
) -> None:
    s = scheduler_with_task(make, Calls())
    jobs = [s.add_job("record", gnomon.every("1h"), args=[i]) for i in range(20)]
    ids = [job.id for job in jobs]
    assert {job_id.version for job_id in ids} == {7}
    millis = [job_id.int >> 80 for job_id in ids]
    assert millis == sorted(millis)
    assert abs(millis[-1] - time.time_ns() // 1_000_000) < 60_000
    given = uuid.uuid4()
    assert s.add_job("record", gnomon.every("1h"), args=[0], id=given).id == given


class EagerFollowerStore(MemoryStore):
    """A memory store whose removals reach the remover's follower before ``remove_job``
    returns, as a follower woken by the store's notification can."""

    def __init__(self) -> None:
        super().__init__()
        self.follow: Callable[[], None] | None = None

    def remove_job(self, job_id: uuid.UUID, *, reason: str = "removed") -> StoredJob | None:
        row = super().remove_job(job_id, reason=reason)
        if self.follow is not None:
            self.follow()
        return row


def test_removing_a_job_succeeds_when_the_follower_reads_the_removal_first(
    clock: FakeClock,
) -> None:
    store = EagerFollowerStore()
    s = gnomon.Scheduler(store=store, clock=clock, timezone="UTC")
    try:
        s.register(Calls().record, name="record")
        store.follow = s._durable.poll  # type: ignore[union-attr]
        first = s.add_job("record", gnomon.every("1h"), args=[1])
        second = s.add_job("record", gnomon.every("1h"), args=[2])
        first.remove()
        s.remove_job(second.id)
        assert s.jobs() == []
        assert store.jobs(include_removed=False) == []
    finally:
        s.shutdown()
