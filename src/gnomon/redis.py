"""Redis backends: ``RedisLocker`` and ``RedisElector`` (redis-py's asyncio client).

Install with ``pip install 'gnomon[redis]'``. One Redis primary is the store (not
Redlock). Every key lives under ``{prefix}`` (a hash tag), so a Redis Cluster keeps them
in one slot.
"""

from __future__ import annotations

try:
    import redis.asyncio as aioredis
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "gnomon.redis needs the Redis driver; install it with: pip install 'gnomon[redis]'"
    ) from exc

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from gnomon._claims import ElectorTimings, LockerTimings, Verdict, refuse
from gnomon._clock import monotonic
from gnomon._distributed import Lease, Locker
from gnomon._durations import Duration, format_duration
from gnomon._errors import LeaseLost
from gnomon._events import Recovery
from gnomon._memory import CampaigningElector
from gnomon._redis_client import RedisStore, as_text
from gnomon._redis_scripts import ACQUIRE, ELECT, RELEASE, RENEW, RESIGN

__all__ = ["RedisElector", "RedisLocker"]


def _ms(value: timedelta) -> int:
    return max(1, round(value / timedelta(milliseconds=1)))


def _four(reply: object) -> Sequence[Any]:
    if not isinstance(reply, Sequence) or len(reply) != 4:
        raise TypeError(f"unexpected reply from the claim script: {reply!r}")
    return reply


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix must be a non-empty string without braces, got {prefix!r}")
    return prefix


class _RedisLease(Lease):
    def __init__(self, locker: RedisLocker, key: str, token: int, attempt: int, ttl: timedelta):
        self._locker = locker
        self.key = key
        self.token = token
        self.attempt = attempt
        self.ttl = ttl

    async def renew(self) -> None:
        locker = self._locker
        args: list[str | int] = [str(self.token), _ms(self.ttl), _ms(locker.retention)]
        if await locker._store.run(RENEW, [locker._claim_key(self.key)], args) != 1:
            raise LeaseLost(f"the lease on {self.key!r} (token {self.token}) was lost")

    async def release(self) -> None:
        locker = self._locker
        args: list[str | int] = [str(self.token), _ms(locker.retention)]
        if await locker._store.run(RELEASE, [locker._claim_key(self.key)], args) != 1:
            raise LeaseLost(f"cannot release {self.key!r}: token {self.token} no longer holds it")

    def __repr__(self) -> str:
        return f"<RedisLease {self.key!r} token={self.token} attempt={self.attempt}>"


class RedisLocker(Locker):
    """Claims occurrences in Redis: ``RedisLocker("redis://host:6379/0")``.

    ``redis`` is a URL (the client is made on first use, inside the running loop) or an
    existing ``redis.asyncio.Redis`` client. Store round trips give up after
    ``renew_interval``; any store error reaches the scheduler as a lock error.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        prefix: str = "gnomon",
        lease_ttl: Duration = timedelta(seconds=30),
        renew_interval: Duration | None = None,
        retention: Duration | None = None,
    ) -> None:
        timings = LockerTimings.parse(lease_ttl, renew_interval, retention)
        self.lease_ttl = timings.lease_ttl
        self.renew_interval = timings.renew_interval
        self.retention = timings.retention
        self.prefix = _check_prefix(prefix)
        self._store = RedisStore(redis, timeout=timings.renew_interval.total_seconds())

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisLocker:
        """Same as ``RedisLocker(url, **options)``."""
        return cls(url, **options)

    def _claim_key(self, key: str) -> str:
        return f"{{{self.prefix}}}:claim:{key}"

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: Recovery = Recovery.AT_MOST_ONCE
    ) -> Lease:
        keys = [self._claim_key(key), f"{{{self.prefix}}}:fence"]
        reply = await self._store.run(
            ACQUIRE, keys, [_ms(ttl), _ms(self.retention), recovery.value]
        )
        verdict, token, attempt, left_ms = _four(reply)
        if as_text(verdict) == Verdict.CLAIM.value:
            return _RedisLease(self, key, int(as_text(token)), int(attempt), ttl)
        left = timedelta(milliseconds=int(left_ms))
        raise refuse(key, Verdict(as_text(verdict)), int(attempt), left)

    async def close(self) -> None:
        await self._store.close()

    def __repr__(self) -> str:
        return (
            f"RedisLocker({self._store.describe()!r}, prefix={self.prefix!r}, "
            f"lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"renew_interval={format_duration(self.renew_interval)!r}, "
            f"retention={format_duration(self.retention)!r})"
        )


class RedisElector(CampaigningElector):
    """Elects one leader through a Redis key: ``RedisElector("redis://host:6379/0")``.

    The leader renews its lease every third of ``lease_ttl``; followers campaign every
    ``retry_interval``, so a dead leader is replaced within ``lease_ttl + retry_interval``.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        prefix: str = "gnomon",
        lease_ttl: Duration = timedelta(seconds=15),
        retry_interval: Duration | None = None,
    ) -> None:
        timings = ElectorTimings.parse(lease_ttl, retry_interval)
        super().__init__(timings, local_clock=monotonic)
        self.prefix = _check_prefix(prefix)
        self._store = RedisStore(redis, timeout=timings.renew_interval.total_seconds())

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisElector:
        """Same as ``RedisElector(url, **options)``."""
        return cls(url, **options)

    @property
    def _lease_key(self) -> str:
        return f"{{{self.prefix}}}:leader"

    async def _claim_term(self) -> int | None:
        keys = [self._lease_key, f"{{{self.prefix}}}:fence"]
        reply = await self._store.run(ELECT, keys, [self._holder, _ms(self.lease_ttl)])
        return None if reply is None else int(as_text(reply))

    async def _resign(self, token: int) -> None:
        await self._store.run(RESIGN, [self._lease_key], [self._holder, str(token)])

    async def _close_store(self) -> None:
        await self._store.close()

    def __repr__(self) -> str:
        return (
            f"RedisElector({self._store.describe()!r}, prefix={self.prefix!r}, "
            f"lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"retry_interval={format_duration(self.retry_interval)!r})"
        )
