"""What the daemon does with each occurrence: log it. The store records it: a run's
record is written by its claim and its end, a skip by the scheduler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gnomon._cli._actions import CommandFailed
from gnomon._cli._logging import LOGGER, log_fields
from gnomon._events import Monitor, Outcome, RunEvent
from gnomon._stores.contract import CommandResult

if TYPE_CHECKING:
    from gnomon._job import Job

__all__ = ["MonitorGroup", "RunLog", "outcome_reason", "skip_reason"]

_SKIP_REASONS = {
    Outcome.SKIPPED_SINGLETON: "the job's previous run was still going (singleton)",
    Outcome.SKIPPED_LIMIT: "max_concurrent runs were already going",
    Outcome.SKIPPED_LOCKED: "another node holds or ran this occurrence",
    Outcome.SKIPPED_LOCK_ERROR: "the locker failed",
    Outcome.SKIPPED_NOT_LEADER: "this node is not the leader",
    Outcome.SKIPPED_MISSED: "missed while gnomon was not running or was suspended",
    Outcome.SKIPPED_BEFORE_RUN: "a before_run listener refused it",
    Outcome.SKIPPED_STOPPING: "gnomon was stopping",
    Outcome.ABANDONED: "its runner died during the run (at-most-once)",
}
_ENDINGS = {
    Outcome.SUCCESS: "run succeeded",
    Outcome.FAILED: "run failed",
    Outcome.TIMED_OUT: "run timed out",
    Outcome.CANCELLED: "run cancelled",
}
# Routine refusals in a cluster would drown the log at INFO; a failing store is news.
_SKIP_LEVELS = {
    Outcome.SKIPPED_LOCKED: logging.DEBUG,
    Outcome.SKIPPED_NOT_LEADER: logging.DEBUG,
    Outcome.SKIPPED_LOCK_ERROR: logging.WARNING,
    Outcome.ABANDONED: logging.WARNING,
}

_log = logging.getLogger("gnomon.cli.monitor")


def outcome_reason(outcome: Outcome | None) -> str | None:
    """Why an occurrence did not run, or ran no further, as ``outcome`` tells it."""
    return None if outcome is None else _SKIP_REASONS.get(outcome)


def skip_reason(event: RunEvent) -> str:
    reason = _SKIP_REASONS.get(event.outcome, "skipped") if event.outcome else "skipped"
    if event.outcome is Outcome.SKIPPED_MISSED and isinstance(event.result, int):
        # The scheduler reports one event per gap, its result the number of fire times.
        reason += f": {event.result} occurrence(s) from {event.scheduled_at.isoformat()}"
    if event.exception is not None:
        reason += f": {_describe_exception(event.exception)}"
    return reason


def _describe_exception(error: BaseException) -> str:
    if isinstance(error, CommandFailed):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_result(event: RunEvent) -> tuple[int | None, str | None, str | None]:
    """(exit status, detail, output tail) of a finished run."""
    error = event.exception
    if isinstance(error, CommandFailed):
        return error.exit_status, str(error), error.output or None
    exit_status = event.result.exit_status if isinstance(event.result, CommandResult) else None
    if error is not None:
        return exit_status, _describe_exception(error), None
    if event.outcome is Outcome.TIMED_OUT:
        return exit_status, "ran past its timeout", None
    return exit_status, None, None


def _duration(event: RunEvent) -> float | None:
    if event.started_at is None or event.finished_at is None:
        return None
    return (event.finished_at - event.started_at).total_seconds()


class MonitorGroup(Monitor):
    """Hands every event to several monitors; one that fails does not starve the others."""

    def __init__(self, monitors: Sequence[Monitor]) -> None:
        self._monitors = tuple(monitors)

    def _each(self, hook: str, *arguments: object) -> None:
        for monitor in self._monitors:
            try:
                getattr(monitor, hook)(*arguments)
            except Exception:
                _log.exception("monitor %r failed in %s", monitor, hook)

    def scheduler_started(self) -> None:
        self._each("scheduler_started")

    def scheduler_stopped(self) -> None:
        self._each("scheduler_stopped")

    def job_registered(self, job: Job) -> None:
        self._each("job_registered", job)

    def job_unregistered(self, job: Job) -> None:
        self._each("job_unregistered", job)

    def run_started(self, event: RunEvent) -> None:
        self._each("run_started", event)

    def run_finished(self, event: RunEvent) -> None:
        self._each("run_finished", event)

    def run_skipped(self, event: RunEvent) -> None:
        self._each("run_skipped", event)

    def scheduling_delay(self, event: RunEvent, delay: float) -> None:
        self._each("scheduling_delay", event, delay)


class RunLog(Monitor):
    """One line when a run starts, one when it ends (with its output tail on failure)."""

    def run_started(self, event: RunEvent) -> None:
        LOGGER.info(
            "run started",
            extra=log_fields(
                job=event.job_name,
                occurrence=event.occurrence_key,
                scheduled_at=event.scheduled_at.isoformat(),
                attempt=event.attempt if event.attempt > 1 else None,
            ),
        )

    def run_finished(self, event: RunEvent) -> None:
        outcome = event.outcome or Outcome.FAILED
        exit_status, detail, output = run_result(event)
        level = logging.INFO if outcome is Outcome.SUCCESS else logging.ERROR
        message = _ENDINGS.get(outcome, f"run {outcome.value}") + (f": {detail}" if detail else "")
        LOGGER.log(
            level,
            message,
            extra=log_fields(
                job=event.job_name,
                occurrence=event.occurrence_key,
                outcome=outcome.value,
                duration=_duration(event),
                exit_status=exit_status,
                output=output,
            ),
        )

    def run_skipped(self, event: RunEvent) -> None:
        outcome = event.outcome or Outcome.SKIPPED_MISSED
        level = _SKIP_LEVELS.get(outcome, logging.INFO)
        LOGGER.log(
            level,
            f"run skipped: {skip_reason(event)}",
            extra=log_fields(
                job=event.job_name, occurrence=event.occurrence_key, outcome=outcome.value
            ),
        )
