"""A job's frozen definition, its engine-owned state, and the live ``Job`` handle."""

from __future__ import annotations

import dataclasses
import operator
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime, timedelta

    from gnomon._distributed import Locker
    from gnomon._events import LimitMode, Recovery, RunEvent
    from gnomon._retry import Retry
    from gnomon._rules import Rule
    from gnomon._run import Run

__all__ = [
    "PER_JOB_FIELDS",
    "TRAIT_FIELDS",
    "CatchUp",
    "Durable",
    "FrozenSpec",
    "Job",
    "JobSpec",
    "JobState",
    "JobTraits",
    "OwnSpecState",
    "new_spec",
]

CatchUp = Literal["latest", "skip", "all"]


@dataclass(frozen=True, slots=True)
class JobTraits:
    """What a job's spec shares with the other jobs of its function and options: validated
    once, and held by reference, so that a job pays only for what is its own."""

    func: Callable[..., object]
    singleton: LimitMode | None
    max_runs: int | None
    start_immediately: bool
    jitter: timedelta | None
    timeout: timedelta | None
    before_run: Callable[[RunEvent], object] | None
    after_run: Callable[[RunEvent], object] | None
    after_error: Callable[[RunEvent], object] | None
    after_lock_error: Callable[[RunEvent], object] | None
    locker: Locker | None
    recovery: Recovery
    interval_from_completion: bool
    is_async: bool
    context_parameter: str | None
    context_position: int | None
    needs_loop: bool
    options: Mapping[str, Any]
    """The options given, less the per-job ones (``PER_JOB_FIELDS``)."""
    catch_up: CatchUp = "latest"
    catch_up_window: timedelta | None = None
    catch_up_limit: int = 100
    retry: Retry | None = None
    _variants: dict[tuple[str | None, int | None], JobTraits] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    quiet_success: bool = field(init=False, compare=False, repr=False)
    """A success of the job's runs may be finished after the runs behind it have
    started: nobody listens to it (no ``after_run``), and its finish times nothing (no
    timeout to race, no re-arming from its completion). See ``Run.run_sync``."""

    def __post_init__(self) -> None:
        quiet = (
            self.after_run is None and self.timeout is None and not self.interval_from_completion
        )
        object.__setattr__(self, "quiet_success", quiet)  # a frozen dataclass's own field

    def with_context(self, parameter: str | None, position: int | None) -> JobTraits:
        """These traits with the ``JobContext`` passed as ``parameter`` at ``position``
        (which depends on how many arguments a job gives), made once per shape."""
        if parameter == self.context_parameter and position == self.context_position:
            return self
        variant = self._variants.get((parameter, position))
        if variant is None:
            variant = dataclasses.replace(
                self, context_parameter=parameter, context_position=position
            )
            self._variants[parameter, position] = variant
        return variant


PER_JOB_FIELDS = ("name", "args", "kwargs", "tags", "start_at", "stop_at")
"""A spec's own fields; every other option is one of its shared ``JobTraits``."""


