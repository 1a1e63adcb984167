"""One scheduler process on a shared store, driven by the multi-process tests.

It registers the tasks it is told to (so that a task can be unknown to one process),
starts a ``Scheduler`` on the store, and answers commands read from stdin, one JSON
object per line: ``add``, ``update``, ``pause``, ``resume``, ``remove``, ``jobs``,
``quit``. Every command is answered with one JSON line on stdout.

Each run of a task writes two rows to a sink (a SQLite file beside the store): one into
``runs`` for every execution, one into ``effects`` keyed by occurrence (insert-once).
Exactly once means every occurrence key appears in ``runs`` once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any

import gnomon
from gnomon._stores.contract import Store


class Sink:
    def __init__(self, path: str, node: str) -> None:
        self.path = path
        self.node = node

    def write(self, task: str, ctx: gnomon.JobContext) -> None:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as conn, conn:
            conn.execute(
                "INSERT INTO runs (occurrence_key, job, task, node, token) VALUES (?, ?, ?, ?, ?)",
                (ctx.occurrence_key, ctx.job_name, task, self.node, ctx.fencing_token),
            )
            conn.execute(
                "INSERT OR IGNORE INTO effects (occurrence_key, node) VALUES (?, ?)",
                (ctx.occurrence_key, self.node),
            )


def open_store(spec: str, schema: str | None) -> Store:
    if spec.startswith("sqlite:"):
        from gnomon.sqlite import SQLiteStore

        return SQLiteStore(spec.removeprefix("sqlite:"), lease_ttl="3s", poll_interval="100ms")
    from gnomon.postgres import PostgresStore

    return PostgresStore(spec, schema=schema or "gnomon", lease_ttl="3s", poll_interval="200ms")


def make_task(sink: Sink, name: str) -> Any:
    def task(ctx: gnomon.JobContext) -> None:
        sink.write(name, ctx)

    return task


def rule_of(command: dict[str, Any]) -> gnomon.Rule:
    return gnomon.every(command["every"])


def answer(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def describe(job: gnomon.Job) -> dict[str, object]:
    return {
        "name": job.name,
        "paused": job.paused,
        "rule": repr(job.rule),
        "version": job.version,
        "next_run": None if job.next_run is None else job.next_run.isoformat(),
    }


def serve(s: gnomon.Scheduler) -> None:
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            answer({"ok": True})
            return
        answer(act(s, op, command))


def act(s: gnomon.Scheduler, op: str, command: dict[str, Any]) -> object:
    if op == "jobs":
        return [describe(job) for job in s.jobs()]
    if op == "add":
        options = dict(command.get("options", {}))
        job = s.add_job(command["task"], rule_of(command), name=command["name"], **options)
        return None if job is None else describe(job)
    job = next(j for j in s.jobs() if j.name == command["name"])
    if op == "update":
        return describe(s.update_job(job.id, rule=rule_of(command)))
    if op == "pause":
        job.pause(command.get("reason"))
    elif op == "resume":
        job.resume()
    elif op == "remove":
        job.remove()
    return {"ok": True}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--sink", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--tasks", default="a,b")
    args = parser.parse_args()
    sink = Sink(args.sink, args.node)
    store = open_store(args.store, args.schema)
    s = gnomon.Scheduler(store=store, node=args.node, timezone="UTC", catch_up_grace="300ms")
    for name in args.tasks.split(","):
        s.register(make_task(sink, name), name=name)
    s.start()
    answer({"ready": args.node, "at": datetime.now(UTC).isoformat()})
    try:
        serve(s)
    finally:
        s.shutdown()
        store.close()


if __name__ == "__main__":
    main()
