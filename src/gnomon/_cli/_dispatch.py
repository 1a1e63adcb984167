"""Schedule-file jobs that hand their runs to a task queue: ``celery``, ``dramatiq``, ``rq``.

::

    [scheduler]
    broker = "amqp://guest:guest@127.0.0.1:5672//"

    [[jobs]]
    name = "report"
    cron = "0 6 * * *"
    celery = "app.tasks.report"      # or dramatiq = "actor_name", rq = "pkg.module.function"
    args = [1]
    queue = "reports"
    expires = "10m"
    track = false

The broker URL lives in the schedule file (and in the process's memory), never in the
store: each replica builds its own app or broker from it and registers it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gnomon._dispatch import DispatchTarget, make_target
from gnomon._errors import GnomonError, InvalidJob, InvalidOption

__all__ = [
    "DISPATCH_KEYS",
    "DISPATCH_OPTION_KEYS",
    "BrokerUnreachable",
    "DispatchAction",
    "probe_brokers",
    "read_broker_url",
    "read_dispatch",
    "register_dispatch",
]

DISPATCH_KEYS = ("celery", "dramatiq", "rq")
DISPATCH_OPTION_KEYS = ("queue", "expires", "track")
_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_REDIS_SCHEMES = ("redis", "rediss")
_BROKER_SCHEMES = (*_AMQP_SCHEMES, *_REDIS_SCHEMES)
_PROBE_TIMEOUT = 5.0


class BrokerUnreachable(GnomonError, ConnectionError):
    """The ``[scheduler] broker`` does not answer when ``gnomon run`` starts."""


@dataclass(frozen=True, slots=True)
class DispatchAction:
    """Publish one message per run to a task queue."""

    kind: str
    task: str
    broker_url: str = field(repr=False)
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = field(default_factory=dict)
    queue: str | None = None
    expires: timedelta = timedelta(minutes=10)
    track: bool = False
    func: Callable[..., object] | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return f"{self.kind}: {self.task}"

    def target(self) -> DispatchTarget:
        return make_target(
            self.kind,
            self.task,
            args=self.args,
            kwargs=self.kwargs,
            queue=self.queue,
            expires=self.expires,
            track=self.track,
        )

    def task_name(self) -> str:
        """The registered name: the same on every replica for the same declaration."""
        return f"{self.kind}:{self.task}#{_fingerprint(self)}"


def _fingerprint(action: DispatchAction) -> str:
    text = json.dumps(
        [action.args, action.kwargs, action.queue, action.expires.total_seconds(), action.track],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_broker_url(value: object) -> str:
    """``[scheduler] broker``: an AMQP (RabbitMQ) or Redis URL."""
    from gnomon._cli._secrets import mask_secrets

    if not isinstance(value, str) or "://" not in value:
        raise InvalidOption(
            f"broker must be a URL such as 'amqp://user:password@host:5672//' or "
            f"'redis://host:6379/0', got {value!r}"
        )
    scheme = value.partition("://")[0].lower()
    if scheme not in _BROKER_SCHEMES:
        raise InvalidOption(
            f"broker {mask_secrets(value)!r} has the unknown scheme {scheme!r}; valid schemes: "
            f"{', '.join(_BROKER_SCHEMES)}"
        )
    return value


def read_dispatch(kind: str, table: Mapping[str, object], broker_url: str | None) -> DispatchAction:
    """The ``kind`` action of a job table; ``InvalidJob`` naming what is wrong."""
    name = table[kind]
    if not isinstance(name, str) or not name.strip():
        raise InvalidJob(f"{kind} must name a task as a non-empty string, got {name!r}")
    if broker_url is None:
        raise InvalidJob(f"{kind} jobs need the broker's URL: set [scheduler] broker = URL")
    scheme = broker_url.partition("://")[0].lower()
    if kind == "rq" and scheme not in _REDIS_SCHEMES:
        raise InvalidJob(f"rq jobs need a redis:// broker, and [scheduler] broker is {scheme}://")
    args = table.get("args", [])
    kwargs = table.get("kwargs", {})
    if not isinstance(args, list):
        raise InvalidJob(f"args must be an array, got {args!r}")
    if not isinstance(kwargs, dict):
        raise InvalidJob(f"kwargs must be a table, got {kwargs!r}")
    if kind == "dramatiq" and table.get("track") is True:
        raise InvalidJob(
            "track = true needs Dramatiq's Results middleware, which a broker made from a URL "
            "does not have: use celery or rq for a tracked job, or build the Dramatiq broker "
            "in Python and register it with s.register_broker"
        )
    func = _rq_function(name) if kind == "rq" else None
    target = make_target(
        kind,
        name,
        args=args,
        kwargs=kwargs,
        queue=_queue(table.get("queue")),
        expires=table.get("expires", "10m"),  # type: ignore[arg-type]  # checked by make_target
        track=table.get("track", False),  # type: ignore[arg-type]  # checked by make_target
    )
    return DispatchAction(
        kind,
        target.task,
        broker_url,
        target.args,
        target.kwargs,
        target.queue,
        target.expires,
        target.track,
        func,
    )


def _queue(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidJob(f"queue must be a non-empty string, got {value!r}")
    return value


def _rq_function(path: str) -> Callable[..., object]:
    """RQ workers import the function by its dotted path: import it here too, so that a
    typo fails when the file is loaded rather than on a worker."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise InvalidJob(f"rq must name a function as 'package.module.function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise InvalidJob(f"rq {path!r}: cannot import {module_name!r}: {error!r}") from None
    func = getattr(module, attribute, None)
    if not callable(func):
        raise InvalidJob(f"rq {path!r}: module {module_name!r} has no function {attribute!r}")
    return func  # type: ignore[no-any-return]  # checked callable


