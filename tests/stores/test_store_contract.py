"""The store contract (``gnomon._stores.contract.Store``), run against every store.

One suite, parametrized by the ``store`` fixture over memory, SQLite and PostgreSQL, so
that every store decides alike. Lease expiry is waited out on the real stores (a short
lease, then the store is asked until it judges it expired) and stepped over on the
memory store's fake clock; the exact lease edges are pinned on the memory store at the
end of this file.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from gnomon._errors import (
    InvalidOption,
    JobChanged,
    JobExists,
    JobNotFound,
    LeaseLost,
    LockHeld,
    OccurrenceAbandoned,
)
from gnomon._events import Outcome, Recovery
from gnomon._stores.contract import (
    Claim,
    ClaimRequest,
    IfExists,
    NewJob,
    RunRecord,
    Store,
    StoredJob,
)
from gnomon.testing import FakeClock, MemoryStore

if TYPE_CHECKING:
    from conftest import Backend

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SHORT = timedelta(milliseconds=300)
"""The lease of a claim that a test lets expire (real stores wait it out)."""
LONG = timedelta(minutes=5)
DEFINITION = '{"rule": {"every": "1m"}}'


def new_job(name: str = "report", **changes: Any) -> NewJob:
    fields: dict[str, Any] = {"task": "tasks.report", "definition": DEFINITION, **changes}
    return NewJob(uuid.uuid4(), name, **fields)


def add(store: Store, name: str = "report", **changes: Any) -> StoredJob:
    row, created = store.put_job(new_job(name, **changes), if_exists=IfExists.ERROR)
    assert created
    assert row is not None
    return row


def ask(job: StoredJob, key: str = "report@1", **changes: Any) -> ClaimRequest:
    """A claim request for an occurrence of ``job``, held for ``LONG`` by default."""
    fields: dict[str, Any] = {
        "key": key,
        "job_id": job.id,
        "job_name": job.name,
        "scheduled_at": T0,
        "node": "node-a",
        "instance_id": "instance-a",
        "ttl": LONG,
    }
    return ClaimRequest(**{**fields, **changes})


def row_of(store: Store, job: StoredJob) -> StoredJob:
    """``job``'s row as the store has it now (a tombstone included)."""
    row = store.get_job(job_id=job.id)
    assert row is not None
    return row


def finish(store: Store, claim: Claim, outcome: Outcome = Outcome.SUCCESS) -> None:
    store.finish(claim.key, claim.token, outcome, finished_at=T0 + timedelta(seconds=1))


def keys(records: list[RunRecord]) -> list[str]:
    return [record.occurrence_key for record in records]


# ---------------------------------------------------------------- put_job


def test_put_job_inserts_a_job_at_version_1_anchored_by_the_store_clock(store: Store) -> None:
    job = new_job(source="jobs.toml", paused=True, next_fire=T0 + timedelta(hours=1))
    before = store.now()
    row, created = store.put_job(job, if_exists=IfExists.ERROR)
    after = store.now()
    assert created
    assert row is not None
    assert (row.id, row.name, row.task, row.definition) == (job.id, job.name, job.task, DEFINITION)
    assert (row.source, row.paused, row.next_fire) == ("jobs.toml", True, T0 + timedelta(hours=1))
    assert (row.version, row.runs, row.last_run, row.pause_reason) == (1, 0, None, None)
    assert (row.removed, row.removed_at) == (None, None)
    assert before <= row.anchor <= after
    assert row.seq == store.seq() > 0
    assert store.get_job(job_id=job.id) == row


def test_put_job_stores_the_anchor_it_is_given(store: Store) -> None:
    row = add(store, anchor=T0 - timedelta(days=3))
    assert row.anchor == T0 - timedelta(days=3)
    assert row_of(store, row).anchor == T0 - timedelta(days=3)


def test_keep_returns_the_stored_row_and_writes_nothing(store: Store) -> None:
    row = add(store)
    other = new_job(definition='{"rule": "other"}')
    assert store.put_job(other, if_exists=IfExists.KEEP) == (row, False)
    assert store.jobs() == [row]


def test_error_raises_job_exists_naming_the_job_and_writes_nothing(store: Store) -> None:
    row = add(store)
    with pytest.raises(JobExists, match="report"):
        store.put_job(new_job(definition="{}"), if_exists=IfExists.ERROR)
    assert store.jobs() == [row]


