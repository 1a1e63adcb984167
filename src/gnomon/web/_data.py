"""What the dashboard shows, read from a scheduler or from a bare store.

Two sources answer the same questions: :class:`SchedulerSource` reads a live scheduler
(its jobs in memory, its history, its store) and can act on it; :class:`StoreSource` reads
a store that any number of schedulers use, and only reads. Every call is synchronous and
may block on the store: the app calls them from a worker thread.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gnomon._durations import format_duration
from gnomon._errors import JobNotFound
from gnomon._events import Outcome
from gnomon._job import Job
from gnomon._rules import Every, Rule
from gnomon._scheduler import AsyncScheduler, Scheduler
from gnomon._stores.codec import UndecodableDefinition, decode_definition
from gnomon._stores.contract import (
    ActionRecord,
    HistoryCursor,
    NodeInfo,
    RunRecord,
    Store,
    StoredJob,
)

__all__ = [
    "FAILED",
    "JobDetail",
    "JobRow",
    "SchedulerSource",
    "Source",
    "StoreSource",
]

FAILED = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CANCELLED, Outcome.ABANDONED})
ALIVE_WITHIN = timedelta(seconds=30)
"""A scheduler that has not sent a heartbeat for this long is not listed."""
"""How many of a job's newest records are searched for an occurrence by its key."""
STRIP = 12
"""How many recent outcomes a job's row shows."""


@dataclass(slots=True)
class JobRow:
    """One job as the jobs page lists it."""

    id: uuid.UUID
    name: str
    tags: list[str]
    rule: str
    next_run: datetime | None
    last_run: datetime | None
    paused: bool
    pause_reason: str | None
    running: bool
    recent: list[RunRecord] = field(default_factory=list)
    """Newest first."""

    @property
    def last(self) -> RunRecord | None:
        """The latest finished record (a run in progress is shown as running)."""
        return next((record for record in self.recent if record.outcome is not None), None)

    def matches(self, text: str) -> bool:
        needle = text.casefold()
        return any(needle in part.casefold() for part in (self.name, self.rule, *self.tags))


@dataclass(slots=True)
class JobDetail:
    """One job as its own page shows it."""

    row: JobRow
    definition: list[tuple[str, str]]
    next_runs: list[datetime]
    arguments: list[tuple[str, str]] | None
    """``None`` unless the dashboard shows arguments."""


