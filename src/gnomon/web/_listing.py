"""The lists the pages show: jobs filtered and paginated, a job's history page by page."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from gnomon._events import Outcome
from gnomon._stores.contract import HistoryCursor, RunRecord
from gnomon.web._data import FAILED, JobRow, Source

__all__ = [
    "JOBS_PER_PAGE",
    "RECORDS_PER_PAGE",
    "HistoryPage",
    "JobFilter",
    "JobsPage",
    "history_page",
    "jobs_page",
    "page_number",
]

JOBS_PER_PAGE: Final = 50
RECORDS_PER_PAGE: Final = 50
FAILURES: Final = "failed"
"""The history filter that shows every kind of failure."""
RUNNING: Final = "RUNNING"
"""The outcome filter for runs in progress (their outcome is ``None``)."""


def wanted_outcomes(text: str) -> frozenset[Outcome | None] | None:
    """The outcomes a filter's text names; ``None``: any."""
    if text == FAILURES:
        return frozenset(FAILED)
    if text == RUNNING:
        return frozenset({None})
    try:
        return frozenset({Outcome[text]})
    except KeyError:
        return None


def page_number(text: str | None) -> int:
    try:
        return max(1, min(int(text or "1"), 1_000_000))
    except ValueError:
        return 1


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The jobs page's filters: text (name, rule or tag), a tag, a last outcome."""

    text: str
    tag: str
    outcome: str

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> JobFilter:
        return cls(
            params.get("q", "").strip(), params.get("tag", "").strip(), params.get("outcome", "")
        )

    def apply(self, source: Source, rows: list[JobRow]) -> list[JobRow]:
        if self.tag:
            rows = [row for row in rows if self.tag in row.tags]
        if self.text:
            rows = [row for row in rows if row.matches(self.text)]
        outcomes = wanted_outcomes(self.outcome) if self.outcome != FAILURES else None
        if outcomes is not None:
            [outcome] = outcomes
            found = source.job_ids_with_last(outcome, {row.id for row in rows})
            rows = [row for row in rows if row.id in found]
        return rows


@dataclass(frozen=True, slots=True)
class JobsPage:
    rows: list[JobRow]
    tags: list[str]
    """Every tag of every job, for the tag menu."""
    total: int
    """Jobs that pass the filters."""
    total_all: int
    page: int
    pages: int


def jobs_page(source: Source, wanted: JobFilter, page: int) -> JobsPage:
    """One page of the jobs that pass ``wanted``, each with its recent outcomes."""
    every = source.job_rows()
    tags = sorted({tag for row in every for tag in row.tags})
    rows = wanted.apply(source, every)
    pages = max(1, math.ceil(len(rows) / JOBS_PER_PAGE))
    page = min(page, pages)
    # Copies: a source may keep its rows between requests, and these get their outcomes.
    shown = [
        replace(row, recent=[]) for row in rows[(page - 1) * JOBS_PER_PAGE : page * JOBS_PER_PAGE]
    ]
    source.recent(shown)
    return JobsPage(shown, tags, len(rows), len(every), page, pages)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    records: list[RunRecord]
    page: int
    """The page's number, for the reader (the cursor, not the number, says where it is)."""
    more: bool
    """Whether an older page can be shown."""
    cursor: str | None
    """What the link to the older page carries: where this page ended."""


def history_page(
    source: Source, job_id: uuid.UUID, outcome: str, page: int, before: str
) -> HistoryPage:
    """One page of a job's history, newest first: the records after the cursor
    ``before`` (keyset pagination: one indexed query, as cheap deep as on page 1)."""
    cursor = parse_cursor(before)
    page = page if cursor is not None else 1
    found = source.history(job_id, wanted_outcomes(outcome), RECORDS_PER_PAGE + 1, cursor)
    records = found[:RECORDS_PER_PAGE]
    more = len(found) > RECORDS_PER_PAGE
    return HistoryPage(records, page, more, format_cursor(records[-1]) if more else None)


def format_cursor(record: RunRecord) -> str:
    """A history cursor as a link carries it: the record's time (UTC) and key."""
    moment = record.scheduled_at.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{moment}|{record.occurrence_key}"


def parse_cursor(text: str) -> HistoryCursor | None:
    """A cursor from a link; ``None`` (the first page) for anything else."""
    moment, bar, key = text.partition("|")
    if not bar:
        return None
    try:
        when = datetime.fromisoformat(moment)
    except ValueError:
        return None
    return (when, key) if when.utcoffset() is not None else None
