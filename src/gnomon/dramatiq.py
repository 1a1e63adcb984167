"""Hand runs to Dramatiq workers (extra ``gnomon[dramatiq]``).

Scheduler side::

    from gnomon.dramatiq import dispatch
    s.register_broker("dramatiq", RabbitmqBroker(url=..., confirm_delivery=True))
    s.register(dispatch("report", queue="reports", expires="10m"), name="report")

Each run enqueues one message for the actor named ``report`` (the scheduler never imports
it) whose ``message_id`` is ``gnomon.message_id(key, attempt)``, with the ``gnomon_*``
options and ``max_age``. On RabbitMQ the broker must confirm deliveries
(``confirm_delivery=True``), which also publishes ``mandatory``: the run succeeds once
RabbitMQ has confirmed and routed the message.

Worker side: ``broker.add_middleware(guard(store))`` skips a message unless its fencing
token is the store's current claim token for its occurrence, once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage

from gnomon._dispatch import (
    Admission,
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

_DEFAULT_QUEUE = "default"


def dispatch(
    actor: str,
    *,
    broker: str = "dramatiq",
    args: Sequence[object] = (),
    kwargs: Mapping[str, object] | None = None,
    queue: str | None = None,
    expires: timedelta | float | str = "10m",
    track: bool = False,
) -> DispatchTarget:
    """A job target that sends one message to the Dramatiq actor named ``actor`` per run.

    ``queue`` defaults to ``"default"``. ``expires`` counts from the scheduled time and
    becomes the message's ``max_age`` (enforced by the ``AgeLimit`` middleware);
    ``track=True`` waits for the result through the broker's ``Results`` middleware (the
    actor needs ``store_results=True``).
    """
    return make_target(
        broker, actor, args=args, kwargs=kwargs, queue=queue, expires=expires, track=track
    )


class _DramatiqPublisher(Publisher):
    kind = "dramatiq"

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def message(self, target: DispatchTarget, message_id: str, options: dict[str, Any]) -> Any:
        return dramatiq.Message(
            queue_name=target.queue or _DEFAULT_QUEUE,
            actor_name=target.task,
            args=tuple(target.args),
            kwargs=dict(target.kwargs),
            options=options,
            message_id=message_id,
        )

    def publish(self, target: DispatchTarget, message: Outgoing) -> None:
        options = {**message.headers, "max_age": max(1, int(message.expires_in * 1000))}
        try:
            self.broker.enqueue(self.message(target, message.id, options))
        except Exception as exc:
            raise PublishFailed(
                f"dramatiq did not confirm {target.task} ({message.id}): {failure_reason(exc)}"
            ) from exc

    def result(self, target: DispatchTarget, message_id: str, cancelled: threading.Event) -> object:
        from dramatiq.results import ResultFailure, ResultMissing, Results

        backend = next((m.backend for m in self.broker.middleware if isinstance(m, Results)), None)
        if backend is None:
            raise WorkerFailed(
                f"track=True for {target.task} needs the broker's Results middleware"
            )
        key = self.message(target, message_id, {})
        found: list[object] = []

        def ready() -> bool:
            try:
                found.append(backend.get_result(key, block=False))
            except ResultMissing:
                return False
            return True

        try:
            wait_until(ready, cancelled, f"{target.task} {message_id}")
        except ResultFailure as exc:
            raise WorkerFailed(
                f"{target.task} ({message_id}) failed on the worker: {exc.orig_exc_type}: "
                f"{exc.orig_exc_msg}"
            ) from None
        return found[0]


def _publisher(broker: object) -> Publisher:
    if not isinstance(broker, dramatiq.Broker):
        raise InvalidOption(
            f"register_broker('dramatiq', ...) takes a dramatiq broker, got {broker!r}"
        )
    if getattr(broker, "confirm_delivery", True) is False:
        raise InvalidOption(
            f"the dramatiq broker {broker!r} does not confirm deliveries: create it with "
            "RabbitmqBroker(..., confirm_delivery=True), so that a run succeeds only once "
            "RabbitMQ has confirmed and routed its message"
        )
    return _DramatiqPublisher(broker)


class _Guard(Middleware):
    """Skips fenced-out messages; see :func:`guard`."""

    def __init__(self, fence: Fence) -> None:
        self.fence = fence
        self._admitted: dict[str, Admission] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        verdict = self.fence.check(message.options)
        if not verdict.admitted:
            raise SkipMessage(verdict.reason)
        self._admitted[message.message_id] = verdict

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        verdict = self._admitted.pop(message.message_id, None)
        if verdict is not None:
            self.fence.finished(verdict)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._admitted.pop(message.message_id, None)


def guard(store: Store, *, seen: object = None) -> Middleware:
    """A middleware for the worker's broker: ``broker.add_middleware(guard(store))``.

    A message is processed only while its ``gnomon_fencing_token`` is the store's current
    claim token for its ``gnomon_occurrence`` and no message with that token was admitted
    before (``seen``: a ``redis.Redis`` client shares that memory across a fleet;
    default: this worker process). A redelivery of an admitted, unfinished message passes;
    a dropped one is skipped (and acknowledged), counted in ``.fence.dropped``.
    """
    return _Guard(Fence(store, seen=seen))