class Source:
    """What the dashboard reads; a scheduler's source can also act."""

    timezone: ZoneInfo
    can_act = False
    is_async = False

    def job_rows(self) -> list[JobRow]:
        raise NotImplementedError

    def recent(self, rows: Sequence[JobRow]) -> None:
        """Fill each row's strip of recent outcomes."""
        store = self.store()
        if store is None:
            return
        for row in rows:
            row.recent = store.history(job_id=row.id, limit=STRIP)
            if row.recent and row.recent[0].outcome is None:
                row.running = True

    def job_ids_with_last(
        self, outcome: Outcome | None, among: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """The jobs (of ``among``) whose latest record has ``outcome``."""
        store = self.store()
        if store is None:
            return set()
        # Only a job with some record of that outcome can have it last: ask for those
        # first (one indexed query), then look at the latest record of each candidate.
        recent = store.history(outcomes={outcome}, limit=5000)
        candidates = {record.job_id for record in recent} & set(among)
        found = set()
        for job_id in candidates:
            latest = store.history(job_id=job_id, limit=1)
            if latest and latest[0].outcome is outcome:
                found.add(job_id)
        return found

    def job(self, job_id: uuid.UUID, show_arguments: bool) -> JobDetail | None:
        raise NotImplementedError

    def history(
        self,
        job_id: uuid.UUID,
        outcomes: Collection[Outcome | None] | None,
        limit: int,
        before: HistoryCursor | None = None,
    ) -> list[RunRecord]:
        """A job's records newest first (then by key), after ``before`` when given."""
        store = self.store()
        if store is None:
            return []
        return store.history(job_id=job_id, outcomes=outcomes, limit=limit, before=before)

    def actions(self, job_id: uuid.UUID, limit: int) -> list[ActionRecord]:
        """The actions taken on a job, newest first."""
        store = self.store()
        if store is None:
            return []
        return store.actions(job_id=job_id, limit=limit)

    def occurrence(self, job_id: uuid.UUID, key: str) -> RunRecord | None:
        store = self.store()
        if store is None:
            return None
        record = store.occurrence(key)
        return record if record is not None and record.job_id == job_id else None

    def nodes(self) -> list[NodeInfo]:
        store = self.store()
        if store is None:
            return []
        return store.nodes(alive_within=ALIVE_WITHIN)

    def store(self) -> Store | None:
        raise NotImplementedError


class StoreSource(Source):
    """A store, read-only: every scheduler's durable jobs and their history."""

    def __init__(self, store: Store, timezone: ZoneInfo) -> None:
        self._store = store
        self.timezone = timezone
        self._opened = False
        self._rows: tuple[int, list[JobRow]] | None = None

    def store(self) -> Store:
        if not self._opened:
            self._store.open()
            self._opened = True
        return self._store

    def job_rows(self) -> list[JobRow]:
        # Rows are rebuilt only when the store changed (its change counter is cheap to read).
        store = self.store()
        seq = store.seq()
        if self._rows is None or self._rows[0] != seq:
            rows = [_stored_row(row) for row in store.jobs() if row.removed is None]
            self._rows = (seq, rows)
        return self._rows[1]

    def job(self, job_id: uuid.UUID, show_arguments: bool) -> JobDetail | None:
        stored = self.store().get_job(job_id=job_id)
        if stored is None or stored.removed is not None:
            return None
        row = _stored_row(stored)
        definition, arguments, rule = _stored_definition(stored, show_arguments)
        upcoming: list[datetime] = []
        if rule is not None and not stored.paused:
            first = stored.next_fire or _first_fire(rule, stored.anchor, utc_now())
            upcoming = [] if first is None else _chain(rule, first, 10)
        return JobDetail(row, definition, upcoming, arguments)


class SchedulerSource(Source):
    """A live scheduler (thread or asyncio face): its jobs, history and nodes; it acts."""

    can_act = True

    def __init__(self, scheduler: Scheduler | AsyncScheduler) -> None:
        self.scheduler = scheduler
        self.timezone = scheduler.timezone
        self.is_async = isinstance(scheduler, AsyncScheduler)

    def store(self) -> Store | None:
        return self.scheduler.store

    def handles(self) -> list[Job]:
        # Both faces share the synchronous reading of their jobs.
        return self.scheduler._jobs(None)

    def handle(self, job_id: uuid.UUID) -> Job:
        return self.scheduler._get(job_id)

    def job_rows(self) -> list[JobRow]:
        return [_handle_row(job) for job in self.handles()]

    def recent(self, rows: Sequence[JobRow]) -> None:
        if self.store() is not None:
            super().recent(rows)
        memory = [row for row in rows if not row.recent]
        if not memory:
            return
        wanted = {row.id: row for row in memory}
        for record in self._memory(None):
            row = wanted.get(record.job_id)
            if row is not None and len(row.recent) < STRIP:
                row.recent.append(record)

    def _memory(self, job_id: uuid.UUID | None) -> list[RunRecord]:
        """The in-memory history (jobs kept without a store), newest first."""
        records = self.scheduler._engine.history_records()
        if job_id is not None:
            records = [record for record in records if record.job_id == job_id]
        records.reverse()
        return records

    def job_ids_with_last(
        self, outcome: Outcome | None, among: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        found = super().job_ids_with_last(outcome, among)
        seen: set[uuid.UUID] = set()
        for record in self._memory(None):
            if record.job_id not in seen:
                seen.add(record.job_id)
                if record.outcome is outcome and record.job_id in among:
                    found.add(record.job_id)
        return found

    def history(
        self,
        job_id: uuid.UUID,
        outcomes: Collection[Outcome | None] | None,
        limit: int,
        before: HistoryCursor | None = None,
    ) -> list[RunRecord]:
        records = super().history(job_id, outcomes, limit, before)
        memory = [
            record
            for record in self._memory(job_id)
            if (outcomes is None or record.outcome in outcomes)
            and (before is None or _history_order(record) < (before[0], before[1]))
        ]
        if not memory:
            return records
        merged = records + memory
        merged.sort(key=_history_order, reverse=True)
        return merged[:limit]

    def actions(self, job_id: uuid.UUID, limit: int) -> list[ActionRecord]:
        return self.scheduler._action_records(job_id, limit)

    def occurrence(self, job_id: uuid.UUID, key: str) -> RunRecord | None:
        for record in self._memory(job_id):  # an in-memory job's (newest first)
            if record.occurrence_key == key:
                return record
        return super().occurrence(job_id, key)

    def nodes(self) -> list[NodeInfo]:
        result = self.scheduler._nodes()
        return list(result)

    def job(self, job_id: uuid.UUID, show_arguments: bool) -> JobDetail | None:
        try:
            handle = self.handle(job_id)
        except JobNotFound:
            return None
        row = _handle_row(handle)
        state = handle._state
        spec = state.spec
        definition: list[tuple[str, str]] = []
        durable = state.durable
        task = durable.task if durable is not None else _qualname(spec.func)
        definition.append(("Task", task))
        definition.append(("Rule", handle.rule.describe()))
        definition.append(("Rule (code)", repr(handle.rule)))
        definition.extend(_spec_options(spec))
        definition.append(("Kept in", "the store" if durable is not None else "memory"))
        if durable is not None:
            definition.append(("Version", str(durable.version)))
            if durable.source:
                definition.append(("Declared in", durable.source))
        arguments = None
        if show_arguments:
            arguments = _arguments(spec.args, spec.kwargs)
        return JobDetail(row, definition, handle.next_runs(10), arguments)


def _history_order(record: RunRecord) -> tuple[datetime, str]:
    """Where a record stands in history's order (every store's: time, then key)."""
    return record.scheduled_at, record.occurrence_key


# ---------------------------------------------------------------- rows


def _handle_row(job: Job) -> JobRow:
    return JobRow(
        id=job.id,
        name=job.name,
        tags=sorted(job.tags),
        rule=_describe(job.rule),
        next_run=job.next_run,
        last_run=job.last_run,
        paused=job.paused,
        pause_reason=job.pause_reason,
        running=job.is_running,
    )


def _describe(rule: Rule) -> str:
    """A rule in plain English; rules are immutable values, and many jobs share one."""
    try:
        return _cached_description(rule)
    except TypeError:  # a rule that cannot be hashed
        return rule.describe()


@functools.lru_cache(maxsize=4096)
def _cached_description(rule: Rule) -> str:
    return rule.describe()


_RULES: dict[str, tuple[str, Rule | None]] = {}
"""Descriptions of stored definitions, by definition text (a page lists many alike)."""


def _stored_rule(stored: StoredJob) -> tuple[str, Rule | None]:
    found = _RULES.get(stored.definition)
    if found is None:
        try:
            rule = decode_definition(stored.definition).rule
            found = (rule.describe(), rule)
        except UndecodableDefinition as error:
            found = (f"(cannot be read by this gnomon: {error})", None)
        if len(_RULES) > 20_000:
            _RULES.clear()
        _RULES[stored.definition] = found
    return found


def _stored_row(stored: StoredJob) -> JobRow:
    definition = _tags(stored)
    return JobRow(
        id=stored.id,
        name=stored.name,
        tags=definition,
        rule=_stored_rule(stored)[0],
        next_run=None if stored.paused else stored.next_fire,
        last_run=stored.last_run,
        paused=stored.paused,
        pause_reason=stored.pause_reason if stored.paused else None,
        running=False,
    )


_TAGS: dict[str, list[str]] = {}


def _tags(stored: StoredJob) -> list[str]:
    found = _TAGS.get(stored.definition)
    if found is None:
        try:
            tags = decode_definition(stored.definition).options.get("tags") or ()
            found = sorted(str(tag) for tag in tags)  # type: ignore[attr-defined]
        except UndecodableDefinition:
            found = []
        if len(_TAGS) > 20_000:
            _TAGS.clear()
        _TAGS[stored.definition] = found
    return found


def _stored_definition(
    stored: StoredJob, show_arguments: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, str]] | None, Rule | None]:
    lines = [("Task", stored.task)]
    try:
        decoded = decode_definition(stored.definition)
    except UndecodableDefinition as error:
        lines.append(("Definition", f"cannot be read by this gnomon: {error}"))
        return lines, None, None
    lines.append(("Rule", decoded.rule.describe()))
    lines.append(("Rule (code)", repr(decoded.rule)))
    lines.extend(
        (_label(name), _shown(decoded.options[name]))
        for name in sorted(decoded.options)
        if name != "tags"
    )
    lines.append(("Kept in", "the store"))
    lines.append(("Version", str(stored.version)))
    lines.append(("Runs so far", str(stored.runs)))
    if stored.source:
        lines.append(("Declared in", stored.source))
    arguments = _arguments(decoded.args, decoded.kwargs) if show_arguments else None
    return lines, arguments, decoded.rule


