"""What only the SQLite store does: its file, its settings, its schema version, its errors,
and several processes sharing one file. The contract itself is in test_store_contract.py.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gnomon._errors import InvalidOption, LockHeld, StoreUnavailable, StoreVersionError
from gnomon._stores.contract import SCHEMA_VERSION, ClaimRequest, IfExists, NewJob, StoredJob
from gnomon.sqlite import SQLiteStore

T = TypeVar("T")
T0 = datetime(2026, 3, 1, tzinfo=UTC)
JOB_ID = uuid.UUID("7d7a4f6e-0000-4000-8000-000000000001")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def opened() -> Iterator[Callable[..., SQLiteStore]]:
    """Makes SQLite stores and closes them after the test."""
    made: list[SQLiteStore] = []

    def make(path: Path, **options: Any) -> SQLiteStore:
        store = SQLiteStore(path, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def add(store: SQLiteStore, name: str = "report") -> StoredJob:
    row, _ = store.put_job(
        NewJob(uuid.uuid4(), name, "tasks.report", "{}"), if_exists=IfExists.KEEP
    )
    assert row is not None
    return row


def ask(job_id: uuid.UUID, node: str) -> ClaimRequest:
    return ClaimRequest("report@1", job_id, "report", T0, node, node, timedelta(minutes=5))


def in_new_thread(work: Callable[[], T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# ---------------------------------------------------------------- the file


def test_the_file_is_created_readable_and_writable_by_its_owner_only(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    add(opened(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wal = path.with_name(path.name + "-wal")
    assert wal.exists()
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600


@pytest.mark.parametrize(("synchronous", "level"), [("normal", 1), ("full", 2)])
def test_wal_and_the_synchronous_setting_are_applied(
    path: Path, opened: Callable[..., SQLiteStore], synchronous: str, level: int
) -> None:
    store = opened(path, synchronous=synchronous)
    store.open()
    connection = store._connection()
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA synchronous").fetchone() == (level,)
    in_thread = in_new_thread(lambda: store._connection().execute("PRAGMA synchronous").fetchone())
    assert in_thread == (level,)


def test_an_unknown_synchronous_value_is_refused_naming_the_valid_ones(path: Path) -> None:
    with pytest.raises(InvalidOption, match=r"'normal', 'full'.*'off'"):
        SQLiteStore(path, synchronous="off")
    assert not path.exists()


def test_an_in_memory_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidOption, match="MemoryStore"):
        SQLiteStore(":memory:")


def test_a_missing_directory_makes_the_store_unavailable_naming_the_path(
    tmp_path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    path = tmp_path / "missing" / "jobs.db"
    with pytest.raises(StoreUnavailable, match="missing"):
        opened(path).open()


def test_a_store_from_a_newer_gnomon_is_refused_and_left_untouched(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE gnomon_meta (name TEXT PRIMARY KEY, value INTEGER)")
        newer = SCHEMA_VERSION + 1
        connection.execute("INSERT INTO gnomon_meta VALUES ('schema_version', ?)", (newer,))
        connection.commit()
    before = snapshot(path)
    store = opened(path)
    message = rf"schema version {newer}.*newer gnomon.*schema version {SCHEMA_VERSION}"
    with pytest.raises(StoreVersionError, match=message):
        store.open()
    with pytest.raises(StoreVersionError):
        store.jobs()
    store.close()
    assert snapshot(path) == before
    assert not path.with_name(path.name + "-wal").exists()


def test_a_file_that_is_not_a_database_is_unavailable_and_left_untouched(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    """StoreUnavailable, not StoreVersionError: that one means "written by a newer gnomon"
    and names both versions, whereas this file is no store at all and cannot be read."""
    path.write_bytes(b"these are somebody's notes, not a database\n" * 200)
    before = snapshot(path)
    with pytest.raises(StoreUnavailable, match=str(path)):
        opened(path).open()
    assert snapshot(path) == before


def test_the_older_state_tables_in_the_same_file_are_left_alone(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    with closing(sqlite3.connect(path)) as connection:
        for table in ("runs", "jobs", "daemon"):
            connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT)")
            connection.execute(f"INSERT INTO {table} (note) VALUES ('kept')")  # noqa: S608
        connection.commit()
    add(opened(path))
    with closing(sqlite3.connect(path)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        kept = [
            connection.execute(f"SELECT note FROM {table}").fetchall()  # noqa: S608
            for table in ("runs", "jobs", "daemon")
        ]
    assert {"runs", "jobs", "daemon", "gnomon_meta", "gnomon_jobs"} <= tables
    assert {"gnomon_occurrences", "gnomon_nodes"} <= tables
    assert kept == [[("kept",)]] * 3


# ---------------------------------------------------------------- outages


def test_a_write_that_waits_out_the_timeout_is_unavailable_and_changes_nothing(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    store = opened(path, timeout=0.2)
    row = add(store)
    with closing(sqlite3.connect(path, isolation_level=None)) as blocker:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            store.set_paused(row.id, paused=True, reason="deploy")
        assert store.jobs() == [row]
        blocker.execute("ROLLBACK")
    assert store.get_job(job_id=row.id) == row
    assert store.set_paused(row.id, paused=True).paused


def test_a_closed_store_is_unavailable(path: Path, opened: Callable[..., SQLiteStore]) -> None:
    store = opened(path)
    add(store)
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.jobs()
    with pytest.raises(StoreUnavailable, match="closed"):
        in_new_thread(store.seq)


# ---------------------------------------------------------------- sharing the file


def test_two_store_objects_on_one_file_in_two_threads_share_jobs_and_claims(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    first, second = opened(path), opened(path)
    row = in_new_thread(lambda: add(first))
    assert in_new_thread(lambda: second.get_job(name="report")) == row
    claim = in_new_thread(lambda: second.claim(ask(row.id, "node-b")))
    with pytest.raises(LockHeld):
        in_new_thread(lambda: first.claim(ask(row.id, "node-a")))
    assert [record.fencing_token for record in first.history()] == [claim.token]
    assert first.seq() == second.seq()


def _claim_in_process(path: str, barrier: Any, results: Any) -> None:
    """One process: open the (new) file, declare the job, claim its occurrence."""
    store = SQLiteStore(path, timeout=30)
    try:
        barrier.wait(timeout=60)
        job = NewJob(JOB_ID, "report", "tasks.report", "{}")
        store.put_job(job, if_exists=IfExists.KEEP)
        results.put(("won", store.claim(ask(JOB_ID, f"pid-{os.getpid()}")).token))
    except LockHeld:
        results.put(("held", None))
    except Exception as exc:
        results.put(("error", repr(exc)))
    finally:
        store.close()


@pytest.mark.slow
def test_three_processes_claim_one_occurrence_and_exactly_one_wins(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    """The processes also create the file and its schema at the same moment."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    processes = [
        context.Process(target=_claim_in_process, args=(str(path), barrier, results))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    answers = sorted((results.get(timeout=120) for _ in processes), key=repr)
    for process in processes:
        process.join(timeout=60)
    assert [kind for kind, _ in answers] == ["held", "held", "won"], answers
    store = opened(path)
    job = store.get_job(job_id=JOB_ID)
    assert job is not None
    assert job.runs == 1
    assert [record.fencing_token for record in store.history()] == [answers[-1][1]]


# ---------------------------------------------------------------- upkeep


def autocheckpoint(store: SQLiteStore) -> int:
    return int(store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_while_upkeep_runs_commits_leave_checkpoints_to_it_and_take_them_back_after(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    store = opened(path)
    add(store, "before")
    assert autocheckpoint(store) == 1000  # SQLite's own, inside whichever commit
    store.upkeep()
    add(store, "during")
    assert autocheckpoint(store) == 0
    store._upkept -= 3600  # an hour without upkeep: the follower stopped
    add(store, "after")
    assert autocheckpoint(store) == 1000


def test_upkeep_checkpoints_after_a_batch_of_commits_not_after_each_one(
    path: Path, opened: Callable[..., SQLiteStore]
) -> None:
    store = opened(path)
    store.upkeep()
    add(store, "first")
    before = snapshot(path)
    store.upkeep()
    assert snapshot(path) == before, "one commit (a heartbeat) is not worth a checkpoint"
    for i in range(20):
        add(store, f"job-{i}")
    assert snapshot(path) == before, "commits leave the database file to the checkpoint"
    store.upkeep()
    assert snapshot(path) != before
