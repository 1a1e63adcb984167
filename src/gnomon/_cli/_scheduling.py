"""Turning validated job specifications into a ``gnomon.Scheduler`` and its jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gnomon
from gnomon._cli._actions import ProcessGroups, command_task
from gnomon._cli._config import CallAction, InvalidSchedule, JobSpec, Schedule, SchedulerSpec
from gnomon._cli._logging import LOGGER, log_fields
from gnomon._cli._secrets import mask_secrets
from gnomon._distributed import Elector, Locker
from gnomon._events import JobContext, Monitor

__all__ = ["add_job", "build_scheduler", "check_with_engine", "update_job"]

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_POSTGRES_SCHEMES = ("postgres", "postgresql")


def build_scheduler(spec: SchedulerSpec, monitor: Monitor | None) -> gnomon.Scheduler:
    return gnomon.Scheduler(
        timezone=spec.timezone,
        max_concurrent=spec.max_concurrent,
        stop_timeout=spec.stop_timeout,
        monitor=monitor,
        locker=None if spec.locker is None else _locker(spec.locker),
        elector=None if spec.elector is None else _elector(spec.elector),
    )


def _locker(url: str) -> Locker:
    backend = _backend(url, "locker")
    assert isinstance(backend, Locker)  # noqa: S101 - _backend builds what the role names
    return backend


def _elector(url: str) -> Elector:
    backend = _backend(url, "elector")
    assert isinstance(backend, Elector)  # noqa: S101 - _backend builds what the role names
    return backend


def _backend(url: str, role: str) -> Locker | Elector:
    """The Redis or PostgreSQL locker or elector that ``url``'s scheme names."""
    scheme = url.partition("://")[0].lower()
    if scheme in _REDIS_SCHEMES:
        from gnomon import redis

        return redis.RedisLocker(url) if role == "locker" else redis.RedisElector(url)
    if scheme in _POSTGRES_SCHEMES:
        from gnomon import postgres

        return postgres.PostgresLocker(url) if role == "locker" else postgres.PostgresElector(url)
    raise gnomon.InvalidOption(
        f"[scheduler] {role}: the URL scheme {scheme!r} is not supported; use "
        f"redis://, rediss://, unix:// (Redis) or postgresql:// (PostgreSQL): {mask_secrets(url)}"
    )


def check_with_engine(schedule: Schedule) -> dict[str, gnomon.Job]:
    """Let the engine judge the scheduler settings and every job's options, on a scheduler
    that is never started; raises ``InvalidSchedule`` listing what it refused.

    Returns the jobs' handles, whose ``next_runs`` preview the schedule as it would run.
    """
    try:
        scheduler = build_scheduler(schedule.scheduler, None)
    except (gnomon.GnomonError, ImportError) as error:
        raise InvalidSchedule(schedule.path, [_backend_problem(error)]) from None
    problems: list[str] = []
    handles: dict[str, gnomon.Job] = {}
    try:
        for job in schedule.jobs:
            try:
                handles[job.name] = add_job(scheduler, job, ProcessGroups())
            except (gnomon.GnomonError, TypeError) as error:
                problems.append(f"job {job.name!r}: {error}")
    finally:
        scheduler.shutdown()
    if problems:
        raise InvalidSchedule(schedule.path, problems)
    return handles


def _backend_problem(error: BaseException) -> str:
    if isinstance(error, ImportError):
        return (
            f"[scheduler] locker/elector needs a driver that is not installed ({error}); "
            "install gnomon[redis] or gnomon[postgres]"
        )
    return mask_secrets(str(error))


def _task_and_arguments(
    job: JobSpec, groups: ProcessGroups
) -> tuple[Callable[..., object], dict[str, object]]:
    if isinstance(job.action, CallAction):
        return job.action.func, {"args": job.action.args, "kwargs": dict(job.action.kwargs)}
    return command_task(job.action, groups, _log_output), {}


def add_job(scheduler: gnomon.Scheduler, job: JobSpec, groups: ProcessGroups) -> gnomon.Job:
    func, arguments = _task_and_arguments(job, groups)
    options: dict[str, Any] = {**arguments, **job.options()}
    added: gnomon.Job | None = scheduler.add_job(func, job.rule, **options)
    if added is None:
        raise RuntimeError(f"job {job.name!r} was not added: its name holds a finished job")
    return added


def update_job(
    scheduler: gnomon.Scheduler, current: gnomon.Job, job: JobSpec, groups: ProcessGroups
) -> gnomon.Job:
    func, arguments = _task_and_arguments(job, groups)
    return scheduler.update_job(current.id, func=func, rule=job.rule, **arguments, **job.options())


def _log_output(context: JobContext, line: str) -> None:
    LOGGER.info(
        line,
        extra=log_fields(job=context.job_name, occurrence=context.occurrence_key, stream="output"),
    )
