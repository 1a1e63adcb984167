"""Reading the history and the actions: one query each, answered from memory and from a
store alike."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from gnomon._clock import require_aware
from gnomon._errors import InvalidOption
from gnomon._events import Outcome
from gnomon._job import Job

if TYPE_CHECKING:
    from gnomon._stores.contract import ActionRecord, RunRecord, Store

__all__ = ["ActionQuery", "HistoryQuery"]


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """``history(job=, outcome=, since=, limit=)``, validated."""

    job_id: uuid.UUID | None
    job_name: str | None
    outcomes: frozenset[Outcome | None] | None
    since: datetime | None
    limit: int

    @classmethod
    def parse(cls, job: object, outcome: object, since: object, limit: object) -> HistoryQuery:
        job_id, job_name = _job_filter(job)
        moment = None if since is None else require_aware(since, "since", InvalidOption)  # type: ignore[arg-type]
        return cls(job_id, job_name, _outcome_filter(outcome), moment, _limit(limit))

    def matches(self, record: RunRecord) -> bool:
        if self.job_id is not None and record.job_id != self.job_id:
            return False
        if self.job_name is not None and record.job_name != self.job_name:
            return False
        if self.outcomes is not None and record.outcome not in self.outcomes:
            return False
        return self.since is None or record.scheduled_at >= self.since

    def select(self, records: Iterable[RunRecord]) -> list[RunRecord]:
        return [record for record in records if self.matches(record)]

    def ask(self, store: Store) -> list[RunRecord]:
        return store.history(
            job_id=self.job_id,
            job_name=self.job_name,
            outcomes=self.outcomes,
            since=self.since,
            limit=self.limit,
        )

    def newest(self, records: list[RunRecord]) -> list[RunRecord]:
        records.sort(key=lambda r: r.scheduled_at.timestamp(), reverse=True)
        return records[: self.limit]


def _job_filter(job: object) -> tuple[uuid.UUID | None, str | None]:
    if job is None:
        return None, None
    if isinstance(job, Job):
        return job.id, None
    if isinstance(job, uuid.UUID):
        return job, None
    if isinstance(job, str) and job:
        return None, job
    raise InvalidOption(f"job must be a Job, a job id (uuid.UUID) or a job name, got {job!r}")


def _outcome_filter(outcome: object) -> frozenset[Outcome | None] | None:
    if outcome is None:
        return None
    if isinstance(outcome, Outcome):
        return frozenset({outcome})
    if isinstance(outcome, Collection) and not isinstance(outcome, str):
        bad = [o for o in outcome if o is not None and not isinstance(o, Outcome)]
        if not bad:
            return frozenset(outcome)
        outcome = bad[0]
    valid = ", ".join(f"Outcome.{o.name}" for o in Outcome)
    raise InvalidOption(
        f"outcome must be an Outcome ({valid}) or a collection of them, got {outcome!r}"
    )


@dataclass(frozen=True, slots=True)
class ActionQuery:
    """``actions(job=, limit=)``, validated."""

    job_id: uuid.UUID | None
    job_name: str | None
    limit: int

    @classmethod
    def parse(cls, job: object, limit: object) -> ActionQuery:
        job_id, job_name = _job_filter(job)
        return cls(job_id, job_name, _limit(limit))

    def select(self, actions: Iterable[ActionRecord]) -> list[ActionRecord]:
        return [
            action
            for action in actions
            if (self.job_id is None or action.job_id == self.job_id)
            and (self.job_name is None or action.job_name == self.job_name)
        ]

    def ask(self, store: Store) -> list[ActionRecord]:
        return store.actions(job_id=self.job_id, job_name=self.job_name, limit=self.limit)

    def newest(self, actions: list[ActionRecord]) -> list[ActionRecord]:
        """``actions`` (each source's newest first) merged, newest first."""
        actions.sort(key=lambda a: a.at.timestamp(), reverse=True)
        return actions[: self.limit]


def _limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidOption(f"limit must be a whole number of at least 1, got {limit!r}")
    return limit