def test_replace_writes_the_declaration_and_keeps_identity_progress_and_pause(
    store: Store,
) -> None:
    row = add(store, next_fire=T0)
    store.claim(ask(row, next_fire=T0 + timedelta(minutes=1)))
    before = store.set_paused(row.id, paused=True, reason="maintenance")
    declared = NewJob(
        uuid.uuid4(), "report", "tasks.other", '{"rule": "2m"}', source="b.toml",
        next_fire=T0 + timedelta(days=1), anchor=T0 - timedelta(days=1),
    )  # fmt: skip
    replaced, created = store.put_job(declared, if_exists=IfExists.REPLACE)
    assert not created
    assert replaced is not None
    assert (replaced.task, replaced.definition, replaced.source) == (
        "tasks.other", '{"rule": "2m"}', "b.toml",
    )  # fmt: skip
    kept = ("id", "anchor", "runs", "last_run", "paused", "pause_reason", "next_fire")
    assert {name: getattr(replaced, name) for name in kept} == {
        name: getattr(before, name) for name in kept
    }
    assert replaced.version == before.version + 1
    assert replaced.seq > before.seq
    assert row_of(store, row) == replaced


def test_replace_writes_next_fire_when_told_not_to_keep_it(store: Store) -> None:
    row = add(store, next_fire=T0)
    declared = replace(new_job(), next_fire=T0 + timedelta(hours=2))
    replaced, _ = store.put_job(declared, if_exists=IfExists.REPLACE, keep_next_fire=False)
    assert replaced is not None
    assert replaced.next_fire == T0 + timedelta(hours=2)
    assert replaced.version == row.version


def test_an_identical_replace_changes_neither_version_nor_seq(store: Store) -> None:
    row = add(store, source="jobs.toml")
    again, created = store.put_job(new_job(source="jobs.toml"), if_exists=IfExists.REPLACE)
    assert (again, created) == (row, False)
    assert store.seq() == row.seq


def test_a_new_source_alone_is_written_without_a_new_version(store: Store) -> None:
    row = add(store, source="a.toml")
    moved, _ = store.put_job(new_job(source="b.toml"), if_exists=IfExists.REPLACE)
    assert moved is not None
    assert (moved.source, moved.version) == ("b.toml", row.version)
    assert moved.seq > row.seq


def test_a_stale_expected_version_raises_job_changed_and_writes_nothing(store: Store) -> None:
    row = add(store)
    changed = store.update_job(row.id, definition='{"rule": "v2"}')
    assert changed.version == 2
    with pytest.raises(JobChanged, match="version 2"):
        store.put_job(
            new_job(definition='{"rule": "v3"}'), if_exists=IfExists.REPLACE, expected_version=1
        )
    with pytest.raises(JobChanged):
        store.update_job(row.id, definition='{"rule": "v3"}', expected_version=1)
    with pytest.raises(JobChanged):
        store.set_paused(row.id, paused=True, reason="stale", expected_version=1)
    assert row_of(store, row) == changed
    assert store.seq() == changed.seq


def test_an_exhausted_tombstone_blocks_re_creation_until_tombstone_after(store: Store) -> None:
    row = add(store)
    gone = store.remove_job(row.id, reason="exhausted")
    assert gone is not None
    assert gone.removed_at is not None
    recent = gone.removed_at - timedelta(seconds=1)
    for if_exists in IfExists:
        assert store.put_job(new_job(), if_exists=if_exists, tombstone_after=recent) == (
            None,
            False,
        )
    assert store.seq() == gone.seq
    again, created = store.put_job(
        new_job(), if_exists=IfExists.KEEP, tombstone_after=gone.removed_at
    )
    assert created
    assert again is not None
    assert again.id != row.id


def test_an_explicit_removal_frees_the_name(store: Store) -> None:
    row = add(store)
    store.remove_job(row.id)
    again = add(store)
    assert again.id != row.id
    assert store.get_job(name="report") == again


# ---------------------------------------------------------------- reading jobs


def test_seq_grows_with_every_write_and_jobs_since_lists_changes_in_order(store: Store) -> None:
    a = add(store, "a")
    b = add(store, "b")
    mark = store.seq()
    c = add(store, "c")
    paused = store.set_paused(a.id, paused=True)
    gone = store.remove_job(b.id)
    assert gone is not None
    assert a.seq < b.seq <= mark < c.seq < paused.seq < gone.seq == store.seq()
    assert store.jobs(since=mark) == [c, paused]
    assert store.jobs(since=mark, include_removed=True) == [c, paused, gone]
    assert store.jobs() == [c, paused]
    assert store.jobs(since=gone.seq, include_removed=True) == []


