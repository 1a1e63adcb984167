"""Prometheus metrics for a scheduler (the optional extra ``gnomon[prometheus]``).

::

    from prometheus_client import start_http_server
    import gnomon
    from gnomon.prometheus import PrometheusMonitor

    scheduler = gnomon.Scheduler(monitor=PrometheusMonitor())
    start_http_server(9100)

Metrics (with the default ``namespace="gnomon"``):

- ``gnomon_runs_total{job, outcome}``: every occurrence by its outcome, skipped ones included
- ``gnomon_run_duration_seconds{job}``: how long runs took (histogram)
- ``gnomon_scheduling_delay_seconds{job}``: how late runs started after their scheduled time
- ``gnomon_running_jobs{job}``: runs executing now
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from gnomon._events import Monitor, RunEvent

__all__ = ["DURATION_BUCKETS", "PrometheusMonitor"]

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class PrometheusMonitor(Monitor):
    """A :class:`gnomon.Monitor` that counts and times runs into a Prometheus registry.

    ``registry`` defaults to prometheus-client's global registry, where a second monitor
    with the same ``namespace`` is a duplicate-metric error: pass your own registry (or
    namespace) to have several.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "gnomon",
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        delay_buckets: Sequence[float] = DELAY_BUCKETS,
    ) -> None:
        self.runs = Counter(
            "runs",
            "Occurrences of each job by outcome, skipped ones included.",
            ["job", "outcome"],
            namespace=namespace,
            registry=registry,
        )
        self.run_duration = Histogram(
            "run_duration_seconds",
            "How long each job's runs took.",
            ["job"],
            namespace=namespace,
            registry=registry,
            buckets=tuple(duration_buckets),
        )
        self.delay = Histogram(
            "scheduling_delay_seconds",
            "How long after its scheduled time each run started.",
            ["job"],
            namespace=namespace,
            registry=registry,
            buckets=tuple(delay_buckets),
        )
        self.running = Gauge(
            "running_jobs",
            "Runs executing now, by job.",
            ["job"],
            namespace=namespace,
            registry=registry,
        )
        self._lock = threading.Lock()
        self._in_flight: set[tuple[uuid.UUID, str, int]] = set()

    def run_started(self, event: RunEvent) -> None:
        with self._lock:
            self._in_flight.add((event.job_id, event.occurrence_key, event.attempt))
        self.running.labels(job=event.job_name).inc()

    def run_finished(self, event: RunEvent) -> None:
        key = (event.job_id, event.occurrence_key, event.attempt)
        with self._lock:
            started = key in self._in_flight
            self._in_flight.discard(key)
        # A run can be reported finished without a start (timed out before it began).
        if started:
            self.running.labels(job=event.job_name).dec()
        outcome = event.outcome.value if event.outcome is not None else "unknown"
        self.runs.labels(job=event.job_name, outcome=outcome).inc()
        if event.started_at is not None and event.finished_at is not None:
            seconds = (event.finished_at - event.started_at).total_seconds()
            self.run_duration.labels(job=event.job_name).observe(max(seconds, 0.0))

    def run_skipped(self, event: RunEvent) -> None:
        outcome = event.outcome.value if event.outcome is not None else "unknown"
        self.runs.labels(job=event.job_name, outcome=outcome).inc()

    def scheduling_delay(self, event: RunEvent, delay: float) -> None:
        self.delay.labels(job=event.job_name).observe(max(delay, 0.0))
