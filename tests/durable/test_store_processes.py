"""Real processes on one store: changes reach every process, each occurrence runs once,
and processes killed with SIGKILL come back with their progress and exact catch-up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gnomon import Outcome
from gnomon._stores.contract import RunRecord, Store

HERE = Path(__file__).parent
POSTGRES_URL = os.environ.get("GNOMON_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("GNOMON_REQUIRE_SERVICES") == "1"
SECOND = timedelta(seconds=1)

pytestmark = pytest.mark.slow


@dataclass
class Place:
    """Where the processes keep their jobs: a store, and a sink for the runs' effects."""

    store_arg: str
    schema: str | None
    sink: Path
    opener: Callable[[], Store]
    opened: list[Store] = field(default_factory=list)

    def store(self) -> Store:
        store = self.opener()
        store.open()
        self.opened.append(store)
        return store


class Node:
    """One ``store_node.py`` process and its command pipe."""

    def __init__(self, place: Place, name: str, tasks: str) -> None:
        command = [sys.executable, str(HERE / "store_node.py"), "--store", place.store_arg]
        command += ["--sink", str(place.sink), "--node", name, "--tasks", tasks]
        if place.schema:
            command += ["--schema", place.schema]
        self.name = name
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE
        )
        ready = self._read()
        assert ready["ready"] == name

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"node {self.name} exited with {self.process.wait(10)}")
        return json.loads(line)

    def ask(self, op: str, **command: object) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **command}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def names(self) -> set[str]:
        return {job["name"] for job in self.ask("jobs")}

    def job(self, name: str) -> dict[str, Any] | None:
        return next((job for job in self.ask("jobs") if job["name"] == name), None)

    def quit(self) -> None:
        try:
            if self.process.poll() is None:
                self.ask("quit")
            assert self.process.wait(30) == 0
        finally:
            self._close_pipes()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    begun = time.monotonic()
    while not check():
        if time.monotonic() - begun > timeout:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)
    return time.monotonic() - begun


