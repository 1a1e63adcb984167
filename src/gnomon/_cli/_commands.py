"""The read-only commands: ``check``, ``next``, ``history`` and ``status``.

``history`` and ``status`` read the store, whether a daemon runs or not: the history is
the store's, the jobs are its stored jobs, and whether a daemon runs is whether any
scheduler on the store has sent a heartbeat lately.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from gnomon import _rules as rules
from gnomon._cli import EXIT_OK
from gnomon._cli._config import JobSpec, configured_store, load_schedule
from gnomon._cli._monitors import outcome_reason
from gnomon._cli._output import render_json, render_table
from gnomon._cli._scheduling import check_with_engine
from gnomon._cli._secrets import mask_secrets
from gnomon._cli._store import StoreLocation, open_store
from gnomon._events import Outcome
from gnomon._job import Job
from gnomon._rules import Rule
from gnomon._stores.codec import UndecodableDefinition, decode_definition
from gnomon._stores.contract import NodeInfo, RunRecord, Store, StoredJob

__all__ = ["check", "history", "next_times", "read_settings", "status"]

PREVIEW_COUNT = 3
ALIVE_WITHIN = timedelta(seconds=15)
"""A scheduler heartbeats every 5 s; three missed beats and it is presumed gone."""
FAILED_OUTCOMES = frozenset(
    {Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CANCELLED, Outcome.ABANDONED}
)
_RAN = frozenset({Outcome.SUCCESS, *FAILED_OUTCOMES, None})
_FAILURES_SHOWN = 10_000


def check(path: Path, out: TextIO) -> int:
    """Validate a schedule file and show what it will do."""
    schedule = load_schedule(path)
    handles = check_with_engine(schedule)
    zone = schedule.scheduler.timezone
    count = len(schedule.jobs)
    summary = f"{path}: {count} job{'s' if count != 1 else ''}, timezone {zone.key}"
    lines = [f"{summary}, store {schedule.scheduler.store.describe()}"]
    lines.extend("\n" + _describe_job(job, handles[job.name]) for job in schedule.jobs)
    out.write(mask_secrets("\n".join(lines)) + "\n")
    return EXIT_OK


def _describe_job(job: JobSpec, handle: Job) -> str:
    times = [moment.isoformat(timespec="seconds") for moment in handle.next_runs(PREVIEW_COUNT)]
    if times and (
        job.start_immediately or (isinstance(job.rule, rules.Once) and not job.rule.instants)
    ):
        times[0] = "at start"
    lines = [
        job.name,
        f"  rule:    {job.rule.describe()}",
        f"  action:  {job.action.describe()}",
    ]
    if job.tags:
        lines.append(f"  tags:    {', '.join(sorted(job.tags))}")
    first, *rest = times or ["never again"]
    lines.append(f"  next:    {first}")
    lines.extend(f"           {moment}" for moment in rest)
    return "\n".join(lines)


def next_times(expression: str, count: int, zone: ZoneInfo, *, seconds: bool, out: TextIO) -> int:
    """Preview a cron expression: its description, then its next ``count`` fire times."""
    rule: Rule = rules.cron(expression, seconds=seconds)
    out.write(rule.describe() + "\n")
    moment = datetime.now(zone)
    for _ in range(count):
        following = rule.next_after(moment)
        if following is None:
            break
        out.write(following.isoformat() + "\n")
        moment = following
    return EXIT_OK


def read_settings(schedule_path: Path, state: Path | None) -> tuple[StoreLocation, ZoneInfo]:
    """The store (``--state`` when given, else the schedule file's) and the zone to show
    times in."""
    location, zone = configured_store(schedule_path)
    return (location if state is None else StoreLocation(path=state)), zone


@contextmanager
def _opened(location: StoreLocation) -> Iterator[Store]:
    store = open_store(location, create=False)
    try:
        yield store
    finally:
        store.close()


# ---------------------------------------------------------------- history


def history(
    location: StoreLocation,
    *,
    zone: ZoneInfo,
    job: str | None,
    limit: int,
    failed: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Show the latest occurrences, newest first."""
    with _opened(location) as store:
        records = store.history(
            job_name=job, outcomes=FAILED_OUTCOMES if failed else None, limit=limit
        )
    if as_json:
        out.write(render_json([_run_json(record, zone) for record in records]) + "\n")
    else:
        out.write(_history_table(records, zone) + "\n")
    return EXIT_OK


def _history_table(records: list[RunRecord], zone: ZoneInfo) -> str:
    headers = ["JOB", "SCHEDULED", "STARTED", "DURATION", "OUTCOME", "ATTEMPTS", "EXIT", "DETAIL"]
    rows = [
        [
            record.job_name,
            _short(record.scheduled_at, zone),
            _short(record.started_at, zone),
            _seconds(_duration(record)),
            _outcome(record.outcome),
            record.attempts,
            record.exit_status,
            _detail(record),
        ]
        for record in records
    ]
    return render_table(headers, rows)


def _iso(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return None if moment is None else moment.astimezone(zone).isoformat()


def _short(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """Tables show whole seconds; JSON keeps the stored precision."""
    if moment is None:
        return None
    return moment.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def _duration(record: RunRecord) -> float | None:
    if record.started_at is None or record.finished_at is None:
        return None
    return (record.finished_at - record.started_at).total_seconds()


def _seconds(duration: float | None) -> str | None:
    return None if duration is None else f"{duration:.3f}s"


def _outcome(outcome: Outcome | None) -> str:
    return "running" if outcome is None else outcome.value


def _reason(record: RunRecord) -> str | None:
    """The record's own detail, else why its outcome happens (skips, abandoned runs)."""
    return record.detail or outcome_reason(record.outcome)


def _detail(record: RunRecord) -> str | None:
    """The reason or the error; an aggregated record's own text already gives its count."""
    text = _reason(record) or record.error
    if text is None and record.count > 1:
        return f"x{record.count}"
    return text


def _run_json(record: RunRecord, zone: ZoneInfo) -> dict[str, object]:
    return {
        "job": record.job_name,
        "occurrence": record.occurrence_key,
        "attempt": record.attempt,
        "attempts": record.attempts,
        "scheduled_at": _iso(record.scheduled_at, zone),
        "started_at": _iso(record.started_at, zone),
        "finished_at": _iso(record.finished_at, zone),
        "duration": _duration(record),
        "outcome": _outcome(record.outcome),
        "exit_status": record.exit_status,
        "detail": _reason(record),
        "error": record.error,
        "output": record.output,
        "count": record.count,
        "node": record.node,
    }


# ---------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class JobSummary:
    """A stored job, with its history summarised."""

    name: str
    rule: str
    task: str
    source: str | None
    paused: bool
    next_run: datetime | None
    last_outcome: str | None
    pause_reason: str | None
    last_run: datetime | None
    failures_24h: int


def status(
    location: StoreLocation, *, zone: ZoneInfo, as_json: bool, out: TextIO = sys.stdout
) -> int:
    """Whether a daemon runs on the store, and each stored job: its last outcome and run,
    its next run, its recent failures."""
    now = datetime.now(UTC)
    with _opened(location) as store:
        nodes = store.nodes(alive_within=ALIVE_WITHIN)
        jobs = [_summary(store, row, now) for row in sorted(store.jobs(), key=_by_name)]
    if not nodes:
        # Without a daemon nothing will run; a stale next time would mislead.
        jobs = [replace(job, next_run=None) for job in jobs]
    if as_json:
        document = {
            "daemon": {"running": bool(nodes), "nodes": [_node_json(n, zone) for n in nodes]},
            "jobs": [_job_json(job, zone) for job in jobs],
        }
        out.write(render_json(document) + "\n")
        return EXIT_OK
    out.write(_daemon_line(nodes, zone) + "\n\n")
    out.write(_jobs_table(jobs, zone) + "\n")
    return EXIT_OK


def _by_name(row: StoredJob) -> str:
    return row.name


def _summary(store: Store, row: StoredJob, now: datetime) -> JobSummary:
    latest = store.history(job_name=row.name, limit=1)
    ran = store.history(job_name=row.name, outcomes=_RAN, limit=1)
    failures = store.history(
        job_name=row.name,
        outcomes=FAILED_OUTCOMES,
        since=now - timedelta(days=1),
        limit=_FAILURES_SHOWN,
    )
    return JobSummary(
        name=row.name,
        rule=_rule(row),
        task=row.task,
        source=row.source,
        paused=row.paused,
        next_run=row.next_fire,
        last_outcome=_outcome(latest[0].outcome) if latest else None,
        pause_reason=row.pause_reason if row.paused else None,
        last_run=ran[0].started_at if ran else None,
        failures_24h=len(failures),
    )


def _rule(row: StoredJob) -> str:
    try:
        return decode_definition(row.definition).rule.describe()
    except UndecodableDefinition as error:
        return f"(cannot be read by this gnomon: {error})"


def _daemon_line(nodes: list[NodeInfo], zone: ZoneInfo) -> str:
    if not nodes:
        seconds = int(ALIVE_WITHIN.total_seconds())
        return f"daemon: not running (no scheduler on this store in the last {seconds}s)"
    shown = ", ".join(f"{node.node} (since {_short(node.started_at, zone)})" for node in nodes)
    return f"daemon: running on {len(nodes)} node{'s' if len(nodes) != 1 else ''}: {shown}"


def _jobs_table(jobs: list[JobSummary], zone: ZoneInfo) -> str:
    headers = ["JOB", "RULE", "LAST OUTCOME", "LAST RUN", "NEXT RUN", "FAILURES (24H)"]
    rows = [
        [
            job.name + _paused(job),
            job.rule,
            job.last_outcome,
            _short(job.last_run, zone),
            _short(job.next_run, zone),
            job.failures_24h,
        ]
        for job in jobs
    ]
    return render_table(headers, rows)


def _paused(job: JobSummary) -> str:
    if not job.paused:
        return ""
    return f" (paused: {job.pause_reason})" if job.pause_reason else " (paused)"


def _node_json(node: NodeInfo, zone: ZoneInfo) -> dict[str, object]:
    return {
        "node": node.node,
        "instance_id": node.instance_id,
        "started_at": _iso(node.started_at, zone),
        "last_seen": _iso(node.last_seen, zone),
        "leader": node.leader,
    }


def _job_json(job: JobSummary, zone: ZoneInfo) -> dict[str, object]:
    return {
        "name": job.name,
        "rule": job.rule,
        "task": job.task,
        "source": job.source,
        "paused": job.paused,
        "pause_reason": job.pause_reason,
        "last_outcome": job.last_outcome,
        "last_run": _iso(job.last_run, zone),
        "next_run": _iso(job.next_run, zone),
        "failures_24h": job.failures_24h,
    }
