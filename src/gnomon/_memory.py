"""In-process ``MemoryLocker`` and ``MemoryElector``, and the campaign loop every elector shares.

The memory backends hold their state under one ``threading.Lock``, so schedulers on
different threads (each with its own event loop) can share one instance as if it were a
store. The timing rules and the claim decision live in ``_claims`` (shared by every
backend and store); the campaign loop (``CampaigningElector``) is shared with the Redis
and PostgreSQL electors.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gnomon._claims import (
    ClaimState,
    ElectorTimings,
    LockerTimings,
    Verdict,
    judge_claim,
    node_identity,
    refuse,
    self_deadline,
)
from gnomon._clock import Clock
from gnomon._distributed import Elector, Lease, Locker
from gnomon._durations import Duration, format_duration
from gnomon._errors import LeaseLost
from gnomon._events import Recovery

__all__ = ["CampaigningElector", "MemoryElector", "MemoryLocker"]

logger = logging.getLogger("gnomon")


class _MonotonicUTC:
    """UTC wall time read once, then advanced by the monotonic clock: a store clock
    that never steps."""

    __slots__ = ("_mono", "_wall")

    def __init__(self) -> None:
        self._wall = datetime.now(UTC)
        self._mono = time.monotonic()

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=time.monotonic() - self._mono)


@dataclass(slots=True)
class _Claim:
    state: ClaimState
    token: int
    attempt: int
    lease_until: datetime
    keep_until: datetime


class _MemoryLease(Lease):
    def __init__(self, locker: MemoryLocker, key: str, claim: _Claim, ttl: timedelta) -> None:
        self._locker = locker
        self.key = key
        self.token = claim.token
        self.attempt = claim.attempt
        self.ttl = ttl

    async def renew(self) -> None:
        self._locker._renew(self)

    async def release(self) -> None:
        self._locker._release(self)

    def __repr__(self) -> str:
        return f"<MemoryLease {self.key!r} token={self.token} attempt={self.attempt}>"


class MemoryLocker(Locker):
    """An in-process locker: one instance is the store that several schedulers share.

    Same contract as the Redis and PostgreSQL lockers; ``clock`` (anything with
    ``now()``, such as ``gnomon.testing.FakeClock``) is the store's clock, so lease
    edges can be tested without waiting.
    """

    def __init__(
        self,
        *,
        lease_ttl: Duration = timedelta(seconds=30),
        renew_interval: Duration | None = None,
        retention: Duration | None = None,
        clock: Clock | None = None,
    ) -> None:
        timings = LockerTimings.parse(lease_ttl, renew_interval, retention)
        self.lease_ttl = timings.lease_ttl
        self.renew_interval = timings.renew_interval
        self.retention = timings.retention
        self._clock: Clock = clock if clock is not None else _MonotonicUTC()
        self._claims: dict[str, _Claim] = {}
        self._expiries: list[tuple[datetime, str]] = []
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: Recovery = Recovery.AT_MOST_ONCE
    ) -> Lease:
        with self._lock:
            now = self._clock.now()
            self._forget_expired(now)
            claim = self._claims.get(key)
            if claim is None:
                verdict = Verdict.CLAIM
            else:
                verdict = judge_claim(
                    claim.state, claim.lease_until, claim.keep_until, now, recovery
                )
            return self._apply(key, claim, verdict, now, ttl)

    def _apply(
        self, key: str, claim: _Claim | None, verdict: Verdict, now: datetime, ttl: timedelta
    ) -> Lease:
        if verdict in (Verdict.CLAIM, Verdict.RECLAIM):
            attempt = 1 if claim is None or verdict is Verdict.CLAIM else claim.attempt + 1
            fresh = _Claim(ClaimState.RUNNING, next(self._tokens), attempt, now + ttl, now)
            self._claims[key] = fresh
            self._keep(key, fresh, now + self.retention)
            return _MemoryLease(self, key, fresh, ttl)
        if claim is None:  # unreachable: only CLAIM is judged without a stored claim
            raise RuntimeError(f"no stored claim for {key!r} yet verdict {verdict}")
        if verdict is Verdict.ABANDON:
            claim.state = ClaimState.ABANDONED
            self._keep(key, claim, now + self.retention)
        raise refuse(key, verdict, claim.attempt, claim.lease_until - now)

    def _keep(self, key: str, claim: _Claim, until: datetime) -> None:
        claim.keep_until = until
        heapq.heappush(self._expiries, (until, key))

    def _forget_expired(self, now: datetime) -> None:
        # Lazy deletion: an entry whose claim was kept longer since is skipped.
        while self._expiries and now > self._expiries[0][0]:
            until, key = heapq.heappop(self._expiries)
            claim = self._claims.get(key)
            if claim is not None and claim.keep_until == until:
                del self._claims[key]

    def _owned(self, lease: _MemoryLease) -> _Claim | None:
        claim = self._claims.get(lease.key)
        if claim is None or claim.token != lease.token or claim.state is not ClaimState.RUNNING:
            return None
        return claim

    def _renew(self, lease: _MemoryLease) -> None:
        with self._lock:
            now = self._clock.now()
            claim = self._owned(lease)
            if claim is None or now > claim.lease_until:
                raise LeaseLost(f"the lease on {lease.key!r} (token {lease.token}) was lost")
            claim.lease_until = now + lease.ttl
            if now + self.retention > claim.keep_until:
                self._keep(lease.key, claim, now + self.retention)

    def _release(self, lease: _MemoryLease) -> None:
        with self._lock:
            now = self._clock.now()
            claim = self._owned(lease)
            if claim is None:
                raise LeaseLost(
                    f"cannot release {lease.key!r}: token {lease.token} no longer holds it"
                )
            claim.state = ClaimState.DONE
            self._keep(lease.key, claim, now + self.retention)

    def __repr__(self) -> str:
        return (
            f"MemoryLocker(lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"renew_interval={format_duration(self.renew_interval)!r}, "
            f"retention={format_duration(self.retention)!r})"
        )


@dataclass(frozen=True, slots=True)
class _Term:
    token: int
    deadline: float


class CampaigningElector(Elector, abc.ABC):
    """An elector that holds a leadership lease in a store and renews it in a task.

    Subclasses implement one store round trip, ``_claim_term`` (take the lease if it is
    free, expired or already ours; answer the term's token, or ``None`` when another node
    holds it), and ``_resign``. ``is_leader`` never touches the store once started: it
    answers from the last successful round trip and the node's own monotonic deadline, so
    an unreachable store makes it answer ``None`` in time.
    """

    def __init__(self, timings: ElectorTimings, *, local_clock: Callable[[], float]) -> None:
        self.lease_ttl = timings.lease_ttl
        self.retry_interval = timings.retry_interval
        self._timings = timings
        self._local_clock = local_clock
        self._holder = node_identity()
        self._term: _Term | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @abc.abstractmethod
    async def _claim_term(self) -> int | None:
        """Take or renew the leadership lease; the term's token, or ``None``."""

    @abc.abstractmethod
    async def _resign(self, token: int) -> None:
        """Give the lease up if term ``token`` still holds it."""

    async def _close_store(self) -> None:
        """Release connections."""

    async def is_leader(self) -> int | None:
        if self._task is None and not self._closed:
            await self._campaign_once()
        term = self._term
        if term is None or self._local_clock() >= term.deadline:
            return None
        return term.token

    async def start(self) -> None:
        if self._task is not None or self._closed:
            return
        await self._campaign_once()
        self._task = asyncio.get_running_loop().create_task(self._campaign_forever())

    async def _campaign_forever(self) -> None:
        answered = True
        while not self._closed:
            await asyncio.sleep(self._pause(answered).total_seconds())
            # ``close`` cancels this task, but a store client can swallow that
            # cancellation: on Python 3.11, ``asyncio.wait_for`` (redis-py sends through
            # it) returns a result that arrived together with the cancel. The flag ends
            # the loop after such a round, so ``close`` never waits on it for good.
            answered = await self._campaign_once()

    def _pause(self, answered: bool) -> timedelta:
        if self._term is None:
            return self.retry_interval
        # A leader whose renewal failed retries sooner, to renew before its deadline.
        renew = self._timings.renew_interval
        return renew if answered else max(renew / 3, timedelta(milliseconds=10))

    async def _campaign_once(self) -> bool:
        """One round trip; False if the store did not answer."""
        started = self._local_clock()
        try:
            async with asyncio.timeout(self._timings.renew_interval.total_seconds()):
                token = await self._claim_term()
        except Exception as exc:
            # The term held so far stays until its own deadline, which the store cannot move.
            logger.warning("leader election: the store did not answer (%s)", _describe(exc))
            return False
        previous = self._term
        self._term = None if token is None else _Term(token, self_deadline(started, self.lease_ttl))
        if previous is None and token is not None:
            logger.info("leader election: %s leads, term token %d", self._holder, token)
        elif previous is not None and token is None:
            logger.warning("leader election: %s lost the leadership", self._holder)
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            task = self._task
            if task is not None:
                task.cancel()
                # ``wait`` rather than ``await task``: a cancellation of ``close`` itself
                # must propagate, not be taken for the campaign's.
                await asyncio.wait({task})
                if not task.cancelled():
                    task.result()  # what the campaign raised, if anything
            term, self._term = self._term, None
            if term is not None:
                async with asyncio.timeout(self._timings.renew_interval.total_seconds()):
                    await self._resign(term.token)
        except Exception as exc:
            logger.warning("leader election: could not step down (%s)", _describe(exc))
        finally:
            self._term = None  # a close cut short leaves the lease to run out
            await self._close_store()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Board:
    """The shared state of a group of ``MemoryElector`` nodes."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.holder: str | None = None
        self.token = 0
        self.lease_until = datetime.min.replace(tzinfo=UTC)
        self.tokens = itertools.count(1)


class MemoryElector(CampaigningElector):
    """An in-process elector. ``peer()`` makes another node of the same group.

    ``clock`` (anything with ``now()``) is both the store's clock and the nodes' own, so
    lease edges can be tested on a ``FakeClock``.
    """

    def __init__(
        self,
        *,
        lease_ttl: Duration = timedelta(seconds=15),
        retry_interval: Duration | None = None,
        clock: Clock | None = None,
        _board: _Board | None = None,
    ) -> None:
        store_clock: Clock = clock if clock is not None else _MonotonicUTC()
        self._board = _board if _board is not None else _Board(store_clock)
        board_clock = self._board.clock
        super().__init__(
            ElectorTimings.parse(lease_ttl, retry_interval),
            local_clock=lambda: board_clock.now().timestamp(),
        )

    def peer(self) -> MemoryElector:
        """Another node campaigning for the same leadership."""
        return MemoryElector(
            lease_ttl=self.lease_ttl, retry_interval=self.retry_interval, _board=self._board
        )

    async def _claim_term(self) -> int | None:
        board = self._board
        with board.lock:
            now = board.clock.now()
            if board.holder == self._holder and now <= board.lease_until:
                board.lease_until = now + self.lease_ttl
                return board.token
            if board.holder is not None and now <= board.lease_until:
                return None
            board.holder, board.token = self._holder, next(board.tokens)
            board.lease_until = now + self.lease_ttl
            return board.token

    async def _resign(self, token: int) -> None:
        board = self._board
        with board.lock:
            if board.holder == self._holder and board.token == token:
                board.holder = None

    def __repr__(self) -> str:
        return (
            f"MemoryElector(lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"retry_interval={format_duration(self.retry_interval)!r})"
        )
