"""Handing runs to a task queue (Celery, Dramatiq, RQ): the parts every broker shares.

A dispatch target is data: the broker kind, the queue's task name, JSON arguments, the
queue, an expiry and whether to wait for the worker's result. It is registered as a task
like any function, and a stored job names it by its registered name, so a row never holds
a URL, a credential or an importable path. The live app or broker comes from the running
process (``s.register_broker``); a target whose broker is not registered here is not
registered either, so its jobs wait as jobs of an unknown task.

One run publishes one message whose id is ``message_id(key, attempt)``, carrying the
occurrence key, the fencing token and the attempt. The publisher reports success only once
the broker has confirmed the message (and, on RabbitMQ, routed it to a queue); anything
else raises :class:`PublishFailed`, so the run is ``FAILED`` with the reason and the job's
retry policy applies. The worker-side :class:`Fence` admits a message only while its token
is the store's current claim token for its key, once.
"""

from __future__ import annotations

import abc
import importlib
import logging
import math
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gnomon._durations import parse_duration
from gnomon._errors import GnomonError, InvalidJob, InvalidOption
from gnomon._events import JobContext, Outcome
from gnomon._stores.contract import Store

__all__ = [
    "BROKER_KINDS",
    "BoundTarget",
    "DispatchTarget",
    "Fence",
    "Ledger",
    "MemoryLedger",
    "Outgoing",
    "PublishFailed",
    "Publisher",
    "RedisLedger",
    "WorkerFailed",
    "failure_reason",
    "make_target",
    "message_id",
    "register_broker",
    "register_target",
]

BROKER_KINDS: Final = ("celery", "dramatiq", "rq")
_MODULES: Final = {kind: f"gnomon.{kind}" for kind in BROKER_KINDS}
"""The one place a broker kind becomes a module: a fixed table, never data from a store."""

_NAMESPACE: Final = uuid.UUID("6f1c9a52-3b7e-5d2a-9c41-8e0f2b7d4a13")
HEADERS: Final = (
    "gnomon_occurrence",
    "gnomon_fencing_token",
    "gnomon_attempt",
    "gnomon_job",
    "gnomon_scheduled_at",
)
_POLL: Final = 0.05
_DEFAULT_EXPIRES: Final = timedelta(minutes=10)

log = logging.getLogger("gnomon")


class PublishFailed(GnomonError, ConnectionError):
    """The broker did not confirm (or did not route) a run's message."""


class WorkerFailed(GnomonError, RuntimeError):
    """With ``track=True``: the worker reported the task failed (or never ran it)."""


def message_id(key: str, attempt: int) -> uuid.UUID:
    """The id of the message that attempt ``attempt`` of occurrence ``key`` publishes:
    the same on every replica, different for every attempt."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"an occurrence key is a non-empty str, got {key!r}")
    if type(attempt) is not int or attempt < 1:
        raise ValueError(f"an attempt is an int of at least 1, got {attempt!r}")
    return uuid.uuid5(_NAMESPACE, f"{key}\x00{attempt}")


# ---------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message, as every broker needs it."""

    id: str
    headers: dict[str, object]
    expires_in: float
    """Seconds the message may wait in the queue from now."""


@dataclass(frozen=True, slots=True)
class DispatchTarget:
    """A job target that publishes one message per run to a task queue."""

    broker: str
    task: str
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = field(default_factory=dict)
    queue: str | None = None
    expires: timedelta = _DEFAULT_EXPIRES
    track: bool = False

    def __hash__(self) -> int:  # kwargs is a dict: hash what identifies the target
        return hash((self.broker, self.task, self.queue))

    def describe(self) -> str:
        return f"{self.broker}:{self.task}"


