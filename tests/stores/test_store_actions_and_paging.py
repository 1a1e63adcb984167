"""The store contract's actions table and history cursor, run against every store.

Parametrized like ``test_store_contract.py`` (memory, SQLite, PostgreSQL): the actions
taken on jobs are kept apart from the jobs and pruned with the history, and
``history(before=...)`` pages through records by a cursor without repeating or
skipping one, ties on ``scheduled_at`` included.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from gnomon._events import Outcome
from gnomon._stores.contract import ActionRecord, IfExists, NewJob, RunRecord, Store
from gnomon.sqlite import SQLiteStore

if TYPE_CHECKING:
    from conftest import Backend

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POSTGRES_URL = os.environ.get("GNOMON_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""The server the ``backend`` fixture's PostgreSQL stores use (as ``conftest`` reads it)."""


def add(store: Store, name: str) -> uuid.UUID:
    job = NewJob(uuid.uuid4(), name, "tasks.report", '{"rule": {"every": "1m"}}')
    row, _ = store.put_job(job, if_exists=IfExists.ERROR)
    assert row is not None
    return row.id


def action(job_id: uuid.UUID, name: str, what: str, at: datetime, **more: str) -> ActionRecord:
    return ActionRecord(job_id, name, what, more.get("actor"), at, more.get("detail"))


def skip(store: Store, job_id: uuid.UUID, key: str, at: datetime) -> None:
    assert store.record(RunRecord(key, job_id, "busy", at, None, None, Outcome.SKIPPED_LIMIT))


def pages(store: Store, job_id: uuid.UUID, size: int) -> list[list[str]]:
    """Every page of a job's history, each read from the cursor of the one before."""
    found: list[list[str]] = []
    cursor: tuple[datetime, str] | None = None
    while page := store.history(job_id=job_id, limit=size, before=cursor):
        found.append([record.occurrence_key for record in page])
        cursor = (page[-1].scheduled_at, page[-1].occurrence_key)
    return found


def test_actions_are_kept_newest_first_with_actor_and_detail(store: Store) -> None:
    a, b = add(store, "a"), add(store, "b")
    store.record_action(action(a, "a", "pause", T0, actor="alice", detail="deploy freeze"))
    store.record_action(action(b, "b", "pause", T0 + timedelta(seconds=1)))
    store.record_action(action(a, "a", "resume", T0 + timedelta(seconds=2), actor="bob"))
    newest = store.actions()
    assert [(r.job_name, r.action, r.actor) for r in newest] == [
        ("a", "resume", "bob"),
        ("b", "pause", None),
        ("a", "pause", "alice"),
    ]
    assert newest[2] == ActionRecord(a, "a", "pause", "alice", T0, "deploy freeze")
    assert newest[2].at.utcoffset() == timedelta(0)
    assert [r.action for r in store.actions(job_id=a)] == ["resume", "pause"]
    assert [r.action for r in store.actions(job_name="b")] == ["pause"]
    assert [r.action for r in store.actions(limit=1)] == ["resume"]


def test_actions_at_one_instant_list_the_later_recorded_first(store: Store) -> None:
    job = add(store, "a")
    for what in ("pause", "resume", "remove"):
        store.record_action(action(job, "a", what, T0))
    assert [r.action for r in store.actions(job_id=job)] == ["remove", "resume", "pause"]


def test_actions_outlive_the_jobs_removal_and_are_pruned_with_history(store: Store) -> None:
    job = add(store, "gone")
    now = store.now()
    store.record_action(action(job, "gone", "pause", now - timedelta(days=2)))
    store.record_action(action(job, "gone", "remove", now, actor="alice"))
    store.remove_job(job)
    assert [r.action for r in store.actions(job_id=job)] == ["remove", "pause"]
    assert store.prune(now - timedelta(days=1)) == 1
    assert [r.action for r in store.actions(job_id=job)] == ["remove"]


def test_an_unknown_action_or_a_naive_time_is_refused(store: Store) -> None:
    job = add(store, "a")
    with pytest.raises(ValueError, match="pause, resume, remove"):
        store.record_action(action(job, "a", "delete", T0))
    with pytest.raises(ValueError, match="naive"):
        store.record_action(action(job, "a", "pause", datetime(2026, 3, 1)))
    assert store.actions() == []


def test_history_pages_by_cursor_without_repeating_or_skipping_a_record(store: Store) -> None:
    job = add(store, "busy")
    for minute in range(7):
        skip(store, job, f"busy@{minute}", T0 + timedelta(minutes=minute))
    for letter in "edcba":  # five records at one instant: ordered by key
        skip(store, job, f"tie-{letter}", T0 + timedelta(minutes=3, seconds=30))
    every = [record.occurrence_key for record in store.history(job_id=job, limit=100)]
    assert every[:6] == ["busy@6", "busy@5", "busy@4", "tie-e", "tie-d", "tie-c"]
    for size in (1, 2, 3, 5):
        found = pages(store, job, size)
        assert [key for page in found for key in page] == every
        assert all(len(page) == size for page in found[:-1])


def test_history_cursor_combines_with_the_outcome_filter(store: Store) -> None:
    job = add(store, "busy")
    for minute in range(6):
        outcome = Outcome.FAILED if minute % 2 else Outcome.SKIPPED_LIMIT
        at = T0 + timedelta(minutes=minute)
        store.record(RunRecord(f"busy@{minute}", job, "busy", at, None, None, outcome))
    first = store.history(job_id=job, outcomes={Outcome.FAILED}, limit=2)
    assert [r.occurrence_key for r in first] == ["busy@5", "busy@3"]
    cursor = (first[-1].scheduled_at, first[-1].occurrence_key)
    rest = store.history(job_id=job, outcomes={Outcome.FAILED}, limit=5, before=cursor)
    assert [r.occurrence_key for r in rest] == ["busy@1"]


def test_a_cursor_with_a_naive_time_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.history(before=(datetime(2026, 3, 1), "busy@0"))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_store_from_before_the_actions_table_gains_it_on_open(backend: Backend) -> None:
    old = backend.open()
    job = add(old, "kept")
    old.close()
    drop_actions_table(old)
    store = backend.open()
    store.record_action(action(job, "kept", "pause", T0, actor="alice"))
    assert [r.actor for r in store.actions(job_id=job)] == ["alice"]
    assert store.get_job(job_id=job) is not None


def drop_actions_table(store: Store) -> None:
    """Leave ``store``'s database as a gnomon from before the actions table left it."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("DROP TABLE gnomon_actions")
        db.close()
        return
    import psycopg
    from psycopg import sql

    from gnomon.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    table = sql.Identifier(store.schema, "store_actions")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP TABLE {}").format(table))
