"""gnomon's store-backed ``Scheduler`` on ``SQLiteStore`` or ``PostgresStore`` (S1-S4).

A store is named by a spec: ``{"backend": "sqlite", "path": ...}`` or
``{"backend": "postgres", "url": ..., "schema": ...}``.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

from _store_common import (
    SENTINEL_ARG,
    SPREAD_SECONDS,
    FirstFire,
    idle_cpu,
    observe,
    propagate,
    time_adds,
    time_start,
    trace_start,
)

import gnomon
from gnomon import JobNotFound
from gnomon.sqlite import SQLiteStore

TASK = "t"
DUE_TASK = "due"
HOURLY = gnomon.every("1h")
FIRED = FirstFire()


def noop(*args: object) -> None:
    pass


def versions() -> dict[str, str]:
    return {"gnomon": version("gnomon")}


def open_store(spec: dict[str, Any]) -> gnomon.Store:
    if spec["backend"] == "sqlite":
        return SQLiteStore(spec["path"])
    from gnomon.postgres import PostgresStore

    return PostgresStore(spec["url"], schema=spec["schema"])


def scheduler(spec: dict[str, Any]) -> gnomon.Scheduler:
    """A store-backed scheduler with the benchmark's tasks registered (not started)."""
    s = gnomon.Scheduler(store=open_store(spec))
    s.register(noop, name=TASK)
    s.register(FIRED, name=DUE_TASK)
    return s


def started(spec: dict[str, Any]) -> gnomon.Scheduler:
    s = scheduler(spec)
    s.start()
    return s


def _stop(s: object) -> None:
    assert isinstance(s, gnomon.Scheduler)
    s.shutdown()
    store = s.store
    if store is not None:
        store.close()


def _start_at(base: datetime, i: int) -> datetime:
    return base + timedelta(seconds=i % SPREAD_SECONDS)


# ---------------------------------------------------------------- preparing a store


def prepare(spec: dict[str, Any], jobs: int) -> dict[str, float]:
    """Store ``jobs`` hourly jobs, none due for an hour: one through ``add_job`` on a
    started scheduler, the others cloned from its row in bulk (``add_job`` one by one
    would take minutes at 100,000), each with its own id, name, argument and start time
    (and stored next fire time, if the row has one)."""
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    s = started(spec)
    try:
        template = s.add_job(TASK, HOURLY, args=[SENTINEL_ARG], start_at=base)
    finally:
        _stop(s)
    if jobs > 1:
        clone = _clone_sqlite if spec["backend"] == "sqlite" else _clone_postgres
        clone(spec, template.id, jobs - 1, base)
    return {"jobs": float(jobs)}


def _clone_rows(
    template: dict[str, Any], count: int, base: datetime, first_seq: int
) -> list[dict[str, Any]]:
    definition: str = template["definition"]
    args = f'"args":[{SENTINEL_ARG}]'
    start = base.isoformat()
    if definition.count(args) != 1 or definition.count(start) != 1:
        raise RuntimeError(f"cannot clone the stored definition {definition!r}")
    rows = []
    for i in range(1, count + 1):
        job_id = uuid.uuid4()
        moment = _start_at(base, i)
        text = definition.replace(args, f'"args":[{i}]').replace(start, moment.isoformat())
        rows.append(
            {**template, "id": job_id, "name": f"{TASK}:{job_id}", "definition": text,
             "seq": first_seq + i, "next_fire": _shifted(template["next_fire"], moment - base)}
        )  # fmt: skip
    return rows


def _shifted(stored: object, by: timedelta) -> object:
    """A stored next fire time moved by ``by``, in the form the store keeps it in."""
    if stored is None:
        return None
    if isinstance(stored, str):  # SQLite: ISO text, to the microsecond
        return (datetime.fromisoformat(stored) + by).isoformat(timespec="microseconds")
    assert isinstance(stored, datetime)
    return stored + by