def test_jobs_page_reads_every_row_removed_ones_included_in_seq_order_a_page_at_a_time(
    store: Store,
) -> None:
    a, b, c = add(store, "a"), add(store, "b"), add(store, "c")
    gone = store.remove_job(a.id)
    paused = store.set_paused(b.id, paused=True)
    assert gone is not None
    assert store.jobs_page(since=0, limit=2) == [c, gone]
    assert store.jobs_page(since=gone.seq, limit=2) == [paused]
    assert store.jobs_page(since=paused.seq, limit=2) == []
    assert store.jobs_page(since=0, limit=10) == [c, gone, paused]


@pytest.mark.parametrize("limit", [0, -1, 1.5, "10", None, True])
def test_jobs_page_refuses_a_limit_that_is_not_a_positive_int(store: Store, limit: Any) -> None:
    with pytest.raises(InvalidOption, match=f"limit must be a positive int, got {limit!r}"):
        store.jobs_page(since=0, limit=limit)


def test_the_default_jobs_page_of_a_store_without_one_is_every_row_after_since(
    store: Store,
) -> None:
    a, b = add(store, "a"), add(store, "b")
    gone = store.remove_job(a.id)
    assert Store.jobs_page(store, since=0, limit=1) == [b, gone]
    assert Store.jobs_page(store, since=b.seq, limit=1) == [gone]


def test_a_second_store_object_sees_the_changes_of_the_first(
    store: Store, make_store: Callable[[], Store]
) -> None:
    other = make_store()
    mark = other.seq()
    row = add(store)
    gone = store.remove_job(row.id)
    assert gone is not None
    assert other.seq() == gone.seq
    assert other.jobs(since=mark, include_removed=True) == [gone]
    assert other.get_job(name="report") == gone


def test_get_job_finds_by_id_or_by_name_preferring_the_live_row(store: Store) -> None:
    old = add(store)
    gone = store.remove_job(old.id)
    assert store.get_job(name="report") == gone
    fresh = add(store)
    assert store.get_job(name="report") == fresh
    assert store.get_job(job_id=old.id) == gone
    assert store.get_job(name="missing") is None
    assert store.get_job(job_id=uuid.uuid4()) is None


# ---------------------------------------------------------------- changing jobs


def test_update_job_renames_and_rewrites_the_definition_as_one_new_version(store: Store) -> None:
    row = add(store, next_fire=T0)
    renamed = store.update_job(row.id, name="weekly", definition='{"rule": "7d"}')
    assert (renamed.name, renamed.definition, renamed.version) == ("weekly", '{"rule": "7d"}', 2)
    assert renamed.next_fire == T0
    assert store.get_job(name="weekly") == renamed
    assert store.get_job(name="report") is None
    assert add(store, "report").id != row.id


def test_update_job_with_reset_next_fire_writes_it_without_a_new_version(store: Store) -> None:
    row = add(store, next_fire=T0)
    moved = store.update_job(row.id, next_fire=T0 + timedelta(hours=1), reset_next_fire=True)
    assert (moved.next_fire, moved.version) == (T0 + timedelta(hours=1), row.version)
    cleared = store.update_job(row.id, reset_next_fire=True)
    assert cleared.next_fire is None


def test_update_job_to_a_taken_name_raises_job_exists_and_writes_nothing(store: Store) -> None:
    row = add(store, "a")
    add(store, "b")
    mark = store.seq()
    with pytest.raises(JobExists, match="'b'"):
        store.update_job(row.id, name="b", definition='{"rule": "new"}')
    assert row_of(store, row) == row
    assert store.seq() == mark


def test_changing_a_removed_or_unknown_job_raises_job_not_found(store: Store) -> None:
    row = add(store)
    store.remove_job(row.id)
    for job_id in (row.id, uuid.uuid4()):
        with pytest.raises(JobNotFound):
            store.update_job(job_id, definition="{}")
        with pytest.raises(JobNotFound):
            store.set_paused(job_id, paused=True)


def test_set_paused_keeps_the_reason_and_bumps_the_version_only_on_change(store: Store) -> None:
    row = add(store)
    paused = store.set_paused(row.id, paused=True, reason="deploy")
    assert (paused.paused, paused.pause_reason, paused.version) == (True, "deploy", 2)
    assert store.set_paused(row.id, paused=True, reason="deploy").version == 2
    assert store.set_paused(row.id, paused=True, reason="incident").version == 3
    resumed = store.set_paused(row.id, paused=False)
    assert (resumed.paused, resumed.pause_reason, resumed.version) == (False, None, 4)
    assert row_of(store, row) == resumed


