"""Hand runs to RQ workers (extra ``gnomon[rq]``).

Scheduler side::

    from gnomon.rq import dispatch
    from app.jobs import report
    s.register_broker("rq", redis.Redis(...))
    s.register(dispatch(report, queue="reports", expires="10m"), name="report")

A target names its function by object; what travels is its ``module.qualname``. Each run
enqueues one RQ job whose id is ``gnomon.message_id(key, attempt)`` (``unique=True``: the
same id is never queued twice), with the ``gnomon_*`` fields in ``job.meta`` and ``ttl``.
The run succeeds once Redis has stored the job.

Worker side: ``guard(store, [report])`` returns a worker class that runs a job only when
it names one of those functions and its fencing token is the store's current claim token
for its occurrence, once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import redis
import rq
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus
from rq.worker import BaseWorker

from gnomon._dispatch import (
    Admission,
    DispatchTarget,
    Fence,
    Outgoing,
    Publisher,
    PublishFailed,
    WorkerFailed,
    failure_reason,
    log,
    make_target,
    wait_until,
)
from gnomon._errors import InvalidJob, InvalidOption
from gnomon._stores.contract import Store
from gnomon._tasks import default_task_name

__all__ = ["dispatch", "guard"]

_DEFAULT_QUEUE = "default"
_ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED)


def dispatch(
    func: Callable[..., object],
    *,
    broker: str = "rq",
    args: Sequence[object] = (),
    kwargs: Mapping[str, object] | None = None,
    queue: str | None = None,
    expires: timedelta | float | str = "10m",
    track: bool = False,
) -> DispatchTarget:
    """A job target that enqueues ``func`` (by its ``module.qualname``) once per run.

    ``queue`` defaults to ``"default"``; ``expires`` counts from the scheduled time and
    becomes the job's ``ttl``; ``track=True`` waits for the job to end and makes the run's
    outcome the worker's.
    """
    return make_target(
        broker,
        _function_name(func),
        args=args,
        kwargs=kwargs,
        queue=queue,
        expires=expires,
        track=track,
    )


def _function_name(func: object) -> str:
    if not callable(func) or getattr(func, "__name__", "<lambda>") == "<lambda>":
        raise InvalidJob(f"an RQ target names a module-level function by object, got {func!r}")
    name = default_task_name(func)
    if "<locals>" in name or name.startswith("__main__."):
        raise InvalidJob(
            f"RQ workers import {name!r} by name, which they cannot: dispatch a function "
            "defined at the top level of an importable module"
        )
    return name


class _RqPublisher(Publisher):
    kind = "rq"

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def publish(self, target: DispatchTarget, message: Outgoing) -> None:
        queue = rq.Queue(target.queue or _DEFAULT_QUEUE, connection=self.connection)
        try:
            queue.enqueue_call(
                func=target.task,
                args=tuple(target.args),
                kwargs=dict(target.kwargs),
                job_id=message.id,
                ttl=max(1, math.ceil(message.expires_in)),
                meta=dict(message.headers),
                unique=True,
            )
        except DuplicateJobError:
            log.info("RQ already holds job %s for %s: not queued twice", message.id, target.task)
        except Exception as exc:
            raise PublishFailed(
                f"RQ did not store {target.task} ({message.id}): {failure_reason(exc)}"
            ) from exc

    def result(self, target: DispatchTarget, message_id: str, cancelled: threading.Event) -> object:
        job = rq.job.Job.fetch(message_id, connection=self.connection)
        wait_until(
            lambda: job.get_status(refresh=True) in _ENDED, cancelled, f"{target.task} {message_id}"
        )
        status = job.get_status(refresh=False)
        if status == JobStatus.FINISHED:
            return job.return_value()
        latest = job.latest_result()
        detail = (latest.exc_string or "").strip().splitlines() if latest is not None else []
        raise WorkerFailed(
            f"{target.task} ({message_id}) ended {status} on the worker"
            + (f": {detail[-1]}" if detail else "")
        )


def _publisher(connection: object) -> Publisher:
    if not isinstance(connection, redis.Redis):
        raise InvalidOption(
            f"register_broker('rq', ...) takes the redis.Redis connection RQ uses, got "
            f"{connection!r}"
        )
    return _RqPublisher(connection)


def guard(
    store: Store,
    functions: Iterable[Callable[..., object]],
    *,
    seen: object = None,
    worker_class: type[BaseWorker] = rq.Worker,
) -> type[BaseWorker]:
    """A worker class that runs only fenced jobs of ``functions``.

    A job runs only when it names one of ``functions`` and its ``gnomon_fencing_token``
    is the store's current claim token for its ``gnomon_occurrence``, and no job with that
    token was admitted before (``seen``: a ``redis.Redis`` client shares that memory across
    a fleet; default: this worker process). A requeued job that was admitted but never
    finished passes. A dropped job is cancelled, counted in ``gnomon_fence.dropped``.
    """
    allowed = {_function_name(func) for func in functions}
    if not allowed:
        raise InvalidOption("guard() needs the functions its workers may run")
    fence = Fence(store, seen=seen)

    class GuardedWorker(worker_class):  # type: ignore[valid-type,misc]  # a class argument
        gnomon_fence = fence

        def execute_job(self, job: rq.job.Job, queue: rq.Queue) -> Any:
            verdict = _verdict(fence, allowed, job)
            if not verdict.admitted:
                job.cancel()
                return None
            try:
                return super().execute_job(job, queue)
            finally:
                fence.finished(verdict)

    GuardedWorker.__qualname__ = GuardedWorker.__name__ = f"Guarded{worker_class.__name__}"
    return GuardedWorker


def _verdict(fence: Fence, allowed: set[str], job: rq.job.Job) -> Admission:
    name = job.func_name
    if name not in allowed:
        fence.dropped += 1
        reason = f"job {job.id} names {name!r}, not one of the guarded functions"
        log.warning("gnomon guard dropped a message: %s", reason)
        return Admission(admitted=False, reason=reason)
    return fence.check(job.meta or {})
