"""The two faces of the engine: ``Scheduler`` (threads) and ``AsyncScheduler`` (asyncio)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self, TypeVar, Unpack, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gnomon._clock import Clock, FakeClock, SystemClock
from gnomon._dispatch import DispatchTarget, register_broker, register_target
from gnomon._distributed import Elector, Locker
from gnomon._durable import DurableJobs, default_node, new_job_id
from gnomon._durations import parse_duration
from gnomon._engine import WAKE_BATCH, Engine
from gnomon._errors import (
    GnomonError,
    InvalidJob,
    InvalidOption,
    JobChanged,
    JobNotFound,
    SchedulerForked,
    ShutdownTimedOut,
    StoreUnavailable,
)
from gnomon._events import LimitMode, Monitor, Outcome, RunEvent
from gnomon._history import ActionQuery, HistoryQuery
from gnomon._job import Job, JobOwner, JobSpec, JobState
from gnomon._options import (
    ADD_ONLY_OPTIONS,
    PER_JOB_OPTIONS,
    AddOptions,
    DecoratorOptions,
    JobOptions,
    UpdateOptions,
    build_spec,
    check_option_names,
    check_rule,
    derive_state,
)
from gnomon._pool import SLOW_SECONDS, WorkerPool
from gnomon._retry import Retry
from gnomon._run import Run, call_hook, current_run
from gnomon._stores.contract import ActionRecord, IfExists, NodeInfo, RunRecord, Store
from gnomon._tasks import LISTENER_OPTIONS, Task, TaskRegistry
from gnomon._waker import FireAhead, Headstart, LoopWaker, arrive

if TYPE_CHECKING:
    from types import TracebackType

    from gnomon._rules import Rule

__all__ = ["AsyncScheduler", "Scheduler"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_MAX_SLEEP = 60.0
_CANCEL_GRACE = 1.0
_live: weakref.WeakSet[_SchedulerCore] = weakref.WeakSet()


def _mark_forked() -> None:
    for core in list(_live):
        core._forked = True


os.register_at_fork(after_in_child=_mark_forked)


def _default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def _local_zone() -> ZoneInfo:
    """The local zone as a ZoneInfo: from TZ, else /etc/localtime's name, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    candidates = [name] if name else []
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for candidate in candidates:
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _zone(value: object) -> ZoneInfo:
    if value is None:
        return _local_zone()
    if isinstance(value, ZoneInfo):
        return value
    if isinstance(value, str):
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise InvalidOption(
        f"timezone must be a zoneinfo.ZoneInfo or an IANA zone name such as "
        f"'Europe/Riga', got {value!r}"
    )