def test_remove_job_leaves_a_tombstone_once(store: Store) -> None:
    row = add(store)
    before = store.now()
    gone = store.remove_job(row.id, reason="stopped")
    assert gone is not None
    assert (gone.id, gone.removed) == (row.id, "stopped")
    assert gone.removed_at is not None
    assert before <= gone.removed_at <= store.now()
    assert store.remove_job(row.id) is None
    assert store.remove_job(uuid.uuid4()) is None
    assert store.jobs() == []
    assert store.seq() == gone.seq


def test_save_progress_writes_next_fire_without_a_new_version(store: Store) -> None:
    row = add(store, next_fire=T0)
    store.save_progress(row.id, T0 + timedelta(minutes=5))
    saved = row_of(store, row)
    assert (saved.next_fire, saved.version) == (T0 + timedelta(minutes=5), row.version)
    assert saved.seq > row.seq


# ---------------------------------------------------------------- claims


def test_a_first_claim_is_attempt_1_and_tokens_grow_across_keys(store: Store) -> None:
    row = add(store)
    first = store.claim(ask(row, "report@1"))
    second = store.claim(ask(row, "report@2", scheduled_at=T0 + timedelta(minutes=1)))
    assert (first.key, first.attempt, second.key, second.attempt) == (
        "report@1", 1, "report@2", 1,
    )  # fmt: skip
    assert second.token > first.token > 0
    running = store.history(outcomes=[None])
    assert [(r.occurrence_key, r.fencing_token, r.node) for r in running] == [
        ("report@2", second.token, "node-a"),
        ("report@1", first.token, "node-a"),
    ]


def test_a_running_claim_is_held_with_the_time_left_on_its_lease(store: Store) -> None:
    row = add(store)
    store.claim(ask(row))
    with pytest.raises(LockHeld) as held:
        store.claim(ask(row, node="node-b"))
    assert type(held.value) is LockHeld
    assert held.value.retry_after is not None
    assert timedelta(0) < held.value.retry_after <= LONG


def test_a_finished_occurrence_is_held_for_good_without_retry_after(store: Store) -> None:
    row = add(store)
    finish(store, store.claim(ask(row)))
    with pytest.raises(LockHeld) as held:
        store.claim(ask(row, recovery=Recovery.AT_LEAST_ONCE))
    assert type(held.value) is LockHeld
    assert held.value.retry_after is None


def test_an_expired_at_least_once_claim_is_reclaimed_as_attempt_2_with_a_larger_token(
    store: Store, backend: Backend
) -> None:
    row = add(store)
    first = store.claim(ask(row, ttl=SHORT, recovery=Recovery.AT_LEAST_ONCE))
    backend.expire(store, first.key)
    second = store.claim(ask(row, node="node-b", recovery=Recovery.AT_LEAST_ONCE))
    assert (second.key, second.attempt) == (first.key, 2)
    assert second.token > first.token
    assert row_of(store, row).runs == 1
    [record] = store.history()
    assert (record.attempt, record.attempts, record.node) == (2, 2, "node-b")
    assert (record.outcome, record.fencing_token) == (None, second.token)


def test_an_expired_at_most_once_claim_is_abandoned_once_then_held(
    store: Store, backend: Backend
) -> None:
    row = add(store)
    first = store.claim(ask(row, ttl=SHORT))
    backend.expire(store, first.key)
    with pytest.raises(OccurrenceAbandoned) as abandoned:
        store.claim(ask(row, node="node-b"))
    assert abandoned.value.attempt == 1
    with pytest.raises(LockHeld) as held:
        store.claim(ask(row, node="node-c"))
    assert type(held.value) is LockHeld
    assert held.value.retry_after is None
    [record] = store.history()
    assert (record.outcome, record.fencing_token) == (Outcome.ABANDONED, first.token)
    assert store.expired_claims() == []


def test_a_recorded_skip_is_taken_over_by_a_claim(store: Store) -> None:
    row = add(store)
    skip = RunRecord("report@1", row.id, row.name, T0, None, None, Outcome.SKIPPED_LOCKED)
    assert store.record(skip)
    claim = store.claim(ask(row, node="node-b"))
    assert claim.attempt == 1
    [record] = store.history()
    assert (record.outcome, record.fencing_token, record.node) == (None, claim.token, "node-b")
    assert row_of(store, row).runs == 1