class BoundTarget:
    """A target registered on one scheduler: what its runs call. Equal to its target,
    so ``add_job(target, ...)`` finds the registered task."""

    __slots__ = ("brokers", "target")

    def __init__(self, target: DispatchTarget, brokers: _Brokers) -> None:
        self.target = target
        self.brokers = brokers

    def __call__(self, ctx: JobContext) -> object:
        target = self.target
        publisher = self.brokers.publishers.get(target.broker)
        if publisher is None:
            raise PublishFailed(f"no {target.broker} broker is registered in this process")
        outgoing = _outgoing(ctx, target.expires)
        publisher.publish(target, outgoing)
        if not target.track:
            return outgoing.id
        return publisher.result(target, outgoing.id, ctx.cancelled)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BoundTarget):
            return other.target == self.target and other.brokers is self.brokers
        return isinstance(other, DispatchTarget) and other == self.target

    def __hash__(self) -> int:
        return hash(self.target)

    def __repr__(self) -> str:
        return f"<dispatch target {self.target.describe()}>"


def make_target(
    broker: str,
    task: str,
    *,
    args: Sequence[object] = (),
    kwargs: Mapping[str, object] | None = None,
    queue: str | None = None,
    expires: timedelta | float | str = _DEFAULT_EXPIRES,
    track: bool = False,
) -> DispatchTarget:
    """A checked :class:`DispatchTarget`; bad input is an ``InvalidJob`` naming it."""
    if broker not in BROKER_KINDS:
        raise InvalidJob(f"broker must be one of {', '.join(BROKER_KINDS)}, got {broker!r}")
    if not isinstance(task, str) or not task.strip():
        raise InvalidJob(f"a dispatched task name must be a non-empty str, got {task!r}")
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise InvalidJob(f"args must be a list or tuple of JSON values, got {args!r}")
    for index, value in enumerate(args):
        _check_json(value, f"args[{index}]")
    given = dict(kwargs or {})
    for name, value in given.items():
        if type(name) is not str:
            raise InvalidJob(f"kwargs has the key {name!r}; keyword names must be str")
        _check_json(value, f"kwargs[{name!r}]")
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        raise InvalidJob(f"queue must be a non-empty str or None, got {queue!r}")
    if not isinstance(track, bool):
        raise InvalidJob(f"track must be True or False, got {track!r}")
    lifetime = parse_duration(expires, field="expires", error=InvalidJob)
    return DispatchTarget(broker, task, tuple(args), given, queue, lifetime, track)


def _check_json(value: object, where: str) -> None:
    """Messages are JSON on every broker: only JSON values travel unchanged."""
    if value is None or type(value) in (bool, int, str):
        return
    if isinstance(value, float) and type(value) is float:
        if not math.isfinite(value):
            raise InvalidJob(f"{where} is {value!r}; JSON has no NaN or infinity")
        return
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    if isinstance(value, dict) and type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidJob(f"{where} has the key {key!r}; JSON object keys must be str")
            _check_json(item, f"{where}[{key!r}]")
        return
    raise InvalidJob(
        f"{where} is a {type(value).__name__} ({value!r}); a dispatched task takes JSON "
        "values only: None, bool, int, float, str, list, tuple, dict with str keys"
    )


def _outgoing(ctx: JobContext, expires: timedelta) -> Outgoing:
    deadline = ctx.scheduled_at + expires
    left = (deadline - datetime.now(UTC)).total_seconds()
    if left <= 0:
        raise PublishFailed(
            f"occurrence {ctx.occurrence_key} expired at {deadline.isoformat()} before it "
            "could be published (expires counts from the scheduled time)"
        )
    headers: dict[str, object] = {
        "gnomon_occurrence": ctx.occurrence_key,
        "gnomon_fencing_token": ctx.fencing_token,
        "gnomon_attempt": ctx.attempt,
        "gnomon_job": ctx.job_name,
        "gnomon_scheduled_at": ctx.scheduled_at.astimezone(UTC).isoformat(),
    }
    return Outgoing(str(message_id(ctx.occurrence_key, ctx.attempt)), headers, left)


# ---------------------------------------------------------------- brokers of a scheduler


class Publisher(abc.ABC):
    """One process's live connection to one broker, used by every run of its kind."""

    kind: str

    @abc.abstractmethod
    def publish(self, target: DispatchTarget, message: Outgoing) -> None:
        """Publish and wait for the broker's confirmation; ``PublishFailed`` otherwise."""

    @abc.abstractmethod
    def result(self, target: DispatchTarget, message_id: str, cancelled: threading.Event) -> object:
        """Wait for the worker's result (until ``cancelled``); ``WorkerFailed`` on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections this publisher opened."""


