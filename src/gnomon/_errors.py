"""Every error gnomon raises on purpose.

The hierarchy::

    GnomonError
    ├── InvalidOption (ValueError)          a scheduler option is malformed
    ├── InvalidRule (ValueError)            a time rule or a duration is malformed
    ├── InvalidJob (ValueError)             a job option is malformed or contradictory
    │   └── InvalidJobArguments (TypeError) args/kwargs do not fit the task's signature
    ├── JobNotFound (LookupError)           no job has that id (any more)
    ├── SchedulerShutDown (RuntimeError)    the scheduler was shut down
    ├── ShutdownTimedOut (TimeoutError)     runs were still going when shutdown gave up
    ├── LockHeld                            another node holds (or finished) an occurrence
    │   └── OccurrenceAbandoned             its holder died; at-most-once gives it up
    ├── LeaseLost                           a lease expired or was taken over
    ├── SchedulerForked (RuntimeError)      a scheduler is used in a child after os.fork()
    ├── JobExists (ValueError)              a durable job of that name exists (if_exists="error")
    ├── JobChanged (RuntimeError)           expected_version is stale: someone changed the job
    ├── UnknownTask (LookupError)           no task of that name is registered in this process
    ├── StoreUnavailable (ConnectionError)  the store cannot be reached; nothing was changed
    └── StoreVersionError (RuntimeError)    the store was written by a newer gnomon
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

__all__ = [
    "GnomonError",
    "InvalidJob",
    "InvalidJobArguments",
    "InvalidOption",
    "InvalidRule",
    "JobChanged",
    "JobExists",
    "JobNotFound",
    "LeaseLost",
    "LockHeld",
    "OccurrenceAbandoned",
    "SchedulerForked",
    "SchedulerShutDown",
    "ShutdownTimedOut",
    "StoreUnavailable",
    "StoreVersionError",
    "UnknownTask",
]


class GnomonError(Exception):
    """The root of every error gnomon raises on purpose."""


class InvalidOption(GnomonError, ValueError):
    """A scheduler option (timezone, clock, limits, backends...) is malformed."""


class InvalidRule(GnomonError, ValueError):
    """A time rule, or a duration, is malformed or can never fire."""


class InvalidJob(GnomonError, ValueError):
    """A job option is malformed, or options contradict each other."""


class InvalidJobArguments(InvalidJob, TypeError):
    """The job's ``args``/``kwargs`` do not fit the task's signature."""


class JobNotFound(GnomonError, LookupError):
    """No job has this id: it never existed, or it was removed."""


class SchedulerShutDown(GnomonError, RuntimeError):
    """The scheduler was shut down; it cannot take new work."""


class SchedulerForked(GnomonError, RuntimeError):
    """A scheduler started in a parent process was used in a forked child."""


class ShutdownTimedOut(GnomonError, TimeoutError):
    """Shutdown waited its full timeout and some runs were still going.

    ``unfinished`` names them, as ``"job name @ occurrence"`` strings.
    """

    def __init__(self, message: str, unfinished: Sequence[str]) -> None:
        super().__init__(message)
        self.unfinished: tuple[str, ...] = tuple(unfinished)


class LockHeld(GnomonError):
    """Another holder has claimed this occurrence (or already ran it).

    ``retry_after`` is set when the claim is live but unfinished: the time until its
    lease expires, after which asking again tells whether its holder died.
    """

    def __init__(
        self,
        key: str,
        detail: str = "held by another node",
        *,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(f"occurrence {key!r} is {detail}")
        self.key = key
        self.retry_after = retry_after


class OccurrenceAbandoned(LockHeld):
    """The occurrence's holder died mid-run and the job is at-most-once.

    The locker raises this to exactly one caller, the one that recorded the
    occurrence as abandoned; every later caller gets a plain :class:`LockHeld`.
    """

    def __init__(self, key: str, attempt: int) -> None:
        super().__init__(key, f"abandoned: its holder died during attempt {attempt}")
        self.attempt = attempt


class LeaseLost(GnomonError):
    """A lease could not be renewed: it expired, or another holder took it."""


class JobExists(GnomonError, ValueError):
    """A durable job of that name is already stored and ``if_exists="error"`` was given."""


class JobChanged(GnomonError, RuntimeError):
    """``expected_version`` did not match: the job was changed since it was read."""


class UnknownTask(GnomonError, LookupError):
    """No task of that name is registered in this process."""


class StoreUnavailable(GnomonError, ConnectionError):
    """The store could not be reached. The call that raised this changed nothing."""


class StoreVersionError(GnomonError, RuntimeError):
    """The store's schema was written by a newer gnomon; nothing was written to it."""