def test_a_claim_counts_the_run_and_writes_progress_on_its_job(store: Store) -> None:
    row = add(store, next_fire=T0)
    before = store.now()
    store.claim(ask(row, next_fire=T0 + timedelta(minutes=1)))
    job = row_of(store, row)
    assert (job.runs, job.next_fire, job.version) == (1, T0 + timedelta(minutes=1), row.version)
    assert job.last_run is not None
    assert before <= job.last_run <= store.now()
    assert job.seq > row.seq


def test_a_counted_claim_records_the_schedulers_start_as_last_run(store: Store) -> None:
    row = add(store)
    store.claim(ask(row, started_at=T0 + timedelta(seconds=2)))
    assert row_of(store, row).last_run == T0 + timedelta(seconds=2)


def test_a_claim_committing_late_never_moves_last_run_back(store: Store) -> None:
    row = add(store)
    later = T0 + timedelta(minutes=1)
    store.claim(ask(row, key="report@2", scheduled_at=later, started_at=later))
    store.claim(ask(row, key="report@1", started_at=T0))  # the earlier occurrence, late
    job = row_of(store, row)
    assert (job.runs, job.last_run) == (2, later)


def test_the_claim_of_the_last_allowed_run_removes_the_job_as_exhausted(store: Store) -> None:
    row = add(store)
    store.claim(ask(row, "report@1", max_runs=2))
    assert row_of(store, row).removed is None
    store.claim(ask(row, "report@2", max_runs=2))
    job = row_of(store, row)
    assert (job.runs, job.removed) == (2, "exhausted")
    assert job.removed_at is not None
    assert store.jobs() == []
    assert store.jobs(include_removed=True) == [job]


def test_a_claim_that_does_not_count_leaves_runs_alone(store: Store) -> None:
    row = add(store)
    store.claim(ask(row, counts=False, max_runs=0))
    assert (row_of(store, row).runs, row_of(store, row).last_run) == (0, None)


def test_a_retried_occurrence_neither_counts_again_nor_is_refused_by_max_runs(
    store: Store,
) -> None:
    row = add(store)
    finish(store, store.claim(ask(row, max_runs=1)), Outcome.FAILED)
    store.retry("report@1")
    again = store.claim(ask(row, max_runs=1))
    assert again.attempt == 2
    assert row_of(store, row).runs == 1


def test_a_claim_is_refused_for_a_removed_job(store: Store) -> None:
    row = add(store)
    store.remove_job(row.id)
    with pytest.raises(LockHeld) as held:
        store.claim(ask(row))
    assert held.value.retry_after is None
    assert store.history() == []


def test_a_claim_is_refused_for_a_paused_job(store: Store) -> None:
    row = add(store)
    store.set_paused(row.id, paused=True, reason="deploy")
    with pytest.raises(LockHeld, match="paused") as held:
        store.claim(ask(row))
    assert held.value.retry_after is None
    assert row_of(store, row).runs == 0


def test_a_claim_is_refused_once_max_runs_is_reached(store: Store) -> None:
    row = add(store)
    for index in (1, 2):
        store.claim(ask(row, f"report@{index}", max_runs=2))
    with pytest.raises(LockHeld, match="max_runs") as held:
        store.claim(ask(row, "report@3", max_runs=2))
    assert held.value.retry_after is None
    assert sorted(keys(store.history())) == ["report@1", "report@2"]
    assert row_of(store, row).runs == 2


def test_an_exhausted_jobs_last_occurrence_may_still_be_claimed(store: Store) -> None:
    row = add(store)
    store.remove_job(row.id, reason="exhausted")
    claim = store.claim(ask(row))
    assert claim.attempt == 1


def test_a_claim_of_a_job_the_store_does_not_have_is_refused(store: Store) -> None:
    ghost = replace(add(store), id=uuid.uuid4())
    with pytest.raises(LockHeld):
        store.claim(ask(ghost))
    assert store.history() == []


# ---------------------------------------------------------------- renew and finish


def test_renew_extends_the_lease_from_the_store_clock(store: Store) -> None:
    row = add(store)
    claim = store.claim(ask(row, ttl=timedelta(seconds=30)))
    store.renew(claim.key, claim.token, timedelta(hours=1))
    with pytest.raises(LockHeld) as held:
        store.claim(ask(row))
    assert held.value.retry_after is not None
    assert held.value.retry_after > timedelta(minutes=59)


def test_renew_and_finish_with_a_stale_token_raise_lease_lost(
    store: Store, backend: Backend
) -> None:
    row = add(store)
    first = store.claim(ask(row, ttl=SHORT, recovery=Recovery.AT_LEAST_ONCE))
    backend.expire(store, first.key)
    second = store.claim(ask(row, recovery=Recovery.AT_LEAST_ONCE))
    with pytest.raises(LeaseLost):
        store.renew(first.key, first.token, LONG)
    with pytest.raises(LeaseLost):
        finish(store, first)
    store.renew(second.key, second.token, LONG)
    [record] = store.history()
    assert (record.outcome, record.fencing_token) == (None, second.token)


