"""One Redis client per event loop, made on first use inside that loop.

Users build lockers before the scheduler's loop exists (the thread ``Scheduler`` runs its
own), so a client made from a URL is created lazily, in the loop that first needs it.
A client the user passed in is used as it is.

A script goes to the server as ``EVAL`` (its source) the first time, then as ``EVALSHA``:
one round trip either way. redis-py's script objects start with ``EVALSHA`` and answer a
``NOSCRIPT`` with ``SCRIPT LOAD`` and a second ``EVALSHA``, three round trips that a slow
link can stretch past the store timeout on the first renewal of a lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Awaitable, Sequence
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from gnomon._claims import mask_url

__all__ = ["RedisStore", "as_text"]


def as_text(value: object) -> str:
    """A reply as text, whether or not the client decodes responses."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class RedisStore:
    """Runs gnomon's scripts against a Redis given as a URL or as a client."""

    def __init__(self, target: str | aioredis.Redis, *, timeout: float) -> None:
        if not isinstance(target, str | aioredis.Redis):
            raise TypeError(
                f"expected a redis:// URL or a redis.asyncio.Redis client, got {target!r}"
            )
        self._target = target
        self._timeout = timeout
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._known_shas: dict[str, str] = {}  # source -> SHA1 of scripts the server ran

    def describe(self) -> str:
        """The URL with its password masked, or the client's repr."""
        target = self._target
        return mask_url(target) if isinstance(target, str) else repr(target)

    def _client(self) -> aioredis.Redis:
        if isinstance(self._target, aioredis.Redis):
            return self._target
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # No retries: a retried claim whose first reply was lost would look held.
            client = aioredis.Redis.from_url(
                self._target,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
            )
            self._clients[loop] = client
        return client

    async def run(self, source: str, keys: Sequence[str], args: Sequence[str | int]) -> object:
        """Run one script within the store timeout."""
        client = self._client()
        words = [*keys, *args]
        async with asyncio.timeout(self._timeout):
            sha = self._known_shas.get(source)
            if sha is not None:
                try:
                    return await cast(Awaitable[object], client.evalsha(sha, len(keys), *words))
                except NoScriptError:  # the server lost its scripts: restarted or flushed
                    del self._known_shas[source]
            reply = await cast(Awaitable[object], client.eval(source, len(keys), *words))
            self._known_shas[source] = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324
            return reply

    async def close(self) -> None:
        """Close the client this object made for the running loop."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
