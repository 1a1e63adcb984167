"""The read-only commands: ``check``, ``next``, ``history`` and ``status``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from gnomon import _rules as rules
from gnomon._cli import EXIT_OK
from gnomon._cli._config import JobSpec, configured_state_path, load_schedule
from gnomon._cli._history import DaemonRecord, History, JobRecord, RunRecord
from gnomon._cli._output import render_json, render_table
from gnomon._cli._scheduling import check_with_engine
from gnomon._cli._secrets import mask_secrets
from gnomon._job import Job
from gnomon._rules import Rule

__all__ = ["check", "history", "next_times", "state_path", "status"]

PREVIEW_COUNT = 3


def check(path: Path, out: TextIO) -> int:
    """Validate a schedule file and show what it will do."""
    schedule = load_schedule(path)
    handles = check_with_engine(schedule)
    zone = schedule.scheduler.timezone
    count = len(schedule.jobs)
    summary = f"{path}: {count} job{'s' if count != 1 else ''}, timezone {zone.key}"
    lines = [f"{summary}, state file {schedule.scheduler.state}"]
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


def state_path(schedule_path: Path, state: Path | None) -> Path:
    """``--state`` when given; else the schedule file's ``state`` setting, else its default."""
    return state if state is not None else configured_state_path(schedule_path)


def history(
    state: Path,
    *,
    job: str | None,
    limit: int,
    failed: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Show the latest occurrences, newest first."""
    with History(state, create=False) as store:
        records = store.runs(job=job, limit=limit, failed=failed)
    if as_json:
        out.write(render_json([_run_json(record) for record in records]) + "\n")
        return EXIT_OK
    headers = ["JOB", "SCHEDULED", "STARTED", "DURATION", "OUTCOME", "EXIT", "DETAIL"]
    rows = [
        [
            record.job,
            _short(record.scheduled_at),
            _short(record.started_at),
            _seconds(record.duration),
            record.outcome,
            record.exit_status,
            _detail(record),
        ]
        for record in records
    ]
    out.write(render_table(headers, rows) + "\n")
    return EXIT_OK


def _short(moment: str | None) -> str | None:
    """Tables show whole seconds; JSON keeps the stored precision."""
    if moment is None:
        return None
    return datetime.fromisoformat(moment).isoformat(sep=" ", timespec="seconds")


def _seconds(duration: float | None) -> str | None:
    return None if duration is None else f"{duration:.3f}s"


def _detail(record: RunRecord) -> str | None:
    if record.count > 1:
        return f"{record.detail} (x{record.count})" if record.detail else f"x{record.count}"
    return record.detail


def _run_json(record: RunRecord) -> dict[str, object]:
    return {
        "job": record.job,
        "occurrence": record.occurrence,
        "attempt": record.attempt,
        "scheduled_at": record.scheduled_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration": record.duration,
        "outcome": record.outcome,
        "exit_status": record.exit_status,
        "detail": record.detail,
        "output": record.output,
        "count": record.count,
    }


def status(state: Path, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Each job of the daemon's schedule: last outcome and run, next run, recent failures."""
    with History(state, create=False) as store:
        daemon = store.daemon()
        jobs = store.jobs(datetime.now(UTC))
    running = daemon is not None and daemon.running
    if not running:
        # Without a daemon nothing will run; a stale next time would mislead.
        jobs = [_without_next_run(job) for job in jobs]
    if as_json:
        document = {
            "daemon": _daemon_json(daemon, running=running),
            "jobs": [_job_json(job) for job in jobs],
        }
        out.write(render_json(document) + "\n")
        return EXIT_OK
    out.write(_daemon_line(daemon, running=running) + "\n\n")
    headers = ["JOB", "RULE", "LAST OUTCOME", "LAST RUN", "NEXT RUN", "FAILURES (24H)"]
    rows = [
        [
            job.name,
            job.rule,
            job.last_outcome,
            _short(job.last_run),
            _short(job.next_run),
            job.failures_24h,
        ]
        for job in jobs
    ]
    out.write(render_table(headers, rows) + "\n")
    return EXIT_OK


def _without_next_run(job: JobRecord) -> JobRecord:
    return JobRecord(
        job.name, job.rule, job.action, None, job.last_outcome, job.last_run, job.failures_24h
    )


def _daemon_line(daemon: DaemonRecord | None, *, running: bool) -> str:
    if daemon is None:
        return "daemon: never started with this state file"
    if running:
        cluster = f", {daemon.cluster}" if daemon.cluster else ""
        return (
            f"daemon: running (pid {daemon.pid} on {daemon.host}, since {daemon.started_at}, "
            f"schedule {daemon.schedule_file}{cluster})"
        )
    ended = f", stopped {daemon.stopped_at}" if daemon.stopped_at else ""
    return f"daemon: not running (last pid {daemon.pid} on {daemon.host}{ended})"


def _daemon_json(daemon: DaemonRecord | None, *, running: bool) -> dict[str, object] | None:
    if daemon is None:
        return None
    return {
        "running": running,
        "pid": daemon.pid,
        "host": daemon.host,
        "schedule_file": daemon.schedule_file,
        "cluster": daemon.cluster,
        "timezone": daemon.timezone,
        "started_at": daemon.started_at,
        "stopped_at": daemon.stopped_at,
    }


def _job_json(job: JobRecord) -> dict[str, object]:
    return {
        "name": job.name,
        "rule": job.rule,
        "action": job.action,
        "last_outcome": job.last_outcome,
        "last_run": job.last_run,
        "next_run": job.next_run,
        "failures_24h": job.failures_24h,
    }
