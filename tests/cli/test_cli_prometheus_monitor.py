"""``gnomon.prometheus.PrometheusMonitor`` on a scheduler driven by the fake clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import gnomon
from gnomon.prometheus import PrometheusMonitor
from gnomon.testing import FakeClock


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def fail() -> None:
    raise RuntimeError("boom")


def test_the_monitor_counts_runs_by_outcome_and_times_them() -> None:
    registry = CollectorRegistry()
    clock = FakeClock(datetime(2026, 3, 2, tzinfo=UTC))
    with gnomon.Scheduler(
        clock=clock, timezone="UTC", monitor=PrometheusMonitor(registry=registry)
    ) as scheduler:
        scheduler.add_job(lambda: None, gnomon.every("1m"), name="ok")
        scheduler.add_job(fail, gnomon.every("1m"), name="bad")
        clock.advance("3m")
        scheduler.wait_idle(timeout=10)
    assert value(registry, "gnomon_runs_total", job="ok", outcome="success") == 3
    assert value(registry, "gnomon_runs_total", job="bad", outcome="failed") == 3
    assert value(registry, "gnomon_run_duration_seconds_count", job="ok") == 3
    assert value(registry, "gnomon_scheduling_delay_seconds_count", job="ok") == 3
    assert value(registry, "gnomon_running_jobs", job="ok") == 0


def test_the_monitor_shows_a_run_in_flight_and_counts_skips() -> None:
    registry = CollectorRegistry()
    clock = FakeClock(datetime(2026, 3, 2, tzinfo=UTC))
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(10)

    with gnomon.Scheduler(
        clock=clock, timezone="UTC", monitor=PrometheusMonitor(registry=registry)
    ) as scheduler:
        scheduler.add_job(
            hold, gnomon.every("1m"), name="slow", singleton=gnomon.LimitMode.RESCHEDULE
        )
        clock.advance("1m")
        assert inside.wait(10)
        assert value(registry, "gnomon_running_jobs", job="slow") == 1
        clock.advance("1m")
        release.set()
        scheduler.wait_idle(timeout=10)
    assert value(registry, "gnomon_runs_total", job="slow", outcome="skipped_singleton") == 1
    assert value(registry, "gnomon_runs_total", job="slow", outcome="success") == 1
    assert value(registry, "gnomon_running_jobs", job="slow") == 0


def test_two_monitors_need_their_own_registries() -> None:
    registry = CollectorRegistry()
    PrometheusMonitor(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMonitor(registry=registry)
    PrometheusMonitor(registry=registry, namespace="other")
