"""Hand runs to Celery workers (extra ``gnomon[celery]``).

Scheduler side::

    from gnomon.celery import dispatch
    s.register_broker("celery", celery_app)
    s.register(dispatch("app.tasks.report", queue="reports", expires="10m"), name="report")

Each run publishes one task message by name (the scheduler never imports the task) with
the task id ``gnomon.message_id(key, attempt)``, the ``gnomon_*`` headers and ``expires``,
on its own connection with publisher confirms and ``mandatory``: the run succeeds once
RabbitMQ has confirmed and routed it.

Worker side: ``@app.task(base=guard(store))`` admits a message only while its fencing
token is the store's current claim token for its occurrence, once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import celery
from celery.exceptions import Ignore
from celery.result import AsyncResult
from celery.states import READY_STATES, SUCCESS

from gnomon._dispatch import (
    HEADERS,
    DispatchTarget,
    Fence,
    Outgoing,
    Publisher,
    PublishFailed,
    WorkerFailed,
    failure_reason,
    make_target,
    wait_until,
)
from gnomon._errors import InvalidOption
from gnomon._stores.contract import Store

__all__ = ["dispatch", "guard"]

_CONFIRM_TIMEOUT = 10.0


def dispatch(
    task: str,
    *,
    broker: str = "celery",
    args: Sequence[object] = (),
    kwargs: Mapping[str, object] | None = None,
    queue: str | None = None,
    expires: timedelta | float | str = "10m",
    track: bool = False,
) -> DispatchTarget:
    """A job target that sends the Celery task named ``task`` once per run.

    ``expires`` counts from the scheduled time (Celery marks a later delivery REVOKED);
    ``track=True`` waits for the task's result (within the job's ``timeout``) and makes
    the run's outcome the worker's.
    """
    return make_target(
        broker, task, args=args, kwargs=kwargs, queue=queue, expires=expires, track=track
    )


class _CeleryPublisher(Publisher):
    kind = "celery"

    def __init__(self, app: celery.Celery) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._connection: Any = None
        self._producer: Any = None

    def publish(self, target: DispatchTarget, message: Outgoing) -> None:
        with self._lock:
            try:
                self.app.send_task(
                    target.task,
                    args=list(target.args),
                    kwargs=dict(target.kwargs),
                    task_id=message.id,
                    headers=message.headers,
                    expires=message.expires_in,
                    queue=target.queue,
                    producer=self._open(),
                    retry=False,
                    mandatory=True,
                    confirm_timeout=_CONFIRM_TIMEOUT,
                    add_to_parent=False,
                )
            except Exception as exc:
                self._drop()
                raise PublishFailed(
                    f"celery did not confirm {target.task} ({message.id}) on "
                    f"{self._where()}: {failure_reason(exc)}"
                ) from exc

    def _where(self) -> str:
        connection = self._connection or self.app.connection_for_write()
        return str(connection.as_uri())  # as_uri() masks the password

    def _open(self) -> Any:
        if self._producer is None:
            connection = self.app.connection_for_write(
                transport_options={"confirm_publish": True}, connect_timeout=5
            )
            connection.ensure_connection(max_retries=0)  # fail fast: the job's retry waits
            self._connection = connection
            self._producer = connection.Producer()
        return self._producer

    def _drop(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            # A broken connection may fail to close; it is dropped either way.
            with contextlib.suppress(Exception):
                connection.release()

    def result(self, target: DispatchTarget, message_id: str, cancelled: threading.Event) -> object:
        from celery.backends.base import DisabledBackend

        if isinstance(self.app.backend, DisabledBackend):
            raise WorkerFailed(
                f"track=True for {target.task} needs a Celery result backend (result_backend)"
            )
        result = AsyncResult(message_id, app=self.app)
        wait_until(lambda: result.state in READY_STATES, cancelled, f"{target.task} {message_id}")
        if result.state == SUCCESS:
            return result.result
        outcome = result.result
        shown = (
            f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, Exception) else outcome
        )
        raise WorkerFailed(
            f"{target.task} ({message_id}) ended {result.state} on the worker: {shown}"
        )

    def close(self) -> None:
        with self._lock:
            self._drop()


def _publisher(app: object) -> Publisher:
    if not isinstance(app, celery.Celery):
        raise InvalidOption(
            f"register_broker('celery', ...) takes a celery.Celery app, got {app!r}"
        )
    return _CeleryPublisher(app)


def guard(store: Store, *, seen: object = None) -> type[celery.Task]:
    """A base class for guarded tasks: ``@app.task(base=guard(store))``.

    A message is admitted only while its ``gnomon_fencing_token`` is the store's current
    claim token for its ``gnomon_occurrence`` and no message with that token was admitted
    before (``seen``: a ``redis.Redis`` client shares that memory across a fleet; default:
    this worker process). A redelivery of an admitted, unfinished message passes; a
    dropped one is ignored (``celery.exceptions.Ignore``), counted in ``fence.dropped``.
    """
    fence = Fence(store, seen=seen)

    class GuardedTask(celery.Task):  # type: ignore[misc]  # celery is untyped
        gnomon_fence = fence

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            request = self.request
            if request.called_directly:
                return super().__call__(*args, **kwargs)
            delivery = request.delivery_info or {}
            verdict = fence.check(_headers(request), redelivered=delivery.get("redelivered"))
            if not verdict.admitted:
                raise Ignore(verdict.reason)
            try:
                return super().__call__(*args, **kwargs)
            finally:
                fence.finished(verdict)

    GuardedTask.__qualname__ = GuardedTask.__name__ = "GuardedTask"
    return GuardedTask


def _headers(request: Any) -> dict[str, object]:
    found = dict(getattr(request, "headers", None) or {})
    for name in HEADERS:
        if name not in found:
            value = getattr(request, name, None)
            if value is not None:
                found[name] = value
    return found
