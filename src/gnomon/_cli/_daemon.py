"""``gnomon run``: the schedule file's jobs in the foreground, until SIGTERM or SIGINT.

The jobs live in a store (the state file, a ``SQLiteStore``, unless ``[scheduler] store``
names another), which records every occurrence and lets replicas share the work: each
occurrence is claimed in the store, so it runs once among all the daemons on it.

SIGHUP reloads the file. Signal handlers only put the signal on a queue; the main
thread does the work, so a handler never runs scheduler code in the middle of it.
"""

from __future__ import annotations

import queue
import signal
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import gnomon
from gnomon._cli import EXIT_OK, EXIT_TERMINATED, UsageError
from gnomon._cli._actions import KILL_GRACE, ProcessGroups
from gnomon._cli._config import InvalidSchedule, JobSpec, Schedule, load_schedule
from gnomon._cli._dispatch import probe_brokers
from gnomon._cli._logging import LOGGER, configure_logging, log_fields
from gnomon._cli._metrics import MetricsServer, parse_address, prometheus_missing
from gnomon._cli._monitors import MonitorGroup, RunLog
from gnomon._cli._scheduling import Declarations, build_scheduler, check_with_engine
from gnomon._cli._store import StoreLocation, migrate_old_history, open_built
from gnomon._durations import format_duration
from gnomon._events import Monitor
from gnomon._stores.contract import Store

if TYPE_CHECKING:
    from gnomon._cli._web import WebServer

__all__ = ["Daemon", "run_daemon"]

HEARTBEAT = 1.0
"""Seconds between the main loop's checks (liveness for ``/healthz``, next run times)."""
STUCK_AFTER = timedelta(seconds=10)
"""A job due longer ago than this (plus its jitter) means the scheduler loop is stuck."""


