"""The command on a store: old state files migrated, the file's jobs as one source, the
store settings, catch-up settings, and replicas sharing a store."""

from __future__ import annotations

import signal
import socket
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import (
    Daemon,
    Workspace,
    drop_postgres_schema,
    require_postgres,
    wait_for,
)
from legacy_state import LegacyStateFile

import gnomon
from gnomon._cli import EXIT_INVALID, EXIT_OK, main
from gnomon._cli._config import InvalidSchedule, load_schedule
from gnomon._cli._daemon import Daemon as InProcessDaemon
from gnomon._cli._migrate import migrate_state_file
from gnomon._cli._store import StoreLocation
from gnomon._stores.codec import decode_definition
from gnomon.sqlite import SQLiteStore

StartDaemon = Callable[..., Daemon]
HOUR = timedelta(hours=1)


@pytest.fixture
def state_store(workspace: Workspace) -> Iterator[Callable[[], SQLiteStore]]:
    """Opens the workspace's state file as another process on the store would."""
    opened: list[SQLiteStore] = []

    def open_store() -> SQLiteStore:
        store = SQLiteStore(workspace.state)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


# ---------------------------------------------------------------- migration


def write_legacy_state_file(path: Path, now: datetime) -> None:
    """A state file as the command wrote it before stores, with one row of each kind."""
    legacy = LegacyStateFile(path)
    ran = legacy.insert_run(
        job="backup", occurrence="backup@ok", scheduled_at=now - 3 * HOUR, outcome="running"
    )
    legacy.finish_run(
        ran,
        finished_at=now - 3 * HOUR + timedelta(seconds=2),
        duration=2.0,
        outcome="success",
        exit_status=0,
        detail=None,
        output=None,
    )
    failed = legacy.insert_run(
        job="backup",
        occurrence="backup@failed",
        scheduled_at=now - 2 * HOUR,
        outcome="running",
        started_at=now - 2 * HOUR,
    )
    legacy.finish_run(
        failed,
        finished_at=now - 2 * HOUR + timedelta(seconds=1),
        duration=1.0,
        outcome="failed",
        exit_status=3,
        detail="exited with status 3",
        output="rsync: disk full",
    )
    legacy.insert_run(
        job="backup",
        occurrence="backup@missed",
        scheduled_at=now - HOUR,
        outcome="skipped_missed",
        detail="missed while gnomon was not running: 4 occurrence(s)",
        count=4,
    )
    legacy.insert_run(
        job="report",
        occurrence="report@interrupted",
        scheduled_at=now - HOUR,
        outcome="running",
        started_at=now - HOUR,
    )
    legacy.insert_run(
        job="backup",
        occurrence="backup@ancient",
        scheduled_at=now - timedelta(days=40),
        outcome="success",
    )
    legacy.daemon_started(schedule_file="gnomon.toml", started_at=now - 3 * HOUR)
    legacy.close()


def test_an_old_state_file_is_migrated_in_place_and_its_runs_show_in_history(
    workspace: Workspace,
    start_daemon: StartDaemon,
    state_store: Callable[[], SQLiteStore],
) -> None:
    write_legacy_state_file(workspace.state, datetime.now(UTC))
    workspace.write('[[jobs]]\nname = "backup"\nevery = "1h"\ncommand = "true"\n')
    daemon = start_daemon()
    daemon.wait_for_message("gnomon started")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    assert any("copied 4 run(s) from the old state file" in r["message"] for r in daemon.records())

    shown = {r["occurrence"]: r for r in workspace.history()}
    assert set(shown) == {"backup@ok", "backup@failed", "backup@missed", "report@interrupted"}
    failed = shown["backup@failed"]
    assert (failed["outcome"], failed["exit_status"], failed["output"]) == (
        "failed",
        3,
        "rsync: disk full",
    )
    assert failed["detail"] == "exited with status 3"
    assert failed["node"] == f"{socket.gethostname()}:{failed['node'].rpartition(':')[2]}"
    assert (shown["backup@ok"]["outcome"], shown["backup@ok"]["exit_status"]) == ("success", 0)
    missed = shown["backup@missed"]
    assert (missed["outcome"], missed["count"]) == ("skipped_missed", 4)
    interrupted = shown["report@interrupted"]
    assert interrupted["outcome"] == "abandoned"
    assert "gnomon stopped during the run" in interrupted["detail"]

    store = state_store()
    stored = store.get_job(name="backup")
    assert stored is not None
    assert len(store.history(job_id=stored.id)) == 3, "copied runs carry their job's id"
    # The old tables are left as they were.
    assert workspace.rows("SELECT COUNT(*) FROM runs") == [(5,)]
    assert workspace.rows("SELECT COUNT(*) FROM daemon") == [(1,)]