def _first_fire(rule: Rule, anchor: datetime, now: datetime) -> datetime | None:
    """A stored job's next fire when no scheduler has written one yet: an ``every`` job
    keeps the phase of its anchor."""
    if isinstance(rule, Every):
        return rule.anchored_after(anchor, now)
    return rule.next_after(now)


def _chain(rule: Rule, first: datetime, count: int) -> list[datetime]:
    times = [first]
    while len(times) < count:
        following = rule.next_after(times[-1])
        if following is None or following <= times[-1]:
            break
        times.append(following)
    return times


_SPEC_FIELDS = (
    ("singleton", "Overlap"),
    ("max_runs", "Max runs"),
    ("start_at", "Start at"),
    ("stop_at", "Stop at"),
    ("jitter", "Jitter"),
    ("timeout", "Timeout"),
    ("recovery", "Recovery"),
    ("catch_up", "Catch-up"),
    ("catch_up_window", "Catch-up window"),
    ("catch_up_limit", "Catch-up limit"),
)


def _spec_options(spec: Any) -> list[tuple[str, str]]:
    lines = []
    for attribute, label in _SPEC_FIELDS:
        value = getattr(spec, attribute, None)
        if value is not None and value is not False:
            lines.append((label, _shown(value)))
    retry = spec.options.get("retry") if hasattr(spec, "options") else None
    if retry is not None:
        lines.append(("Retry", _shown(retry)))
    return lines


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _shown(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    name = getattr(value, "name", None)
    if isinstance(name, str) and type(value).__module__.startswith("gnomon"):
        return name
    return repr(value)


def _arguments(args: Iterable[object], kwargs: Any) -> list[tuple[str, str]]:
    shown = [(f"args[{index}]", repr(value)) for index, value in enumerate(args)]
    shown += [(str(name), repr(value)) for name, value in dict(kwargs).items()]
    return shown


def _qualname(func: object) -> str:
    module = getattr(func, "__module__", None) or ""
    name = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{name}" if module else str(name)


def utc_now() -> datetime:
    return datetime.now(UTC)