class JobSpec:
    """Everything ``add_job`` was told about a job, validated; read-only.

    The per-job options are fields of its own; everything else is read through to its
    ``traits``, which jobs of one function with the same options share (read-only, so a
    change to one job builds it a new spec and never touches another's). Two kinds hold
    the fields: a :class:`FrozenSpec`, a value of its own (shared by the jobs added with
    no options, and what updates and stored jobs build), and an :class:`OwnSpecState`,
    the state of a job added with per-job options only, which is its own spec.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # the fields; each kind stores them
        name: str
        args: tuple[object, ...]
        kwargs: Mapping[str, object]
        tags: frozenset[str]
        start_at: datetime | None
        stop_at: datetime | None
        traits: JobTraits

    @property
    def options(self) -> dict[str, Any]:
        """The options that build this spec again (``update_job`` starts from them)."""
        return {
            **self.traits.options,
            "name": self.name,
            "args": self.args,
            "kwargs": self.kwargs,
            "tags": self.tags,
            "start_at": self.start_at,
            "stop_at": self.stop_at,
        }

    def fields(
        self,
    ) -> tuple[
        str,
        tuple[object, ...],
        Mapping[str, object],
        frozenset[str],
        datetime | None,
        datetime | None,
        JobTraits,
    ]:
        """The spec's own fields and its traits, in ``new_spec``'s order: two specs of
        either kind hold the same when these are equal."""
        return (
            self.name,
            self.args,
            self.kwargs,
            self.tags,
            self.start_at,
            self.stop_at,
            self.traits,
        )

    if TYPE_CHECKING:  # the traits read through; set below as C-level getters

        @property
        def func(self) -> Callable[..., object]: ...
        @property
        def singleton(self) -> LimitMode | None: ...
        @property
        def max_runs(self) -> int | None: ...
        @property
        def start_immediately(self) -> bool: ...
        @property
        def jitter(self) -> timedelta | None: ...
        @property
        def timeout(self) -> timedelta | None: ...
        @property
        def before_run(self) -> Callable[[RunEvent], object] | None: ...
        @property
        def after_run(self) -> Callable[[RunEvent], object] | None: ...
        @property
        def after_error(self) -> Callable[[RunEvent], object] | None: ...
        @property
        def after_lock_error(self) -> Callable[[RunEvent], object] | None: ...
        @property
        def locker(self) -> Locker | None: ...
        @property
        def recovery(self) -> Recovery: ...
        @property
        def interval_from_completion(self) -> bool: ...
        @property
        def is_async(self) -> bool: ...
        @property
        def context_parameter(self) -> str | None: ...
        @property
        def context_position(self) -> int | None: ...
        @property
        def needs_loop(self) -> bool: ...
        @property
        def catch_up(self) -> CatchUp: ...
        @property
        def catch_up_window(self) -> timedelta | None: ...
        @property
        def catch_up_limit(self) -> int: ...
        @property
        def retry(self) -> Retry | None: ...


TRAIT_FIELDS = tuple(f.name for f in dataclasses.fields(JobTraits) if f.init)
for _trait in TRAIT_FIELDS:
    if _trait != "options":
        setattr(JobSpec, _trait, property(operator.attrgetter(f"traits.{_trait}")))


@dataclass(frozen=True, slots=True)
class FrozenSpec(JobSpec):
    """A spec that is a value of its own. Replaced whole by updates."""

    name: str
    args: tuple[object, ...]
    kwargs: Mapping[str, object]
    tags: frozenset[str]
    start_at: datetime | None
    stop_at: datetime | None
    traits: JobTraits


_new = object.__new__
_set_name, _set_args, _set_kwargs, _set_tags, _set_start_at, _set_stop_at, _set_traits = (
    FrozenSpec.__dict__[name].__set__ for name in (*PER_JOB_FIELDS, "traits")
)


def new_spec(  # noqa: PLR0917 - the fields in order, like the dataclass's own __init__
    name: str,
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
    tags: frozenset[str],
    start_at: datetime | None,
    stop_at: datetime | None,
    traits: JobTraits,
) -> FrozenSpec:
    """``FrozenSpec(...)`` of values already validated, at a third of its cost (a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``): the path
    of every stored job loaded, and of a job's spec kept past its removal."""
    spec: FrozenSpec = _new(FrozenSpec)
    _set_name(spec, name)
    _set_args(spec, args)
    _set_kwargs(spec, kwargs)
    _set_tags(spec, tags)
    _set_start_at(spec, start_at)
    _set_stop_at(spec, stop_at)
    _set_traits(spec, traits)
    return spec


class Durable:
    """What a durable job carries beside its spec: its row's identity and progress."""

    __slots__ = ("anchor", "definition", "pause_reason", "source", "task", "version")

    def __init__(
        self,
        *,
        task: str,
        definition: int,
        anchor: datetime,
        version: int,
        source: str | None = None,
        pause_reason: str | None = None,
    ) -> None:
        self.task = task
        self.definition = definition
        """The stored definition's hash: a changed row is told by it, without the text."""
        self.anchor = anchor
        self.version = version
        self.source = source
        self.pause_reason = pause_reason


