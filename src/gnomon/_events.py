"""Values handed to user code, and the enumerations that describe runs."""

from __future__ import annotations

import enum
import threading
import uuid
from dataclasses import FrozenInstanceError, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from gnomon._cancel import CancelEvent

if TYPE_CHECKING:
    from gnomon._job import Job

__all__ = ["JobContext", "LimitMode", "Monitor", "Outcome", "Recovery", "RunEvent"]


class Outcome(enum.Enum):
    """How one occurrence of a job ended, or why it did not run."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    SKIPPED_SINGLETON = "skipped_singleton"
    SKIPPED_LIMIT = "skipped_limit"
    SKIPPED_LOCKED = "skipped_locked"
    SKIPPED_LOCK_ERROR = "skipped_lock_error"
    SKIPPED_NOT_LEADER = "skipped_not_leader"
    SKIPPED_MISSED = "skipped_missed"
    SKIPPED_BEFORE_RUN = "skipped_before_run"
    SKIPPED_STOPPING = "skipped_stopping"

    @property
    def skipped(self) -> bool:
        """True for the outcomes of runs that never started."""
        return self.value.startswith("skipped_") or self is Outcome.ABANDONED


class LimitMode(enum.Enum):
    """What happens to a tick that arrives while its job (or the scheduler) is at its limit."""

    RESCHEDULE = "reschedule"
    """Skip the tick; the schedule goes on."""
    WAIT = "wait"
    """Queue the tick; it runs as soon as a slot frees up."""
    WAIT_LATEST = "wait_latest"
    """Keep at most one waiting tick, the latest; the one it displaces is skipped."""
    REPLACE = "replace"
    """Cancel the running run and start the new tick as soon as it has returned."""


class Recovery(enum.Enum):
    """What happens to a claimed occurrence whose runner died (with a locker)."""

    AT_MOST_ONCE = "at_most_once"
    """Record it as abandoned; never run it again."""
    AT_LEAST_ONCE = "at_least_once"
    """Let another node re-claim it once the lease expires, with ``attempt + 1``."""


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One occurrence of a job, as listeners and monitors see it.

    For ``before_run``, ``outcome``, ``finished_at`` and ``result`` are ``None``;
    for a skipped occurrence ``started_at`` is ``None``.
    """

    job_id: uuid.UUID
    job_name: str
    tags: frozenset[str]
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outcome: Outcome | None
    exception: BaseException | None
    result: object
    attempt: int
    occurrence_key: str
    fencing_token: int | None
    will_retry: bool = False
    """For a failed or timed-out attempt: whether the job's ``retry`` runs it again."""


class _ContextSource(Protocol):
    """What a ``JobContext`` made for a run reads lazily: the run itself."""

    @property
    def key(self) -> str: ...

    @property
    def cancelled(self) -> threading.Event: ...