def test_renewing_an_expired_lease_raises_lease_lost(store: Store, backend: Backend) -> None:
    row = add(store)
    claim = store.claim(ask(row, ttl=SHORT))
    backend.expire(store, claim.key)
    with pytest.raises(LeaseLost):
        store.renew(claim.key, claim.token, LONG)


def test_finish_writes_the_outcome_and_history_shows_it(store: Store) -> None:
    row = add(store)
    claim = store.claim(ask(row, actor="dashboard"))
    started, finished = T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)
    store.finish(
        claim.key, claim.token, Outcome.FAILED, finished_at=finished, started_at=started,
        error="ValueError: boom", detail="step 2", exit_status=2, output="partial",
    )  # fmt: skip
    assert store.history() == [
        RunRecord(
            "report@1", row.id, "report", T0, started, finished, Outcome.FAILED, attempt=1,
            attempts=1, node="node-a", fencing_token=claim.token, error="ValueError: boom",
            detail="step 2", exit_status=2, output="partial", actor="dashboard",
        )
    ]  # fmt: skip
    with pytest.raises(LeaseLost):
        finish(store, claim)


def test_record_inserts_a_skip_once(store: Store) -> None:
    row = add(store)
    skip = RunRecord(
        "report@1", row.id, row.name, T0, None, None, Outcome.SKIPPED_MISSED, count=3,
        detail="last missed: 2026-03-01T00:03:00+00:00",
    )  # fmt: skip
    assert store.record(skip) is True
    assert store.record(replace(skip, outcome=Outcome.SKIPPED_LIMIT, count=1)) is False
    assert store.history() == [skip]


def test_expired_claims_lists_only_running_claims_past_their_lease(
    store: Store, backend: Backend
) -> None:
    row = add(store)
    short = store.claim(ask(row, "a", ttl=SHORT))
    store.claim(ask(row, "b"))
    finish(store, store.claim(ask(row, "c", ttl=SHORT)))
    backend.expire(store, "a")
    expired = store.expired_claims()
    assert keys(expired) == ["a"]
    assert (expired[0].fencing_token, expired[0].outcome) == (short.token, None)


def test_retry_puts_a_finished_occurrence_up_for_its_next_attempt(store: Store) -> None:
    row = add(store)
    first = store.claim(ask(row))
    finish(store, first, Outcome.FAILED)
    record = store.retry(first.key, actor="alice")
    assert (record.occurrence_key, record.actor, record.attempt) == (first.key, "alice", 1)
    again = store.claim(ask(row, node="node-b"))
    assert again.attempt == 2
    assert again.token > first.token
    [latest] = store.history()
    assert (latest.attempt, latest.attempts, latest.outcome) == (2, 2, None)


def test_retry_refuses_an_unknown_or_a_running_occurrence(store: Store) -> None:
    with pytest.raises(LookupError):
        store.retry("no-such-key")
    claim = store.claim(ask(add(store)))
    with pytest.raises(ValueError, match="running"):
        store.retry(claim.key)


def test_occurrence_finds_one_record_by_its_key(store: Store) -> None:
    row = add(store)
    assert store.occurrence("report@1") is None
    claim = store.claim(ask(row))
    finish(store, claim, Outcome.FAILED)
    found = store.occurrence("report@1")
    assert found is not None
    assert (found.occurrence_key, found.fencing_token, found.outcome) == (
        "report@1",
        claim.token,
        Outcome.FAILED,
    )
    assert found == store.history()[0]


def test_finish_with_retry_at_leaves_a_pending_retry_that_the_next_claim_takes(
    store: Store,
) -> None:
    row = add(store)
    first = store.claim(ask(row))
    due = store.now() - timedelta(minutes=1)  # by the store's own clock
    store.finish(
        first.key, first.token, Outcome.FAILED, finished_at=T0 + timedelta(seconds=1),
        error="OSError: down", retry_at=due,
    )  # fmt: skip
    [pending] = store.due_retries(grace=timedelta(0))
    assert (pending.occurrence_key, pending.outcome, pending.attempt) == (
        first.key,
        Outcome.FAILED,
        1,
    )
    assert store.due_retries(grace=timedelta(hours=1)) == []  # not yet overdue by that
    again = store.claim(ask(row, node="node-b"))
    assert (again.attempt, again.token > first.token) == (2, True)
    assert store.due_retries(grace=timedelta(0)) == []
    finish(store, again)
    [record] = store.history()
    assert (record.outcome, record.attempt, record.attempts) == (Outcome.SUCCESS, 2, 2)


