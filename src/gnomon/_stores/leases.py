"""Claims in a store, seen by the run pipeline as a ``Locker`` and its ``Lease``.

A durable job's occurrence is always claimed in its store. The claim needs more than the
key (the job, the fire time, the progress to write with it), so the pipeline asks this
locker with ``acquire_run``; renewals and the release go through the usual ``Lease``
methods, and the release writes the run's outcome, which is its history record.

Store calls block (sqlite3, psycopg's sync pool), so they run in a worker thread; the
loop that drives the pipeline never waits on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

from gnomon._distributed import Lease, Locker
from gnomon._events import Outcome, Recovery
from gnomon._stores.contract import (
    ClaimRequest,
    CommandResult,
    describe_error,
    describe_traceback,
)

if TYPE_CHECKING:
    from gnomon._run import Run
    from gnomon._stores.contract import Claim, Store

__all__ = ["StoreLease", "StoreLocker"]


class StoreLease(Lease):
    """A claim on one occurrence in a store, held by one run."""

    def __init__(self, locker: StoreLocker, run: Run, claim: Claim) -> None:
        self._locker = locker
        self._run = run
        self.key = claim.key
        self.token = claim.token
        self.attempt = claim.attempt
        self.ttl = locker.lease_ttl

    async def renew(self) -> None:
        store = self._locker.store
        await asyncio.to_thread(store.renew, self.key, self.token, self.ttl)

    async def release(self) -> None:
        """Write the run's outcome: the occurrence is done."""
        await asyncio.to_thread(self._write_outcome)

    def _write_outcome(self) -> None:
        run = self._run
        started = run.started_at
        result = _command_result(run)
        retry_at = run.retry_at
        self._locker.store.finish(
            self.key,
            self.token,
            run.outcome if run.outcome is not None else Outcome.FAILED,
            finished_at=run.engine.now().astimezone(UTC),
            started_at=None if started is None else started.astimezone(UTC),
            error=describe_error(run.error),
            exit_status=None if result is None else result.exit_status,
            retry_at=None if retry_at is None else retry_at.astimezone(UTC),
            output=describe_traceback(run.error) if result is None else result.output,
        )
        if retry_at is not None and run.retry_at is None:
            # The retry was dropped (pause, removal, a new tick) while this was written.
            self._locker.store.drop_retry(self.key)

    def __repr__(self) -> str:
        return f"<StoreLease {self.key!r} token={self.token} attempt={self.attempt}>"


def _command_result(run: Run) -> CommandResult | None:
    """What a command kept for history: returned, or carried by the error it raised."""
    for candidate in (run.result, getattr(run.error, "result", None)):
        if isinstance(candidate, CommandResult):
            return candidate
    return None


class _PairedLease(Lease):
    """The store's claim plus the claim of a scheduler-level locker (a condition)."""

    def __init__(self, claim: Lease, condition: Lease) -> None:
        self._claim = claim
        self._condition = condition
        self.key = claim.key
        self.token = claim.token
        self.attempt = claim.attempt
        self.ttl = min(claim.ttl, condition.ttl)

    async def renew(self) -> None:
        await self._claim.renew()
        await self._condition.renew()

    async def release(self) -> None:
        try:
            await self._claim.release()
        finally:
            await self._condition.release()

    def __repr__(self) -> str:
        return f"<PairedLease {self._claim!r} with {self._condition!r}>"


class StoreLocker(Locker):
    """Claims durable occurrences in ``store`` for one scheduler instance.

    ``condition``, a scheduler-level locker given as well, is claimed first: it only
    adds a condition on who may run; the store's claim is what makes a run once.
    """

    def __init__(
        self, store: Store, *, node: str, instance_id: str, condition: Locker | None = None
    ) -> None:
        self.store = store
        self.node = node
        self.instance_id = instance_id
        self.condition = condition
        self.lease_ttl = store.lease_ttl
        self.renew_interval = store.renew_interval
        if condition is not None:
            self.lease_ttl = min(self.lease_ttl, condition.lease_ttl)
            self.renew_interval = min(self.renew_interval, condition.renew_interval)

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: Recovery = Recovery.AT_MOST_ONCE
    ) -> Lease:
        raise TypeError("a store claims runs, not bare keys: use acquire_run")

    async def acquire_run(self, run: Run) -> Lease:
        """Claim ``run``'s occurrence (after the condition, if any)."""
        condition = self.condition
        if condition is None:
            return await self._claim(run)
        held = await condition.acquire(run.key, condition.lease_ttl, recovery=run.spec.recovery)
        try:
            claim = await self._claim(run)
        except BaseException:
            with contextlib.suppress(Exception):
                await held.release()
            raise
        return _PairedLease(claim, held)

    async def _claim(self, run: Run) -> Lease:
        """Claim ``run``'s occurrence, counting it on its job and writing its progress."""
        state, spec = run.state, run.spec
        upcoming = state.next_fire
        request = ClaimRequest(
            key=run.key,
            job_id=state.uuid(),
            job_name=spec.name,
            scheduled_at=run.scheduled_at.astimezone(UTC),
            node=self.node,
            instance_id=self.instance_id,
            ttl=self.lease_ttl,
            recovery=spec.recovery,
            max_runs=spec.max_runs,
            next_fire=None if upcoming is None else upcoming.astimezone(UTC),
            actor=run.actor,
            started_at=run.engine.now().astimezone(UTC),
        )
        claim = await asyncio.to_thread(self.store.claim, request)
        return StoreLease(self, run, claim)

    def __repr__(self) -> str:
        return f"StoreLocker({self.store.describe()}, node={self.node!r})"