class JobContext:
    """Injected into a task that has a parameter annotated ``gnomon.JobContext``.

    Immutable. ``occurrence_key`` and ``cancelled`` are made when first read: most tasks
    never read them, and a burst of runs should not pay for them. It compares, hashes,
    copies, pickles and matches (``case JobContext(job_id, job_name)``) as the frozen
    dataclass it replaces did; ``dataclasses.replace`` gives way to constructing one.
    """

    __match_args__ = (
        "job_id",
        "job_name",
        "scheduled_at",
        "occurrence_key",
        "fencing_token",
        "attempt",
        "cancelled",
    )

    __slots__ = (
        "_cancelled",
        "_occurrence_key",
        "_source",
        "attempt",
        "fencing_token",
        "job_id",
        "job_name",
        "scheduled_at",
    )

    job_id: uuid.UUID
    job_name: str
    scheduled_at: datetime
    fencing_token: int | None
    attempt: int
    _occurrence_key: str | None
    _cancelled: threading.Event | None
    _source: _ContextSource | None

    def __init__(  # noqa: PLR0917 - positional, as when it was a dataclass
        self,
        job_id: uuid.UUID,
        job_name: str,
        scheduled_at: datetime,
        occurrence_key: str,
        fencing_token: int | None,
        attempt: int,
        cancelled: threading.Event | None = None,
    ) -> None:
        event = CancelEvent() if cancelled is None else cancelled
        _fill(self, job_id, job_name, scheduled_at, fencing_token, attempt, occurrence_key, event)

    @property
    def occurrence_key(self) -> str:
        """The cluster-wide identity of this occurrence (job name and UTC fire time)."""
        key = self._occurrence_key
        if key is None:
            key = self._source.key  # type: ignore[union-attr]  # set when the key is not
            object.__setattr__(self, "_occurrence_key", key)
        return key

    @property
    def cancelled(self) -> threading.Event:
        """Set when the run is asked to stop (removal, stop, shutdown, timeout)."""
        event = self._cancelled
        if event is None:
            event = self._source.cancelled  # type: ignore[union-attr]  # set when it is not
            object.__setattr__(self, "_cancelled", event)
        return event

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: a JobContext is immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: a JobContext is immutable")

    def _values(self) -> tuple[object, ...]:
        return (
            self.job_id,
            self.job_name,
            self.scheduled_at,
            self.occurrence_key,
            self.fencing_token,
            self.attempt,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[type[JobContext], tuple[object, ...]]:
        """Copies and pickles hold the values (and the event), never the run."""
        return (type(self), (*self._values(), self.cancelled))

    def __repr__(self) -> str:
        return (
            f"JobContext(job_id={self.job_id!r}, job_name={self.job_name!r}, "
            f"scheduled_at={self.scheduled_at!r}, occurrence_key={self.occurrence_key!r}, "
            f"fencing_token={self.fencing_token!r}, attempt={self.attempt!r}, "
            f"cancelled={self.cancelled!r})"
        )


_SET_JOB_ID, _SET_JOB_NAME, _SET_SCHEDULED_AT, _SET_FENCING_TOKEN, _SET_ATTEMPT = (
    JobContext.__dict__[name].__set__
    for name in ("job_id", "job_name", "scheduled_at", "fencing_token", "attempt")
)
_SET_OCCURRENCE_KEY, _SET_CANCELLED, _SET_SOURCE = (
    JobContext.__dict__[name].__set__ for name in ("_occurrence_key", "_cancelled", "_source")
)


def _fill(  # noqa: PLR0917 - every slot of a JobContext, in order
    ctx: JobContext,
    job_id: uuid.UUID,
    job_name: str,
    scheduled_at: datetime,
    fencing_token: int | None,
    attempt: int,
    occurrence_key: str | None,
    cancelled: threading.Event | None,
    source: _ContextSource | None = None,
) -> None:
    """Set a new context's slots through their descriptors (an immutable context
    refuses ``ctx.name = ...``; the descriptors cost a third less than
    ``object.__setattr__``, which looks each name up first)."""
    _SET_JOB_ID(ctx, job_id)
    _SET_JOB_NAME(ctx, job_name)
    _SET_SCHEDULED_AT(ctx, scheduled_at)
    _SET_FENCING_TOKEN(ctx, fencing_token)
    _SET_ATTEMPT(ctx, attempt)
    _SET_OCCURRENCE_KEY(ctx, occurrence_key)
    _SET_CANCELLED(ctx, cancelled)
    _SET_SOURCE(ctx, source)


def lazy_context(  # noqa: PLR0917 - a context's values, in order
    source: _ContextSource,
    job_id: uuid.UUID,
    job_name: str,
    scheduled_at: datetime,
    fencing_token: int | None,
    attempt: int,
) -> JobContext:
    """A context whose key and cancellation event are read from ``source`` (the run)
    when first asked for."""
    ctx: JobContext = _new_context(JobContext)
    _fill(ctx, job_id, job_name, scheduled_at, fencing_token, attempt, None, None, source)
    return ctx


_new_context = object.__new__


class Monitor:
    """Hooks into the scheduler's life. Every method does nothing; override what you need.

    Hooks run outside the scheduler's state lock, on whichever thread or task reached
    the event. An exception in a hook is logged and otherwise ignored.
    """

    def scheduler_started(self) -> None:
        """The scheduler started (or resumed after ``stop_jobs``)."""

    def scheduler_stopped(self) -> None:
        """The scheduler stopped: by ``stop_jobs`` or by shutdown."""

    def job_registered(self, job: Job) -> None:
        """A job was added, or replaced by ``update_job``."""

    def job_unregistered(self, job: Job) -> None:
        """A job was removed: by a call, by ``max_runs``, ``stop_at`` or exhaustion."""

    def run_started(self, event: RunEvent) -> None:
        """A run is about to call its task."""

    def run_finished(self, event: RunEvent) -> None:
        """A run's task returned, raised, timed out or was cancelled."""

    def run_skipped(self, event: RunEvent) -> None:
        """An occurrence did not run; ``event.outcome`` says why."""

    def scheduling_delay(self, event: RunEvent, delay: float) -> None:
        """A run started ``delay`` seconds after its scheduled time."""