def test_drop_retry_keeps_the_last_attempts_outcome_and_ends_the_occurrence(
    store: Store,
) -> None:
    row = add(store)
    first = store.claim(ask(row))
    store.finish(
        first.key, first.token, Outcome.TIMED_OUT, finished_at=T0 + timedelta(seconds=1),
        retry_at=store.now() - timedelta(minutes=1),
    )  # fmt: skip
    store.drop_retry(first.key)
    store.drop_retry("no-such-key")  # nothing pending: nothing happens
    assert store.due_retries(grace=timedelta(0)) == []
    [record] = store.history()
    assert (record.outcome, record.attempts) == (Outcome.TIMED_OUT, 1)
    with pytest.raises(LockHeld):
        store.claim(ask(row, node="node-b"))


# ---------------------------------------------------------------- history and pruning


def _history_fixture(store: Store) -> tuple[StoredJob, StoredJob]:
    """a@1 succeeded, a@2 runs, b@1 failed, b@2 was skipped: a minute apart."""
    a, b = add(store, "a"), add(store, "b")
    minute = timedelta(minutes=1)
    finish(store, store.claim(ask(a, "a@1")))
    store.claim(ask(a, "a@2", scheduled_at=T0 + minute))
    finish(store, store.claim(ask(b, "b@1", scheduled_at=T0 + 2 * minute)), Outcome.FAILED)
    store.record(RunRecord("b@2", b.id, "b", T0 + 3 * minute, None, None, Outcome.SKIPPED_LIMIT))
    return a, b


def test_history_is_newest_first_and_filters_by_job_outcome_and_since(store: Store) -> None:
    a, b = _history_fixture(store)
    assert keys(store.history()) == ["b@2", "b@1", "a@2", "a@1"]
    assert keys(store.history(job_id=a.id)) == ["a@2", "a@1"]
    assert keys(store.history(job_name="b")) == ["b@2", "b@1"]
    assert keys(store.history(outcomes=[Outcome.SUCCESS, None])) == ["a@2", "a@1"]
    assert keys(store.history(outcomes=[Outcome.FAILED, Outcome.SKIPPED_LIMIT])) == ["b@2", "b@1"]
    assert store.history(outcomes=[]) == []
    assert keys(store.history(since=T0 + timedelta(minutes=1))) == ["b@2", "b@1", "a@2"]
    assert keys(store.history(limit=2)) == ["b@2", "b@1"]
    assert keys(store.history(job_id=b.id, outcomes=[Outcome.FAILED])) == ["b@1"]


def test_prune_deletes_old_finished_records_and_tombstones_only(store: Store) -> None:
    keep, gone = add(store, "keep"), add(store, "gone")
    now = store.now()
    old, later = now - timedelta(days=2), now + timedelta(days=1)
    finish(store, store.claim(ask(keep, "old-done", scheduled_at=old)))
    store.claim(ask(keep, "old-running", scheduled_at=old))
    finish(store, store.claim(ask(keep, "old-retry", scheduled_at=old)), Outcome.FAILED)
    store.retry("old-retry")
    store.record(RunRecord("new-skip", keep.id, "keep", later, None, None, Outcome.SKIPPED_LIMIT))
    store.remove_job(gone.id)
    assert store.prune(store.now() + timedelta(seconds=1)) == 2
    assert sorted(keys(store.history())) == ["new-skip", "old-retry", "old-running"]
    assert store.jobs(include_removed=True) == [row_of(store, keep)]
    assert store.get_job(job_id=gone.id) is None


# ---------------------------------------------------------------- nodes


def test_heartbeats_list_the_nodes_by_start_and_leave_forgets_one(store: Store) -> None:
    before = store.now()
    store.heartbeat("instance-2", "node-b", T0 + timedelta(seconds=1), leader=True)
    store.heartbeat("instance-1", "node-a", T0, leader=False)
    nodes = store.nodes(alive_within=timedelta(minutes=1))
    assert [(n.instance_id, n.node, n.started_at, n.leader) for n in nodes] == [
        ("instance-1", "node-a", T0, False),
        ("instance-2", "node-b", T0 + timedelta(seconds=1), True),
    ]
    assert all(before <= n.last_seen <= store.now() for n in nodes)
    store.leave("instance-1")
    assert [n.instance_id for n in store.nodes(alive_within=timedelta(minutes=1))] == ["instance-2"]


