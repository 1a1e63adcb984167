"""One run of a job, from its gates to its listeners, on a pool thread or on the loop.

A run that calls no async code and needs no cluster gate takes the synchronous path on a
worker thread. Everything else takes the asynchronous path on the engine's loop. Both
paths share the steps below; they differ only in whether user callables are awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
import time
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gnomon._cancel import CancelEvent
from gnomon._distributed import occurrence_key
from gnomon._errors import LeaseLost, LockHeld, OccurrenceAbandoned
from gnomon._events import JobContext, Outcome, Recovery, RunEvent, lazy_context
from gnomon._stores.contract import RunRecord, describe_error, describe_traceback
from gnomon._stores.leases import StoreLocker

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from gnomon._distributed import Lease, Locker
    from gnomon._engine import Engine
    from gnomon._job import JobSpec, JobState

__all__ = ["Run", "call_hook", "current_run"]

current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "gnomon_current_run", default=None
)
_DRIFT = 0.01
_RELEASE_PAUSE = 0.2
_LOCK_OUTCOMES = (Outcome.SKIPPED_LOCKED, Outcome.SKIPPED_LOCK_ERROR, Outcome.ABANDONED)
_making_event = threading.Lock()
_unowned: set[asyncio.Task[None]] = set()
"""Tasks no run or scheduler holds (a kept lease's release): held here until they end,
since an event loop keeps only weak references to its tasks."""


def _hold_until_done(task: asyncio.Task[None]) -> None:
    _unowned.add(task)
    task.add_done_callback(_unowned.discard)


class Run:
    """One occurrence on its way through the pipeline. Mutated only by its own pipeline,
    except ``finished`` (engine lock), ``timed_out`` and ``cancelled`` (timer)."""

    __slots__ = (
        "_cancel_event",
        "_cancel_requested",
        "_key",
        "actor",
        "admitted_at",
        "attempt",
        "base_attempt",
        "calling",
        "ended_at",
        "engine",
        "error",
        "finished",
        "future",
        "keep_on_retry",
        "keeper",
        "kept",
        "lease",
        "lease_deadline",
        "lease_lost",
        "loop",
        "manual",
        "outcome",
        "parent",
        "prepared",
        "prior",
        "replaced",
        "reported",
        "result",
        "retries",
        "retry_at",
        "scheduled_at",
        "settled",
        "spec",
        "started_at",
        "state",
        "task",
        "timed_out",
        "token",
    )

    def __init__(
        self,
        engine: Engine,
        state: JobState,
        scheduled_at: datetime,
        key: str | None,
        *,
        manual: bool = False,
        retries: int = 0,
    ) -> None:
        self.engine = engine
        self.state = state
        self.spec: JobSpec = state.spec
        self.scheduled_at = scheduled_at
        self._key = key
        self.manual = manual
        self.retries = retries
        self._cancel_requested = False
        self._cancel_event: threading.Event | None = None
        self.attempt = 1
        self.base_attempt = 0
        """Attempts of this occurrence before this run (a retry's); 0 for a first run."""
        self.replaced = False
        self.keep_on_retry = False
        """A locker's lease (not a store's claim): kept while this run's retry waits."""
        self.kept = False
        """This run's lease stays held (renewed) for its occurrence's pending retry, so
        that other nodes keep watching the occurrence and take it over if we die."""
        self.parent: Run | None = None
        self.prior: Run | None = None
        """For a retry: the attempt before it, whose record stands if this one never starts."""
        """For a retry under a locker: the first attempt's run, whose lease is kept."""
        self.retry_at: datetime | None = None
        """When the job's ``retry`` runs this occurrence again (decided as it ends)."""
        self.token: int | None = None
        self.lease: Lease | None = None
        self.lease_deadline = 0.0
        self.lease_lost = False
        self.keeper: asyncio.Task[None] | None = None
        self.started_at: datetime | None = None
        self.admitted_at = scheduled_at
        self.finished = False
        self.reported = False
        self.calling = False
        self.timed_out = False
        self.task: asyncio.Task[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: Future[RunEvent] | None = None
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.settled = False
        self.actor: str | None = None
        self.result: object = None
        self.ended_at: float | None = None
        """When the task returned (``Engine.stamp``), kept for a run whose bookkeeping
        comes later (a burst's, see ``run_sync``); None otherwise (its record is
        stamped as made)."""
        self.prepared: JobContext | None = None
        """The task's context, made ahead of the run's time (``prepare``); None for a
        task that takes none, and once the run has begun."""

    # ---------------------------------------------------------------- values

    @property
    def key(self) -> str:
        """The occurrence key, computed when first needed (most runs never need it)."""
        key = self._key
        if key is None:
            key = self._key = occurrence_key(self.spec.name, self.scheduled_at)
        return key

    @property
    def cancelled(self) -> threading.Event:
        """The event a task sees as ``ctx.cancelled``; created when first needed."""
        event = self._cancel_event
        if event is None:
            with _making_event:  # two threads reading it first must get the same event
                event = self._cancel_event
                if event is None:
                    event = CancelEvent()
                    self._cancel_event = event
                    if self._cancel_requested:  # a cancel() that ran before it existed
                        event.set()
        return event

    def cancel(self) -> None:
        """Ask the task to stop (cooperatively); safe from any thread."""
        self._cancel_requested = True
        event = self._cancel_event
        if event is not None:
            event.set()

    def want_event(self) -> None:
        self.future = Future()

    def event(
        self,
        outcome: Outcome | None,
        *,
        finished_at: datetime | None = None,
        exception: BaseException | None = None,
        result: object = None,
    ) -> RunEvent:
        spec = self.spec
        return RunEvent(
            job_id=self.state.uuid(),
            job_name=spec.name,
            tags=spec.tags,
            scheduled_at=self.scheduled_at,
            started_at=self.started_at,
            finished_at=finished_at,
            outcome=outcome,
            exception=exception,
            result=result,
            attempt=self.attempt,
            occurrence_key=self.key,
            fencing_token=self.token,
            will_retry=self.retry_at is not None,
        )

    def record(
        self,
        outcome: Outcome,
        error: BaseException | None,
        finished_at: datetime,
        *,
        count: int = 1,
        detail: str | None = None,
    ) -> RunRecord:
        """This occurrence's history record, as it ended."""
        ran = self.started_at is not None
        return RunRecord(
            occurrence_key=self.key,
            job_id=self.state.uuid(),
            job_name=self.spec.name,
            scheduled_at=self.scheduled_at,
            started_at=self.started_at,
            finished_at=finished_at if ran else None,
            outcome=outcome,
            attempt=self.attempt,
            attempts=self.attempt,
            node=self.engine.node,
            fencing_token=self.token,
            error=describe_error(error),
            detail=detail,
            count=count,
            output=describe_traceback(error),
            actor=self.actor,
        )

    def context(self) -> JobContext:
        """The task's ``JobContext``; its key and cancellation event are made when read."""
        state = self.state
        return lazy_context(
            self,
            state.uuid_value or state.uuid(),
            self.spec.name,
            self.scheduled_at,
            self.token,
            self.attempt,
        )

    def log_extra(self) -> dict[str, object]:
        job_id = self.state.uuid()
        return {
            "job_name": self.spec.name,
            "job_id": str(job_id),
            "occurrence": self.key,
        }

    def _arguments(
        self, context: JobContext | None = None
    ) -> tuple[tuple[object, ...], dict[str, object]]:
        """The task's arguments, with ``context`` (made now if not given) if it takes one."""
        spec = self.spec
        if spec.context_parameter is None or spec.context_parameter in spec.kwargs:
            return spec.args, spec.kwargs  # type: ignore[return-value]  # only unpacked
        if context is None:
            context = self.context()
        position = spec.context_position
        if position is not None:
            args = spec.args
            return (*args[:position], context, *args[position:]), spec.kwargs  # type: ignore[return-value]
        return spec.args, {**spec.kwargs, spec.context_parameter: context}

    # ---------------------------------------------------------------- synchronous path

    def run_sync(self, done: deque[Run] | None = None) -> None:
        """The whole run on the current (pool) thread.

        With ``done`` (a burst's runner, while no monitor watches and no debug log is
        kept), a run that ends in a success nobody listens to or waits for, with no
        timeout to race, leaves its bookkeeping to the caller: it keeps when its task
        returned and goes on ``done``, which the caller hands to ``Engine.finish_all``
        once the burst's due runs have started, so that each run starts sooner."""
        context, self.prepared = self.prepared, None  # it refers to this run: no cycle kept
        reset = current_run.set(self)
        try:
            listener = self.spec.before_run
            failure = None
            if listener is not None:
                failure = _call_sync(self.engine.log, listener, self._before_event())
            if self._before(failure):
                self._end_sync(*self._invoke_sync(*self._arguments(context)), done)
        except BaseException as exc:
            self._crash(exc)
        finally:
            current_run.reset(reset)

    def run_quick(self, done: deque[Run]) -> None:
        """``run_sync(done)`` in fewer steps, for a burst's runner while no monitor
        watches and no debug log is kept (when it passes ``done``): for a run with no
        ``before_run`` whose success may be finished later (``JobTraits.quiet_success``,
        and nobody waits for it), which ``prepare`` readied ahead. Whatever does not end
        in a plain success ends as in ``run_sync``."""
        spec = self.spec
        if spec.before_run is not None or self.future is not None or not spec.traits.quiet_success:
            self.run_sync(done)
            return
        context, self.prepared = self.prepared, None  # it refers to this run: no cycle kept
        engine = self.engine
        reset = current_run.set(self)
        try:
            refusal = engine.begin(self, engine.now())
            if refusal is not None:
                self.refuse(refusal)
                return
            args, kwargs = self._arguments(context)
            try:
                result = spec.func(*args, **kwargs)
                if result is not None and inspect.isawaitable(result):
                    result = engine.run_coroutine(result)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                self._end_sync(self._failure_outcome(exc), None, exc, done)
                return
            if self.replaced or self.timed_out or self.lease_lost:
                self._end_sync(self._success_outcome(), result, None, done)
                return
            self.ended_at = engine.stamp()
            self.outcome, self.result = Outcome.SUCCESS, result
            done.append(self)
        except BaseException as exc:
            self._crash(exc)
        finally:
            current_run.reset(reset)

    def prepare(self) -> None:
        """Make the task's context now, if it takes one, ahead of the run's time: the
        timer prepares the sync runs it fires before their deadline, so that less is
        left to do once it comes. (Only the context: each object made ahead lives until
        the run has begun, and the more of them a burst holds, the more often the
        garbage collector runs while it is fired.)"""
        spec = self.spec
        if spec.context_parameter is not None and spec.context_parameter not in spec.kwargs:
            self.prepared = self.context()

    def _invoke_sync(
        self, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> tuple[Outcome, object, BaseException | None]:
        try:
            result = self.spec.func(*args, **kwargs)
            if result is not None and inspect.isawaitable(result):
                result = self.engine.run_coroutine(result)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return self._failure_outcome(exc), None, exc
        return self._success_outcome(), result, None

    def _end_sync(
        self,
        outcome: Outcome,
        result: object,
        exc: BaseException | None,
        done: deque[Run] | None,
    ) -> None:
        """The task returned or raised: finish the run now, or leave a plain success on
        ``done`` (see ``run_sync``)."""
        if (
            done is not None
            and outcome is Outcome.SUCCESS
            and self.future is None  # nobody waits for it
            and self.spec.traits.quiet_success
        ):
            self.ended_at = self.engine.stamp()
            self.outcome, self.result = outcome, result
            done.append(self)
        else:
            self._complete(outcome, result, exc, _call_sync)

    # ---------------------------------------------------------------- asynchronous path

    async def run_async(self) -> None:
        """The whole run as a task on the engine's loop."""
        current_run.set(self)  # in the task's own copy of the context
        self.task = asyncio.current_task()
        self.loop = asyncio.get_running_loop()
        try:
            engine = self.engine
            if engine.elector is None and self.spec.locker is None and self.state.durable is None:
                await self._run_claimed()  # nothing to claim, so no lease to release
            elif await self._claim():
                await self._run_holding_claim()
        except GeneratorExit:
            raise  # the loop was closed under a task that ignored its cancellation
        except asyncio.CancelledError:
            self._cancelled_midway()
        except BaseException as exc:
            self._crash(exc)
        finally:
            # The task keeps its context, and this run keeps the task: without this, the
            # two make a reference cycle that only the garbage collector frees.
            current_run.set(None)
            # The history keeps finished runs: let the task and its context go now, so
            # that they are not carried from one collector generation to the next.
            self.task = self.prepared = None

    async def _run_holding_claim(self) -> None:
        try:
            await self._run_claimed()
        except GeneratorExit:
            raise  # no awaiting while the coroutine is being closed
        except BaseException:
            await self._release_lease()
            raise
        await self._release_lease()

    async def _run_claimed(self) -> None:
        listener = self.spec.before_run
        before = None
        if listener is not None:
            before = await _call_async(self.engine.log, listener, self._before_event())
        if not self._lease_still_valid():
            expired = LeaseLost(f"the lease on {self.key!r} expired before the run could start")
            await self._refuse(Outcome.SKIPPED_LOCK_ERROR, expired)
            return
        if self._before(before):
            self.calling = True
            try:
                outcome, result, exc = await self._invoke_async()
            finally:
                self.calling = False
            listener = self._ended(outcome, result, exc)
            if self._untold(outcome, listener):
                self.engine.finish(self)  # the hot path: no coroutine more
                return
            event = self._finished_event(outcome, result, exc)
            await _call_async(self.engine.log, listener, event)
            self._close(event)

    def _cancelled_midway(self) -> None:
        """The pipeline itself was cancelled (shutdown): account for the run, quietly."""
        if self.finished:
            return
        if self.started_at is None:
            event = self.event(Outcome.CANCELLED)
            self.engine.skip_running(self, event)
            self._resolve(event)
        else:
            self._close(self.event(Outcome.CANCELLED, finished_at=self.engine.now()))

    async def _invoke_async(self) -> tuple[Outcome, object, BaseException | None]:
        context, self.prepared = self.prepared, None  # it refers to this run: no cycle kept
        args, kwargs = self._arguments(context)
        try:
            if self.spec.is_async:
                result = await self.spec.func(*args, **kwargs)  # type: ignore[misc]
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self.engine.executor, _call_with, self.spec.func, args, kwargs
                )
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError as exc:
            if not self._uncancel_own():
                raise
            return self._failure_outcome(exc), None, exc
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return self._failure_outcome(exc), None, exc
        return self._success_outcome(), result, None

    def _uncancel_own(self) -> bool:
        """True if the cancellation came from gnomon (timeout, lost lease, shutdown)."""
        if not (self.timed_out or self.lease_lost or self._cancel_requested):
            return False
        task = self.task
        if task is not None:
            while task.uncancel():
                pass
        return True

    # ---------------------------------------------------------------- cluster gates

    async def _claim(self) -> bool:
        engine = self.engine
        if engine.elector is not None:
            try:
                token = await engine.elector.is_leader()
            except Exception as exc:
                engine.leading = False
                return await self._refuse(Outcome.SKIPPED_LOCK_ERROR, exc)
            engine.leading = token is not None
            if token is None:
                return await self._refuse(Outcome.SKIPPED_NOT_LEADER, None)
            self.token = token
        locker = self.spec.locker
        if self.state.durable is not None:
            locker = engine.store_locker  # a durable occurrence is always claimed in the store
        return True if locker is None else await self._acquire(locker)

    async def _acquire(self, locker: Locker) -> bool:
        ttl = locker.lease_ttl
        # What waits to be caught up before this claim; a success shows the store (or
        # locker) answers again, but only for what failed before it was asked.
        catching_up = not (self.manual or self.retries)
        noted = self.engine.unclaimed_of(self.state) if catching_up else []
        begun = time.monotonic()
        try:
            if isinstance(locker, StoreLocker):
                lease = await locker.acquire_run(self)
            else:
                lease = await locker.acquire(self._lock_key(), ttl, recovery=self.spec.recovery)
        except OccurrenceAbandoned as exc:
            self.attempt = exc.attempt
            return await self._refuse(Outcome.ABANDONED, exc)
        except LockHeld as exc:
            if exc.retry_after is not None:
                self.engine.schedule_retry(self, exc.retry_after)
            return await self._refuse(Outcome.SKIPPED_LOCKED, exc)
        except Exception as exc:
            if self.retries:  # recovering a dead holder's occurrence: keep trying
                self.engine.schedule_retry(self, locker.renew_interval)
            elif isinstance(locker, StoreLocker):
                self.engine.note_unclaimed(self)  # caught up once the store is back
            elif self.spec.recovery is Recovery.AT_LEAST_ONCE:
                # claimed again after a renew interval, by the job's catch-up policy
                self.engine.note_unclaimed(self, probe_after=locker.renew_interval)
            return await self._refuse(Outcome.SKIPPED_LOCK_ERROR, exc)
        self.lease, self.token = lease, lease.token
        # A store counts attempts itself; a locker counts the claims of one lock key.
        stored = isinstance(locker, StoreLocker)
        if noted:
            self.engine.catch_up_unclaimed(self, noted={self.state: noted})  # answers again
        self.attempt = lease.attempt if stored else self.base_attempt + lease.attempt
        self.keep_on_retry = not stored
        self.lease_deadline = begun + _lease_window(ttl.total_seconds())
        # The keeper needs nothing of the run's context (which holds this run: a cycle);
        # a task made in an empty context copies it (a task factory may not take context=).
        loop = asyncio.get_running_loop()
        self.keeper = contextvars.Context().run(loop.create_task, self._keep_lease(locker))
        return True

    def _lock_key(self) -> str:
        """What a locker claims: the occurrence key; a retry's own key per attempt, so
        that it is claimed again, with a larger fencing token."""
        if self.base_attempt == 0:
            return self.key
        return f"{self.key}/attempt-{self.base_attempt + 1}"

    async def _refuse(self, outcome: Outcome, exc: BaseException | None) -> bool:
        event = self.event(outcome, exception=exc)
        quiet_retry = self.retries > 0 and outcome is Outcome.SKIPPED_LOCKED
        if outcome in _LOCK_OUTCOMES and not quiet_retry:
            await _call_async(self.engine.log, self.spec.after_lock_error, event)
        if quiet_retry:
            self.engine.finish(self)
        else:
            self.engine.skip_running(self, event)
        self._resolve(event)
        return False

    def _lease_still_valid(self) -> bool:
        if self.lease is None or self.lease_lost:
            return not self.lease_lost
        return time.monotonic() < self.lease_deadline

    async def _keep_lease(self, locker: Locker) -> None:
        lease = self.lease
        assert lease is not None  # noqa: S101 - started right after the claim
        ttl = locker.lease_ttl.total_seconds()
        interval = locker.renew_interval.total_seconds()
        while True:
            remaining = self.lease_deadline - time.monotonic()
            await asyncio.sleep(max(0.0, min(interval, remaining)))
            if time.monotonic() >= self.lease_deadline:
                self._lose_lease("its lease ran out before it could be renewed")
                return
            begun = time.monotonic()
            failure: Exception | None = None
            try:
                async with asyncio.timeout(self.lease_deadline - begun):
                    await lease.renew()
            except Exception as exc:
                failure = exc
            if self.keeper is not asyncio.current_task():
                # Whoever stops the keeper lets go of it, then cancels it; a store client
                # can swallow that cancellation (on Python 3.11, ``asyncio.wait_for``
                # returns a reply that arrives together with the cancel). The run is over.
                return
            if isinstance(failure, LeaseLost):
                self._lose_lease(f"its lease was lost: {failure}")
                return
            if failure is not None:
                self.engine.log.warning(
                    "renewing the lease of %s failed: %r", self.key, failure, extra=self.log_extra()
                )
                interval = max(0.05, interval / 3)
                continue
            self.lease_deadline = begun + _lease_window(ttl)
            interval = locker.renew_interval.total_seconds()

    def _lose_lease(self, why: str) -> None:
        self.lease_lost = True
        self.cancel()
        self.engine.log.warning(
            "run of %s stops acting: %s", self.spec.name, why, extra=self.log_extra()
        )
        if self.spec.is_async and self.task is not None and self.started_at is not None:
            self.task.cancel()

    def _stop_keeper(self) -> None:
        """Cancel the lease's keeper and let go of it: its cancellation's traceback holds
        its frame, which holds this run (a cycle, were the run to hold it still)."""
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            keeper.cancel()

    async def _release_lease(self) -> None:
        if self.kept:  # held on for the pending retry, which releases it
            self.engine.settled(self)
            return
        self._stop_keeper()
        try:
            if self.lease is not None:
                await self._release_held()
        finally:
            if self.lease is not None:
                self.engine.settled(self)

    async def release_kept(self) -> None:
        """Release a lease kept for a retry: the occurrence is done (or given up)."""
        if not self.kept:
            return
        self.kept = False
        self._stop_keeper()
        await self._release_held()

    def stop_keeping_soon(self) -> None:
        """Stop renewing a kept lease without releasing it (the scheduler stops): it runs
        out, and a node watching the occurrence takes the retry over."""
        keeper, loop = self.keeper, self.loop
        if keeper is None or loop is None or loop.is_closed():
            return
        self.keeper = None
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(keeper.cancel)

    def release_kept_soon(self) -> None:
        """``release_kept`` from any thread, on the loop that holds the lease."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(
                lambda: _hold_until_done(loop.create_task(self.release_kept()))
            )

    async def _release_held(self) -> None:
        lease = self.lease
        if lease is None or self.lease_lost:
            return
        # A release lost to a passing store error would leave the occurrence looking
        # abandoned: try again while the lease is still ours.
        while True:
            try:
                await lease.release()
            except LeaseLost:
                return
            except Exception as exc:
                if time.monotonic() + _RELEASE_PAUSE < self.lease_deadline:
                    await asyncio.sleep(_RELEASE_PAUSE)
                    continue
                self.engine.log.warning(
                    "releasing the lease of %s failed: %r", self.key, exc, extra=self.log_extra()
                )
            return

    # ---------------------------------------------------------------- shared steps

    def _before_event(self) -> RunEvent:
        return self.event(None)

    def _before(self, failure: BaseException | None) -> bool:
        """After ``before_run``: begin the run, or report why it does not happen."""
        engine = self.engine
        if failure is not None:
            event = self.event(Outcome.SKIPPED_BEFORE_RUN, exception=failure)
            engine.skip_running(self, event)
            self._resolve(event)
            return False
        refusal = engine.begin(self, engine.now())
        if refusal is not None:
            self.refuse(refusal)
            return False
        monitor = engine.monitor
        if monitor is not None:
            event = self.event(None)
            call_hook(engine.log, monitor.run_started, event)
            delay = (event.started_at - self.scheduled_at).total_seconds()  # type: ignore[operator]
            call_hook(engine.log, monitor.scheduling_delay, event, delay)
        return True

    def _ended(
        self, outcome: Outcome, result: object, exc: BaseException | None
    ) -> Callable[[RunEvent], object] | None:
        """Keep how the task ended and plan a retry of a failure (a timed-out sync run
        planned it at its deadline); the listener to tell, if any."""
        self.outcome, self.error, self.result = outcome, exc, result
        if outcome is Outcome.SUCCESS:
            return self.spec.after_run
        if not self.reported:
            self._plan_retry(outcome, exc)
        return self.spec.after_error

    def refuse(self, outcome: Outcome) -> None:
        """The run does not start (it never called its task, nor ``before_run`` since)."""
        self.prepared = None
        event = self.event(outcome)
        self.engine.skip_running(self, event)
        self._resolve(event)

    def _plan_retry(
        self, outcome: Outcome, exc: BaseException | None, ended: datetime | None = None
    ) -> None:
        """Decide on a retry as the attempt ends (at ``ended``, by default now)."""
        if outcome is not Outcome.SUCCESS and self.spec.retry is not None:
            self.engine.plan_retry(self, outcome, exc, ended or self.engine.now())

    def _success_outcome(self) -> Outcome:
        if self.replaced:
            return Outcome.CANCELLED
        if self.timed_out:
            return Outcome.TIMED_OUT
        return Outcome.CANCELLED if self.lease_lost else Outcome.SUCCESS

    def _failure_outcome(self, exc: BaseException) -> Outcome:
        if self.replaced:
            return Outcome.CANCELLED
        if self.timed_out:
            return Outcome.TIMED_OUT
        # A task that raises once asked to stop (removal, stop, shutdown, a lost lease)
        # was cancelled, whatever it raised on its way out.
        if self.lease_lost or self._cancel_requested or isinstance(exc, asyncio.CancelledError):
            return Outcome.CANCELLED
        return Outcome.FAILED

    def _finished_event(
        self, outcome: Outcome, result: object, exc: BaseException | None
    ) -> RunEvent:
        event = self.event(outcome, finished_at=self.engine.now(), exception=exc, result=result)
        log = self.engine.log
        retry_at = self.retry_at
        if retry_at is not None:
            log.warning(
                "run of %s ended %s (attempt %d); retrying at %s",
                self.spec.name,
                outcome.value,
                self.attempt,
                retry_at.isoformat(),
                exc_info=exc,
                extra=self.log_extra(),
            )
        elif outcome is Outcome.FAILED:
            log.error("run of %s failed", self.spec.name, exc_info=exc, extra=self.log_extra())
        elif outcome is not Outcome.SUCCESS:
            log.warning("run of %s ended %s", self.spec.name, outcome.value, extra=self.log_extra())
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("run of %s succeeded", self.spec.name, extra=self.log_extra())
        return event

    def _complete(
        self,
        outcome: Outcome,
        result: object,
        exc: BaseException | None,
        call: Callable[[logging.Logger, Callable[[RunEvent], object] | None, RunEvent], object],
    ) -> None:
        listener = self._ended(outcome, result, exc)
        if self._untold(outcome, listener):
            self.engine.finish(self)
            return
        event = self._finished_event(outcome, result, exc)
        call(self.engine.log, listener, event)
        self._close(event)

    def report_timed_out(self, deadline: datetime) -> None:
        """A sync run past its deadline: tell listeners and the monitor now, not when (or
        whether) the thread returns. The run keeps its slot until it does."""
        self._plan_retry(Outcome.TIMED_OUT, None, deadline)
        event = self.event(Outcome.TIMED_OUT, finished_at=deadline)
        self.engine.log.warning(
            "run of %s timed out; its thread is still running",
            self.spec.name,
            extra=self.log_extra(),
        )
        _call_sync(self.engine.log, self.spec.after_error, event)
        monitor = self.engine.monitor
        if monitor is not None:
            call_hook(self.engine.log, monitor.run_finished, event)
        self._resolve(event)

    def _untold(self, outcome: Outcome, listener: object) -> bool:
        """Whether the run ends without an event: nothing to tell, or a sync task's
        timeout told of it already, at its deadline (its thread ran on, holding the slot)."""
        engine = self.engine
        if (  # a plain success that nobody listens to needs no event: the hot path
            outcome is Outcome.SUCCESS
            and listener is None
            and engine.monitor is None
            and self.future is None
            and not engine.log.isEnabledFor(logging.DEBUG)
        ):
            return True
        return self.spec.timeout is not None and not engine.claim_report(self)

    def _close(self, event: RunEvent) -> None:
        if self.outcome is None:
            self.outcome, self.error = event.outcome, event.exception
        monitor = self.engine.monitor
        if monitor is not None:
            call_hook(self.engine.log, monitor.run_finished, event)
        self.engine.finish(self)
        self._resolve(event)

    def report_skip(self, event: RunEvent) -> None:
        monitor = self.engine.monitor
        if monitor is not None:
            call_hook(self.engine.log, monitor.run_skipped, event)
        self._resolve(event)

    def _resolve(self, event: RunEvent) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(event)

    def _crash(self, exc: BaseException) -> None:
        """Last resort: a failure inside gnomon's own steps. Never leak the slot."""
        self.engine.log.critical(
            "internal error while running %s", self.spec.name, exc_info=exc, extra=self.log_extra()
        )
        if self.outcome is None:
            self.outcome, self.error = Outcome.FAILED, exc
        self.engine.finish(self)
        self._resolve(self.event(Outcome.FAILED, exception=exc))
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc

    def interrupt(self) -> None:
        """Called at the run's timeout: cancel an async task (sync tasks only get the flag)."""
        task, loop = self.task, self.loop
        if self.spec.is_async and self.calling and task is not None and loop is not None:
            loop.call_soon_threadsafe(task.cancel)


def _lease_window(ttl: float) -> float:
    """How long after a request's start the holder may still act on its lease."""
    return ttl * (1 - _DRIFT) - min(ttl / 10, 1.0)


def _call_with(
    func: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    return func(*args, **kwargs)


def _call_sync(
    log: logging.Logger, listener: Callable[[RunEvent], object] | None, event: RunEvent
) -> BaseException | None:
    """Call a listener; return (and log) its exception instead of raising it."""
    if listener is None:
        return None
    try:
        listener(event)
    except Exception as exc:
        _log_listener_failure(log, listener, event, exc)
        return exc
    return None


async def _call_async(
    log: logging.Logger, listener: Callable[[RunEvent], object] | None, event: RunEvent
) -> BaseException | None:
    if listener is None:
        return None
    try:
        outcome = listener(event)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception as exc:
        _log_listener_failure(log, listener, event, exc)
        return exc
    return None


def _log_listener_failure(
    log: logging.Logger, listener: object, event: RunEvent, exc: BaseException
) -> None:
    name = getattr(listener, "__qualname__", repr(listener))
    level = logging.INFO if event.outcome is None else logging.ERROR
    log.log(
        level,
        "listener %s of %s raised %r",
        name,
        event.job_name,
        exc,
        exc_info=level == logging.ERROR,
        extra={
            "job_name": event.job_name,
            "job_id": str(event.job_id),
            "occurrence": event.occurrence_key,
        },
    )


def call_hook(log: logging.Logger, hook: Callable[..., object], *args: object) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("monitor hook %s raised", getattr(hook, "__qualname__", hook))
