"""APScheduler 3: ``BackgroundScheduler`` with ``SQLAlchemyJobStore`` (S1-S4).

The store spec is the one gnomon's side takes; SQLite becomes ``sqlite:///<path>``,
PostgreSQL ``postgresql+psycopg://...`` with ``tableschema`` set to the spec's schema.
Everything else is APScheduler's default (thread pool, misfire handling, pickling).
"""

from __future__ import annotations

import pickle
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
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp

FIRED = FirstFire()


def noop(*args: object) -> None:
    pass


def due(*args: object) -> None:
    FIRED()


def versions() -> dict[str, str]:
    return {"apscheduler": version("apscheduler"), "sqlalchemy": version("sqlalchemy")}


def _url(spec: dict[str, Any]) -> str:
    if spec["backend"] == "sqlite":
        return f"sqlite:///{spec['path']}"
    url: str = spec["url"]
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def jobstore(spec: dict[str, Any]) -> SQLAlchemyJobStore:
    return SQLAlchemyJobStore(url=_url(spec), tableschema=spec.get("schema"))


def scheduler(spec: dict[str, Any]) -> BackgroundScheduler:
    return BackgroundScheduler(jobstores={"default": jobstore(spec)}, timezone=UTC)


def started(spec: dict[str, Any], *, paused: bool = False) -> BackgroundScheduler:
    s = scheduler(spec)
    s.start(paused=paused)
    return s


def _stop(s: object) -> None:
    assert isinstance(s, BackgroundScheduler)
    s.shutdown()


def _hourly(start: datetime) -> IntervalTrigger:
    return IntervalTrigger(hours=1, start_date=start, timezone=UTC)


def _start_at(base: datetime, i: int) -> datetime:
    return base + timedelta(seconds=i % SPREAD_SECONDS)


# ---------------------------------------------------------------- preparing a store


def prepare(spec: dict[str, Any], jobs: int) -> dict[str, float]:
    """Store ``jobs`` hourly jobs: one through ``add_job``, the others cloned from its
    pickled state and inserted in one transaction (the rows ``add_job`` would write)."""
    if spec["backend"] == "postgres":
        _create_schema(spec)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    store = jobstore(spec)
    s = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    s.start(paused=True)
    try:
        template = s.add_job(noop, _hourly(base), args=[SENTINEL_ARG], id="template")
        state = template.__getstate__()
        triggers = [_hourly(_start_at(base, i)) for i in range(min(jobs, SPREAD_SECONDS))]
        rows = []
        for i in range(1, jobs):
            trigger = triggers[i % len(triggers)]
            job_id = uuid.uuid4().hex
            cloned = {
                **state,
                "id": job_id,
                "args": (i,),
                "trigger": trigger,
                "next_run_time": trigger.start_date,
            }
            rows.append(
                {
                    "id": job_id,
                    "next_run_time": datetime_to_utc_timestamp(trigger.start_date),
                    "job_state": pickle.dumps(cloned, store.pickle_protocol),
                }
            )
        if rows:
            with store.engine.begin() as connection:
                connection.execute(store.jobs_t.insert(), rows)
            if spec["backend"] == "postgres":
                _analyze(spec)  # what autovacuum does to a table that grew
    finally:
        s.shutdown()
    return {"jobs": float(jobs)}


def _analyze(spec: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(spec["url"], autocommit=True) as connection:
        connection.execute(
            sql.SQL("ANALYZE {}").format(sql.Identifier(spec["schema"], "apscheduler_jobs"))
        )


def _create_schema(spec: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(spec["url"], autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(spec["schema"]))
        )


# ---------------------------------------------------------------- S1-S4


def add_cost(spec: dict[str, Any], jobs: int, adds: int, warmup: int) -> dict[str, float]:
    """S1: µs per ``add_job`` on a started scheduler over ``jobs`` stored jobs."""
    s = started(spec)
    triggers = [_hourly(_start_at(datetime.now(UTC) + timedelta(hours=1), i)) for i in range(64)]
    try:
        loaded = s._lookup_jobstore("default")
        count = _count(loaded)
        result = time_adds(
            lambda i: s.add_job(noop, triggers[i % len(triggers)], args=[i]), adds, warmup
        )
    finally:
        _stop(s)
    return {**result, "stored_jobs": float(count)}


def _count(store: SQLAlchemyJobStore) -> int:
    from sqlalchemy import func, select

    with store.engine.begin() as connection:
        return int(connection.execute(select(func.count()).select_from(store.jobs_t)).scalar_one())


def _store_due(spec: dict[str, Any], at: float) -> None:
    helper = started(spec, paused=True)
    try:
        start_date = datetime.fromtimestamp(at, UTC)
        trigger = IntervalTrigger(seconds=1, start_date=start_date, timezone=UTC)
        helper.add_job(due, trigger, id="due")
    finally:
        helper.shutdown()


def start(spec: dict[str, Any], jobs: int, lead: float) -> dict[str, float]:
    """S2: construct and start over ``jobs`` stored jobs, until a job due ``lead``
    seconds after construction runs. APScheduler 3 reads its store lazily (the next
    run time, then only the due jobs), so ``get_jobs()`` — which unpickles every stored
    job — is timed after, as what materialising them all would cost."""
    materialise: dict[str, float] = {}

    def loaded(s: object) -> int:
        assert isinstance(s, BackgroundScheduler)
        import time

        began = time.perf_counter()
        count = len(s.get_jobs())
        materialise["get_jobs_s"] = time.perf_counter() - began
        return count

    result = time_start(
        lambda at: _store_due(spec, at),
        lambda: started(spec),
        FIRED,
        loaded,
        _stop,
        jobs=jobs,
        lead=lead,
        timeout=120,
    )
    return {**result, **materialise}


def start_memory(spec: dict[str, Any], jobs: int) -> dict[str, float]:
    """S2 memory: bytes a started scheduler keeps per stored job (``tracemalloc``)."""
    jobstore(spec)  # import SQLAlchemy's dialect and driver before tracing
    return trace_start(lambda: started(spec), _stop, jobs)


def _perform(s: BackgroundScheduler, change: dict[str, Any]) -> None:
    op, job_id = change["op"], change["job"]
    if op == "add":
        trigger = _hourly(datetime.now(UTC) + timedelta(hours=1))
        s.add_job(noop, trigger, id=job_id, args=[change["arg"]])
    elif op == "rule":
        s.reschedule_job(job_id, trigger=IntervalTrigger(seconds=change["seconds"], timezone=UTC))
    elif op == "pause":
        s.pause_job(job_id)
    else:
        s.resume_job(job_id)


def _seen(s: BackgroundScheduler, change: dict[str, Any]) -> bool:
    try:
        job = s.get_job(change["job"])
    except JobLookupError:
        return False
    if job is None:
        return False
    op = change["op"]
    if op == "add":
        return True
    if op == "rule":
        return bool(job.trigger.interval == timedelta(seconds=change["seconds"]))
    return (job.next_run_time is None) is (op == "pause")


def propagation(
    spec: dict[str, Any], changes: int, max_pause: float, observer: list[str]
) -> dict[str, float]:
    """S3: this process changes jobs; the ``observer`` process polls ``get_job``, which
    APScheduler 3 answers from the store on every call."""
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
        return {
            **idle_cpu(seconds, settle),
            "stored_jobs": float(_count(s._lookup_jobstore("default"))),
        }
    finally:
        _stop(s)