def test_migrating_an_old_state_file_again_copies_nothing(
    workspace: Workspace, state_store: Callable[[], SQLiteStore]
) -> None:
    write_legacy_state_file(workspace.state, datetime.now(UTC))
    store = state_store()
    assert migrate_state_file(store, workspace.state) == 4
    assert migrate_state_file(store, workspace.state) == 0
    # Even without the note of what was copied, no record is written twice.
    with sqlite3.connect(workspace.state) as connection:
        connection.execute("DROP TABLE runs_copied")
    assert migrate_state_file(store, workspace.state) == 0
    assert len(store.history()) == 4
    assert main(["history", "--state", str(workspace.state), "--json"]) == EXIT_OK
    assert len(store.history()) == 4


# ---------------------------------------------------------------- the file as a source


def add_visitor(path: Path) -> None:
    """A job added at run time by other code on the same store: no source."""
    store = SQLiteStore(path)
    scheduler = gnomon.Scheduler(store=store)
    try:
        scheduler.register(print, name="visitor.task")
        scheduler.add_job("visitor.task", gnomon.every("1h"), name="visitor")
    finally:
        scheduler.shutdown()
        store.close()


def live_jobs(store: SQLiteStore) -> dict[str, str | None]:
    return {row.name: row.source for row in store.jobs()}


