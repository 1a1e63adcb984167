"""Values handed to user code, and the enumerations that describe runs."""

from __future__ import annotations

import enum
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

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


@dataclass(frozen=True, slots=True)
class JobContext:
    """Injected into a task that has a parameter annotated ``gnomon.JobContext``."""

    job_id: uuid.UUID
    job_name: str
    scheduled_at: datetime
    occurrence_key: str
    fencing_token: int | None
    attempt: int
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False)


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
