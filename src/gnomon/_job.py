"""A job's frozen definition, its engine-owned state, and the live ``Job`` handle."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime, timedelta

    from gnomon._distributed import Locker
    from gnomon._events import LimitMode, Recovery, RunEvent
    from gnomon._retry import Retry
    from gnomon._rules import Rule
    from gnomon._run import Run

__all__ = ["CatchUp", "Durable", "Job", "JobSpec", "JobState"]

CatchUp = Literal["latest", "skip", "all"]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything ``add_job`` was told about a job, validated. Replaced whole by updates."""

    func: Callable[..., object]
    args: tuple[object, ...]
    kwargs: Mapping[str, object]
    name: str
    tags: frozenset[str]
    singleton: LimitMode | None
    max_runs: int | None
    start_at: datetime | None
    start_immediately: bool
    stop_at: datetime | None
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
    catch_up: CatchUp = "latest"
    catch_up_window: timedelta | None = None
    catch_up_limit: int = 100
    retry: Retry | None = None


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
        "cancelling",
        "durable",
        "generation",
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
        self.generation = 0
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

    def uuid(self) -> uuid.UUID:
        """The job's id as a UUID, made once when first asked for."""
        value = self.uuid_value
        if value is None:
            value = self.uuid_value = uuid.UUID(int=self.id)
        return value


class JobOwner:
    """What a ``Job`` handle needs from its scheduler (both faces provide it)."""

    def _job_next_runs(self, state: JobState, count: int) -> list[datetime]:
        raise NotImplementedError

    def _job_run_now(self, state: JobState, wait: bool, actor: str | None = None) -> object:
        raise NotImplementedError

    def _job_remove(self, state: JobState) -> object:
        raise NotImplementedError

    def _job_set_paused(
        self,
        state: JobState,
        paused: bool,
        reason: str | None = None,
        *,
        catch_up: bool = False,
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
        if actor is not None and not isinstance(actor, str):
            raise TypeError(f"an actor is a string, got {actor!r}")
        return self._owner._job_run_now(self._state, wait, actor)

    def remove(self) -> Any:
        return self._owner._job_remove(self._state)

    def pause(self, reason: str | None = None) -> Any:
        """Stop firing until ``resume()``; ``reason`` is kept (and stored, if durable)."""
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"a pause reason is a string, got {reason!r}")
        return self._owner._job_set_paused(self._state, paused=True, reason=reason)

    def resume(self, *, catch_up: bool = False) -> Any:
        """Fire again, from the first fire time after now in the job's existing phase.

        What fell due while paused is recorded as one ``SKIPPED_MISSED`` record; with
        ``catch_up=True`` the job's catch-up policy decides what of it still runs.
        """
        if not isinstance(catch_up, bool):
            raise TypeError(f"catch_up must be True or False, got {catch_up!r}")
        return self._owner._job_set_paused(self._state, paused=False, catch_up=catch_up)

    def __repr__(self) -> str:
        status = "removed" if self._state.removed else f"next_run={self.next_run}"
        return f"<Job {self.name!r} {self.id} {self.rule!r} {status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other._state is self._state

    def __hash__(self) -> int:
        return hash(self._state.id)