def test_a_reload_or_a_start_removes_only_the_jobs_the_file_declared(
    workspace: Workspace,
    start_daemon: StartDaemon,
    state_store: Callable[[], SQLiteStore],
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "kept"
        every = "1h"
        command = "true"

        [[jobs]]
        name = "dropped"
        every = "1h"
        command = "true"
        """
    )
    daemon = start_daemon()
    daemon.wait_for_message("gnomon started")
    add_visitor(workspace.state)
    workspace.write('[[jobs]]\nname = "kept"\nevery = "1h"\ncommand = "true"\n')
    daemon.signal(signal.SIGHUP)
    assert "0 added, 1 removed" in daemon.wait_for_message("reloaded")["message"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    source = str(workspace.schedule.resolve())
    store = state_store()
    assert live_jobs(store) == {"kept": source, "visitor": None}

    workspace.write('[[jobs]]\nname = "fresh"\nevery = "1h"\ncommand = "true"\n')
    started = InProcessDaemon(load_schedule(workspace.schedule))
    started.start()
    started.stop(signal.SIGTERM)
    assert live_jobs(store) == {"fresh": source, "visitor": None}


# ---------------------------------------------------------------- settings


def test_store_sqlite_is_relative_to_the_schedule_file_and_state_is_its_synonym(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace.write('[scheduler]\nstore = "sqlite:var/shared.db"\n')
    by_store = load_schedule(workspace.schedule).scheduler.store
    assert by_store == StoreLocation(path=workspace.root / "var" / "shared.db")
    workspace.write('[scheduler]\nstate = "var/shared.db"\n')
    assert load_schedule(workspace.schedule).scheduler.store == by_store
    assert main(["history", str(workspace.schedule)]) == EXIT_INVALID
    assert f"no state file at {workspace.root / 'var' / 'shared.db'}" in capsys.readouterr().err


def test_a_postgresql_store_takes_its_schema_from_the_url(workspace: Workspace) -> None:
    workspace.write(
        '[scheduler]\nstore = "postgresql://app:s3cret@db/jobs?sslmode=require&schema=ops"\n'
    )
    location = load_schedule(workspace.schedule).scheduler.store
    assert location == StoreLocation(
        url="postgresql://app:s3cret@db/jobs?sslmode=require", schema="ops"
    )
    assert location.describe() == "postgresql://app:***@db/jobs?sslmode=require (schema ops)"


def test_giving_both_state_and_store_is_an_error_naming_both(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace.write('[scheduler]\nstate = "a.db"\nstore = "sqlite:b.db"\n')
    with pytest.raises(InvalidSchedule, match=r"\[scheduler\]: state and store are both given"):
        load_schedule(workspace.schedule)
    assert main(["status", str(workspace.schedule)]) == EXIT_INVALID
    assert "state and store are both given" in capsys.readouterr().err


def test_catch_up_keys_reach_the_stored_jobs_with_the_schedulers_as_defaults(
    workspace: Workspace, state_store: Callable[[], SQLiteStore]
) -> None:
    workspace.write(
        """
        [scheduler]
        catch_up = "skip"
        catch_up_window = "1h"

        [[jobs]]
        name = "all"
        every = "1h"
        command = "true"
        catch_up = "all"
        catch_up_limit = 3

        [[jobs]]
        name = "defaults"
        every = "1h"
        command = "true"
        """
    )
    daemon = InProcessDaemon(load_schedule(workspace.schedule))
    daemon.start()
    daemon.stop(signal.SIGTERM)
    store = state_store()
    options = {row.name: decode_definition(row.definition).options for row in store.jobs()}
    picked = ("catch_up", "catch_up_window", "catch_up_limit")
    assert [options["all"][key] for key in picked] == ["all", HOUR, 3]
    assert [options["defaults"][key] for key in picked] == ["skip", HOUR, 100]


# ---------------------------------------------------------------- replicas


def run_two_replicas(workspace: Workspace, start_daemon: StartDaemon) -> Counter[str]:
    """Two daemons on the schedule file's shared store; each run appends its occurrence
    key to runs.txt. Returns how often each key was appended."""
    replicas = [start_daemon(), start_daemon()]
    for replica in replicas:
        replica.wait_for_message("gnomon started")
    wait_for("eight runs between them", lambda: len(workspace.lines("runs.txt")) >= 8)
    status = workspace.gnomon("status").stdout
    assert status.startswith("daemon: running on 2 nodes: "), status
    for replica in replicas:
        replica.signal(signal.SIGTERM)
    assert [replica.wait() for replica in replicas] == [EXIT_OK, EXIT_OK]
    ran = Counter(workspace.lines("runs.txt"))
    assert set(ran.values()) == {1}, f"occurrences run twice: {ran.most_common(3)}"
    recorded = Counter(
        r["occurrence"] for r in workspace.history("--job", "tick") if r["outcome"] == "success"
    )
    assert recorded == ran
    return ran


REPLICATED = """
[scheduler]
store = "{store}"

[[jobs]]
name = "tick"
every = "200ms"
command = "echo $GNOMON_OCCURRENCE >> runs.txt"
"""


def test_two_replicas_on_one_sqlite_store_run_each_occurrence_once(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(REPLICATED.format(store="sqlite:shared.db"))
    run_two_replicas(workspace, start_daemon)
    assert (workspace.root / "shared.db").exists()
    assert not workspace.state.exists()


@pytest.mark.services
def test_two_replicas_on_one_postgresql_store_run_each_occurrence_once(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    url = require_postgres()
    schema = f"cli_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in url else "?"
    workspace.write(REPLICATED.format(store=f"{url}{separator}schema={schema}"))
    try:
        run_two_replicas(workspace, start_daemon)
    finally:
        drop_postgres_schema(schema)
    assert not workspace.state.exists()