def make_sink(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE runs (occurrence_key, job, task, node, token)")
        conn.execute("CREATE TABLE effects (occurrence_key PRIMARY KEY, node)")


def sink_runs(path: Path) -> list[tuple[str, str, str, str]]:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return conn.execute("SELECT occurrence_key, job, task, node FROM runs").fetchall()


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    sink = tmp_path / "sink.db"
    make_sink(sink)
    if request.param == "sqlite":
        from gnomon.sqlite import SQLiteStore

        path = tmp_path / "jobs.db"
        found = Place(f"sqlite:{path}", None, sink, lambda: SQLiteStore(path))
        yield found
    else:
        found = _postgres_place(sink)
        yield found
        _drop_schema(found.schema)
    for store in found.opened:
        store.close()


def _postgres_place(sink: Path) -> Place:
    import psycopg

    from gnomon.postgres import PostgresStore

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if REQUIRE_SERVICES:
            raise AssertionError(f"PostgreSQL is required but not answering: {exc}") from exc
        pytest.skip(f"PostgreSQL not answering at {POSTGRES_URL}: {exc}")
    schema = f"gnomon_procs_{uuid.uuid4().hex[:10]}"
    return Place(POSTGRES_URL, schema, sink, lambda: PostgresStore(POSTGRES_URL, schema=schema))


def _drop_schema(schema: str | None) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def start_nodes(place: Place, tasks: list[str]) -> list[Node]:
    return [Node(place, f"n{i}", task_list) for i, task_list in enumerate(tasks, start=1)]


# ---------------------------------------------------------------- sharing


def test_three_processes_share_every_change_and_run_each_occurrence_once(place: Place) -> None:
    n1, n2, n3 = start_nodes(place, ["a,b", "a,b", "a,c"])
    try:
        n1.ask("add", task="a", name="ja", every="500ms")
        n2.ask("add", task="b", name="jb", every="500ms")
        n3.ask("add", task="c", name="jc", every="500ms")
        eventually(lambda: n1.names() == n2.names() == {"ja", "jb"}, "n1 and n2 hold ja, jb")
        eventually(lambda: n3.names() == {"ja", "jc"}, "n3 holds ja and jc, not jb")

        n3.ask("update", name="ja", every="400ms")
        eventually(
            lambda: all(
                (n.job("ja") or {}).get("rule") == "every(timedelta(microseconds=400000))"
                for n in (n1, n2)
            ),
            "every process sees ja's new rule",
        )
        n2.ask("pause", name="jb", reason="maintenance")
        eventually(lambda: (n1.job("jb") or {}).get("paused") is True, "n1 sees jb paused")
        n1.ask("resume", name="jb")
        eventually(lambda: (n2.job("jb") or {}).get("paused") is False, "n2 sees jb resumed")

        eventually(lambda: len(sink_runs(place.sink)) >= 15, "runs accumulate")
        n1.ask("remove", name="ja")
        eventually(lambda: "ja" not in n2.names() | n3.names(), "ja is removed everywhere")
    finally:
        for node in (n1, n2, n3):
            node.quit()

    runs = sink_runs(place.sink)
    per_key = Counter(key for key, *_ in runs)
    assert per_key, "nothing ran"
    assert max(per_key.values()) == 1, f"run twice: {[k for k, n in per_key.items() if n > 1]}"
    assert {node for _, job, _, node in runs if job == "jc"} == {"n3"}
    assert "n3" not in {node for _, job, _, node in runs if job == "jb"}
    assert {job for _, job, _, _ in runs} == {"ja", "jb", "jc"}
    history = place.store().history(job_name="jb", limit=1000)
    assert {r.outcome for r in history} <= {Outcome.SUCCESS, Outcome.SKIPPED_MISSED}


# ---------------------------------------------------------------- kill -9 and restart


def fire_times(record: RunRecord) -> list[datetime]:
    return [record.scheduled_at + i * SECOND for i in range(record.count)]


def accounted(records: list[RunRecord]) -> Counter[datetime]:
    """How many records stand for each fire time (an aggregated skip for several)."""
    return Counter(moment for record in records for moment in fire_times(record))


def test_processes_killed_with_sigkill_come_back_with_progress_and_exact_catch_up(
    place: Place,
) -> None:
    nodes = start_nodes(place, ["a", "a", "a"])
    for policy in ("latest", "skip", "all"):
        nodes[0].ask("add", task="a", name=policy, every="1s", options={"catch_up": policy})
    store = place.store()
    eventually(lambda: all(job.runs >= 2 for job in store.jobs()), "every job ran twice")
    for node in nodes:
        node.kill()
    killed_at = datetime.now(UTC)
    before = {job.name: job for job in store.jobs()}
    time.sleep(3.5)  # the downtime itself: three or four fire times pass with nobody up
    restarted = start_nodes(place, ["a", "a", "a"])
    try:
        for node in restarted:
            assert node.names() == {"latest", "skip", "all"}
        eventually(
            lambda: all(job.runs >= before[job.name].runs + 2 for job in store.jobs()),
            "every job runs again after the restart",
            timeout=20,
        )
    finally:
        for node in restarted:
            node.quit()

    runs = Counter(key for key, *_ in sink_runs(place.sink))
    assert max(runs.values()) == 1, "an occurrence ran twice"
    for name in ("latest", "skip", "all"):
        after = store.get_job(name=name)
        assert after is not None
        assert after.runs >= before[name].runs, "progress was lost"
        records = store.history(job_name=name, limit=1000)
        counts = accounted(records)
        assert max(counts.values()) == 1, f"{name}: a fire time was recorded twice"
        first, last = min(counts), max(counts)
        expected = {first + i * SECOND for i in range(int((last - first) / SECOND) + 1)}
        assert set(counts) == expected, f"{name}: fire times missing from the history"
        gap = [
            r
            for r in records
            if r.outcome is Outcome.SKIPPED_MISSED and r.scheduled_at > killed_at - 2 * SECOND
        ]
        ran = {r.scheduled_at for r in records if r.outcome is not Outcome.SKIPPED_MISSED}
        if name == "all":
            assert gap == [], "catch_up='all' skipped occurrences"
        else:
            [skip] = gap
            assert skip.count >= 2
            following = skip.scheduled_at + skip.count * SECOND
            if name == "latest":
                assert following in ran, "catch_up='latest' did not run the latest missed"
            else:
                assert not any(skip.scheduled_at <= t < following for t in ran)
