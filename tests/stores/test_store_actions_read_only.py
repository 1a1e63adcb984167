"""A store written by a gnomon from before the actions table, opened by a process that
may not add it: a read-only SQLite file, or a PostgreSQL role without CREATE (a fleet's
dashboard, ``GRANT SELECT`` only; a scheduler's role that may write rows but not make
tables). The store opens and reads as before, lists no actions, and records none with
one warning in the log; every other failure is raised as before.

The PostgreSQL tests make a schema and roles of their own (unique names, dropped after).
The SQLite test reads the file from a child process that may not write it: as root, with
the capabilities that override file modes dropped (root could write a 0444 file anyway).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import gnomon
from gnomon._errors import StoreUnavailable
from gnomon._events import Outcome
from gnomon._stores.contract import ActionRecord, IfExists, NewJob, RunRecord, Store
from gnomon.postgres import PostgresStore
from gnomon.sqlite import SQLiteStore
from gnomon.testing import FakeClock

# The distributed tests' helpers: service probes and names no other run uses.
_DISTRIBUTED = str(Path(__file__).resolve().parents[1] / "distributed")
if _DISTRIBUTED not in sys.path:
    sys.path.insert(0, _DISTRIBUTED)
from distributed_support import POSTGRES_URL, require_service, unique_name  # noqa: E402

T0 = datetime(2026, 3, 1, tzinfo=UTC)
READ_ONLY = ("USAGE ON SCHEMA {schema}", "SELECT ON ALL TABLES IN SCHEMA {schema}")
"""What a fleet's dashboard needs."""
ROWS_ONLY = (
    "USAGE ON SCHEMA {schema}",
    "SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema}",
    "USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema}",
)
"""What a scheduler's role needs to write a store's rows, without CREATE on its schema."""

RoleFactory = Callable[[tuple[str, ...]], tuple[str, str]]
"""Makes a login role granted what it is given on the test's schema: its name and URL."""


def report() -> None:
    pass


def fill_as_an_older_gnomon(store: Store) -> uuid.UUID:
    """One job and one history record, and no actions table (dropped by the caller)."""
    job = NewJob(uuid.uuid4(), "kept", "tests.report", '{"rule": {"every": "1m"}}')
    row, _ = store.put_job(job, if_exists=IfExists.ERROR)
    assert row is not None
    assert store.record(RunRecord("kept@0", row.id, "kept", T0, None, None, Outcome.SKIPPED_LIMIT))
    return row.id


def pause_by_alice(job_id: uuid.UUID) -> ActionRecord:
    return ActionRecord(job_id, "kept", "pause", "alice", T0, "deploy freeze")


def warnings_about_actions(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "keeps no record of job actions" in record.message
    ]


# ---------------------------------------------------------------- PostgreSQL


def admin(statement: sql.Composable) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(statement)


def has_actions_table(schema: str) -> bool:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        found = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [f'"{schema}".store_actions']
        ).fetchone()
    return bool(found and found[0])


@pytest.fixture
def old_schema() -> Iterator[str]:
    """A PostgreSQL schema as a gnomon from before the actions table left it."""
    require_service("postgres")
    schema = unique_name("old_store")
    store = PostgresStore(POSTGRES_URL, schema=schema)
    try:
        try:
            fill_as_an_older_gnomon(store)
        finally:
            store.close()
        admin(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "store_actions")))
        yield schema
    finally:
        admin(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def role(old_schema: str) -> Iterator[RoleFactory]:
    """Makes login roles granted ``grants`` on ``old_schema`` (dropped after the test)."""
    made: list[str] = []

    def make(grants: tuple[str, ...]) -> tuple[str, str]:
        name = unique_name("gnomon_role")
        made.append(name)
        who, where = sql.Identifier(name), sql.Identifier(old_schema)
        admin(sql.SQL("CREATE ROLE {} LOGIN").format(who))
        for grant in grants:
            admin(sql.SQL("GRANT " + grant + " TO {role}").format(schema=where, role=who))
        return name, make_conninfo(POSTGRES_URL, user=name)

    yield make
    for name in made:
        admin(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)))