def run_daemon(
    path: Path,
    *,
    state: Path | None,
    log_format: str,
    log_level: str,
    metrics: str | None,
    web: str | None = None,
    web_token_file: Path | None = None,
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
    if web_token_file is not None and web is None:
        raise UsageError("--web-token-file needs --web [HOST:]PORT")
    if web is not None:
        from gnomon._cli._web import web_missing

        problem = web_missing()
        if problem:
            raise UsageError(problem)
    configure_logging(log_format, log_level)
    schedule = load_schedule(path)
    check_with_engine(schedule)
    location = StoreLocation(path=state) if state is not None else None
    daemon = Daemon(schedule, location, metrics_address=address)
    if web is not None:
        from gnomon._cli._web import daemon_dashboard

        try:
            daemon.web = daemon_dashboard(daemon.scheduler, web, web_token_file)
        except ValueError as error:
            raise UsageError(str(error)) from None
    terminated = daemon.run()
    return EXIT_TERMINATED if terminated else EXIT_OK


class Daemon:
    """One ``gnomon run``: a scheduler on a store, and the signals that steer it."""

    def __init__(
        self,
        schedule: Schedule,
        location: StoreLocation | None = None,
        *,
        metrics_address: tuple[str, int] | None = None,
    ) -> None:
        self.schedule = schedule
        self.location = location or schedule.scheduler.store
        self.groups = ProcessGroups()
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.jobs: dict[str, gnomon.Job] = {}
        self.specs: dict[str, JobSpec] = {}
        self._last_beat = datetime.now(UTC)
        monitors: list[Monitor] = [RunLog()]
        self.metrics: MetricsServer | None = None
        self.web: WebServer | None = None
        if metrics_address is not None:
            self.metrics = self._metrics_server(metrics_address, monitors)
        self.store = self.location.build()
        self.scheduler = build_scheduler(schedule.scheduler, MonitorGroup(monitors), self.store)
        source = str(schedule.path.resolve())
        self.declarations = Declarations(self.scheduler, source, self.groups)

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
        """Open the store, declare the file's jobs in it, then start the scheduler, which
        catches up on what fell due while no daemon ran (each job's ``catch_up``)."""
        open_built(self.store, self.location, create=True)
        for spec in self.schedule.jobs:
            self._declare(spec)
        probe_brokers(self.scheduler)
        self.declarations.remove_undeclared(self.specs.keys())
        # After the declarations: copied records then carry their jobs' ids.
        migrate_old_history(self.store, self.location)
        self.scheduler.start()
        self._start_metrics()
        if self.web is not None:
            url = self.web.start()
            access = "read-only" if self.web.read_only else "actions need the token"
            LOGGER.info(f"dashboard on {url} ({access})")
        count = len(self.schedule.jobs)
        LOGGER.info(
            f"gnomon started: {count} job{'s' if count != 1 else ''} from {self.schedule.path}",
            extra=log_fields(store=self.location.describe()),
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
        self._last_beat = datetime.now(UTC)
        try:
            publish_next_runs(self.store, self.jobs)
        except gnomon.GnomonError as error:
            LOGGER.warning(f"could not update the store {self.location.describe()}: {error}")

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
        if counts is None:
            return
        LOGGER.info(
            f"reloaded {fresh.path}: {counts['added']} added, {counts['removed']} removed, "
            f"{counts['changed']} changed, {counts['unchanged']} unchanged"
        )

    def _apply(self, fresh: Schedule) -> dict[str, int]:
        wanted = {job.name: job for job in fresh.jobs}
        counts = _changes(self.specs, wanted)
        for name in self.specs.keys() - wanted.keys():
            self.specs.pop(name)
            self.jobs.pop(name, None)
        for job in fresh.jobs:
            if job != self.specs.get(job.name):
                self._declare(job)
        self.declarations.remove_undeclared(wanted.keys())
        # The file's order is the order the jobs are reported in.
        self.specs = {name: self.specs[name] for name in wanted}
        return counts

    def _declare(self, spec: JobSpec) -> None:
        """Store the job and track its handle; a job that finished is reported, not run."""
        self.specs[spec.name] = spec
        job = self.declarations.declare(spec)
        if job is None:
            self.jobs.pop(spec.name, None)
            LOGGER.info(
                "job finished earlier (once, max_runs or stop_at) and is not run again; "
                "rename it to run it anew",
                extra=log_fields(job=spec.name),
            )
            return
        self.jobs[spec.name] = job

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
        # terminated. Their records were closed as cancelled by the scheduler's shutdown.
        left = self.groups.terminate_all(KILL_GRACE + 1.0)
        if left:
            LOGGER.warning(f"{left} command(s) did not end after SIGKILL")

    def _close(self) -> None:
        if self.web is not None:
            self.web.close()
        self.store.close()
        if self.metrics is not None:
            self.metrics.close()


def _changes(current: Mapping[str, JobSpec], wanted: Mapping[str, JobSpec]) -> dict[str, int]:
    """What a reload does, counted against the jobs the daemon runs now."""
    kept = current.keys() & wanted.keys()
    changed = sum(current[name] != wanted[name] for name in kept)
    return {
        "added": len(wanted.keys() - current.keys()),
        "removed": len(current.keys() - wanted.keys()),
        "changed": changed,
        "unchanged": len(kept) - changed,
    }


def publish_next_runs(store: Store, jobs: Mapping[str, gnomon.Job]) -> int:
    """Write each job's next fire time to its stored row where the row says otherwise;
    returns how many were written.

    ``gnomon status`` shows the stored ``next_fire``, which the scheduler writes with each
    claim; a job that has not run since it was (re)declared would show none without this.
    """
    stored = {row.id: row.next_fire for row in store.jobs()}
    written = 0
    for job in jobs.values():
        next_run = None if job.removed else job.next_run
        if job.id in stored and stored[job.id] != next_run:
            store.save_progress(job.id, None if next_run is None else next_run.astimezone(UTC))
            written += 1
    return written