class JobState:
    """The engine's record of one job. Only the engine writes it, under its lock.

    Kept small (a job costs a few hundred bytes): the id is stored as its 128-bit int,
    the queue of waiting runs exists only while something waits, and handles are
    created on demand.
    """

    __slots__ = (
        "armed",
        "cancelling",
        "durable",
        "id",
        "immediate",
        "last_run",
        "next_fire",
        "pause_reason",
        "paused",
        "pending_retry",
        "removed",
        "resume_from",
        "rule",
        "running",
        "runs_started",
        "spec",
        "stored_next",
        "uuid_value",
        "waiting",
    )

    def __init__(self, job_id: int, spec: JobSpec, rule: Rule) -> None:
        self.id = job_id
        self.spec = spec
        self.rule = rule
        self.armed = 0
        """The sequence number of the heap entry that fires the job; 0 while unarmed."""
        self.next_fire: datetime | None = None
        self.immediate = False
        self.last_run: datetime | None = None
        self.runs_started = 0
        self.running = 0
        self.waiting: deque[Run] | None = None
        self.removed = False
        self.cancelling = False
        self.paused = False
        self.pause_reason: str | None = None
        self.resume_from: datetime | None = None
        """Where a paused (or stopped) job's schedule stood: ``resume`` goes on from it."""
        self.pending_retry: list[Any] | None = None
        """Retries waiting for their time (engine entries); they hold the job's
        singleton slot. ``None`` while there are none, which is nearly always."""
        self.uuid_value: uuid.UUID | None = None
        self.durable: Durable | None = None
        self.stored_next: datetime | None = None

    def detach_spec(self) -> None:
        """Hold the spec apart from the state, as the job is removed: nothing to do
        here (see ``OwnSpecState``)."""

    def uuid(self) -> uuid.UUID:
        """The job's id as a UUID, made once when first asked for."""
        value = self.uuid_value
        if value is None:
            value = self.uuid_value = uuid.UUID(int=self.id)
        return value


class OwnSpecState(JobState, JobSpec):
    """The state of a job added with per-job options only (``name``, ``args``, ``tags``,
    ``start_at``...) on its function's shared traits: the state holds those options and
    is the job's spec, so that the job costs the collector one object, not two.

    Its spec fields are set here and never changed. An update gives the job a new spec
    (a ``FrozenSpec``), as any job gets one, and a run keeps the spec it started with;
    removal does the same (``detach_spec``), so that a removed job is not a reference
    cycle that only the collector frees.
    """

    __slots__ = ("args", "kwargs", "name", "start_at", "stop_at", "tags", "traits")

    def __init__(  # noqa: PLR0917 - the id, the rule, then new_spec's fields
        self,
        job_id: int,
        rule: Rule,
        name: str,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        tags: frozenset[str],
        start_at: datetime | None,
        stop_at: datetime | None,
        traits: JobTraits,
    ) -> None:
        JobState.__init__(self, job_id, self, rule)
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.tags = tags
        self.start_at = start_at
        self.stop_at = stop_at
        self.traits = traits

    def detach_spec(self) -> None:
        """Give the job a spec apart from its state, of the same fields."""
        if self.spec is self:
            self.spec = new_spec(*self.fields())


class JobOwner:
    """What a ``Job`` handle needs from its scheduler (both faces provide it)."""

    def _job_next_runs(self, state: JobState, count: int) -> list[datetime]:
        raise NotImplementedError

    def _job_run_now(self, state: JobState, wait: bool, actor: str | None = None) -> object:
        raise NotImplementedError

    def _job_remove(self, state: JobState, actor: str | None = None) -> object:
        raise NotImplementedError

    def _job_set_paused(
        self,
        state: JobState,
        paused: bool,
        reason: str | None = None,
        *,
        catch_up: bool = False,
        actor: str | None = None,
    ) -> object:
        raise NotImplementedError


