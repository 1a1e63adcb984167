"""Occurrences that fell while no daemon was running: recorded, never replayed."""

from __future__ import annotations

from datetime import datetime

from gnomon._cli._config import JobSpec
from gnomon._cli._history import History
from gnomon._cli._logging import LOGGER, log_fields
from gnomon._distributed import occurrence_key
from gnomon._events import Outcome

__all__ = ["MISSED_CAP", "record_missed"]

MISSED_CAP = 10_000
"""Counting stops here: a 1-second job stopped for a month needs no exact figure."""


def record_missed(history: History, job: JobSpec, now: datetime) -> int:
    """Record, as one aggregated entry, the job's fire times since its last recorded
    occurrence that are already past; returns how many there were (up to the cap)."""
    last = history.last_scheduled(job.name)
    if last is None:
        return 0
    first, latest, count = _missed_between(job, last.astimezone(now.tzinfo), now)
    if first is None or latest is None:
        return 0
    more = "at least " if count >= MISSED_CAP else ""
    detail = (
        f"missed while gnomon was not running: {more}{count} occurrence(s) "
        f"from {first.isoformat()} to {latest.isoformat()}"
    )
    history.insert_run(
        job=job.name,
        occurrence=occurrence_key(job.name, first),
        attempt=1,
        scheduled_at=first,
        outcome=Outcome.SKIPPED_MISSED.value,
        detail=detail,
        count=count,
    )
    LOGGER.info(
        f"run skipped: {detail}",
        extra=log_fields(job=job.name, outcome=Outcome.SKIPPED_MISSED.value, count=count),
    )
    return count


def _missed_between(
    job: JobSpec, last: datetime, now: datetime
) -> tuple[datetime | None, datetime | None, int]:
    first: datetime | None = None
    latest: datetime | None = None
    count = 0
    moment: datetime | None = job.rule.next_after(last)
    while moment is not None and moment < now and count < MISSED_CAP:
        if job.stop_at is not None and moment > job.stop_at:
            break
        if job.start_at is None or moment >= job.start_at:
            first = first or moment
            latest = moment
            count += 1
        moment = job.rule.next_after(moment)
    return first, latest, count
