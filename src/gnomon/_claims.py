"""What every cluster backend and store shares: lease timings, the claim decision, node
identity and URL masking. One place, so that every backend validates and decides alike.
"""

from __future__ import annotations

import enum
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from gnomon._durations import Duration, format_duration, parse_duration
from gnomon._errors import InvalidRule, LockHeld, OccurrenceAbandoned
from gnomon._events import Recovery

__all__ = [
    "DRIFT",
    "SAFETY",
    "ClaimState",
    "ElectorTimings",
    "LockerTimings",
    "Verdict",
    "judge_claim",
    "mask_url",
    "node_identity",
    "refuse",
    "self_deadline",
]

DRIFT = 0.01
"""The fraction of a lease a node assumes its clock may run slow against the store's."""
SAFETY = 0.1
"""Seconds (at most a twentieth of the ttl) a node keeps between its deadline and expiry."""


def self_deadline(request_start: float, ttl: timedelta) -> float:
    """The monotonic instant at which a node stops acting on a lease it asked for at
    ``request_start``: before the store can let anyone else take it over."""
    seconds = ttl.total_seconds()
    return request_start + seconds * (1 - DRIFT) - min(SAFETY, seconds / 20)


def node_identity() -> str:
    """A holder name unique to this process and object: host, pid, random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for reprs, logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _duration(value: Duration, field: str) -> timedelta:
    return parse_duration(value, field=field, error=InvalidRule)


@dataclass(frozen=True, slots=True)
class LockerTimings:
    """A locker's ``lease_ttl``, ``renew_interval`` and ``retention``, validated together."""

    lease_ttl: timedelta
    renew_interval: timedelta
    retention: timedelta

    @classmethod
    def parse(
        cls,
        lease_ttl: Duration = timedelta(seconds=30),
        renew_interval: Duration | None = None,
        retention: Duration | None = None,
    ) -> LockerTimings:
        ttl = _duration(lease_ttl, "lease_ttl")
        renew = ttl / 3 if renew_interval is None else _duration(renew_interval, "renew_interval")
        if renew > ttl / 3:
            raise InvalidRule(
                f"renew_interval must be at most a third of lease_ttl ({format_duration(ttl / 3)}"
                f" for lease_ttl={format_duration(ttl)}), got {format_duration(renew)}"
            )
        keep = (
            max(timedelta(hours=24), ttl)
            if retention is None
            else _duration(retention, "retention")
        )
        if keep < ttl:
            raise InvalidRule(
                f"retention must be at least lease_ttl ({format_duration(ttl)}), "
                f"got {format_duration(keep)}"
            )
        return cls(ttl, renew, keep)


@dataclass(frozen=True, slots=True)
class ElectorTimings:
    """An elector's ``lease_ttl`` and ``retry_interval``, validated together.

    A leader renews every third of the ttl; a follower campaigns every ``retry_interval``,
    so a dead leader is replaced within ``lease_ttl + retry_interval``.
    """

    lease_ttl: timedelta
    retry_interval: timedelta

    @classmethod
    def parse(
        cls,
        lease_ttl: Duration = timedelta(seconds=15),
        retry_interval: Duration | None = None,
    ) -> ElectorTimings:
        ttl = _duration(lease_ttl, "lease_ttl")
        retry = ttl / 3 if retry_interval is None else _duration(retry_interval, "retry_interval")
        if retry > ttl:
            raise InvalidRule(
                f"retry_interval must be at most lease_ttl ({format_duration(ttl)}), "
                f"got {format_duration(retry)}"
            )
        return cls(ttl, retry)

    @property
    def renew_interval(self) -> timedelta:
        return self.lease_ttl / 3


class ClaimState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    ABANDONED = "abandoned"


class Verdict(enum.Enum):
    """What ``acquire`` does with a key, given the stored claim (if any)."""

    CLAIM = "claim"
    """No live record: a new claim, attempt 1."""
    HELD = "held"
    """A live lease: ``LockHeld`` with the time left."""
    FINISHED = "finished"
    """Released or abandoned: ``LockHeld`` for good."""
    RECLAIM = "reclaim"
    """The holder died, at-least-once: a new token, attempt + 1."""
    ABANDON = "abandon"
    """The holder died, at-most-once: record it abandoned, tell this caller."""


def judge_claim(
    state: ClaimState | None,
    lease_until: datetime,
    keep_until: datetime,
    now: datetime,
    recovery: Recovery,
) -> Verdict:
    """The claim decision, judged by the store's ``now``.

    A lease is live up to and including ``lease_until``; it may be taken over only
    strictly after it.
    """
    if state is None or now > keep_until:
        return Verdict.CLAIM
    if state is not ClaimState.RUNNING:
        return Verdict.FINISHED
    if now <= lease_until:
        return Verdict.HELD
    return Verdict.RECLAIM if recovery is Recovery.AT_LEAST_ONCE else Verdict.ABANDON


def refuse(key: str, verdict: Verdict, attempt: int, time_left: timedelta) -> LockHeld:
    """The error ``acquire`` raises for a verdict that grants nothing."""
    if verdict is Verdict.ABANDON:
        return OccurrenceAbandoned(key, attempt)
    if verdict is Verdict.HELD:
        return LockHeld(key, retry_after=max(time_left, timedelta(0)))
    return LockHeld(key, "already run or given up")