def _clone_sqlite(spec: dict[str, Any], template_id: uuid.UUID, count: int, base: datetime) -> None:
    connection = sqlite3.connect(spec["path"], isolation_level=None)
    try:
        cursor = connection.execute("SELECT * FROM gnomon_jobs WHERE id = ?", (template_id.bytes,))
        columns = [d[0] for d in cursor.description]
        template = dict(zip(columns, cursor.fetchone(), strict=True))
        rows = _clone_rows(template, count, base, template["seq"])
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            f"INSERT INTO gnomon_jobs ({', '.join(columns)}) "  # noqa: S608 - our own columns
            f"VALUES ({', '.join('?' * len(columns))})",
            ([r["id"].bytes if c == "id" else r[c] for c in columns] for r in rows),
        )
        connection.execute(
            "UPDATE gnomon_meta SET value = ? WHERE name = 'seq'", (template["seq"] + count,)
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


def _clone_postgres(
    spec: dict[str, Any], template_id: uuid.UUID, count: int, base: datetime
) -> None:
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row

    jobs = sql.Identifier(spec["schema"], "store_jobs")
    with psycopg.connect(spec["url"], row_factory=dict_row) as connection:
        cursor = connection.execute(
            sql.SQL("SELECT * FROM {} WHERE id = %s").format(jobs), (template_id,)
        )
        template = cursor.fetchone()
        assert template is not None
        columns = list(template)
        rows = _clone_rows(template, count, base, template["seq"])
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            jobs, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with connection.cursor().copy(statement) as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        connection.execute(
            "SELECT setval(%s::regclass, %s)",
            (f'"{spec["schema"]}".store_seq', template["seq"] + count),
        )
        connection.commit()
        # What autovacuum does to a table that grew: without statistics, the planner
        # picks plans that make each add_job 8x slower at 100,000 rows.
        connection.execute(sql.SQL("ANALYZE {}").format(jobs))


# ---------------------------------------------------------------- S1-S4


def add_cost(spec: dict[str, Any], jobs: int, adds: int, warmup: int) -> dict[str, float]:
    """S1: µs per durable ``add_job`` on a started scheduler over ``jobs`` stored jobs."""
    s = started(spec)
    try:
        loaded = len(s.jobs())
        base = datetime.now(UTC) + timedelta(hours=1)
        result = time_adds(
            lambda i: s.add_job(TASK, HOURLY, args=[i], start_at=_start_at(base, i)),
            adds,
            warmup,
        )
    finally:
        _stop(s)
    return {**result, "loaded_jobs": float(loaded)}


def _store_due(spec: dict[str, Any], at: float) -> None:
    helper = gnomon.Scheduler(store=open_store(spec))
    helper.register(FIRED, name=DUE_TASK)
    try:
        # every second from ``at``: a one-shot job whose time passes while the scheduler
        # loads would be dropped at start (its first fire time is computed from ``now``)
        start_at = datetime.fromtimestamp(at, UTC)
        helper.add_job(DUE_TASK, gnomon.every("1s"), start_at=start_at)
    finally:
        _stop(helper)


def start(spec: dict[str, Any], jobs: int, lead: float) -> dict[str, float]:
    """S2: construct and start over ``jobs`` stored jobs, until a job due ``lead``
    seconds after construction runs."""
    return time_start(
        lambda at: _store_due(spec, at),
        lambda: started(spec),
        FIRED,
        lambda s: len(s.jobs()),  # type: ignore[attr-defined]
        _stop,
        jobs=jobs,
        lead=lead,
        timeout=120,
    )


def start_memory(spec: dict[str, Any], jobs: int) -> dict[str, float]:
    """S2 memory: bytes a started scheduler keeps per stored job (``tracemalloc``)."""
    open_store(spec)  # import the backend's modules before tracing
    return trace_start(lambda: started(spec), _stop, jobs)


def _perform(s: gnomon.Scheduler, change: dict[str, Any]) -> None:
    job_id = uuid.UUID(change["job"])
    op = change["op"]
    if op == "add":
        start_at = datetime.now(UTC) + timedelta(hours=1)
        s.add_job(TASK, HOURLY, id=job_id, args=[change["arg"]], start_at=start_at)
    elif op == "rule":
        s.update_job(job_id, rule=gnomon.every(timedelta(seconds=change["seconds"])))
    elif op == "pause":
        s.get_job(job_id).pause()
    else:
        s.get_job(job_id).resume()


def _seen(s: gnomon.Scheduler, change: dict[str, Any]) -> bool:
    try:
        job = s.get_job(uuid.UUID(change["job"]))
    except JobNotFound:
        return False
    op = change["op"]
    if op == "add":
        return True
    if op == "rule":
        return job.rule == gnomon.every(timedelta(seconds=change["seconds"]))
    return job.paused is (op == "pause")


def propagation(
    spec: dict[str, Any], changes: int, max_pause: float, observer: list[str]
) -> dict[str, float]:
    """S3: this process changes jobs, the ``observer`` process sees them."""
    s = started(spec)
    try:
        return propagate(
            lambda change: _perform(s, change),
            observer,
            changes=changes,
            max_pause=max_pause,
            timeout=10,
        )
    finally:
        _stop(s)


def observer(spec: dict[str, Any]) -> dict[str, float]:
    """S3's other process: a started scheduler, polling its own view of the jobs."""
    s = started(spec)
    try:
        observe(lambda change: _seen(s, change), timeout=10)
    finally:
        _stop(s)
    return {}


def idle(spec: dict[str, Any], seconds: float, settle: float) -> dict[str, float]:
    """S4: CPU used by a started scheduler over its stored jobs, none due."""
    s = started(spec)
    try:
        return {**idle_cpu(seconds, settle), "loaded_jobs": float(len(s.jobs()))}
    finally:
        _stop(s)


if __name__ == "__main__":  # pragma: no cover - run through store_worker.py
    sys.exit("run through bench/store_worker.py")
