"""``gnomon run``: the schedule file's jobs in the foreground, until SIGTERM or SIGINT.

SIGHUP reloads the file. Signal handlers only put the signal on a queue; the main
thread does the work, so a handler never runs scheduler code in the middle of it.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import gnomon
from gnomon._cli import EXIT_OK, EXIT_TERMINATED, UsageError
from gnomon._cli._actions import KILL_GRACE, ProcessGroups
from gnomon._cli._config import InvalidSchedule, JobSpec, Schedule, SchedulerSpec, load_schedule
from gnomon._cli._history import History
from gnomon._cli._logging import LOGGER, configure_logging, log_fields
from gnomon._cli._metrics import MetricsServer, parse_address, prometheus_missing
from gnomon._cli._missed import record_missed
from gnomon._cli._monitors import MonitorGroup, RunLog, RunRecorder
from gnomon._cli._scheduling import add_job, build_scheduler, check_with_engine, update_job
from gnomon._cli._secrets import mask_secrets
from gnomon._durations import format_duration
from gnomon._events import Monitor

__all__ = ["Daemon", "run_daemon"]

HEARTBEAT = 1.0
"""Seconds between writes of the daemon's liveness and next run times to the state file."""
STUCK_AFTER = timedelta(seconds=10)
"""A job due longer ago than this (plus its jitter) means the scheduler loop is stuck."""


def run_daemon(
    path: Path,
    *,
    state: Path | None,
    log_format: str,
    log_level: str,
    metrics: str | None,
) -> int:
    address = None
    if metrics is not None:
        problem = prometheus_missing()
        if problem:
            raise UsageError(problem)
        try:
            address = parse_address(metrics)
        except ValueError as error:
            raise UsageError(str(error)) from None
    configure_logging(log_format, log_level)
    schedule = load_schedule(path)
    check_with_engine(schedule)
    daemon = Daemon(schedule, state or schedule.scheduler.state, metrics_address=address)
    terminated = daemon.run()
    return EXIT_TERMINATED if terminated else EXIT_OK


def _cluster(spec: SchedulerSpec) -> str | None:
    parts = [
        f"{role} {mask_secrets(url)}"
        for role, url in (("locker", spec.locker), ("elector", spec.elector))
        if url is not None
    ]
    return ", ".join(parts) or None