@pytest.fixture
def stores() -> Iterator[Callable[[str, str], PostgresStore]]:
    """Opens PostgreSQL stores (closed after the test)."""
    made: list[PostgresStore] = []

    def open_store(url: str, schema: str) -> PostgresStore:
        store = PostgresStore(url, schema=schema)
        made.append(store)
        store.open()
        return store

    yield open_store
    for store in made:
        store.close()


def test_a_read_only_role_opens_an_older_store_and_reads_it_without_actions(
    old_schema: str,
    role: RoleFactory,
    stores: Callable[[str, str], PostgresStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = role(READ_ONLY)
    store = stores(url, old_schema)
    [job] = store.jobs()
    assert [record.occurrence_key for record in store.history()] == ["kept@0"]
    assert store.actions() == []
    assert store.actions(job_id=job.id) == []
    assert not has_actions_table(old_schema)
    assert warnings_about_actions(caplog) == []  # reading an older store is no fault


def test_recording_without_the_table_logs_one_warning_naming_the_store_and_why(
    old_schema: str,
    role: RoleFactory,
    stores: Callable[[str, str], PostgresStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = role(READ_ONLY)
    store = stores(url, old_schema)
    [job] = store.jobs()
    with caplog.at_level(logging.WARNING, logger="gnomon"):
        store.record_action(pause_by_alice(job.id))
        store.record_action(pause_by_alice(job.id))
    [warning] = warnings_about_actions(caplog)
    assert store.describe() in warning
    assert f"permission denied for schema {old_schema}" in warning
    assert store.actions() == []


def test_a_role_that_writes_rows_but_not_tables_pauses_a_job_and_prunes_without_actions(
    old_schema: str, role: RoleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = role(ROWS_ONLY)
    store = PostgresStore(url, schema=old_schema)
    s = gnomon.Scheduler(store=store, clock=FakeClock(T0), timezone="UTC", stop_timeout=5.0)
    try:
        s.register(report, name="tests.report")
        s.start()
        job = s.add_job("tests.report", gnomon.every("1h"), name="daily")
        assert job is not None
        with caplog.at_level(logging.WARNING, logger="gnomon"):
            job.pause("deploy freeze", actor="alice")
            assert job.paused
            job.resume(actor="bob")
        stored = store.get_job(job_id=job.id)
        assert stored is not None
        assert not stored.paused
        assert len(warnings_about_actions(caplog)) == 1
        assert "could not be recorded" not in caplog.text  # the store said it, once
        assert s.actions() == []
        assert store.prune(T0 + timedelta(seconds=1)) == 1  # the older gnomon's record
        assert store.history() == []
        assert not has_actions_table(old_schema)
    finally:
        s.shutdown()
        store.close()


def test_a_read_only_role_lists_actions_once_a_newer_gnomon_added_the_table(
    old_schema: str, role: RoleFactory, stores: Callable[[str, str], PostgresStore]
) -> None:
    name, url = role(READ_ONLY)
    reader = stores(url, old_schema)
    [job] = reader.jobs()
    assert reader.actions() == []
    writer = stores(POSTGRES_URL, old_schema)  # may create tables: adds it on open
    writer.record_action(pause_by_alice(job.id))
    admin(
        sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier(old_schema, "store_actions"), sql.Identifier(name)
        )
    )
    assert reader.actions() == [pause_by_alice(job.id)]


def test_a_role_that_may_not_read_the_added_table_lists_no_actions_and_says_why(
    old_schema: str,
    role: RoleFactory,
    stores: Callable[[str, str], PostgresStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = role(READ_ONLY)
    reader = stores(url, old_schema)
    writer = stores(POSTGRES_URL, old_schema)
    [job] = writer.jobs()
    writer.record_action(pause_by_alice(job.id))
    with caplog.at_level(logging.WARNING, logger="gnomon"):
        assert reader.actions(job_id=job.id) == []
    [warning] = warnings_about_actions(caplog)
    assert "may not read them (permission denied for table store_actions)" in warning


def test_a_role_denied_other_tables_still_fails_on_them(
    old_schema: str, role: RoleFactory, stores: Callable[[str, str], PostgresStore]
) -> None:
    meta_only = ("USAGE ON SCHEMA {schema}", "SELECT ON {schema}.store_meta")
    _, url = role(meta_only)
    store = stores(url, old_schema)  # the version is readable: it opens
    with pytest.raises(gnomon.StoreUnavailable, match=r"refused the call.*store_jobs") as raised:
        store.jobs()
    assert isinstance(raised.value.__cause__, psycopg.errors.InsufficientPrivilege)


def test_a_read_only_role_that_writes_gets_store_unavailable_naming_the_refusal(
    old_schema: str, role: RoleFactory, stores: Callable[[str, str], PostgresStore]
) -> None:
    _, url = role(READ_ONLY)
    store = stores(url, old_schema)
    [job] = store.jobs()
    with pytest.raises(gnomon.StoreUnavailable, match="refused the call: permission denied"):
        store.prune(datetime.now(UTC))
    with pytest.raises(gnomon.StoreUnavailable, match="refused the call: permission denied"):
        store.remove_job(job.id, reason="removed")
    assert [stored.id for stored in stores(POSTGRES_URL, old_schema).jobs()] == [job.id]


# ---------------------------------------------------------------- SQLite

READ_AS_A_DASHBOARD = textwrap.dedent(
    """
    import json, logging, sys
    from gnomon._stores.contract import ActionRecord
    from gnomon.sqlite import SQLiteStore

    path = sys.argv[1]
    try:
        open(path, "r+b").close()
    except PermissionError:
        pass
    else:
        sys.exit("this process may write the store's file: the test would prove nothing")
    logging.basicConfig(format="%(levelname)s %(message)s")
    store = SQLiteStore(path)
    [job] = store.jobs()
    listed = store.actions()
    for _ in range(2):
        store.record_action(ActionRecord(job.id, job.name, "pause", "alice", job.anchor))
    history = [record.occurrence_key for record in store.history()]
    print(json.dumps({"history": history, "listed": len(listed), "after": len(store.actions())}))
    """
)
"""What a dashboard on the file does, and what a pause would record: run in a child."""


def run_unable_to_write(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a child process that file modes bind: root is given no capability
    to override them (root would write a 0444 file anyway)."""
    command = [sys.executable, "-c", script, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("as root this test needs util-linux's setpriv to drop CAP_DAC_OVERRIDE")
        drop = "-dac_override,-dac_read_search"
        command = [setpriv, "--bounding-set", drop, "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_read_only_sqlite_file_from_an_older_gnomon_is_read_and_records_no_actions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fleet" / "jobs.db"
    path.parent.mkdir()
    store = SQLiteStore(path)
    fill_as_an_older_gnomon(store)
    store.close()
    # An older gnomon's scheduler, still running: its connection keeps the WAL files.
    with contextlib.closing(sqlite3.connect(path)) as older:
        older.execute("DROP TABLE gnomon_actions")
        files = [path, path.with_name("jobs.db-wal"), path.with_name("jobs.db-shm")]
        for file in files:
            file.chmod(0o444)
        path.parent.chmod(0o555)
        try:
            child = run_unable_to_write(READ_AS_A_DASHBOARD, str(path))
        finally:
            path.parent.chmod(0o700)
            for file in files:
                file.chmod(0o600)
        tables = {row[0] for row in older.execute("SELECT name FROM sqlite_master")}
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {"history": ["kept@0"], "listed": 0, "after": 0}
    [warning] = [line for line in child.stderr.splitlines() if line.startswith("WARNING")]
    assert f"the store {path} keeps no record of job actions" in warning
    assert "(attempt to write a readonly database)" in warning
    assert "gnomon_actions" not in tables


def test_an_actions_table_not_made_for_another_reason_leaves_the_store_unavailable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    made = SQLiteStore(path)
    made.open()
    made.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP TABLE gnomon_actions")
        db.execute("CREATE VIEW gnomon_actions AS SELECT 1 AS id")
    store = SQLiteStore(path)
    with pytest.raises(StoreUnavailable, match=f"the SQLite store {path} cannot be used"):
        store.open()
    store.close()