class _SchedulerCore(JobOwner):
    """What both faces share: option validation, job registration, introspection."""

    _engine: Engine

    def __init__(
        self,
        *,
        timezone: ZoneInfo | str | None = None,
        clock: Clock | None = None,
        max_concurrent: int | None = None,
        limit_mode: LimitMode = LimitMode.RESCHEDULE,
        max_workers: int | None = None,
        stop_timeout: timedelta | float | str = 10.0,
        elector: Elector | None = None,
        locker: Locker | None = None,
        monitor: Monitor | None = None,
        logger: logging.Logger | None = None,
        job_defaults: JobOptions | None = None,
        store: Store | None = None,
        node: str | None = None,
        history_retention: timedelta | float | str = "30d",
        history_limit: int = 1000,
        catch_up_grace: timedelta | float | str = "1s",
    ) -> None:
        self.timezone = _zone(timezone)
        self.clock: Clock = _check_clock(clock)
        self.stop_timeout = parse_duration(stop_timeout, field="stop_timeout", error=InvalidOption)
        self._locker = _check_instance(locker, Locker, "locker")
        self._elector = _check_instance(elector, Elector, "elector")
        self._monitor = _check_instance(monitor, Monitor, "monitor")
        self._told_lock = threading.RLock()
        """Orders the monitor's "started" and "stopped" (``_tell_started``)."""
        self._told_started = False
        self._log = _check_instance(logger, logging.Logger, "logger") or logging.getLogger("gnomon")
        self._defaults: dict[str, Any] = dict(job_defaults or {})
        self._defaults_per_job = not PER_JOB_OPTIONS.isdisjoint(self._defaults)
        check_option_names(self._defaults, "job_defaults")
        self._pool = WorkerPool(_check_workers(max_workers))
        self._forked = False
        self._started_at: datetime | None = None
        self._declaring: str | None = None
        """The source (a schedule file) whose jobs are being declared, if any."""
        self._engine = Engine(
            timezone=self.timezone,
            clock=self.clock,
            max_concurrent=_check_limit(max_concurrent),
            limit_mode=_check_limit_mode(limit_mode),
            elector=self._elector,
            clustered=self._elector is not None or self._locker is not None,
            monitor=self._monitor,
            logger=self._log,
            owner=self,
            driver=self,  # type: ignore[arg-type]  # each face implements the Driver protocol
        )
        self._engine.executor = self._pool
        self._engine.catch_up_grace = parse_duration(
            catch_up_grace, field="catch_up_grace", error=InvalidOption, positive=False
        ).total_seconds()
        self._engine.history = deque(maxlen=_check_history_limit(history_limit))
        self._actions: deque[ActionRecord] = deque(maxlen=self._engine.history.maxlen)
        """Actions on jobs kept in memory (durable jobs' are in the store)."""
        self._tasks = TaskRegistry()
        self._durable = self._attach_store(store, node, history_retention)
        self._spec_cache: dict[object, JobSpec] = {}
        self._templates: dict[object, JobSpec] = {}
        """A validated spec per function, from which later jobs' specs are derived."""
        self._init_face()
        _live.add(self)

    def _init_face(self) -> None:
        """Set up what only one face has (its timer, its loop)."""

    def _attach_store(
        self, store: object, node: object, retention: timedelta | float | str
    ) -> DurableJobs | None:
        label = _check_node(node)
        self._engine.node = label
        kept = parse_duration(retention, field="history_retention", error=InvalidOption)
        if store is None:
            return None
        if not isinstance(store, Store):
            raise InvalidOption(
                "store must be a gnomon store (gnomon.sqlite.SQLiteStore, "
                f"gnomon.postgres.PostgresStore, gnomon.testing.MemoryStore), got {store!r}"
            )
        return DurableJobs(
            store=store,
            engine=self._engine,
            tasks=self._tasks,
            build=self._build_durable,
            node=label,
            retention=kept,
            log=self._log,
            condition=self._locker,
        )

    @property
    def store(self) -> Store | None:
        """The store this scheduler keeps durable jobs in, or ``None``."""
        return None if self._durable is None else self._durable.store

    # ---------------------------------------------------------------- tasks

    def register(
        self,
        func: Callable[..., Any] | DispatchTarget,
        *,
        name: str | None = None,
        retry: Retry | None = None,
        **listeners: Callable[..., Any] | None,
    ) -> str:
        """Register ``func`` as a task that stored jobs may name; returns its name.

        ``listeners`` are ``before_run``, ``after_run``, ``after_error`` and
        ``after_lock_error``: every durable job of this task gets them, and ``retry``
        every durable job of it that sets no ``retry`` of its own.
        """
        if isinstance(func, DispatchTarget):
            name = name or func.describe()
            bound = register_target(self, func, name, listeners)
            if bound is None:
                return name  # registered by register_broker(), once its broker is here
            func = bound
        task = self._tasks.register(func, name, listeners, retry=retry)
        if self._durable is not None:
            self._durable.registered(task)
        return task.name

    def register_broker(self, kind: str, app_or_broker: object) -> None:
        """Give dispatch targets of ``kind`` this process's live broker: a ``celery.Celery``
        app, a Dramatiq broker, or the ``redis.Redis`` connection of RQ. Targets that were
        waiting for it are registered now."""
        for target, name, listeners in register_broker(self, kind, app_or_broker):
            self.register(target, name=name, **listeners)

    def task(self, func: F | None = None, *, name: str | None = None, **listeners: Any) -> Any:
        """Decorator form of :meth:`register`: ``@s.task`` or ``@s.task(name=...)``;
        returns the function unchanged."""
        if func is not None:
            self.register(func, name=name, **listeners)
            return func

        def decorate(target: F) -> F:
            self.register(target, name=name, **listeners)
            return target

        return decorate

    def _resolve_task(self, func: object) -> Task:
        if isinstance(func, str):
            return self._tasks.require(func)
        name = self._tasks.name_of(func)
        if name is None:
            raise InvalidJob(
                f"{func!r} is not a registered task: a durable job names its task, so register "
                "it first (@s.task or s.register(func)), or pass durable=False"
            )
        return self._tasks.require(name)

    # ---------------------------------------------------------------- jobs

    def _add(self, func: object, rule: Rule, options: Mapping[str, Any]) -> Job | None:
        self._check_fork()
        if self._durable is not None and _is_durable(options):
            return self._add_durable(self._durable, func, rule, options)
        state: JobState | None
        if not options:
            state = JobState(_new_id(), self._default_spec(func), rule)
        else:
            # Per-job options only (no id, no add-only option): the function's template.
            state = self._derived_state(func, options, _new_id(), rule)
            if state is None:
                state = self._checked_state(func, options, rule)
        state.rule = check_rule(state.spec, rule, clustered=self._engine.clustered)
        self._engine.add(state, self._engine.now())
        job = Job(self, state)
        if self._monitor is not None:
            self._report_registered(job)
        self._settle()
        return job

    def _checked_state(self, func: object, options: Mapping[str, Any], rule: Rule) -> JobState:
        """The full path of ``add_job``: the job's state, every option checked.
        ``options`` did not fit the function's template as given (``_add`` tried)."""
        given = options
        if not ADD_ONLY_OPTIONS.isdisjoint(given):
            given = self._strip_add_only(given)
        if "id" in given:
            job_id = _check_id(given["id"])
            given = {k: v for k, v in given.items() if k != "id"}
        else:
            job_id = _new_id()  # ``given`` is read, never kept
        if not given:
            return JobState(job_id, self._default_spec(func), rule)
        if given is not options:  # else the template was tried on exactly these options
            derived = self._derived_state(func, given, job_id, rule)
            if derived is not None:
                return derived
        check_option_names(given, "add_job")
        spec = self._build({**self._defaults, **given}, func)
        self._keep_template(func, given, spec)
        return JobState(job_id, spec, rule)

    def _strip_add_only(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``durable=False`` (and ``if_exists``, which needs a store) are not job options."""
        if options.get("if_exists", "replace") != "replace" and self._durable is None:
            raise InvalidJob(
                f"if_exists={options['if_exists']!r} applies to durable jobs, and this "
                "scheduler has no store"
            )
        stripped = {k: v for k, v in options.items() if k not in ADD_ONLY_OPTIONS}
        name = stripped.get("name")
        if self._durable is not None and name is not None and self._durable_named(name):
            raise InvalidJob(f"a durable job is already named {name!r}; choose another name")
        return stripped

    def _durable_named(self, name: str) -> bool:
        with self._engine.lock:
            states = list(self._engine.jobs.values())
        return any(s.durable is not None and s.spec.name == name for s in states)

    def _add_durable(
        self, durable: DurableJobs, func: object, rule: Rule, options: Mapping[str, Any]
    ) -> Job | None:
        task = self._resolve_task(func)
        requested = options.get("id")
        job_id = new_job_id() if requested is None else uuid.UUID(int=_check_id(requested))
        if_exists = _check_if_exists(options.get("if_exists", "replace"))
        given = {k: v for k, v in options.items() if k not in ("id", *ADD_ONLY_OPTIONS)}
        check_option_names(given, "add_job")
        defaults = {k: v for k, v in self._defaults.items() if k not in LISTENER_OPTIONS}
        state = durable.add(
            task,
            rule,
            {**defaults, **given},
            job_id=job_id,
            if_exists=if_exists,
            source=self._declaring,
        )
        if state is None:
            return None
        job = Job(self, state)
        if self._monitor is not None:
            self._report_registered(job)
        self._settle()
        return job

    def _build_durable(self, options: Mapping[str, Any], func: object) -> JobSpec:
        return build_spec(func, options, scheduler_locker=None, clustered=True)

    def _settle(self) -> None:
        """On a fake clock, dispatch what is already due (an immediate run, say):
        the clock will not move by itself to do it."""
        clock = self.clock
        if isinstance(clock, FakeClock) and self._engine.started:
            clock.advance(0)

    def _build(self, options: Mapping[str, Any], func: object) -> JobSpec:
        return build_spec(
            func, options, scheduler_locker=self._locker, clustered=self._engine.clustered
        )

    def _derived_state(
        self, func: object, given: Mapping[str, Any], job_id: int, rule: Rule
    ) -> JobState | None:
        """The fast path: per-job options (name, args, tags, start_at...) on the
        function's shared traits, when the scheduler's defaults set none of them."""
        if self._defaults_per_job:
            return None
        try:
            template = self._templates.get(func)
        except TypeError:  # an unhashable callable
            return None
        if template is None:
            return None  # the first job of a function takes the full path (and is kept)
        return derive_state(template, given, job_id, rule)

    def _keep_template(self, func: object, given: Mapping[str, Any], spec: JobSpec) -> None:
        """Keep a fully validated spec as its function's template for later jobs."""
        if self._defaults_per_job or not PER_JOB_OPTIONS.issuperset(given):
            return
        try:
            if func in self._templates:
                return
        except TypeError:  # an unhashable callable
            return
        if len(self._templates) >= 1024:
            self._templates.clear()
        self._templates[func] = spec

    def _default_spec(self, func: object) -> JobSpec:
        """Jobs added with no options share one validated spec per function."""
        try:
            spec = self._spec_cache.get(func)
        except TypeError:  # an unhashable callable
            return self._build(self._defaults, func)
        if spec is None:
            spec = self._build(self._defaults, func)
            if len(self._spec_cache) >= 1024:
                self._spec_cache.clear()
            self._spec_cache[func] = spec
        return spec

    def _report_registered(self, job: Job) -> None:
        if self._monitor is not None:
            call_hook(self._log, self._monitor.job_registered, job)

    def _update(self, job_id: uuid.UUID, changes: Mapping[str, Any]) -> Job:
        self._check_fork()
        if "id" in changes:
            raise TypeError("update_job cannot change a job's id")
        state = self._engine.jobs.get(_id_int(job_id))
        if state is None:
            raise JobNotFound(f"no job has id {job_id}")
        expected = changes.get("expected_version")
        known = {k: v for k, v in changes.items() if k not in ("func", "rule", "expected_version")}
        check_option_names(known, "update_job")
        old = state.spec
        options = {**old.options, **known}
        if "name" not in options:
            options["name"] = old.name
        new_rule = "rule" in changes
        if state.durable is not None and self._durable is not None:
            spec, rule = self._durable_change(self._durable, state, options, changes)
            self._durable.update(state, spec, rule, expected_version=expected, new_rule=new_rule)
        else:
            _check_expected_version(expected, 1)
            spec = self._build(options, changes.get("func", old.func))
            rule = check_rule(
                spec, changes.get("rule", state.rule), clustered=self._engine.clustered
            )
        self._engine.update(state.id, spec, rule, self.clock.now(), new_rule=new_rule)
        self._settle()
        return Job(self, state)

    def _durable_change(
        self,
        durable: DurableJobs,
        state: JobState,
        options: Mapping[str, Any],
        changes: Mapping[str, Any],
    ) -> tuple[JobSpec, Rule]:
        task = self._resolve_task(changes["func"]) if "func" in changes else None
        if task is None:
            assert state.durable is not None  # noqa: S101 - the caller checked
            task = self._tasks.require(state.durable.task)
        listeners = [k for k in LISTENER_OPTIONS if k in changes and changes[k] is not None]
        plain = {k: v for k, v in options.items() if k not in LISTENER_OPTIONS or k in listeners}
        spec = durable.spec_for(task, plain)
        return spec, check_rule(spec, changes.get("rule", state.rule), clustered=True)

    def _remove_durable(self, state: JobState) -> None:
        """Remove a durable job from its store first: if the store is down, nothing changes."""
        if state.durable is not None and self._durable is not None and not state.removed:
            self._durable.remove(state)

    def _pause_durable(self, state: JobState, paused: bool, reason: str | None) -> None:
        if state.durable is not None and self._durable is not None and not state.removed:
            self._durable.set_paused(state, paused, reason)

    def _remove_parked(self, job_id: uuid.UUID) -> bool:
        """Remove a stored job this process did not load, recording the removal."""
        assert self._durable is not None  # noqa: S101 - the caller checked
        parked = self._durable.parked().get(job_id)
        if not self._durable.remove_parked(job_id):
            return False
        if parked is not None:
            record = ActionRecord(job_id, parked[0].name, "remove", None, self.clock.now())
            self._keep_action(record, durable=True)
        return True

    def _record_action(
        self, state: JobState, action: str, actor: str | None, detail: str | None = None
    ) -> None:
        """Record an action just done on a job, with who asked and when."""
        job_id, name, now = state.uuid(), state.spec.name, self.clock.now()
        record = ActionRecord(job_id, name, action, actor, now, detail)
        self._keep_action(record, durable=state.durable is not None)

    def _keep_action(self, record: ActionRecord, *, durable: bool) -> None:
        if not durable or self._durable is None:
            self._actions.append(record)
            return
        try:
            self._durable.store.record_action(record)
        except StoreUnavailable as error:
            # The action itself is done and stored; undoing it would be a second surprise.
            self._log.warning(
                "the %s of job %r by %s was done, but could not be recorded: %s",
                record.action,
                record.job_name,
                record.actor or "code",
                error,
                extra={"job_name": record.job_name},
            )

    def _action_records(self, job: object, limit: int) -> list[ActionRecord]:
        query = ActionQuery.parse(job, limit)
        actions = query.select(reversed(self._actions.copy()))
        if self._durable is not None:
            actions += query.ask(self._durable.store)
        return query.newest(actions)

    def _history_records(
        self,
        job: object,
        outcome: object,
        since: datetime | None,
        limit: int,
    ) -> list[RunRecord]:
        query = HistoryQuery.parse(job, outcome, since, limit)
        records = query.select(self._engine.history_records())
        if self._durable is not None:
            records += query.ask(self._durable.store)
        return query.newest(records)

    def _retry(self, key: str, actor: str | None) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"retry needs an occurrence key (a non-empty string), got {key!r}")
        if self._durable is None:
            self._retry_in_memory(key, actor)
            return
        record = self._durable.retry(key, actor)
        state = self._engine.jobs.get(record.job_id.int)
        if state is None:
            raise JobNotFound(
                f"occurrence {key!r} belongs to job {record.job_name!r}, which is not loaded "
                "in this scheduler"
            )
        self._engine.recover(state, record.scheduled_at, key, quiet=False)
        self._settle()

    def _retry_in_memory(self, key: str, actor: str | None) -> None:
        found = [r for r in self._engine.history_records() if r.occurrence_key == key]
        if not found:
            raise JobNotFound(f"no finished occurrence has the key {key!r}")
        record = found[-1]
        state = self._engine.jobs.get(record.job_id.int)
        if state is None:
            raise JobNotFound(f"occurrence {key!r} belongs to job {record.job_name!r}, now removed")
        attempt = record.attempt + 1
        self._engine.recover(state, record.scheduled_at, key, quiet=False, attempt=attempt)
        self._settle()

    def _nodes(self) -> list[NodeInfo]:
        durable = self._durable
        if durable is None:
            started = self._started_at or datetime.now(UTC)
            leader = self._elector is None
            return [NodeInfo(self._engine.node or "", "", started, datetime.now(UTC), leader)]
        durable.open()
        return durable.store.nodes(alive_within=timedelta(seconds=30))

    def _start_store(self) -> None:
        """Before firing: open the store, mirror its jobs and join its node list (raises
        StoreUnavailable)."""
        if self._durable is not None:
            self._durable.load()
            self._durable.join()

    def _jobs(self, tags: Iterable[str] | None) -> list[Job]:
        with self._engine.lock:
            states = list(self._engine.jobs.values())
        if tags is not None:
            wanted = frozenset([tags] if isinstance(tags, str) else tags)
            states = [s for s in states if s.spec.tags & wanted]
        return [Job(self, s) for s in states]

    def _get(self, job_id: uuid.UUID) -> Job:
        state = self._engine.jobs.get(_id_int(job_id))
        if state is None:
            raise JobNotFound(f"no job has id {job_id}")
        return Job(self, state)

    @property
    def jobs_waiting(self) -> int:
        """Runs queued by ``LimitMode.WAIT`` (per-job singleton queues and the shared one)."""
        return self._engine.jobs_waiting

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop_jobs()``/``shutdown()``."""
        return self._engine.started

    def _job_next_runs(self, state: JobState, count: int) -> list[datetime]:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"next_runs needs a whole number of runs >= 0, got {count!r}")
        return self._engine.next_runs(state, count, self.clock.now())

    def job(self, rule: Rule, **options: Unpack[DecoratorOptions]) -> Callable[[F], F]:
        """Decorator form of :meth:`add_job`; registers at once, returns the function."""

        def register(func: F) -> F:
            stored = self._durable is not None and _is_durable(options)
            if stored and self._tasks.name_of(func) is None:
                self.register(func)
            self._add(func, rule, dict(options))
            return func

        return register

    def _timeout(self, value: timedelta | float | str | None) -> float:
        if value is None:
            return self.stop_timeout.total_seconds()
        return parse_duration(
            value, field="timeout", error=InvalidOption, positive=False
        ).total_seconds()

    def _start_firing(self) -> None:
        """Start the engine, then its timer (or attach the fake clock that drives it)."""
        if not self._engine.start(self.clock.now()):
            return
        if self._started_at is None:
            self._started_at = datetime.now(UTC)
        if isinstance(self.clock, FakeClock):
            self._follow_fake_clock(self.clock)
        else:
            self._start_timer()
        self._tell_started()
        self._settle()

    def _start_timer(self) -> None:
        raise NotImplementedError

    def _follow_fake_clock(self, clock: FakeClock) -> None:
        """Attach a fake clock to the engine while it runs, detach it while it does not.
        Called after every start and stop: each caller acts on the engine's state and
        checks it is unchanged after acting (else acts again), so a start racing a stop
        leaves the clock as the engine's latest state says. (The clock's lock is taken
        before the engine's when it advances: it is never taken under the engine's.)"""
        engine = self._engine
        while True:
            with engine.lock:
                started = engine.started
            if started:
                clock.attach(engine)
            else:
                clock.detach(engine)
            with engine.lock:
                if engine.started == started:
                    return

    def _check_fork(self) -> None:
        if self._forked:
            raise SchedulerForked(
                "this scheduler was created before os.fork() and cannot run in the child "
                "process; create the scheduler after the fork (e.g. in gunicorn's post_fork "
                "hook, or without --preload)"
            )

    # ---------------------------------------------------------------- shared lifecycle

    def _unfinished(self) -> list[str]:
        return sorted(f"{run.spec.name} @ {run.key}" for run in self._engine.live_runs)

    def _wake_moment(self, ahead: float | None) -> tuple[datetime, float | None]:
        """The ``now`` to wake the engine at, and its ``timed_by``: the clock's reading,
        or, woken ``ahead`` of that deadline, the deadline itself and the reading's stamp
        (only job fire times are taken ahead of the clock)."""
        now = self.clock.now()
        if ahead is None:
            return now, None
        return max(now, datetime.fromtimestamp(ahead, UTC)), now.timestamp()

    def _tell_started(self) -> None:
        """Tell the monitor of a start, unless a stop since has told it already."""
        with self._told_lock:
            if self._told_started or not self._engine.started:
                return
            self._told_started = True
            self._scheduler_hook("scheduler_started")

    def _tell_stopped(self) -> None:
        """Tell the monitor of a stop. A stop that won the race with the start it ends,
        before that start told the monitor, tells of the start first: the monitor hears
        each stop after the start it ends."""
        with self._told_lock:
            if not self._told_started:
                self._scheduler_hook("scheduler_started")
            self._told_started = False
            self._scheduler_hook("scheduler_stopped")

    def _scheduler_hook(self, name: str) -> None:
        if self._monitor is not None:
            call_hook(self._log, getattr(self._monitor, name))

    def report(self, effect: Callable[[], None]) -> None:
        self._pool.spawn(effect)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {state} jobs={len(self._engine.jobs)} tz={self.timezone}>"


class Scheduler(_SchedulerCore):
    """Runs the engine on a timer loop led by its worker threads; sync tasks run there.

    Use it as a context manager (``with gnomon.Scheduler() as s:``) or call ``start()``
    and ``shutdown()``. ``max_workers`` bounds the sync runs going at once (``None``:
    ``min(32, cpu_count + 4)``); the timer loop takes one thread more.
    """

    def _init_face(self) -> None:
        self._timer_wake = threading.Condition(self._engine.lock)
        self._headstart = Headstart()
        """How early the leader ends its timed wait before a deadline (see ``_lead``)."""
        self._fire_ahead = FireAhead()
        """How much earlier still it ends it before a deadline that brings a burst."""
        self._timer: threading.Thread | None = None
        """The worker thread leading (running the timer loop) now, if any."""
        self._timer_stop = False
        self._timer_loops = 0
        """Timer loops started and not yet stopped (a hand-over passes one on): 0 or 1."""
        self._due: list[Run] = []
        """Runs the leader's wake-up dispatched, started once their time has come (only
        the leading thread touches it)."""
        self._burster: threading.Thread | None = None
        """The thread running a burst (see ``_run_burst``), if one is going on."""
        self._burst_runs = _Burst()
        """The runs the burst fired and has not started yet, and those that ran and wait
        for their bookkeeping (each burst has its own)."""
        self._burst_beat = 0.0
        """When the burst last made progress (``time.monotonic()``)."""
        self._burst_stall = max(2e-3, 2 * sys.getswitchinterval())
        """How long the burst may make no progress before the leader takes it over."""
        self._burst_slow = False
        """A burst ended because its runs were slow: until the due work is drained, the
        pool takes it (and spreads it over its workers)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self._engine.run_coroutine = self._run_coroutine
        self._shutdown_done = threading.Event()
        self._stop_requested = threading.Event()
        self._shutting_down = False

    # ---------------------------------------------------------------- driver

    def dispatch(self, run: Run) -> None:
        thread = threading.current_thread()
        if thread is self._timer:
            if not run.spec.needs_loop:
                run.prepare()  # often before its deadline (see _wake_engine)
            self._due.append(run)  # the leader starts it (_wake_engine), on time
            return
        # Read before the check: a burst's own deque, which its runner drains as it ends
        # even if the burst was taken over between the check and the append.
        burst = self._burst_runs
        if thread is self._burster and not run.spec.needs_loop:
            burst.append(run)  # the burst runs it next (_run_burst)
        else:
            self._start(run)

    def _start(self, run: Run) -> None:
        if run.spec.needs_loop:
            asyncio.run_coroutine_threadsafe(run.run_async(), self._ensure_loop())
        else:
            self._pool.spawn(run.run_sync)

    def deadline_moved(self) -> None:
        self._timer_wake.notify()

    def on_timer(self) -> bool:
        thread = threading.current_thread()
        # The burst's thread fires batches like the timer, and runs tasks in between.
        return thread is self._timer or (thread is self._burster and current_run.get() is None)

    def state_changed(self) -> None:
        """Waiters use the engine's condition directly."""

    # ---------------------------------------------------------------- jobs

    @overload
    def add_job(
        self,
        func: Callable[..., Any] | str,
        rule: Rule,
        *,
        name: None = None,
        **options: Unpack[AddOptions],
    ) -> Job: ...

    @overload
    def add_job(
        self,
        func: Callable[..., Any] | str,
        rule: Rule,
        *,
        name: str,
        **options: Unpack[AddOptions],
    ) -> Job | None: ...

    def add_job(self, func: Callable[..., Any] | str, rule: Rule, **options: Any) -> Job | None:
        """Register ``func`` to run on ``rule``. See the guide for every option.

        With a store, ``func`` may be a registered task or its name; a named durable job
        whose name holds a tombstone (it finished) returns ``None``.
        """
        return self._add(func, rule, options)

    def update_job(self, job_id: uuid.UUID, **changes: Unpack[UpdateOptions]) -> Job:
        return self._update(job_id, dict(changes))

    def remove_job(self, job_id: uuid.UUID) -> None:
        self._check_fork()
        state = self._engine.jobs.get(_id_int(job_id))
        if state is not None:
            self._remove_durable(state)
        elif self._durable is not None and self._remove_parked(job_id):
            return
        removed = self._engine.remove(_id_int(job_id))
        self._record_action(removed, "remove", None)

    def remove_by_tags(self, *tags: str) -> int:
        self._check_fork()
        doomed = self._jobs(frozenset(tags))
        for job in doomed:
            self._remove_durable(job._state)
        count = self._engine.remove_by_tags(tags)
        for job in doomed:
            if job._state.removed:
                self._record_action(job._state, "remove", None)
        return count

    def history(
        self,
        *,
        job: Job | uuid.UUID | str | None = None,
        outcome: Outcome | Iterable[Outcome | None] | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Occurrences this scheduler (or, with a store, any on it) ran or skipped,
        newest first by ``scheduled_at``."""
        return self._history_records(job, outcome, since, limit)

    def retry(self, occurrence_key: str, *, actor: str | None = None) -> None:
        """Run a finished occurrence again: same key, ``attempt + 1``, a new claim."""
        self._check_fork()
        self._retry(occurrence_key, actor)

    def actions(
        self, *, job: Job | uuid.UUID | str | None = None, limit: int = 100
    ) -> list[ActionRecord]:
        """The pauses, resumes and removals of jobs, each with who asked, newest first
        (with a store: every scheduler's on it)."""
        return self._action_records(job, limit)

    def nodes(self) -> list[NodeInfo]:
        """The schedulers on this scheduler's store (just this one without a store)."""
        return self._nodes()

    def jobs(self, tags: Iterable[str] | None = None) -> list[Job]:
        return self._jobs(tags)

    def get_job(self, job_id: uuid.UUID) -> Job:
        return self._get(job_id)

    def _job_run_now(
        self, state: JobState, wait: bool, actor: str | None = None
    ) -> RunEvent | None:
        self._check_fork()
        run = self._engine.run_now(state, self.clock.now(), want_event=wait, actor=actor)
        if not wait:
            return None
        if current_run.get() is not None and run.future is not None and not run.future.done():
            raise RuntimeError("run_now(wait=True) from inside a run could wait for itself")
        assert run.future is not None  # noqa: S101 - requested above
        return run.future.result()

    def _job_remove(self, state: JobState, actor: str | None = None) -> None:
        self._check_fork()
        self._remove_durable(state)
        self._engine.remove_state(state)
        self._record_action(state, "remove", actor)

    def _job_set_paused(
        self,
        state: JobState,
        paused: bool,
        reason: str | None = None,
        *,
        catch_up: bool = False,
        actor: str | None = None,
    ) -> None:
        self._check_fork()
        self._pause_durable(state, paused, reason)
        now = self.clock.now()
        self._engine.set_paused(state, paused, now, reason=reason, catch_up=catch_up)
        self._settle()
        if paused:
            self._record_action(state, "pause", actor, reason)
        else:
            self._record_action(state, "resume", actor)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start (or resume after ``stop_jobs``) firing jobs. Idempotent."""
        self._check_fork()
        if self._engine.started:
            return
        self._start_store()
        if self._elector is not None:
            self._run_coroutine(self._elector.start())
        self._start_firing()
        if self._durable is not None:
            self._durable.start_following()

    def _start_timer(self) -> None:
        with self._engine.lock:
            if not self._engine.started:
                return  # a stop since the start: the stop decides (see _stop_timer)
            self._timer_stop = False
            self._burst_slow = False
            if self._timer_loops:
                # A stop in progress has not ended the loop yet: it goes on (it checks the
                # flag again before it ends), and the stop, seeing the engine started, no
                # longer waits for it.
                self._timer_wake.notify_all()
                return
            self._timer_loops += 1
        self._pool.lead(self._timer_main)

    def _timer_main(self) -> None:
        """The timer loop, led by one worker thread at a time (leader/followers).

        The leader waits for the next deadline and processes what is due. It keeps the
        first due sync run for itself: it hands the lead to another worker, which waits
        for the next deadline, and runs that run at once, with no hand-off between the
        thread that woke on time and the one that runs. When more is due than one batch,
        it keeps the whole batch and runs the burst (``_run_burst``).
        """
        kept = self._lead()
        if isinstance(kept, Run):
            kept.run_sync()  # this thread handed the lead over: it is a plain worker now
        elif kept is not None:
            self._run_burst(kept)

    def _lead(self) -> Run | _Burst | None:
        engine, wake = self._engine, self._timer_wake
        now_stamp = engine.stamp
        # A fake clock has no last stretch; the system clock's is learned (see _waker).
        headstart = self._headstart if now_stamp is time.time else None
        me = threading.current_thread()
        with engine.lock:
            self._timer = me
            try:
                # The stop flag is read last in the same hold of the lock that ends the
                # loop: a start() before that keeps this loop going (see _start_timer).
                while not self._timer_stop or self._burster is not None:
                    if self._timer_stop:  # a burst's fired runs are skipped as stopping
                        self._take_over_burst()  # (it releases the lock meanwhile)
                        continue
                    if self._burster is not None:
                        self._watch_burst()
                        continue
                    deadline = engine.next_deadline()
                    if deadline is None:
                        wake.wait(_MAX_SLEEP)
                        continue
                    early = 0.0
                    if headstart is not None:  # a burst: earlier still (see FireAhead)
                        early = headstart.seconds + self._fire_ahead.before(engine.due_together)
                    now = now_stamp()
                    wait = deadline - now
                    if wait > early:
                        self._burst_slow = False  # the last deadline's work is drained
                        span = min(wait - early, _MAX_SLEEP)
                        if not wake.wait(span) and headstart is not None:
                            headstart.learn(now_stamp() - now - span)
                        continue
                    engine.lock.release()
                    try:
                        kept = self._wake_engine(deadline if wait > 0 else None, early)
                    finally:
                        engine.lock.acquire()
                    if kept is not None:
                        return kept  # the new leader counts as this loop
                self._timer_loops -= 1
                self._pool.end_lead()
                wake.notify_all()  # _stop_timer waits for the loop to end
                return None
            finally:
                if self._timer is me:
                    self._timer = None

    def _wake_engine(self, ahead: float | None, early: float) -> Run | _Burst | None:
        """The deadline's due work, fired; what this thread runs once the lead is handed
        over: a run, or a burst's first runs (else None: the runs, if any, went to the
        pool).

        ``ahead`` is the deadline when the leader woke ``early`` before it (the system
        clock only): the due work is fired as of the deadline, while the thread is still
        early, batch after batch until the deadline comes, and the runs start when it
        does (``arrive``). The work between the wake-up and the first task, slow on a
        processor that was idle, and the firing of a burst (see ``FireAhead``) are then
        done before the deadline instead of after it. No run starts before its time.
        Without ``ahead``, one batch is fired.

        When more is due than one batch (fired or not), the thread becomes the burst's
        runner (``_run_burst``) if the pool has a thread free for a new leader;
        otherwise the leader keeps leading and the pool takes every run.
        """
        now, timed_by = self._wake_moment(ahead)
        more = False
        began = time.monotonic()
        try:
            more = self._engine.wake(
                now, batches=1 if ahead is None else None, timed_by=timed_by, until=ahead
            )
        except Exception:
            self._log.critical("the scheduler's timer failed", exc_info=True)
        due = self._due
        if ahead is not None:
            self._fire_ahead.learn(len(due), time.monotonic() - began)
        if not more:
            self._burst_slow = False  # this deadline's work is drained: bursts may try again
        if not due:
            if more and ahead is not None:
                arrive(ahead, early, asleep_until=self._headstart.seconds)  # a timeout, a retry
            return None
        self._due = []
        kept = self._keep(due, more=more, ahead=ahead)
        if isinstance(kept, _Burst):  # the burst runs the sync runs; the loop the others
            others = [run for run in due if run.spec.needs_loop]
        else:
            others = [run for run in due if run is not kept]
        if ahead is not None:
            arrive(ahead, early, asleep_until=self._headstart.seconds)
        for other in others:
            self._start(other)
        return kept

    def _keep(self, due: list[Run], *, more: bool, ahead: float | None) -> Run | _Burst | None:
        """What of ``due`` this thread runs itself once it hands the lead over: the
        first sync run, or the burst (more is due than one batch, fired or still
        ``more``; its runs start at ``ahead`` if given); None if the pool takes it all."""
        if more or len(due) > WAKE_BATCH:
            if self._burst_slow:
                return None if more else self._keep_one(due)
            return self._begin_burst(due, ahead, more=more)
        return self._keep_one(due)

    def _keep_one(self, due: list[Run]) -> Run | None:
        for candidate in due:
            if not candidate.spec.needs_loop:
                if self._pool.hand_over(self._timer_main):
                    return candidate
                return None  # no thread free for a new leader: the pool takes it
        return None

    # ---------------------------------------------------------------- bursts

    def _begin_burst(self, due: list[Run], ahead: float | None, *, more: bool) -> _Burst | None:
        """Make this thread the burst's runner and hand the lead over; None (nothing
        changed) when the pool has no thread free for a new leader. The burst's runs
        start at ``ahead`` (a ``time.time()`` stamp) if given, else at once: its first
        beat is then, so that the new leader does not take the burst over while its
        runner waits for its deadline (the pool would start its runs early)."""
        runs = _Burst((run for run in due if not run.spec.needs_loop), more=more)
        wait = 0.0 if ahead is None else max(0.0, ahead - time.time())
        with self._engine.lock:  # the new leader must find the burst going on
            self._burster = threading.current_thread()
            self._burst_runs = runs
            self._burst_beat = time.monotonic() + wait
        if self._pool.hand_over(self._timer_main):
            return runs
        with self._engine.lock:
            self._burster = None
            self._burst_runs = _Burst()  # keeps no finished run
        return None

    def _run_burst(self, runs: _Burst) -> None:
        """Run a burst of due work on this thread: the batch fired, then the next one,
        until nothing is due. A burst of short runs is then fired and run by one thread,
        each run started as soon as its batch is fired, with no hand-off between threads
        for the interpreter to bounce across (W2 on a 2-core machine: lateness p50 from
        about 15 to about 8 ms). Runs that block or compute are spread over the pool's
        workers instead: once the running average of the runs' durations reaches the
        pool's ``SLOW_SECONDS``, the burst ends and the pool takes the rest. The leader
        watches: if a run holds this thread for longer than ``_burst_stall``, it takes
        the burst over (``_take_over_burst``); the runs not started yet go to the pool,
        and the leader fires the rest.

        The runs that end in a plain success are finished (``Engine.finish_all``: their
        slots released, their history recorded) once the runs fired so far have all
        started, not each before the next run starts (see ``Run.run_sync``); a take-over
        finishes those the runner has not.

        ``runs`` is this burst's own deque: a later burst has another, so this thread
        never takes a run of someone else's batch, however late it comes back."""
        me = threading.current_thread()
        engine = self._engine
        log = engine.log
        pace, more, slow = 0.0, runs.more, False
        try:
            while True:
                quiet = engine.monitor is None and not log.isEnabledFor(logging.DEBUG)
                done = runs.done if quiet else None  # else every run is told of as it ends
                began = time.monotonic()
                while True:
                    try:
                        run = runs.popleft()  # atomic: a take-over takes what is left
                    except IndexError:
                        break
                    if done is None:
                        run.run_sync()
                    else:
                        run.run_quick(done)
                    self._burst_beat = ended = time.monotonic()
                    pace += (ended - began - pace) / 8
                    began = ended
                    if pace >= SLOW_SECONDS:
                        slow = more  # the pool takes the rest of this deadline's work
                        return  # _end_burst hands the runs left to the pool
                # Finished before more is fired: a job due again meanwhile finds its
                # slot free (a singleton's next run is not skipped as overlapping).
                engine.finish_all(runs.done)
                if self._burster is not me or self._timer_stop:
                    return
                try:
                    more = engine.wake(self.clock.now(), batches=1)
                except Exception:
                    more = False
                    self._log.critical("the scheduler's timer failed", exc_info=True)
                self._burst_beat = time.monotonic()
                if not more and not runs:
                    return
        finally:
            self._end_burst(me, runs, slow=slow)

    def _end_burst(self, me: threading.Thread, runs: _Burst, *, slow: bool) -> None:
        """The burst ends on its runner: the leader waits for deadlines again. Runs left
        in its deque (the burst ended early, was taken over while a run of its batch was
        being dispatched to it, or raised) go to the pool; those that ran are finished."""
        self._engine.finish_all(runs.done)
        with self._engine.lock:
            if self._burster is me:
                self._burster = None
                self._burst_slow = slow
                self._timer_wake.notify_all()
        self._start_all(_drain(runs))

    def _watch_burst(self) -> None:
        """The leader during a burst (under the engine lock): take the burst over when a
        run has held its runner for ``_burst_stall`` seconds."""
        left = self._burst_beat + self._burst_stall - time.monotonic()
        if left > 0:
            self._timer_wake.wait(min(left, _MAX_SLEEP))
            return
        self._burst_slow = True  # the pool takes the rest of this deadline's work
        self._log.debug("a burst's run is slow: the pool takes the runs left")
        self._take_over_burst()

    def _take_over_burst(self) -> None:
        """End the burst from the leader (under the engine lock): the runs it fired and
        has not started go to the pool; when stopping, they are skipped there at once."""
        self._burster = None
        self._timer_wake.notify_all()
        burst = self._burst_runs
        left = _drain(burst)
        self._engine.lock.release()
        try:
            self._engine.finish_all(burst.done)
            self._start_all(left)
        finally:
            self._engine.lock.acquire()

    def _start_all(self, runs: list[Run]) -> None:
        for index, run in enumerate(runs):
            try:
                self._start(run)
            except RuntimeError:  # the pool is shut down: none of them starts
                for refused in runs[index:]:
                    refused.refuse(Outcome.SKIPPED_STOPPING)
                return

    def _stop_timer(self) -> None:
        """Stop the timer after the engine stopped, unless a ``start()`` came since: the
        engine's state decides, under its lock, here and in ``_start_timer``, so that a
        start and a stop racing each other leave the timer as the last of them says."""
        with self._engine.lock:
            if self._engine.started:
                return
            self._timer_stop = True
            self._timer_wake.notify_all()
            if self._timer is not threading.current_thread():
                while self._timer_loops and self._timer_stop:
                    self._timer_wake.wait()
        if isinstance(self.clock, FakeClock):
            self._follow_fake_clock(self.clock)

    def stop_jobs(self) -> None:
        """Pause every job (running ones are asked to cancel); ``start()`` resumes."""
        self._check_fork()
        if self._engine.stop(Outcome.SKIPPED_STOPPING, shut_down=False):
            self._stop_timer()
            self._tell_stopped()

    def shutdown(self, timeout: timedelta | float | str | None = None) -> None:
        """Stop for good: wait up to ``timeout`` (default ``stop_timeout``) for running
        tasks, then raise :class:`~gnomon.ShutdownTimedOut` naming those still going."""
        limit = self._timeout(timeout)
        if self._shutting_down:
            if current_run.get() is None:
                self._shutdown_done.wait(limit)
            return
        self._shutting_down = True
        self._stop_requested.set()
        was_running = self._engine.stop(Outcome.SKIPPED_STOPPING, shut_down=True)
        self._stop_timer()
        if current_run.get() is not None:
            threading.Thread(
                target=self._finish_quietly,
                args=(limit, was_running),
                name="gnomon-shutdown",
                daemon=True,
            ).start()
            return
        self._finish_shutdown(limit, was_running)

    def _finish_quietly(self, limit: float, was_running: bool) -> None:
        try:
            self._finish_shutdown(limit, was_running)
        except ShutdownTimedOut as exc:
            self._log.warning("shutdown timed out; unfinished runs: %s", ", ".join(exc.unfinished))

    def _finish_shutdown(self, limit: float, was_running: bool) -> None:
        try:
            unfinished = self._wait_runs(limit)
            if unfinished:
                self._cancel_async_runs()
                self._wait_runs(_CANCEL_GRACE)  # let cancelled tasks take their last step
            self._close_backends()
            if self._durable is not None:
                self._durable.close()
            self._stop_loop()
            self._pool.shutdown(wait=False)
            self._pool.join(0.5 if not unfinished else 0.0)
            if was_running:
                self._tell_stopped()
        finally:
            self._shutdown_done.set()
        if unfinished:
            raise ShutdownTimedOut(
                f"{len(unfinished)} run(s) still going after {limit:g}s: {_first(unfinished)}",
                unfinished,
            )

    def _wait_runs(self, limit: float) -> list[str]:
        engine = self._engine
        deadline = time.monotonic() + limit
        with engine.lock:
            while engine.live_runs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                engine.wait_changed(remaining)
            return self._unfinished()

    def _cancel_async_runs(self) -> None:
        for run in list(self._engine.live_runs):
            if run.task is not None and run.loop is not None:
                run.loop.call_soon_threadsafe(run.task.cancel)

    def _close_backends(self) -> None:
        loop = self._loop
        if loop is None:
            return
        for backend in (self._elector, self._locker):
            if backend is not None:
                try:
                    asyncio.run_coroutine_threadsafe(backend.close(), loop).result(5.0)
                except Exception:
                    self._log.warning("closing %r failed", backend, exc_info=True)

    def wait_idle(self, timeout: timedelta | float | str | None = None) -> None:
        """Return once no run is executing or queued; never waits for future ticks."""
        if current_run.get() is not None:
            raise RuntimeError("wait_idle() was called from inside a run: it would wait for itself")
        limit = None if timeout is None else self._timeout(timeout)
        engine = self._engine
        deadline = None if limit is None else time.monotonic() + limit
        with engine.lock:
            while not engine.idle():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"the scheduler was not idle within {limit:g}s: "
                        f"{len(engine.live_runs)} running, {engine.jobs_waiting} queued"
                    )
                engine.wait_changed(remaining)

    def run_forever(self) -> None:
        """Start if needed and block until shutdown (or SIGINT/SIGTERM on the main thread)."""
        self.start()
        restore = self._install_signals(self._stop_requested)
        try:
            self._stop_requested.wait()
        finally:
            for signum, handler in restore.items():
                signal.signal(signum, handler)
        self.shutdown()

    def _install_signals(self, stop: threading.Event) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        restore: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            restore[signum] = signal.signal(signum, lambda *_: stop.set())
        return restore

    # ---------------------------------------------------------------- the loop thread

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=_serve_loop, args=(loop, ready), name="gnomon-loop", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def _run_coroutine(self, awaitable: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(_await(awaitable), self._ensure_loop()).result()

    def _stop_loop(self) -> None:
        with self._loop_lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not threading.current_thread():
                thread.join(1.0)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.shutdown()
            return
        try:
            self.shutdown()
        except GnomonError:
            self._log.warning("shutdown failed while an exception was in flight", exc_info=True)


class AsyncScheduler(_SchedulerCore):
    """Runs the engine on the caller's event loop; sync tasks run in a worker pool.

    ``async with gnomon.AsyncScheduler() as s:`` starts on enter and shuts down on exit.
    """

    def _init_face(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waker: LoopWaker | None = None
        """On the system clock, the thread that wakes the loop on time (see _waker)."""
        self._headstart = Headstart()
        """How early the waker wakes the loop before a deadline."""
        self._fire_ahead = FireAhead()
        """How much earlier still it wakes it before a deadline that brings a burst."""
        self._changed: asyncio.Event | None = None
        self._shutting_down = False
        self._held: list[Run] | None = None
        """Runs a wake-up ahead of its deadline dispatched, started once it comes."""

    # ---------------------------------------------------------------- driver

    def dispatch(self, run: Run) -> None:
        loop = self._require_loop()
        if _on_loop(loop):
            held = self._held
            if held is not None:
                run.prepare()  # before its deadline (see _on_timer)
                held.append(run)  # _on_timer starts it when its deadline comes
            else:
                loop.create_task(run.run_async())
        else:
            loop.call_soon_threadsafe(lambda: loop.create_task(run.run_async()))

    def report(self, effect: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            effect()
        elif _on_loop(loop):
            loop.call_soon(effect)
        else:
            loop.call_soon_threadsafe(effect)

    def on_timer(self) -> bool:
        return False

    def deadline_moved(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or isinstance(self.clock, FakeClock):
            return
        waker = self._waker
        if waker is not None:  # called under the engine's lock: the heap is ours to read
            waker.set(self._engine.next_deadline(), self._burst_ahead())
        elif _on_loop(loop):
            loop.call_soon(self._rearm)
        else:
            loop.call_soon_threadsafe(self._rearm)

    def _start_timer(self) -> None:
        loop = self._loop
        if loop is not None and self._waker is None and type(self.clock) is SystemClock:
            self._waker = LoopWaker(loop, self._on_timer, self._headstart)
        self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = self._loop
        if loop is None or not self._engine.started:
            return
        waker = self._waker
        if waker is not None:
            with self._engine.lock:
                waker.set(self._engine.next_deadline(), self._burst_ahead())
            return
        deadline = self._engine.next_deadline()
        wait = _MAX_SLEEP if deadline is None else deadline - self.clock.now().timestamp()
        self._timer = loop.call_later(max(0.0, min(wait, _MAX_SLEEP)), self._on_timer)

    def _burst_ahead(self) -> float:
        """How much earlier than its headstart to wake for the next deadline, to fire the
        burst it brings before it (under the engine's lock; see ``FireAhead``)."""
        return self._fire_ahead.before(self._engine.due_together)

    def _on_timer(self, ahead: float | None = None, early: float = 0.0) -> None:
        """The due work. ``ahead``: the deadline the waker woke the loop ``early`` before
        (the system clock only). The work is then fired as of the deadline while the loop
        is still early, batch after batch until the deadline comes, and its runs start
        when it does: the loop waits out the rest (``arrive``), so that the work between
        the wake-up and the first run, slow on a processor that was idle, and the firing
        of a burst (see ``FireAhead``) are done ahead, and so are the runs' contexts
        (``Run.prepare``) and their tasks, whose first steps run once this callback has
        returned. Without ``ahead``, one batch is fired, its tasks created a batch at a
        time (each batch's first steps run before the next batch's tasks are made), and
        the next batch is fired after its runs have begun."""
        self._timer = None
        if not self._engine.started:
            return  # a wake-up the waker posted just before the timer stopped
        now, timed_by = self._wake_moment(ahead)
        if ahead is not None:
            self._held = []
        began = time.monotonic()
        try:
            more = self._engine.wake(
                now, batches=1 if ahead is None else None, timed_by=timed_by, until=ahead
            )
        except Exception:
            self._log.critical("the scheduler's timer failed", exc_info=True)
            more = False
        finally:
            held, self._held = self._held, None
        if ahead is not None:
            if held:
                # Made now, their tasks take their first steps only once this callback has
                # returned, after the deadline: each starts as soon as the one before it
                # has begun or ended, with no task to make in between.
                loop = self._require_loop()
                for run in held:
                    loop.create_task(run.run_async())
            self._fire_ahead.learn(len(held or ()), time.monotonic() - began)
            if held or more:
                # Nothing dispatched ahead starts early.
                arrive(ahead, early, asleep_until=self._headstart.seconds)
        elif held:
            self._create_tasks(held, 0)
        if more and self._loop is not None:
            # Let the runs just dispatched start before scheduling the next batch.
            self._timer = self._loop.call_later(0, self._on_timer)
        elif held and self._loop is not None:
            # After the held runs' first steps: the next deadline's burst is counted
            # (see _burst_ahead) once they have started, not before.
            self._loop.call_soon(self._rearm)
        else:
            self._rearm()

    def _create_tasks(self, runs: list[Run], start: int) -> None:
        """Create the tasks of ``runs`` from ``start``, a batch now and the rest once the
        loop has run the first steps of this batch's."""
        loop = self._require_loop()
        end = start + WAKE_BATCH
        for run in runs[start:end]:
            loop.create_task(run.run_async())
        if end < len(runs):
            loop.call_soon(self._create_tasks, runs, end)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "the AsyncScheduler has not been started on an event loop"
                ) from None
        return self._loop

    # ---------------------------------------------------------------- jobs

    @overload
    async def add_job(
        self,
        func: Callable[..., Any] | str,
        rule: Rule,
        *,
        name: None = None,
        **options: Unpack[AddOptions],
    ) -> Job: ...

    @overload
    async def add_job(
        self,
        func: Callable[..., Any] | str,
        rule: Rule,
        *,
        name: str,
        **options: Unpack[AddOptions],
    ) -> Job | None: ...

    async def add_job(
        self, func: Callable[..., Any] | str, rule: Rule, **options: Any
    ) -> Job | None:
        """Register ``func`` to run on ``rule``. See the guide for every option.

        With a store, ``func`` may be a registered task or its name; a named durable job
        whose name holds a tombstone (it finished) returns ``None``.
        """
        if self._durable is not None and _is_durable(options):
            return await self._off_loop(self._add, func, rule, options)
        return self._add(func, rule, options)

    async def update_job(self, job_id: uuid.UUID, **changes: Unpack[UpdateOptions]) -> Job:
        if self._durable is not None:
            return await self._off_loop(self._update, job_id, dict(changes))
        return self._update(job_id, dict(changes))

    async def remove_job(self, job_id: uuid.UUID) -> None:
        self._check_fork()
        state = self._engine.jobs.get(_id_int(job_id))
        if state is not None and state.durable is not None:
            await self._off_loop(self._remove_durable, state)
        elif self._durable is not None and state is None:
            parked = await self._off_loop(self._remove_parked, job_id)
            if parked:
                return
        removed = self._engine.remove(_id_int(job_id))
        await self._record_action_async(removed, "remove", None)

    async def remove_by_tags(self, *tags: str) -> int:
        self._check_fork()
        doomed = self._jobs(frozenset(tags))
        for job in doomed:
            if job._state.durable is not None:
                await self._off_loop(self._remove_durable, job._state)
        count = self._engine.remove_by_tags(tags)
        for job in doomed:
            if job._state.removed:
                await self._record_action_async(job._state, "remove", None)
        return count

    async def history(
        self,
        *,
        job: Job | uuid.UUID | str | None = None,
        outcome: Outcome | Iterable[Outcome | None] | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Occurrences this scheduler (or, with a store, any on it) ran or skipped,
        newest first by ``scheduled_at``."""
        return await self._off_loop(self._history_records, job, outcome, since, limit)

    async def retry(self, occurrence_key: str, *, actor: str | None = None) -> None:
        """Run a finished occurrence again: same key, ``attempt + 1``, a new claim."""
        self._check_fork()
        await self._off_loop(self._retry, occurrence_key, actor)

    async def actions(
        self, *, job: Job | uuid.UUID | str | None = None, limit: int = 100
    ) -> list[ActionRecord]:
        """The pauses, resumes and removals of jobs, each with who asked, newest first
        (with a store: every scheduler's on it)."""
        return await self._off_loop(self._action_records, job, limit)

    async def _record_action_async(
        self, state: JobState, action: str, actor: str | None, detail: str | None = None
    ) -> None:
        if state.durable is None:
            self._record_action(state, action, actor, detail)
        else:
            await self._off_loop(self._record_action, state, action, actor, detail)

    async def nodes(self) -> list[NodeInfo]:
        """The schedulers on this scheduler's store (just this one without a store)."""
        return await self._off_loop(self._nodes)

    async def _off_loop(self, call: Callable[..., T], *args: Any) -> T:
        """A call that waits on the store, made from a worker thread: the loop runs on."""
        if self._durable is None:
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def jobs(self, tags: Iterable[str] | None = None) -> list[Job]:
        return self._jobs(tags)

    async def get_job(self, job_id: uuid.UUID) -> Job:
        return self._get(job_id)

    async def _job_run_now_async(
        self, state: JobState, wait: bool, actor: str | None
    ) -> RunEvent | None:
        self._check_fork()
        run = self._engine.run_now(state, self.clock.now(), want_event=wait, actor=actor)
        if not wait:
            return None
        assert run.future is not None  # noqa: S101 - requested above
        if current_run.get() is not None and not run.future.done():
            raise RuntimeError("run_now(wait=True) from inside a run could wait for itself")
        return await asyncio.wrap_future(run.future)

    def _job_run_now(
        self, state: JobState, wait: bool, actor: str | None = None
    ) -> Coroutine[Any, Any, RunEvent | None]:
        return self._job_run_now_async(state, wait, actor)

    async def _remove_state(self, state: JobState, actor: str | None) -> None:
        self._check_fork()
        if state.durable is not None:
            await self._off_loop(self._remove_durable, state)
        self._engine.remove_state(state)
        await self._record_action_async(state, "remove", actor)

    def _job_remove(self, state: JobState, actor: str | None = None) -> Coroutine[Any, Any, None]:
        return self._remove_state(state, actor)

    async def _set_paused(
        self,
        state: JobState,
        paused: bool,
        reason: str | None,
        catch_up: bool,
        actor: str | None,
    ) -> None:
        self._check_fork()
        if state.durable is not None:
            await self._off_loop(self._pause_durable, state, paused, reason)
        now = self.clock.now()
        self._engine.set_paused(state, paused, now, reason=reason, catch_up=catch_up)
        self._settle()
        if paused:
            await self._record_action_async(state, "pause", actor, reason)
        else:
            await self._record_action_async(state, "resume", actor)

    def _job_set_paused(
        self,
        state: JobState,
        paused: bool,
        reason: str | None = None,
        *,
        catch_up: bool = False,
        actor: str | None = None,
    ) -> Coroutine[Any, Any, None]:
        return self._set_paused(state, paused, reason, catch_up, actor)

    # ---------------------------------------------------------------- lifecycle

    def state_changed(self) -> None:
        loop, changed = self._loop, self._changed
        if loop is None or changed is None or loop.is_closed():
            return
        if _on_loop(loop):
            changed.set()
        else:
            loop.call_soon_threadsafe(changed.set)

    async def start(self) -> None:
        """Start (or resume) on the running loop. Idempotent."""
        self._check_fork()
        if self._engine.started:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("an AsyncScheduler stays on the event loop it first started on")
        self._loop = loop
        self._changed = asyncio.Event()
        await self._off_loop(self._start_store)
        if self._elector is not None:
            await self._elector.start()
        self._start_firing()
        if self._durable is not None:
            self._durable.start_following()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waker, self._waker = self._waker, None
        if waker is not None:
            waker.close()
        if isinstance(self.clock, FakeClock):
            self._follow_fake_clock(self.clock)

    async def stop_jobs(self) -> None:
        """Pause every job (running ones are asked to cancel); ``start()`` resumes."""
        self._check_fork()
        if self._engine.stop(Outcome.SKIPPED_STOPPING, shut_down=False):
            self._stop_timer()
            self._tell_stopped()

    async def shutdown(self, timeout: timedelta | float | str | None = None) -> None:  # noqa: ASYNC109 - the contract names it
        """Stop for good: wait up to ``timeout`` (default ``stop_timeout``) for running
        tasks, cancel async ones still going, then raise ``ShutdownTimedOut``."""
        limit = self._timeout(timeout)
        if self._shutting_down:
            return
        self._shutting_down = True
        was_running = self._engine.stop(Outcome.SKIPPED_STOPPING, shut_down=True)
        self._stop_timer()
        if current_run.get() is not None:
            task = asyncio.get_running_loop().create_task(self._finish(limit, was_running))
            task.add_done_callback(_ignore_result)
            return
        await self._finish(limit, was_running)

    async def _finish(self, limit: float, was_running: bool) -> None:
        unfinished = await self._wait_runs(limit)
        if unfinished:
            for run in list(self._engine.live_runs):
                if run.task is not None:
                    run.task.cancel()
            await self._wait_runs(0.5)
        for backend in (self._elector, self._locker):
            if backend is not None:
                try:
                    await asyncio.wait_for(backend.close(), 5.0)
                except Exception:
                    self._log.warning("closing %r failed", backend, exc_info=True)
        if self._durable is not None:
            await asyncio.to_thread(self._durable.close)
        self._pool.shutdown(wait=False)
        if was_running:
            self._tell_stopped()
        if unfinished:
            raise ShutdownTimedOut(
                f"{len(unfinished)} run(s) still going after {limit:g}s: {_first(unfinished)}",
                unfinished,
            )

    async def _wait_runs(self, limit: float) -> list[str]:
        deadline = time.monotonic() + limit
        await self._wait_until(lambda: not self._engine.live_runs, deadline)
        with self._engine.lock:
            return self._unfinished()

    async def _wait_until(self, condition: Callable[[], bool], deadline: float | None) -> bool:
        changed = self._changed
        if changed is None:  # never started: nothing can change
            return condition()
        engine = self._engine
        while True:
            with engine.lock:
                if condition():
                    return True
                changed.clear()
                engine.watchers += 1
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                if remaining is not None and remaining <= 0:
                    return False
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return condition()
            finally:
                with engine.lock:
                    engine.watchers -= 1

    async def wait_idle(self, timeout: timedelta | float | str | None = None) -> None:  # noqa: ASYNC109 - the contract names it
        """Return once no run is executing or queued; never waits for future ticks."""
        if current_run.get() is not None:
            raise RuntimeError("wait_idle() was called from inside a run: it would wait for itself")
        if self._changed is None:
            return
        limit = None if timeout is None else self._timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        if not await self._wait_until(self._engine.idle, deadline):
            engine = self._engine
            raise TimeoutError(
                f"the scheduler was not idle within {limit:g}s: "
                f"{len(engine.live_runs)} running, {engine.jobs_waiting} queued"
            )

    async def run_forever(self) -> None:
        """Start if needed and wait until shutdown."""
        await self.start()
        await self._wait_until(lambda: self._engine.shut_down, None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.shutdown()
            return
        try:
            await self.shutdown()
        except GnomonError:
            self._log.warning("shutdown failed while an exception was in flight", exc_info=True)


# -------------------------------------------------------------------- helpers


def _first(names: list[str], shown: int = 10) -> str:
    """A readable prefix of a long list (the full list stays on the exception)."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _serve_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _Burst(deque["Run"]):
    """A burst's runs fired and not started yet; ``done``: those that ran and wait for
    their bookkeeping. Its runner and a take-over both take from each, atomically.
    ``more``: more was due than the timer fired before handing the burst over."""

    __slots__ = ("done", "more")

    def __init__(self, runs: Iterable[Run] = (), *, more: bool = False) -> None:
        super().__init__(runs)
        self.done: deque[Run] = deque()
        self.more = more


def _drain(runs: deque[Run]) -> list[Run]:
    """Take every run left in ``runs``, which another thread may be taking from."""
    taken: list[Run] = []
    while True:
        try:
            taken.append(runs.popleft())
        except IndexError:
            return taken


def _check_clock(clock: object) -> Clock:
    if clock is None:
        return SystemClock()
    if not callable(getattr(clock, "now", None)):
        raise InvalidOption(
            f"clock must have a now() method returning an aware datetime, got {clock!r}"
        )
    return clock  # type: ignore[return-value]


def _check_instance(value: Any, kind: type, field: str) -> Any:
    if value is not None and not isinstance(value, kind):
        raise InvalidOption(
            f"{field} must be a {kind.__module__}.{kind.__qualname__}, got {value!r}"
        )
    return value


def _check_workers(value: object) -> int:
    if value is None:
        return _default_workers()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOption(f"max_workers must be a whole number of at least 1, got {value!r}")
    return value


def _check_limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOption(f"max_concurrent must be a whole number of at least 1, got {value!r}")
    return value


def _check_limit_mode(value: object) -> LimitMode:
    if value in (LimitMode.WAIT_LATEST, LimitMode.REPLACE):
        raise InvalidOption(
            f"limit_mode={value} has no meaning for the whole scheduler (which run would it "
            "keep or replace?); use it as a job's singleton, and LimitMode.RESCHEDULE or "
            "LimitMode.WAIT here"
        )
    if not isinstance(value, LimitMode):
        raise InvalidOption(
            f"limit_mode must be LimitMode.RESCHEDULE or LimitMode.WAIT, got {value!r}"
        )
    return value


def _check_id(value: object) -> int:
    if value is None:
        return _new_id()
    if not isinstance(value, uuid.UUID) or value.int == 0:
        raise InvalidJob(f"id must be a non-nil uuid.UUID, got {value!r}")
    return value.int


def _id_int(value: object) -> int:
    if not isinstance(value, uuid.UUID):
        raise JobNotFound(f"job ids are uuid.UUID values, got {value!r}")
    return value.int


_VERSION_4 = (0x4 << 76) | (0x2 << 62)
_VERSION_MASK = ~((0xF << 76) | (0x3 << 62))


def _new_id() -> int:
    """A random version-4 UUID, as its int (cheaper than uuid.uuid4() per job)."""
    return (random.getrandbits(128) & _VERSION_MASK) | _VERSION_4


def _is_durable(options: Mapping[str, Any]) -> bool:
    durable = options.get("durable", True)
    if not isinstance(durable, bool):
        raise InvalidJob(f"durable must be True or False, got {durable!r}")
    return durable


def _check_if_exists(value: object) -> IfExists:
    for choice in IfExists:
        if value == choice.value:
            return choice
    valid = ", ".join(repr(choice.value) for choice in IfExists)
    raise InvalidJob(f"if_exists must be one of {valid}, got {value!r}")


def _check_expected_version(expected: object, version: int) -> None:
    if expected is None:
        return
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise InvalidJob(f"expected_version must be a whole number, got {expected!r}")
    if expected != version:
        raise JobChanged(f"the job is at version {version}, not the expected {expected}")


def _check_node(value: object) -> str:
    if value is None:
        return default_node()
    if not isinstance(value, str) or not value.strip():
        raise InvalidOption(f"node must be a non-empty string (a display label), got {value!r}")
    return value


def _check_history_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOption(f"history_limit must be a whole number of at least 1, got {value!r}")
    return value