def test_nodes_leaves_out_instances_not_seen_lately(store: Store, backend: Backend) -> None:
    store.heartbeat("quiet", "node-a", T0, leader=False)
    backend.pass_time(1.5)
    store.heartbeat("chatty", "node-b", T0, leader=True)
    store.heartbeat("chatty", "node-b", T0, leader=False)
    nodes = store.nodes(alive_within=timedelta(seconds=1))
    assert [(n.instance_id, n.leader) for n in nodes] == [("chatty", False)]


# ---------------------------------------------------------------- several schedulers


def test_tokens_keep_growing_after_the_store_is_closed_and_reopened(
    store: Store, make_store: Callable[[], Store]
) -> None:
    row = add(store)
    first = store.claim(ask(row, "a"))
    store.close()
    reopened = make_store()
    second = reopened.claim(ask(row, "b"))
    assert second.token > first.token
    assert reopened.seq() >= row_of(reopened, row).seq > row.seq


def test_concurrent_claims_of_one_key_have_exactly_one_winner(store: Store) -> None:
    row = add(store)
    contenders = 8
    barrier = threading.Barrier(contenders)

    def contend(index: int) -> Claim | None:
        barrier.wait()
        try:
            return store.claim(ask(row, node=f"node-{index}", instance_id=f"instance-{index}"))
        except LockHeld:
            return None

    with ThreadPoolExecutor(contenders) as pool:
        results = list(pool.map(contend, range(contenders)))
    winners = [claim for claim in results if claim is not None]
    assert len(winners) == 1
    assert row_of(store, row).runs == 1
    [record] = store.history()
    assert record.fencing_token == winners[0].token


def test_a_write_wakes_a_waiter_and_a_store_without_notification_does_not_block(
    store: Store, make_store: Callable[[], Store]
) -> None:
    if not store.notifies:  # its followers poll seq: waiting must not hold them up
        began = time.monotonic()
        store.wait_for_change(30.0)
        assert time.monotonic() - began < 1.0
        return
    row = add(store)
    writer = make_store()
    woke = threading.Event()

    def wait() -> None:
        store.wait_for_change(30.0)
        woke.set()

    waiter = threading.Thread(target=wait)
    started = time.monotonic()
    waiter.start()
    step = 0
    while not woke.wait(0.05):
        step += 1
        writer.save_progress(row.id, T0 + timedelta(seconds=step))
        assert time.monotonic() - started < 10, "wait_for_change slept through the writes"
    waiter.join()


# ---------------------------------------------------------------- lease edges, on a fake clock


def test_a_lease_is_held_up_to_its_last_instant_and_taken_over_just_after() -> None:
    clock = FakeClock(T0)
    store = MemoryStore(clock=clock)
    row = add(store)
    first = store.claim(ask(row, ttl=timedelta(seconds=10), recovery=Recovery.AT_LEAST_ONCE))
    clock.advance(timedelta(seconds=10))
    with pytest.raises(LockHeld) as held:
        store.claim(ask(row, recovery=Recovery.AT_LEAST_ONCE))
    assert held.value.retry_after == timedelta(0)
    assert store.expired_claims() == []
    store.renew(first.key, first.token, timedelta(seconds=10))
    clock.advance(timedelta(seconds=10, microseconds=1))
    assert keys(store.expired_claims()) == [first.key]
    with pytest.raises(LeaseLost):
        store.renew(first.key, first.token, timedelta(seconds=10))
    assert store.claim(ask(row, recovery=Recovery.AT_LEAST_ONCE)).attempt == 2


def test_a_holder_may_still_finish_after_its_lease_ran_out_if_nobody_took_over() -> None:
    clock = FakeClock(T0)
    store = MemoryStore(clock=clock)
    row = add(store)
    claim = store.claim(ask(row, ttl=timedelta(seconds=10)))
    clock.advance(timedelta(minutes=1))
    finish(store, claim)
    assert store.history()[0].outcome is Outcome.SUCCESS
    assert store.expired_claims() == []


def test_a_claim_committed_late_never_moves_the_next_fire_back(store: Store) -> None:
    row = add(store)
    store.claim(ask(row, key="report@2", next_fire=T0 + timedelta(minutes=3)))
    store.claim(ask(row, key="report@1", next_fire=T0 + timedelta(minutes=2)))
    assert row_of(store, row).next_fire == T0 + timedelta(minutes=3)
