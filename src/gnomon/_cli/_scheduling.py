"""Turning validated job specifications into a store-backed ``gnomon.Scheduler`` and its
durable jobs.

Every job of a schedule file is a durable job declared by name with
``if_exists="replace"``, so declaring the file again (the next start, a reload, another
replica) updates the stored jobs in place. Each stored job carries the file as its
source; a load or reload removes only stored jobs of that source that the file no longer
declares, never jobs that other code added to the same store.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

import gnomon
from gnomon._cli._actions import ProcessGroups, command_task
from gnomon._cli._config import (
    CallAction,
    CommandAction,
    InvalidSchedule,
    JobSpec,
    Schedule,
    SchedulerSpec,
)
from gnomon._cli._dispatch import DispatchAction, register_dispatch
from gnomon._cli._logging import LOGGER, log_fields
from gnomon._cli._migrate import HISTORY_RETENTION
from gnomon._cli._secrets import mask_secrets
from gnomon._cli._store import StoreLocation
from gnomon._distributed import Elector, Locker

if TYPE_CHECKING:
    from gnomon._options import JobOptions
from gnomon._events import JobContext, Monitor
from gnomon._stores.contract import Store, StoredJob

__all__ = ["Declarations", "build_scheduler", "check_with_engine"]

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_POSTGRES_SCHEMES = ("postgres", "postgresql")


def build_scheduler(spec: SchedulerSpec, monitor: Monitor | None, store: Store) -> gnomon.Scheduler:
    return gnomon.Scheduler(
        timezone=spec.timezone,
        max_concurrent=spec.max_concurrent,
        stop_timeout=spec.stop_timeout,
        monitor=monitor,
        locker=None if spec.locker is None else _locker(spec.locker),
        elector=None if spec.elector is None else _elector(spec.elector),
        store=store,
        history_retention=HISTORY_RETENTION,
        job_defaults=cast("JobOptions", spec.job_defaults()),
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


class Declarations:
    """Declares a schedule file's jobs on a store-backed scheduler, as jobs of one source."""

    def __init__(self, scheduler: gnomon.Scheduler, source: str, groups: ProcessGroups) -> None:
        self.scheduler = scheduler
        self.source = source
        self.groups = groups
        self.commands: dict[str, CommandAction] = {}
        """Each command job's current command, which its task looks up when it runs."""

    def declare(self, job: JobSpec) -> gnomon.Job | None:
        """Store ``job`` (or update the stored job of its name); ``None`` when its name
        holds a job that finished (``once``, ``max_runs``, ``stop_at``): the store keeps
        that tombstone for the history retention, so a finished job is not run again."""
        task = self._task(job)
        options: dict[str, Any] = {"if_exists": "replace", **job.options()}
        if isinstance(job.action, CallAction):
            options.update(args=job.action.args, kwargs=dict(job.action.kwargs))
        elif isinstance(job.action, DispatchAction):
            options.setdefault("recovery", gnomon.Recovery.AT_LEAST_ONCE)
        self.scheduler._declaring = self.source
        try:
            return self.scheduler.add_job(task, job.rule, name=job.name, **options)
        finally:
            self.scheduler._declaring = None

    def _task(self, job: JobSpec) -> str:
        """The registered task of ``job``: a ``call`` registers its function by target, a
        ``command`` a runner of the job's current command by job name."""
        action = job.action
        if isinstance(action, CallAction):
            return self.scheduler.register(action.func, name=f"call:{action.target}")
        if isinstance(action, DispatchAction):
            return register_dispatch(self.scheduler, action)
        name = f"command:{job.name}"
        known = job.name in self.commands
        self.commands[job.name] = action
        if not known:
            runner = command_task(job.name, self.commands, self.groups, _log_output)
            self.scheduler.register(runner, name=name)
        return name

    def remove_undeclared(self, names: Collection[str]) -> list[str]:
        """Remove this source's stored jobs whose names are not in ``names``."""
        store = self.scheduler.store
        assert store is not None  # noqa: S101 - the command's schedulers always have one
        stale = [row for row in store.jobs() if row.source == self.source]
        stale = [row for row in stale if row.name not in names]
        for row in stale:
            self._remove(store, row)
        return [row.name for row in stale]

    def _remove(self, store: Store, row: StoredJob) -> None:
        try:
            self.scheduler.remove_job(row.id)  # cancels its runs here
        except gnomon.JobNotFound:
            # Not loaded here (its task is no longer registered): only the row is left.
            store.remove_job(row.id)


def check_with_engine(schedule: Schedule) -> dict[str, gnomon.Job]:
    """Let the engine judge the scheduler settings and every job, declared as ``run``
    declares them but on a store in memory, on a scheduler that is never started; raises
    ``InvalidSchedule`` listing what it refused.

    Returns the jobs' handles, whose ``next_runs`` preview the schedule as it would run.
    """
    from gnomon.testing import MemoryStore

    try:
        _check_store(schedule.scheduler.store)
        scheduler = build_scheduler(schedule.scheduler, None, MemoryStore())
    except (gnomon.GnomonError, ImportError) as error:
        raise InvalidSchedule(schedule.path, [_backend_problem(error)]) from None
    try:
        handles, problems = _declare_all(scheduler, schedule)
    finally:
        scheduler.shutdown()
    if problems:
        raise InvalidSchedule(schedule.path, problems)
    return handles


def _declare_all(
    scheduler: gnomon.Scheduler, schedule: Schedule
) -> tuple[dict[str, gnomon.Job], list[str]]:
    declarations = Declarations(scheduler, str(schedule.path.resolve()), ProcessGroups())
    problems: list[str] = []
    handles: dict[str, gnomon.Job] = {}
    for job in schedule.jobs:
        try:
            handle = declarations.declare(job)
        except (gnomon.GnomonError, TypeError) as error:
            problems.append(f"job {job.name!r}: {error}")
        else:
            if handle is not None:
                handles[job.name] = handle
    return handles, problems


def _check_store(location: StoreLocation) -> None:
    """Build the store (without connecting) to judge its settings and find its driver."""
    try:
        location.build().close()
    except ImportError as error:
        raise gnomon.InvalidOption(
            f"[scheduler] store {location.describe()} needs the PostgreSQL driver, which is "
            f"not installed ({error}); install gnomon[postgres]"
        ) from None
    except gnomon.GnomonError as error:
        raise gnomon.InvalidOption(f"[scheduler] store: {error}") from None


def _backend_problem(error: BaseException) -> str:
    if isinstance(error, ImportError):
        return (
            f"[scheduler] locker/elector needs a driver that is not installed ({error}); "
            "install gnomon[redis] or gnomon[postgres]"
        )
    return mask_secrets(str(error))


def _log_output(context: JobContext, line: str) -> None:
    LOGGER.info(
        line,
        extra=log_fields(job=context.job_name, occurrence=context.occurrence_key, stream="output"),
    )