class Daemon:
    """One ``gnomon run``: a scheduler, its state file, and the signals that steer it."""

    def __init__(
        self, schedule: Schedule, state: Path, *, metrics_address: tuple[str, int] | None = None
    ) -> None:
        self.schedule = schedule
        self.history = History(state, create=True)
        self.recorder = RunRecorder(self.history)
        self.groups = ProcessGroups()
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.jobs: dict[str, gnomon.Job] = {}
        self.specs: dict[str, JobSpec] = {}
        self._last_beat = datetime.now(UTC)
        monitors: list[Monitor] = [RunLog(), self.recorder]
        self.metrics: MetricsServer | None = None
        if metrics_address is not None:
            self.metrics = self._metrics_server(metrics_address, monitors)
        self.scheduler = build_scheduler(schedule.scheduler, MonitorGroup(monitors))

    def _metrics_server(self, address: tuple[str, int], monitors: list[Monitor]) -> MetricsServer:
        # Imported here: without prometheus-client, `--metrics` was refused before this.
        from prometheus_client import CollectorRegistry

        from gnomon.prometheus import PrometheusMonitor

        registry = CollectorRegistry()
        monitors.append(PrometheusMonitor(registry=registry))
        return MetricsServer(address, registry, self.health)

    def run(self) -> bool:
        """Run until SIGTERM/SIGINT; True when runs had to be terminated at the stop."""
        self._install_signal_handlers()
        self.start()
        signum = self._serve()
        return self.stop(signum)

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.put(signum)  # SimpleQueue.put is safe in a signal handler

    def start(self) -> None:
        """Record what happened while no daemon ran, register the jobs, start the scheduler."""
        now = datetime.now(self.schedule.scheduler.timezone)
        abandoned = self.history.close_interrupted_runs(
            "gnomon stopped during the run (killed, or the machine went down)"
        )
        if abandoned:
            LOGGER.warning(f"{abandoned} run(s) of an earlier daemon never finished: abandoned")
        for job in self.schedule.jobs:
            record_missed(self.history, job, now)
            self._add(job)
        self.history.daemon_started(
            schedule_file=str(self.schedule.path.resolve()),
            timezone=self.schedule.scheduler.timezone.key,
            cluster=_cluster(self.schedule.scheduler),
            started_at=now,
        )
        self._write_jobs()
        self.scheduler.start()
        self._start_metrics()
        count = len(self.schedule.jobs)
        LOGGER.info(
            f"gnomon started: {count} job{'s' if count != 1 else ''} from {self.schedule.path}",
            extra=log_fields(state=str(self.history.path)),
        )

    def _start_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.start()
            host, port = self.metrics.address
            shown = f"[{host}]" if ":" in host else host
            LOGGER.info(f"metrics on http://{shown}:{port}/metrics and /healthz")

    def _serve(self) -> int:
        while True:
            try:
                signum = self.signals.get(timeout=HEARTBEAT)
            except queue.Empty:
                self._beat()
                continue
            if signum == signal.SIGHUP:
                self.reload()
            else:
                return signum

    def _beat(self) -> None:
        now = datetime.now(UTC)
        self._last_beat = now
        try:
            self.history.heartbeat(now, {name: job.next_run for name, job in self.jobs.items()})
        except sqlite3.Error as error:
            LOGGER.warning(f"could not update the state file {self.history.path}: {error}")

    def _write_jobs(self) -> None:
        self.history.replace_jobs(
            (job.name, job.rule.describe(), mask_secrets(job.action.describe()))
            for job in self.schedule.jobs
        )

    def health(self) -> str | None:
        """``None`` while the scheduler loop keeps up; else what is wrong."""
        if not self.scheduler.running:
            return "the scheduler is not running"
        now = datetime.now(UTC)
        if now - self._last_beat > STUCK_AFTER:
            return f"the daemon's main loop last ran at {self._last_beat.isoformat()}"
        for spec in self.specs.values():
            job = self.jobs.get(spec.name)
            next_run = job.next_run if job is not None else None
            allowance = STUCK_AFTER + (spec.jitter or timedelta(0))
            if next_run is not None and now - next_run > allowance:
                return f"job {spec.name!r} was due at {next_run.isoformat()} and has not started"
        return None

    def reload(self) -> None:
        """Apply the schedule file as it is now; an invalid file changes nothing."""
        try:
            fresh = load_schedule(self.schedule.path)
            check_with_engine(fresh)
        except InvalidSchedule as error:
            LOGGER.error(f"reload failed, the running schedule is unchanged:\n{error}")
            return
        if fresh.scheduler != self.schedule.scheduler:
            LOGGER.warning("changes to [scheduler] take effect at the next start; ignored")
        try:
            counts = self._apply(fresh)
        except (gnomon.GnomonError, TypeError):
            LOGGER.exception("reload failed part-way; the jobs it reached were changed")
            counts = None
        # What the scheduler now runs, even after a partial failure.
        self.schedule = replace(self.schedule, jobs=tuple(self.specs.values()))
        self._write_jobs()
        if counts is None:
            return
        LOGGER.info(
            f"reloaded {fresh.path}: {counts['added']} added, {counts['removed']} removed, "
            f"{counts['changed']} changed, {counts['unchanged']} unchanged"
        )

    def _apply(self, fresh: Schedule) -> dict[str, int]:
        current = dict(self.specs)
        wanted = {job.name: job for job in fresh.jobs}
        counts = dict.fromkeys(("added", "removed", "changed", "unchanged"), 0)
        for name in current.keys() - wanted.keys():
            self._remove(name)
            counts["removed"] += 1
        for name, job in wanted.items():
            if name not in current:
                self._add(job)
                counts["added"] += 1
            elif job != current[name]:
                self._update(job)
                counts["changed"] += 1
            else:
                counts["unchanged"] += 1
        # The file's order is the order `status` shows.
        self.specs = {name: self.specs[name] for name in wanted}
        return counts

    def _add(self, spec: JobSpec) -> None:
        self.jobs[spec.name] = add_job(self.scheduler, spec, self.groups)
        self.specs[spec.name] = spec

    def _remove(self, name: str) -> None:
        self.specs.pop(name, None)
        job = self.jobs.pop(name, None)
        if job is None:
            return
        # It may have run out of runs on its own (max_runs, stop_at, once).
        with contextlib.suppress(gnomon.JobNotFound):
            self.scheduler.remove_job(job.id)

    def _update(self, spec: JobSpec) -> None:
        job = self.jobs.get(spec.name)
        if job is not None:
            try:
                self.jobs[spec.name] = update_job(self.scheduler, job, spec, self.groups)
            except gnomon.JobNotFound:
                pass  # it ran out of runs on its own: add it afresh
            else:
                self.specs[spec.name] = spec
                return
        self._add(spec)

    def stop(self, signum: int) -> bool:
        """Stop as ``signum`` asks; True when runs had to be terminated."""
        stop_timeout = self.schedule.scheduler.stop_timeout
        LOGGER.info(
            f"received {signal.Signals(signum).name}: stopping; running runs get up to "
            f"{format_duration(stop_timeout)} to finish"
        )
        self.groups.begin_stop()
        terminated = False
        try:
            self.scheduler.shutdown(timeout=stop_timeout.total_seconds())
        except gnomon.ShutdownTimedOut as timed_out:
            terminated = True
            self._terminate(timed_out.unfinished, stop_timeout)
        self._close()
        LOGGER.info("gnomon stopped" + (" after terminating runs" if terminated else ""))
        return terminated

    def _terminate(self, unfinished: tuple[str, ...], stop_timeout: timedelta) -> None:
        LOGGER.warning(
            f"{len(unfinished)} run(s) still going after {format_duration(stop_timeout)}: "
            f"terminating them: {', '.join(unfinished)}"
        )
        # Each terminated command ends within the kill grace; Python functions cannot be
        # terminated, so they get only a moment to report.
        self.groups.terminate_all(KILL_GRACE + 1.0)
        left = self.recorder.wait_for_open_runs(0.5)
        if left:
            LOGGER.warning(f"{left} run(s) did not end; recorded as cancelled")

    def _close(self) -> None:
        self.recorder.close("still running when gnomon stopped; terminated")
        self.history.daemon_stopped(datetime.now(self.schedule.scheduler.timezone))
        self.history.close()
        if self.metrics is not None:
            self.metrics.close()