# ---------------------------------------------------------------- live brokers

_live: weakref.WeakKeyDictionary[object, dict[str, tuple[str, Any]]] = weakref.WeakKeyDictionary()


def register_dispatch(scheduler: Any, action: DispatchAction) -> str:
    """Register ``action``'s target on ``scheduler`` (and, once, its broker); returns
    the task name to add the job under. Nothing connects here."""
    brokers = _live.setdefault(scheduler, {})
    if action.kind not in brokers:
        live = _build(action.kind, action.broker_url)
        brokers[action.kind] = (action.broker_url, live)
        scheduler.register_broker(action.kind, live)
    if action.kind == "rq" and action.func is not None:
        from gnomon.rq import dispatch as rq_dispatch

        target = rq_dispatch(
            action.func,
            args=action.args,
            kwargs=action.kwargs,
            queue=action.queue,
            expires=action.expires,
            track=action.track,
        )
    else:
        target = action.target()
    return str(scheduler.register(target, name=action.task_name()))


def _build(kind: str, url: str) -> Any:
    scheme = url.partition("://")[0].lower()
    if kind == "celery":
        from celery import Celery

        backend = "rpc://" if scheme in _AMQP_SCHEMES else url
        return Celery("gnomon", broker=url, backend=backend)
    if kind == "dramatiq":
        if scheme in _AMQP_SCHEMES:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker

            # kombu writes the default virtual host as "//", pika as "/%2F".
            pika_url = url.removesuffix("//") + "/%2F" if url.endswith("//") else url
            return RabbitmqBroker(url=pika_url, confirm_delivery=True)
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url)  # type: ignore[no-untyped-call]  # dramatiq leaves it untyped
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=_PROBE_TIMEOUT)


def probe_brokers(scheduler: Any) -> None:
    """Connect once to every broker ``scheduler`` uses: ``BrokerUnreachable`` if one does
    not answer, so that ``gnomon run`` fails at start rather than at each run."""
    from gnomon._cli._secrets import mask_secrets

    for kind, (url, live) in _live.get(scheduler, {}).items():
        try:
            _probe(kind, live)
        except Exception as error:
            raise BrokerUnreachable(
                f"[scheduler] broker {mask_secrets(url)!r} ({kind}) is not reachable: "
                f"{type(error).__name__}: {error}"
            ) from None


def _probe(kind: str, live: Any) -> None:
    if kind == "celery":
        with live.connection_for_write(connect_timeout=_PROBE_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1, timeout=_PROBE_TIMEOUT)
        return
    if kind == "rq":
        live.ping()
        return
    client = getattr(live, "client", None)
    if client is not None:
        client.ping()  # a Redis broker
        return
    live.connection  # noqa: B018 - opening the RabbitMQ connection is the probe
