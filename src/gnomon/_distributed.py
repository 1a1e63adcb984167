"""The contracts that let several schedulers share work: ``Locker``, ``Lease``, ``Elector``.

These docstrings are the contract every backend honours and the shared contract test
suite (``tests/distributed/``) checks. Backends are written once, async; the thread
``Scheduler`` calls them on its own event loop thread.
"""

from __future__ import annotations

import abc
from datetime import UTC, datetime, timedelta

from gnomon._events import Recovery

__all__ = ["Elector", "Lease", "Locker", "occurrence_key"]


def occurrence_key(job_name: str, scheduled_at: datetime) -> str:
    """The cluster-wide identity of one occurrence: job name and fire time in UTC.

    Fire times come from the rule, never from ``now()``, so every node computes the
    same key for the same occurrence.
    """
    utc = scheduled_at if scheduled_at.tzinfo is UTC else scheduled_at.astimezone(UTC)
    return f"{job_name}@{utc.isoformat(timespec='microseconds')[:-6]}Z"  # without "+00:00"


class Lease(abc.ABC):
    """A claim on one occurrence key, valid for a ttl unless renewed.

    ``token`` is a fencing token: every claim the locker hands out, on any key, gets a
    token larger than all earlier ones, even across a restart of the store.
    ``attempt`` is 1 for a first claim and grows with each at-least-once re-claim.
    """

    key: str
    token: int
    attempt: int
    ttl: timedelta

    @abc.abstractmethod
    async def renew(self) -> None:
        """Extend the lease to ``ttl`` from now (by the store's clock).

        Raises ``LeaseLost`` if the lease expired or another holder has the key:
        a lost lease is never retried. Any other exception is a transient store error.
        """

    @abc.abstractmethod
    async def release(self) -> None:
        """Mark the occurrence done. The claim is kept for the locker's retention
        period so that a late or skewed node still finds it and skips. Conditional on
        ``token``: a zombie's release changes nothing (and raises ``LeaseLost``)."""


class Locker(abc.ABC):
    """Claims occurrences so that each runs once across every node sharing the store.

    ``lease_ttl`` is how long a claim lives without renewal; the scheduler renews a running
    occurrence's lease every ``renew_interval`` (at most a third of the ttl) and stops
    acting on it at its own monotonic deadline. Implementations set both from their
    constructor arguments and validate them.
    """

    lease_ttl: timedelta = timedelta(seconds=30)
    renew_interval: timedelta = timedelta(seconds=10)

    @abc.abstractmethod
    async def acquire(
        self,
        key: str,
        ttl: timedelta,
        *,
        recovery: Recovery = Recovery.AT_MOST_ONCE,
    ) -> Lease:
        """Claim ``key`` for ``ttl``, judged by the store's clock.

        - Never claimed (or its retention ran out): a new lease, attempt 1.
        - Released (done): raise ``LockHeld`` with ``retry_after=None``.
        - Claimed with a live lease: raise ``LockHeld`` with ``retry_after`` = the time
          left on that lease. The scheduler asks again after it, so that a dead holder's
          occurrence is recovered (or recorded abandoned) by a surviving node.
        - Claimed, lease expired, never released (the holder died):
          ``AT_LEAST_ONCE`` re-claims it, attempt + 1, with a new larger token;
          ``AT_MOST_ONCE`` marks it abandoned and raises ``OccurrenceAbandoned`` to this
          one caller; later callers get ``LockHeld``.

        Any other exception is a lock error: the run is skipped and reported.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release connections. Called once by the scheduler at shutdown."""


class Elector(abc.ABC):
    """Chooses one leader among the nodes; only the leader runs jobs."""

    @abc.abstractmethod
    async def is_leader(self) -> int | None:
        """The current term's fencing token while this node leads, else ``None``.

        Called before every run. A node must answer ``None`` once its own monotonic
        deadline for the term has passed, even if the store cannot be reached.
        """

    async def start(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Begin campaigning (e.g. start a renewal task). Called by the scheduler's start."""

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Step down and release connections. Called once by the scheduler at shutdown."""