@dataclass
class _Brokers:
    publishers: dict[str, Publisher] = field(default_factory=dict)
    waiting: list[tuple[DispatchTarget, str | None, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_registries: weakref.WeakKeyDictionary[object, _Brokers] = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def _brokers_of(owner: object) -> _Brokers:
    with _registries_lock:
        brokers = _registries.get(owner)
        if brokers is None:
            brokers = _registries[owner] = _Brokers()
        return brokers


def register_broker(
    owner: object, kind: object, app_or_broker: object
) -> list[tuple[DispatchTarget, str | None, dict[str, Any]]]:
    """Give ``owner`` (a scheduler) its live app or broker of ``kind``; returns the
    targets of that kind that were waiting for it, for the caller to register."""
    if kind not in BROKER_KINDS:
        raise InvalidOption(
            f"register_broker kind must be one of {', '.join(BROKER_KINDS)}, got {kind!r}"
        )
    module = importlib.import_module(_MODULES[str(kind)])
    publisher: Publisher = module._publisher(app_or_broker)
    brokers = _brokers_of(owner)
    with brokers.lock:
        old = brokers.publishers.get(publisher.kind)
        brokers.publishers[publisher.kind] = publisher
        ready = [entry for entry in brokers.waiting if entry[0].broker == kind]
        brokers.waiting = [entry for entry in brokers.waiting if entry[0].broker != kind]
    if old is not None:
        old.close()
    return ready


def register_target(
    owner: object, target: DispatchTarget, name: str | None, listeners: dict[str, Any]
) -> BoundTarget | None:
    """The callable to register for ``target`` when ``owner`` has its broker; else
    ``None``: it waits for ``register_broker`` and its jobs wait as jobs of an unknown
    task."""
    brokers = _brokers_of(owner)
    with brokers.lock:
        if target.broker in brokers.publishers:
            return BoundTarget(target, brokers)
        brokers.waiting.append((target, name, listeners))
    log.info(
        "dispatch target %s waits for s.register_broker(%r, ...)",
        name or target.describe(),
        target.broker,
    )
    return None


def failure_reason(error: BaseException) -> str:
    """``error`` and what caused it, innermost last: drivers wrap the broker's own word
    (a nack, a return) in errors of their own that say less."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(parts) < 4:
        seen.add(id(current))
        text = str(current).strip()
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def wait_until(ready: Callable[[], bool], cancelled: threading.Event, what: str) -> None:
    """Poll ``ready`` until it holds; ``WorkerFailed`` once the run is cancelled (its
    timeout, a replacement or shutdown)."""
    while not ready():
        if cancelled.wait(_POLL):
            raise WorkerFailed(f"no result for {what} before the run was cancelled (timeout)")


# ---------------------------------------------------------------- the worker-side fence


class Ledger(abc.ABC):
    """Which fenced messages a worker fleet has admitted, and which have finished."""

    @abc.abstractmethod
    def admit(self, key: str, token: int) -> str:
        """``"new"`` (first admission, now recorded), ``"running"`` (admitted, not yet
        finished: a redelivery) or ``"done"``."""

    @abc.abstractmethod
    def finish(self, key: str, token: int) -> None:
        """The admitted message was processed (acknowledged)."""


class MemoryLedger(Ledger):
    """One worker process's ledger (every worker thread of it shares it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, int], str] = {}

    def admit(self, key: str, token: int) -> str:
        with self._lock:
            state = self._states.get((key, token))
            if state is None:
                self._states[(key, token)] = "running"
                return "new"
            return state

    def finish(self, key: str, token: int) -> None:
        with self._lock:
            self._states[(key, token)] = "done"


class RedisLedger(Ledger):
    """A fleet-wide ledger in Redis: ``SET NX`` per key and token, kept ``ttl``."""

    def __init__(self, client: Any, *, prefix: str = "gnomon:admitted:", ttl: float = 86400):
        self._client = client
        self._prefix = prefix
        self._ttl = max(1, math.ceil(ttl))

    def _name(self, key: str, token: int) -> str:
        return f"{self._prefix}{key}#{token}"

    def admit(self, key: str, token: int) -> str:
        name = self._name(key, token)
        if self._client.set(name, b"running", nx=True, ex=self._ttl):
            return "new"
        state = self._client.get(name)
        return "running" if state in (None, b"running") else "done"

    def finish(self, key: str, token: int) -> None:
        self._client.set(self._name(key, token), b"done", ex=self._ttl)


def make_ledger(seen: object) -> Ledger:
    if seen is None:
        return MemoryLedger()
    if isinstance(seen, Ledger):
        return seen
    if callable(getattr(seen, "set", None)) and callable(getattr(seen, "get", None)):
        return RedisLedger(seen)
    raise InvalidOption(
        f"seen must be None (one worker process), a redis.Redis client or a gnomon "
        f"Ledger, got {seen!r}"
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """A guard's verdict on one message."""

    admitted: bool
    reason: str
    key: str | None = None
    token: int | None = None


class Fence:
    """Admits a message only while its fencing token is the store's current claim token
    for its key, and only once (a redelivery of an admitted, unfinished message passes).

    Counts what it drops in ``dropped`` and logs each at WARNING.
    """

    def __init__(self, store: Store, *, seen: object = None) -> None:
        if not isinstance(store, Store):
            raise InvalidOption(f"a guard needs the scheduler's gnomon store, got {store!r}")
        self.store = store
        self.ledger = make_ledger(seen)
        self.dropped = 0
        self.admitted = 0
        self._lock = threading.Lock()

    def check(self, headers: Mapping[str, object], *, redelivered: bool | None = None) -> Admission:
        """The verdict for a message with ``headers``; ``redelivered`` is the broker's
        flag where it has one (``None``: unknown)."""
        verdict = self._judge(headers, redelivered)
        with self._lock:
            if verdict.admitted:
                self.admitted += 1
            else:
                self.dropped += 1
        if not verdict.admitted:
            log.warning("gnomon guard dropped a message: %s", verdict.reason)
        return verdict

    def finished(self, verdict: Admission) -> None:
        if verdict.admitted and verdict.key is not None and verdict.token is not None:
            self.ledger.finish(verdict.key, verdict.token)

    def _judge(self, headers: Mapping[str, object], redelivered: bool | None) -> Admission:
        fenced = _fenced_headers(headers)
        if isinstance(fenced, str):
            return Admission(admitted=False, reason=fenced)
        key, token, job, scheduled_at = fenced
        current, outcome = self._current(key, job, scheduled_at)
        if current != token:
            return Admission(
                admitted=False,
                reason=f"{key}: token {token} is not the current claim token ({current})",
            )
        if outcome is Outcome.ABANDONED:
            return Admission(admitted=False, reason=f"{key}: its claim {token} was abandoned")
        state = self.ledger.admit(key, token)
        if state == "done" or (state == "running" and redelivered is False):
            return Admission(
                admitted=False, reason=f"{key}: a message with token {token} was admitted before"
            )
        return Admission(admitted=True, reason=state, key=key, token=token)

    def _current(self, key: str, job: str, scheduled_at: datetime) -> tuple[int | None, Any]:
        record = self.store.occurrence(key)
        if record is None or record.job_name != job or record.scheduled_at != scheduled_at:
            return None, None  # not an occurrence the store claimed as the message says
        return record.fencing_token, record.outcome


def _fenced_headers(headers: Mapping[str, object]) -> tuple[str, int, str, datetime] | str:
    """The fenced fields of a message, or why it carries none that could be trusted."""
    key = headers.get("gnomon_occurrence")
    token = headers.get("gnomon_fencing_token")
    job = headers.get("gnomon_job")
    scheduled = headers.get("gnomon_scheduled_at")
    if not isinstance(key, str) or not isinstance(job, str) or not isinstance(scheduled, str):
        return f"no gnomon occurrence headers (got {sorted(map(str, headers))})"
    if type(token) is not int:
        return f"{key}: no fencing token (got {token!r})"
    try:
        scheduled_at = datetime.fromisoformat(scheduled)
    except ValueError:
        return f"{key}: unreadable gnomon_scheduled_at {scheduled!r}"
    if scheduled_at.tzinfo is None:
        return f"{key}: naive gnomon_scheduled_at {scheduled!r}"
    return key, token, job, scheduled_at
