"""One scheduler node of a multi-process scenario, run as a subprocess by the tests.

Every run writes rows to a history table in PostgreSQL (``start``, ``effect``, ``end``);
its side effect goes through both sinks gnomon documents: ``insert_once`` keyed by the
occurrence, and ``fenced_write`` keyed by the job (or by the occurrence, with
``--fence-by occurrence``) with the run's fencing token. The
node's monitor records abandoned occurrences and lock errors, and the node prints its
outcome counts as JSON when it shuts down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

import gnomon
from gnomon.postgres import fenced_write, insert_once
from gnomon.testing import OffsetClock

RECORDED_SKIPS = {gnomon.Outcome.ABANDONED, gnomon.Outcome.SKIPPED_LOCK_ERROR}


class History:
    def __init__(self, url: str, schema: str, node: str, *, fence_by: str = "job") -> None:
        self.pool = ConnectionPool(url, min_size=2, max_size=12, kwargs={"autocommit": True})
        self.schema = schema
        self.node = node
        self.fence_by = fence_by

    def record(self, event: str, **row: Any) -> None:
        columns = {"node": self.node, "event": event, **row}
        query = psycopg.sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            psycopg.sql.Identifier(self.schema, "history"),
            psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, columns)),
            psycopg.sql.SQL(", ").join(psycopg.sql.Placeholder() * len(columns)),
        )
        with self.pool.connection() as conn:
            conn.execute(query, list(columns.values()))

    def effect(self, ctx: gnomon.JobContext) -> tuple[bool, bool]:
        token = ctx.fencing_token or 0
        with self.pool.connection() as conn:
            once = insert_once(
                conn,
                f"{self.schema}.effects_once",
                occurrence_key=ctx.occurrence_key,
                values={"node": self.node, "token": token},
            )
            resource = ctx.occurrence_key if self.fence_by == "occurrence" else ctx.job_name
            fenced = fenced_write(
                conn,
                f"{self.schema}.effects_fenced",
                key={"resource": resource},
                values={"node": self.node, "occurrence_key": ctx.occurrence_key},
                token=token,
            )
        return once, fenced

    def take_pause(self, job: str, scheduled_at: datetime) -> bool:
        """True for the first node of the cluster to ask about ``job`` for an occurrence
        scheduled once the test armed the pause (``Cluster.arm_pause``): every node was
        running by then, so the others watch that occurrence and can take it over."""
        query = psycopg.sql.SQL(
            "UPDATE {} SET node = %s WHERE job = %s AND node IS NULL AND armed_at <= %s"
        ).format(psycopg.sql.Identifier(self.schema, "pauses"))
        with self.pool.connection() as conn:
            return conn.execute(query, [self.node, job, scheduled_at]).rowcount == 1


class Recorder(gnomon.Monitor):
    def __init__(self, history: History) -> None:
        self.history = history
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _count(self, event: gnomon.RunEvent) -> None:
        with self.lock:
            self.counts[event.outcome.value if event.outcome else "none"] += 1

    def run_finished(self, event: gnomon.RunEvent) -> None:
        self._count(event)

    def run_skipped(self, event: gnomon.RunEvent) -> None:
        self._count(event)
        if event.outcome in RECORDED_SKIPS:
            self.history.record(
                event.outcome.value,
                job=event.job_name,
                occurrence_key=event.occurrence_key,
                scheduled_at=event.scheduled_at,
                attempt=event.attempt,
                detail=repr(event.exception),
            )


def make_task(history: History, seconds: float, *, pause: bool = False) -> Any:
    """A run that records its start, works ``seconds``, writes its effect through both
    sinks and records its end. With ``pause``, the cluster's first run of the job once the
    test armed the pause stops its own process right after recording its start, before
    any lease renewal, and goes on when the test sends SIGCONT."""

    def task(ctx: gnomon.JobContext) -> None:
        base = {
            "job": ctx.job_name,
            "occurrence_key": ctx.occurrence_key,
            "scheduled_at": ctx.scheduled_at,
            "token": ctx.fencing_token,
            "attempt": ctx.attempt,
        }
        history.record("start", **base)
        if pause and ctx.attempt == 1 and history.take_pause(ctx.job_name, ctx.scheduled_at):
            history.record("pause", **base)
            os.kill(os.getpid(), signal.SIGSTOP)
        deadline = time.monotonic() + seconds
        noticed = False
        while (left := deadline - time.monotonic()) > 0:
            if ctx.cancelled.is_set() and not noticed:
                noticed = True
                history.record("cancel_seen", **base)
            time.sleep(min(left, 0.02))
        # The effect is written even when the run was told to stop: the sinks must reject
        # a zombie's write on their own.
        once, fenced = history.effect(ctx)
        cancelled = ctx.cancelled.is_set()
        history.record("effect", once_ok=once, fenced_ok=fenced, cancelled=cancelled, **base)
        history.record("end", cancelled=cancelled, **base)

    return task


def build_backends(args: argparse.Namespace) -> dict[str, Any]:
    ttl = timedelta(seconds=args.ttl)
    if args.store == "redis":
        from gnomon.redis import RedisElector, RedisLocker

        locker_cls: Any = RedisLocker
        elector_cls: Any = RedisElector
        where = {"prefix": args.namespace}
    else:
        from gnomon.postgres import PostgresElector, PostgresLocker

        locker_cls, elector_cls = PostgresLocker, PostgresElector
        where = {"schema": args.namespace}
    if args.elector:
        retry = timedelta(seconds=args.retry)
        return {
            "elector": elector_cls(args.store_url, lease_ttl=ttl, retry_interval=retry, **where)
        }
    return {"locker": locker_cls(args.store_url, lease_ttl=ttl, **where)}


def add_jobs(scheduler: gnomon.Scheduler, history: History, args: argparse.Namespace) -> None:
    recovery = gnomon.Recovery(args.recovery)
    fast = make_task(history, args.job_seconds)
    for n in range(args.jobs):
        scheduler.add_job(fast, gnomon.every(args.interval), name=f"job{n}", recovery=recovery)
    if args.victim_every:
        for mode in gnomon.Recovery:
            pause = args.pause_victim and mode is gnomon.Recovery.AT_LEAST_ONCE
            victim = make_task(history, args.victim_seconds, pause=pause)
            scheduler.add_job(
                victim, gnomon.every(args.victim_every), name=f"victim_{mode.value}", recovery=mode
            )
    if args.due:
        # Already due when the nodes start: each must run once across the cluster.
        scheduler.add_job(fast, gnomon.once(), name="due_once")
        scheduler.add_job(fast, gnomon.every("1h"), name="due_immediately", start_immediately=True)
    if args.long_at:
        at = datetime.fromtimestamp(args.long_at, UTC)
        scheduler.add_job(make_task(history, args.long_seconds), gnomon.once(at), name="long")


def main(argv: list[str]) -> None:
    args = parse(argv)
    history = History(args.history_url, args.history_schema, args.node, fence_by=args.fence_by)
    recorder = Recorder(history)
    clock = OffsetClock(timedelta(seconds=args.offset)) if args.offset else None
    scheduler = gnomon.Scheduler(
        monitor=recorder, clock=clock, max_workers=32, stop_timeout=15, **build_backends(args)
    )
    add_jobs(scheduler, history, args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start()
    print("started", flush=True)
    stop.wait(args.duration)
    scheduler.shutdown()
    history.pool.close()
    print(json.dumps(dict(recorder.counts)), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", required=True)
    parser.add_argument("--store", choices=["redis", "postgres"], required=True)
    parser.add_argument("--store-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--history-url", required=True)
    parser.add_argument("--history-schema", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--retry", type=float, default=0.5)
    parser.add_argument("--elector", action="store_true")
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--job-seconds", type=float, default=0.01)
    parser.add_argument("--recovery", default="at_most_once")
    parser.add_argument("--victim-every", type=float, default=0.0)
    parser.add_argument("--victim-seconds", type=float, default=2.5)
    parser.add_argument("--pause-victim", action="store_true")
    parser.add_argument("--fence-by", choices=["job", "occurrence"], default="job")
    parser.add_argument("--due", action="store_true")
    parser.add_argument("--long-at", type=float, default=0.0)
    parser.add_argument("--long-seconds", type=float, default=0.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
