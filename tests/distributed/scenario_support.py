"""A cluster of scheduler processes and the checker that reads their history.

Each node (``scenario_node.py``) writes one row per start, effect and end to a history
table on the shared PostgreSQL server; the checker turns those rows into counts and the
invariants the scenarios assert.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from distributed_support import POSTGRES_URL
from psycopg import sql

NODE = Path(__file__).with_name("scenario_node.py")

_HISTORY = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.history (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    event text NOT NULL,
    job text,
    occurrence_key text,
    scheduled_at timestamptz,
    token bigint,
    attempt integer,
    once_ok boolean,
    fenced_ok boolean,
    cancelled boolean,
    detail text,
    ts timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE {schema}.effects_once (occurrence_key text PRIMARY KEY, node text, token bigint);
CREATE TABLE {schema}.effects_fenced (
    resource text PRIMARY KEY, node text, occurrence_key text, fencing_token bigint
);
CREATE TABLE {schema}.pauses (job text PRIMARY KEY, armed_at timestamptz NOT NULL, node text);
"""


def create_history(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL(_HISTORY).format(schema=sql.Identifier(schema)))


def drop_history(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@dataclass
class Row:
    node: str
    event: str
    job: str | None
    occurrence_key: str | None
    scheduled_at: datetime | None
    token: int | None
    attempt: int | None
    once_ok: bool | None
    fenced_ok: bool | None
    cancelled: bool | None
    ts: datetime


def read_history(schema: str) -> list[Row]:
    query = sql.SQL(
        "SELECT node, event, job, occurrence_key, scheduled_at, token, attempt, once_ok, "
        "fenced_ok, cancelled, ts FROM {} ORDER BY id"
    ).format(sql.Identifier(schema, "history"))
    with psycopg.connect(POSTGRES_URL) as conn:
        return [Row(*values) for values in conn.execute(query).fetchall()]


@dataclass
class Report:
    """The checker's counts for one scenario."""

    rows: list[Row]
    occurrences: int = 0
    starts: int = 0
    twice_started: list[str] = field(default_factory=list)
    effects_accepted: int = 0
    effects_rejected: int = 0
    twice_accepted: list[str] = field(default_factory=list)
    fenced_rejected: int = 0
    abandoned: int = 0
    lock_errors: int = 0
    starts_by_node: Counter[str] = field(default_factory=Counter)
    token_regressions: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        parts = [
            f"occurrences={self.occurrences}",
            f"starts={self.starts}",
            f"started_twice={len(self.twice_started)}",
            f"effects={self.effects_accepted}",
            f"effects_rejected={self.effects_rejected}",
            f"fenced_rejected={self.fenced_rejected}",
            f"abandoned={self.abandoned}",
            f"lock_errors={self.lock_errors}",
            f"by_node={dict(sorted(self.starts_by_node.items()))}",
        ]
        parts += [f"{name}={value}" for name, value in self.extra.items()]
        return " ".join(parts)

    def starts_of(self, key: str) -> list[Row]:
        return [r for r in self.rows if r.event == "start" and r.occurrence_key == key]

    def events(self, event: str, job: str | None = None) -> list[Row]:
        return [r for r in self.rows if r.event == event and (job is None or r.job == job)]


def check(schema: str, *, strict_tokens: bool = True) -> Report:
    rows = read_history(schema)
    report = Report(rows)
    starts: dict[str, list[Row]] = defaultdict(list)
    accepted: Counter[str] = Counter()
    for row in rows:
        key = row.occurrence_key or ""
        if row.event == "start":
            starts[key].append(row)
            report.starts_by_node[row.node] += 1
        elif row.event == "effect":
            if row.once_ok:
                accepted[key] += 1
            else:
                report.effects_rejected += 1
            report.fenced_rejected += not row.fenced_ok
        elif row.event == "abandoned":
            report.abandoned += 1
        elif row.event == "skipped_lock_error":
            report.lock_errors += 1
    report.occurrences = len(starts)
    report.starts = sum(len(s) for s in starts.values())
    report.twice_started = sorted(k for k, s in starts.items() if len(s) > 1)
    report.effects_accepted = sum(accepted.values())
    report.twice_accepted = sorted(k for k, n in accepted.items() if n > 1)
    report.token_regressions = _token_regressions(starts, strict=strict_tokens)
    return report


def _token_regressions(starts: dict[str, list[Row]], *, strict: bool) -> list[str]:
    """Claims whose token is not above the one before: the re-runs of one occurrence, and
    the successive claims of one job by one node (whose order is certain, unlike claims
    by different nodes at the same instant). With ``strict`` every token is also unique."""
    series: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for key, runs in starts.items():
        series[("occurrence", key)] = runs
        for run in runs:
            series[(run.node, run.job or "")].append(run)
    bad = []
    for runs in series.values():
        ordered = sorted(runs, key=lambda r: r.ts)
        for before, after in itertools.pairwise(ordered):
            low, high = before.token or 0, after.token or 0
            if high < low or (strict and high == low):
                bad.append(f"{after.occurrence_key}: {high} after {low}")
    tokens = [run.token for runs in starts.values() for run in runs]
    if strict and len(set(tokens)) != len(tokens):
        bad.append("a token was handed out twice")
    return bad


@dataclass
class Cluster:
    """Scheduler processes sharing one store, started and stopped by a scenario."""

    store: str
    store_url: str
    namespace: str
    history: str
    common: list[str]
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)
    ready_at: datetime | None = None
    """When ``wait_started`` last saw every node running: each node fires every tick from
    then on, so only an occurrence scheduled after it is watched by every node."""

    def start(self, node: str, *extra: str, store_url: str | None = None) -> None:
        command = [
            sys.executable, str(NODE), "--node", node, "--store", self.store,
            "--store-url", store_url or self.store_url, "--namespace", self.namespace,
            "--history-url", POSTGRES_URL, "--history-schema", self.history,
            *self.common, *extra,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(NODE.parent)}
        self.processes[node] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    def wait_started(self, timeout: float = 30) -> None:
        for node, process in self.processes.items():
            if node in self.started:
                continue
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.strip() != "started":
                _, err = process.communicate(timeout=timeout)
                raise AssertionError(f"node {node} did not start: {line!r}\n{err}")
            self.started.add(node)
        self.ready_at = datetime.now(UTC)

    def arm_pause(self, job: str) -> None:
        """Let the first run of ``job`` scheduled from now on stop its own process (a node
        started with ``--pause-victim``). Call it once every node is running, so that the
        other nodes watch the paused occurrence."""
        query = sql.SQL("INSERT INTO {} (job, armed_at) VALUES (%s, %s)").format(
            sql.Identifier(self.history, "pauses")
        )
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(query, [job, datetime.now(UTC)])

    def signal(self, node: str, signum: signal.Signals) -> float:
        """Send ``signum``; the wall-clock instant it was sent."""
        self.processes[node].send_signal(signum)
        if signum == signal.SIGKILL:
            self.killed.add(node)
        return time.time()

    def stopped(self, node: str) -> bool:
        """Whether the node's process is stopped by a signal (state T in /proc)."""
        stat = Path(f"/proc/{self.processes[node].pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] == "T"

    def finish(self, timeout: float = 60) -> dict[str, dict[str, int]]:
        """Wait for every node still alive to shut down cleanly; their outcome counts."""
        counts = {}
        for node, process in self.processes.items():
            out, err = process.communicate(timeout=timeout)
            if node in self.killed:
                continue
            assert process.returncode == 0, f"node {node} exited {process.returncode}:\n{err}"
            counts[node] = json.loads(out.strip().splitlines()[-1])
        return counts

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=30)


ClusterFactory = Callable[..., Cluster]


def wait_for(predicate: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll ``predicate()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        answer = predicate()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