class Job:
    """A live handle onto a registered job.

    Reads reflect the scheduler's current state. After the job is removed the handle
    keeps its last values, and its actions raise :class:`~gnomon.JobNotFound`.
    With :class:`~gnomon.AsyncScheduler`, ``run_now``, ``remove``, ``pause`` and ``resume``
    return coroutines.
    """

    __slots__ = ("_owner", "_state")

    def __init__(self, owner: JobOwner, state: JobState) -> None:
        self._owner = owner
        self._state = state

    @property
    def id(self) -> uuid.UUID:
        return self._state.uuid()

    @property
    def name(self) -> str:
        return self._state.spec.name

    @property
    def tags(self) -> frozenset[str]:
        return self._state.spec.tags

    @property
    def rule(self) -> Rule:
        return self._state.rule

    @property
    def last_run(self) -> datetime | None:
        """When the latest run started, or ``None`` before the first."""
        return self._state.last_run

    @property
    def next_run(self) -> datetime | None:
        """The next scheduled fire time; ``None`` before start, while paused, when exhausted."""
        state = self._state
        return None if state.paused or state.removed else state.next_fire

    @property
    def is_running(self) -> bool:
        return bool(self._state.running)

    @property
    def paused(self) -> bool:
        return self._state.paused

    @property
    def removed(self) -> bool:
        return self._state.removed

    @property
    def pause_reason(self) -> str | None:
        """Why the job was paused (durable jobs keep it in their store)."""
        state = self._state
        if not state.paused:
            return None
        durable = state.durable
        return state.pause_reason if durable is None else durable.pause_reason

    @property
    def version(self) -> int:
        """The stored definition's version (durable jobs); 1 for a job kept in memory."""
        durable = self._state.durable
        return 1 if durable is None else durable.version

    @property
    def durable(self) -> bool:
        """True for a job kept in the scheduler's store."""
        return self._state.durable is not None

    def next_runs(self, count: int) -> list[datetime]:
        """The next ``count`` fire times (fewer if the rule runs out or ``stop_at`` comes)."""
        return self._owner._job_next_runs(self._state, count)

    def run_now(self, *, wait: bool = False, actor: str | None = None) -> Any:
        """Run once now, through the singleton/limit gates, without moving the schedule.

        Returns at once; with ``wait=True`` returns the run's :class:`~gnomon.RunEvent`.
        ``actor`` names who asked (a dashboard user); history keeps it in ``actor``.
        """
        _check_actor(actor)
        return self._owner._job_run_now(self._state, wait, actor)

    def remove(self, *, actor: str | None = None) -> Any:
        """Remove the job (its running runs are cancelled). The scheduler's ``actions()``
        records the removal with ``actor``, who asked (``None``: code)."""
        _check_actor(actor)
        return self._owner._job_remove(self._state, actor)

    def pause(self, reason: str | None = None, *, actor: str | None = None) -> Any:
        """Stop firing until ``resume()``; ``reason`` is kept (and stored, if durable).

        The scheduler's ``actions()`` records the pause with ``actor`` and the reason.
        """
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"a pause reason is a string, got {reason!r}")
        _check_actor(actor)
        return self._owner._job_set_paused(self._state, paused=True, reason=reason, actor=actor)

    def resume(self, catch_up: bool = False, *, actor: str | None = None) -> Any:
        """Fire again, from the first fire time after now in the job's existing phase.

        What fell due while paused is recorded as one ``SKIPPED_MISSED`` record; with
        ``catch_up=True`` the job's catch-up policy decides what of it still runs.
        The scheduler's ``actions()`` records the resume with ``actor``.
        """
        if not isinstance(catch_up, bool):
            raise TypeError(f"catch_up must be True or False, got {catch_up!r}")
        _check_actor(actor)
        return self._owner._job_set_paused(
            self._state, paused=False, catch_up=catch_up, actor=actor
        )

    def __repr__(self) -> str:
        status = "removed" if self._state.removed else f"next_run={self.next_run}"
        return f"<Job {self.name!r} {self.id} {self.rule!r} {status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other._state is self._state

    def __hash__(self) -> int:
        return hash(self._state.id)


def _check_actor(actor: object) -> None:
    if actor is not None and not isinstance(actor, str):
        raise TypeError(f"an actor is a string (who asked) or None, got {actor!r}")
