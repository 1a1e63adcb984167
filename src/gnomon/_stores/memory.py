"""``MemoryStore``, the reference store, and the decisions every store shares.

``MemoryStore`` keeps the whole contract in one object, all state under one
``threading.Lock``, so several schedulers of one process (each on its own thread or
loop) can share it as if it were a database: that is how tests simulate many processes.
Its clock may be a ``FakeClock``, so lease edges are tested without waiting.

The functions below the class are the decisions themselves (what ``put_job`` leaves in
place of a live row, whether a job allows a claim, what a claim grants), written once
so that the SQLite store, which calls them inside its transactions, cannot drift from
this reference.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import logging
import threading
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gnomon._claims import ClaimState, LockerTimings, Verdict, judge_claim, refuse
from gnomon._clock import Clock
from gnomon._durations import Duration, format_duration
from gnomon._errors import JobChanged, JobExists, JobNotFound, LeaseLost, LockHeld
from gnomon._events import Outcome, Recovery
from gnomon._memory import _MonotonicUTC
from gnomon._stores.contract import (
    ACTIONS,
    ActionRecord,
    Claim,
    ClaimRequest,
    HistoryCursor,
    IfExists,
    NewJob,
    NodeInfo,
    RunRecord,
    Store,
    StoredJob,
    check_page_limit,
)

__all__ = ["MemoryStore"]

logger = logging.getLogger("gnomon")

FOREVER = datetime.max.replace(tzinfo=UTC)
"""A finished record's ``keep_until`` for ``judge_claim``: retention is ``prune``'s job."""


class OccurrenceState(enum.Enum):
    """Where an occurrence's row stands; stored as its value."""

    RUNNING = "running"
    """Claimed: its token holds it while the lease lasts (and after, until taken over)."""
    FINISHED = "finished"
    """Its outcome is written; no claim takes it again (``retry`` may put it up)."""
    SKIPPED = "skipped"
    """Recorded without a claim: a later claim takes it over."""
    RETRY = "retry"
    """Put up by ``retry``: the next claim is the next attempt."""


@dataclass(frozen=True, slots=True)
class StoredClaim:
    """What a claim decision needs to know of an occurrence's row."""

    state: OccurrenceState
    attempt: int
    attempts: int
    lease_until: datetime | None
    ran: bool
    """Whether it was ever claimed (holds a token): a skip never ran."""


@dataclass(slots=True)
class _Occurrence:
    record: RunRecord
    state: OccurrenceState
    lease_until: datetime | None = None

    def stored(self) -> StoredClaim:
        record = self.record
        ran = record.fencing_token is not None
        return StoredClaim(self.state, record.attempt, record.attempts, self.lease_until, ran)


class MemoryStore(Store):
    """The store contract in this process's memory: ``MemoryStore(clock=FakeClock())``.

    One instance is the store that several schedulers of a process share; ``clock``
    (anything with ``now()``) is the store's clock, which judges leases. ``lease_ttl``
    and ``renew_interval`` are the claim timings schedulers on this store use.
    """

    notifies = True

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        lease_ttl: Duration = timedelta(seconds=30),
        renew_interval: Duration | None = None,
    ) -> None:
        timings = LockerTimings.parse(lease_ttl, renew_interval)
        self.lease_ttl = timings.lease_ttl
        self.renew_interval = timings.renew_interval
        self._clock: Clock = clock if clock is not None else _MonotonicUTC()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[uuid.UUID, StoredJob] = {}
        self._live: dict[str, uuid.UUID] = {}
        self._occurrences: dict[str, _Occurrence] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._actions: list[ActionRecord] = []
        """Oldest first, as recorded."""
        self._seq = 0
        self._token = 0

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        """Nothing to connect to: the state is this object."""

    def close(self) -> None:
        """Nothing to release; wakes whoever waits for a change."""
        with self._changed:
            self._changed.notify_all()

    def now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    def describe(self) -> str:
        return "memory"

    def wait_for_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def seq(self) -> int:
        with self._lock:
            return self._seq

    # ---------------------------------------------------------------- jobs

    def jobs(self, *, since: int = 0, include_removed: bool = False) -> list[StoredJob]:
        with self._lock:
            rows = [
                row
                for row in self._jobs.values()
                if row.seq > since and (include_removed or row.removed is None)
            ]
        return sorted(rows, key=_seq_of)

    def jobs_page(self, *, since: int, limit: int) -> list[StoredJob]:
        check_page_limit(limit)
        with self._lock:
            rows = [row for row in self._jobs.values() if row.seq > since]
        return heapq.nsmallest(limit, rows, key=_seq_of)  # no sort of every row per page

    def get_job(
        self, *, job_id: uuid.UUID | None = None, name: str | None = None
    ) -> StoredJob | None:
        check_lookup(job_id, name)
        with self._lock:
            if job_id is not None:
                return self._jobs.get(job_id)
            live = self._live.get(str(name))
            return self._jobs[live] if live is not None else self._tombstone(str(name))

    def put_job(
        self,
        job: NewJob,
        *,
        if_exists: IfExists,
        expected_version: int | None = None,
        keep_next_fire: bool = True,
        tombstone_after: datetime | None = None,
    ) -> tuple[StoredJob | None, bool]:
        if_exists = IfExists(if_exists)
        with self._lock:
            live_id = self._live.get(job.name)
            if live_id is None:
                return self._create(job, tombstone_after)
            live = self._jobs[live_id]
            row = kept_or_replaced(live, job, if_exists, expected_version, keep_next_fire)
            return (self._save(row) if row != live else live), False

    def _create(
        self, job: NewJob, tombstone_after: datetime | None
    ) -> tuple[StoredJob | None, bool]:
        if blocks_recreation(self._tombstone(job.name), tombstone_after):
            return None, False
        check_id_free(self._jobs.get(job.id), job)
        return self._save(new_row(job, self.now())), True

    def update_job(
        self,
        job_id: uuid.UUID,
        *,
        name: str | None = None,
        definition: str | None = None,
        expected_version: int | None = None,
        next_fire: datetime | None = None,
        reset_next_fire: bool = False,
    ) -> StoredJob:
        with self._lock:
            row = self._live_row(job_id)
            check_version(row, expected_version)
            holder = None if name is None else self._live.get(name)
            check_name_free(row, name, None if holder is None else self._jobs[holder])
            new = updated(row, name, definition, next_fire, reset_next_fire=reset_next_fire)
            return self._save(new) if new != row else row

    def set_paused(
        self,
        job_id: uuid.UUID,
        paused: bool,
        reason: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> StoredJob:
        with self._lock:
            row = self._live_row(job_id)
            check_version(row, expected_version)
            new = paused_as(row, paused, reason)
            return self._save(new) if new != row else row

    def remove_job(self, job_id: uuid.UUID, *, reason: str = "removed") -> StoredJob | None:
        with self._lock:
            row = self._jobs.get(job_id)
            if row is None or row.removed is not None:
                return None
            return self._save(dataclasses.replace(row, removed=reason, removed_at=self.now()))

    def save_progress(self, job_id: uuid.UUID, next_fire: datetime | None) -> None:
        """A job removed meanwhile has no progress to keep: nothing is written."""
        with self._lock:
            row = self._jobs.get(job_id)
            if row is None or row.removed is not None:
                return
            new = dataclasses.replace(row, next_fire=optional_utc(next_fire, "next_fire"))
            if new != row:
                self._save(new)

    def _live_row(self, job_id: uuid.UUID) -> StoredJob:
        row = self._jobs.get(job_id)
        if row is None or row.removed is not None:
            raise JobNotFound(f"no live job has the id {job_id}")
        return row

    def _tombstone(self, name: str) -> StoredJob | None:
        dead = (row for row in self._jobs.values() if row.name == name and row.removed is not None)
        return max(dead, key=_seq_of, default=None)

    def _save(self, row: StoredJob) -> StoredJob:
        """Write ``row`` with the next ``seq``, keep the live-name index, wake followers."""
        self._seq += 1
        row = dataclasses.replace(row, seq=self._seq)
        previous = self._jobs.get(row.id)
        if previous is not None and self._live.get(previous.name) == row.id:
            del self._live[previous.name]
        self._jobs[row.id] = row
        if row.removed is None:
            self._live[row.name] = row.id
        self._changed.notify_all()
        return row

    # ---------------------------------------------------------------- occurrences

    def claim(self, request: ClaimRequest) -> Claim:
        with self._lock:
            now = self.now()
            occurrence = self._occurrences.get(request.key)
            stored = None if occurrence is None else occurrence.stored()
            job = claimable(request, self._jobs.get(request.job_id), stored)
            verdict = judge(stored, now, request.recovery)
            if verdict in (Verdict.CLAIM, Verdict.RECLAIM):
                return self._grant(request, job, stored, verdict, now)
            if occurrence is not None and verdict is Verdict.ABANDON:
                occurrence.state = OccurrenceState.FINISHED
                occurrence.record = abandoned(occurrence.record, now)
                self._changed.notify_all()
            raise denial(request.key, verdict, stored, now)

    def _grant(
        self,
        request: ClaimRequest,
        job: StoredJob,
        stored: StoredClaim | None,
        verdict: Verdict,
        now: datetime,
    ) -> Claim:
        attempt, attempts = next_attempt(stored)
        self._token += 1
        record = _claimed(request, now, self._token, attempt, attempts)
        lease_until = now + request.ttl
        self._occurrences[request.key] = _Occurrence(record, OccurrenceState.RUNNING, lease_until)
        if verdict is Verdict.CLAIM and (moved := progressed(job, request, stored, now)) != job:
            self._save(moved)
        self._changed.notify_all()
        return Claim(request.key, self._token, attempt)

    def renew(self, key: str, token: int, ttl: timedelta) -> None:
        with self._lock:
            now = self.now()
            occurrence = self._held(key, token)
            if occurrence is None or occurrence.lease_until is None:
                raise lease_lost(key, token)
            if now > occurrence.lease_until:
                raise lease_lost(key, token)
            occurrence.lease_until = now + ttl

    def finish(
        self,
        key: str,
        token: int,
        outcome: Outcome,
        *,
        finished_at: datetime,
        started_at: datetime | None = None,
        error: str | None = None,
        detail: str | None = None,
        exit_status: int | None = None,
        output: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        with self._lock:
            occurrence = self._held(key, token)
            if occurrence is None:
                raise LeaseLost(f"cannot finish {key!r}: token {token} no longer holds it")
            record = occurrence.record
            occurrence.record = dataclasses.replace(
                record,
                outcome=Outcome(outcome),
                finished_at=as_utc(finished_at, "finished_at"),
                started_at=optional_utc(started_at, "started_at") or record.started_at,
                error=error,
                detail=detail,
                exit_status=exit_status,
                output=output,
            )
            if retry_at is None:
                occurrence.state = OccurrenceState.FINISHED
                occurrence.lease_until = None
            else:
                occurrence.state = OccurrenceState.RETRY
                occurrence.lease_until = as_utc(retry_at, "retry_at")
            self._changed.notify_all()

    def occurrence(self, key: str) -> RunRecord | None:
        with self._lock:
            occurrence = self._occurrences.get(key)
            return None if occurrence is None else occurrence.record

    def due_retries(self, *, grace: timedelta, limit: int = 100) -> list[RunRecord]:
        check_limit(limit)
        with self._lock:
            before = self.now() - grace
            due = [
                (occurrence.lease_until, occurrence.record)
                for occurrence in self._occurrences.values()
                if occurrence.state is OccurrenceState.RETRY
                and occurrence.lease_until is not None
                and occurrence.lease_until < before
            ]
        due.sort(key=lambda pair: (pair[0], pair[1].occurrence_key))
        return [record for _, record in due[:limit]]

    def drop_retry(self, key: str) -> None:
        with self._lock:
            occurrence = self._occurrences.get(key)
            if occurrence is not None and occurrence.state is OccurrenceState.RETRY:
                occurrence.state = OccurrenceState.FINISHED
                occurrence.lease_until = None

    def _held(self, key: str, token: int) -> _Occurrence | None:
        occurrence = self._occurrences.get(key)
        if occurrence is None or occurrence.state is not OccurrenceState.RUNNING:
            return None
        return occurrence if occurrence.record.fencing_token == token else None

    def record(self, record: RunRecord) -> bool:
        with self._lock:
            if record.occurrence_key in self._occurrences:
                return False
            self._occurrences[record.occurrence_key] = _Occurrence(
                record_in_utc(record), recorded_state(record)
            )
            self._changed.notify_all()
            return True

    def expired_claims(self, *, limit: int = 100) -> list[RunRecord]:
        check_limit(limit)
        with self._lock:
            now = self.now()
            expired = [
                (occurrence.lease_until, occurrence.record)
                for occurrence in self._occurrences.values()
                if occurrence.state is OccurrenceState.RUNNING
                and occurrence.lease_until is not None
                and now > occurrence.lease_until
            ]
        expired.sort(key=lambda pair: (pair[0], pair[1].occurrence_key))
        return [record for _, record in expired[:limit]]

    def retry(self, key: str, *, actor: str | None = None) -> RunRecord:
        with self._lock:
            occurrence = self._occurrences.get(key)
            if occurrence is None:
                raise unknown_occurrence(key)
            if occurrence.state is OccurrenceState.RUNNING:
                raise still_running(key)
            occurrence.state = OccurrenceState.RETRY
            occurrence.record = dataclasses.replace(occurrence.record, actor=actor)
            self._changed.notify_all()
            return occurrence.record

    def history(
        self,
        *,
        job_id: uuid.UUID | None = None,
        job_name: str | None = None,
        outcomes: Collection[Outcome | None] | None = None,
        since: datetime | None = None,
        limit: int = 100,
        before: HistoryCursor | None = None,
    ) -> list[RunRecord]:
        check_limit(limit)
        wanted = None if outcomes is None else set(outcomes)
        oldest = optional_utc(since, "since")
        cursor = history_cursor(before)
        with self._lock:
            records = [occurrence.record for occurrence in self._occurrences.values()]
        matching = [
            record
            for record in records
            if (job_id is None or record.job_id == job_id)
            and (job_name is None or record.job_name == job_name)
            and (wanted is None or record.outcome in wanted)
            and (oldest is None or record.scheduled_at >= oldest)
            and (cursor is None or (record.scheduled_at, record.occurrence_key) < cursor)
        ]
        matching.sort(key=lambda record: (record.scheduled_at, record.occurrence_key))
        return matching[::-1][:limit]

    def prune(self, before: datetime) -> int:
        done = (OccurrenceState.FINISHED, OccurrenceState.SKIPPED)
        with self._lock:
            records = [
                key
                for key, occurrence in self._occurrences.items()
                if occurrence.state in done and occurrence.record.scheduled_at < before
            ]
            tombstones = [
                row.id
                for row in self._jobs.values()
                if row.removed_at is not None and row.removed_at < before
            ]
            for key in records:
                del self._occurrences[key]
            for job_id in tombstones:
                del self._jobs[job_id]
            kept = [action for action in self._actions if action.at >= before]
            dropped, self._actions = len(self._actions) - len(kept), kept
        return len(records) + len(tombstones) + dropped

    # ---------------------------------------------------------------- actions

    def record_action(self, record: ActionRecord) -> None:
        record = action_in_utc(record)
        with self._lock:
            self._actions.append(record)

    def actions(
        self,
        *,
        job_id: uuid.UUID | None = None,
        job_name: str | None = None,
        limit: int = 100,
    ) -> list[ActionRecord]:
        check_limit(limit)
        with self._lock:
            newest = self._actions[::-1]
        matching = [
            action
            for action in newest
            if (job_id is None or action.job_id == job_id)
            and (job_name is None or action.job_name == job_name)
        ]
        matching.sort(key=_action_time, reverse=True)  # stable: ties stay newest first
        return matching[:limit]

    # ---------------------------------------------------------------- nodes

    def heartbeat(self, instance_id: str, node: str, started_at: datetime, leader: bool) -> None:
        with self._lock:
            started = as_utc(started_at, "started_at")
            info = NodeInfo(node, instance_id, started, self.now(), leader)
            self._nodes[instance_id] = info

    def leave(self, instance_id: str) -> None:
        with self._lock:
            self._nodes.pop(instance_id, None)

    def nodes(self, *, alive_within: timedelta) -> list[NodeInfo]:
        with self._lock:
            oldest = self.now() - alive_within
            alive = [info for info in self._nodes.values() if info.last_seen >= oldest]
        return sorted(alive, key=lambda info: (info.started_at, info.instance_id))

    def __repr__(self) -> str:
        return (
            f"MemoryStore(lease_ttl={format_duration(self.lease_ttl)!r}, "
            f"renew_interval={format_duration(self.renew_interval)!r})"
        )


def _seq_of(row: StoredJob) -> int:
    return row.seq


def _action_time(action: ActionRecord) -> datetime:
    return action.at


def _claimed(
    request: ClaimRequest, now: datetime, token: int, attempt: int, attempts: int
) -> RunRecord:
    """The history record of a claim just granted: running, started at ``now``."""
    scheduled_at = as_utc(request.scheduled_at, "scheduled_at")
    return RunRecord(
        request.key, request.job_id, request.job_name, scheduled_at, started_at=now,
        finished_at=None, outcome=None, attempt=attempt, attempts=attempts,
        node=request.node, fencing_token=token, actor=request.actor,
    )  # fmt: skip


# ---------------------------------------------------------------- shared decisions


def as_utc(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if moment.utcoffset() is None:
        raise ValueError(
            f"{what} must be a timezone-aware datetime, got the naive {moment.isoformat()}"
        )
    return moment.astimezone(UTC)


def optional_utc(moment: datetime | None, what: str) -> datetime | None:
    return None if moment is None else as_utc(moment, what)


def check_lookup(job_id: uuid.UUID | None, name: str | None) -> None:
    if (job_id is None) == (name is None):
        raise ValueError(
            f"get_job takes exactly one of job_id and name, got job_id={job_id!r}, name={name!r}"
        )


def history_cursor(before: HistoryCursor | None) -> HistoryCursor | None:
    """A history page's cursor, checked: an aware ``scheduled_at`` (in UTC) and a key."""
    if before is None:
        return None
    if not isinstance(before, tuple) or len(before) != 2 or not isinstance(before[1], str):
        raise ValueError(f"before must be a (scheduled_at, occurrence_key) pair, got {before!r}")
    return as_utc(before[0], "before's scheduled_at"), before[1]


def action_in_utc(record: ActionRecord) -> ActionRecord:
    """``record`` checked, its time in UTC (as every store keeps it)."""
    if record.action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {record.action!r}")
    return dataclasses.replace(record, at=as_utc(record.at, "at"))


class ActionsNotKept:
    """Says once, in the log, why a store keeps no record of job actions for this
    process. A store written by an older gnomon has no table for them until a gnomon
    allowed to create tables opens it; a process that may not (a read-only file or
    database role, as a fleet's dashboard has) still opens the store, lists no actions
    and records none. The actions themselves are done: only their record is missing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said = False

    def say(self, store: str, reason: str) -> None:
        with self._lock:
            said, self._said = self._said, True
        if not said:
            logger.warning(
                "the store %s keeps no record of job actions (pause, resume, remove) for "
                "this process: %s",
                store,
                reason,
            )


def missing_actions_table(reason: str) -> str:
    """Why a store has no table of job actions, for ``ActionsNotKept``."""
    return (
        f"it has no table for them (it was written by an older gnomon) and this process "
        f"may not create one ({reason}); a gnomon allowed to create tables adds it on open"
    )


def check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit!r}")


def check_version(row: StoredJob, expected: int | None) -> None:
    """A stale ``expected_version`` means someone changed the job since it was read."""
    if expected is not None and expected != row.version:
        raise JobChanged(
            f"job {row.name!r} is at version {row.version}, not the expected {expected}: "
            "it was changed since it was read"
        )


def check_id_free(row: StoredJob | None, job: NewJob) -> None:
    """A new job may take a tombstone's id, never a live job's."""
    if row is not None and row.removed is None:
        raise JobExists(
            f"cannot store job {job.name!r}: its id {job.id} belongs to the live job {row.name!r}"
        )


def check_name_free(row: StoredJob, name: str | None, holder: StoredJob | None) -> None:
    """Renaming ``row`` to ``name`` is refused while another live job has that name."""
    if name is not None and holder is not None and holder.id != row.id:
        raise JobExists(f"cannot rename job {row.name!r} to {name!r}: a live job has that name")


def blocks_recreation(tombstone: StoredJob | None, tombstone_after: datetime | None) -> bool:
    """Whether an exhausted job's tombstone keeps ``put_job`` from re-creating its name,
    so that declaring a finished ``once()`` job at every start does not run it again."""
    if tombstone is None or tombstone.removed != "exhausted":
        return False
    removed_at = tombstone.removed_at
    return tombstone_after is None or removed_at is None or removed_at > tombstone_after


def new_row(job: NewJob, now: datetime) -> StoredJob:
    """A job's first row: version 1, anchored where ``job`` says, else at the store's
    ``now`` (``seq`` is set when it is written)."""
    anchor = now if job.anchor is None else as_utc(job.anchor, "anchor")
    next_fire = optional_utc(job.next_fire, "next_fire")
    return StoredJob(
        job.id, job.name, job.task, job.definition, anchor, next_fire, 0, None,
        job.paused, None, 1, job.source, 0, None, None,
    )  # fmt: skip


def kept_or_replaced(
    live: StoredJob,
    job: NewJob,
    if_exists: IfExists,
    expected_version: int | None,
    keep_next_fire: bool,
) -> StoredJob:
    """The row ``put_job`` leaves in place of the live row of ``job``'s name (``live``
    itself when nothing changes): what is declared is written; progress is kept."""
    if if_exists is IfExists.ERROR:
        raise JobExists(
            f"a job named {job.name!r} already exists (id {live.id}); "
            "use if_exists='replace' or 'keep' to reuse it"
        )
    check_version(live, expected_version)
    if if_exists is IfExists.KEEP:
        return live
    changed = (job.task, job.definition) != (live.task, live.definition)
    return dataclasses.replace(
        live,
        task=job.task,
        definition=job.definition,
        source=job.source,
        next_fire=live.next_fire if keep_next_fire else optional_utc(job.next_fire, "next_fire"),
        version=live.version + 1 if changed else live.version,
    )


def updated(
    row: StoredJob,
    name: str | None,
    definition: str | None,
    next_fire: datetime | None,
    *,
    reset_next_fire: bool,
) -> StoredJob:
    """``row`` after ``update_job``: a new name or definition is a new version."""
    new_name = row.name if name is None else name
    new_definition = row.definition if definition is None else definition
    changed = (new_name, new_definition) != (row.name, row.definition)
    return dataclasses.replace(
        row,
        name=new_name,
        definition=new_definition,
        version=row.version + 1 if changed else row.version,
        next_fire=optional_utc(next_fire, "next_fire") if reset_next_fire else row.next_fire,
    )


def paused_as(row: StoredJob, paused: bool, reason: str | None) -> StoredJob:
    """``row`` after ``set_paused``: a new state or reason is a new version."""
    if (row.paused, row.pause_reason) == (paused, reason):
        return row
    return dataclasses.replace(row, paused=paused, pause_reason=reason, version=row.version + 1)


def counted(request: ClaimRequest, stored: StoredClaim | None) -> bool:
    """Whether a claim counts a run on its job: an occurrence counts once, when it is
    first claimed, so that a retry or a re-claim neither counts again nor is refused by
    ``max_runs``, whatever the request says."""
    return request.counts and (stored is None or not stored.ran)


def claimable(
    request: ClaimRequest, job: StoredJob | None, stored: StoredClaim | None
) -> StoredJob:
    """``job`` when it lets ``request`` claim its occurrence (whose row is ``stored``),
    else ``LockHeld`` saying why. An exhausted job's last occurrence may still be
    claimed: it fell due before the job ran out."""
    if job is None:
        why = "not claimable: its job is not in the store"
    elif job.removed is not None and job.removed != "exhausted":
        why = f"not claimable: its job was removed ({job.removed})"
    elif job.paused:
        why = "not claimable: its job is paused"
    elif counted(request, stored) and request.max_runs is not None and job.runs >= request.max_runs:
        why = f"not claimable: its job has made {job.runs} of its max_runs={request.max_runs}"
    else:
        return job
    raise LockHeld(request.key, why)


def judge(stored: StoredClaim | None, now: datetime, recovery: Recovery) -> Verdict:
    """The claim decision for an occurrence's row (``None``: no row yet)."""
    if stored is None or stored.state in (OccurrenceState.SKIPPED, OccurrenceState.RETRY):
        return Verdict.CLAIM
    running = stored.state is OccurrenceState.RUNNING
    state = ClaimState.RUNNING if running else ClaimState.DONE
    return judge_claim(state, stored.lease_until or now, FOREVER, now, recovery)


def next_attempt(stored: StoredClaim | None) -> tuple[int, int]:
    """``attempt`` and ``attempts`` of a granted claim: a retry or a re-claim of an
    occurrence that ran counts on; anything else is a first attempt."""
    if stored is None or not stored.ran:
        return 1, 1
    return stored.attempt + 1, stored.attempts + 1


def denial(key: str, verdict: Verdict, stored: StoredClaim | None, now: datetime) -> LockHeld:
    """The error a claim raises for a verdict that grants nothing."""
    attempt = 1 if stored is None else stored.attempt
    lease_until = now if stored is None or stored.lease_until is None else stored.lease_until
    return refuse(key, verdict, attempt, lease_until - now)


def abandoned(record: RunRecord, now: datetime) -> RunRecord:
    return dataclasses.replace(record, outcome=Outcome.ABANDONED, finished_at=now)


def progressed(
    job: StoredJob, request: ClaimRequest, stored: StoredClaim | None, now: datetime
) -> StoredJob:
    """``job`` after a new claim of one of its occurrences: the run counted (see
    ``counted``), the progress the request carries written, and the job removed as
    ``"exhausted"`` when this run is its ``max_runs``-th."""
    if counted(request, stored):
        started = optional_utc(request.started_at, "started_at") or now
        if job.last_run is not None and job.last_run > started:
            started = job.last_run  # an earlier occurrence's claim committing late
        job = dataclasses.replace(job, runs=job.runs + 1, last_run=started)
        if request.max_runs is not None and job.runs >= request.max_runs and job.removed is None:
            # the store, not one process's count, decides that the job is used up
            job = dataclasses.replace(job, removed="exhausted", removed_at=now)
    next_fire = optional_utc(request.next_fire, "next_fire")
    if next_fire is None or (job.next_fire is not None and next_fire <= job.next_fire):
        # claims of one job commit in any order: a late one must not move progress back
        return job
    return dataclasses.replace(job, next_fire=next_fire)


def recorded_state(record: RunRecord) -> OccurrenceState:
    """A record without a token is a skip, which a later claim may take over."""
    if record.fencing_token is None:
        return OccurrenceState.SKIPPED
    return OccurrenceState.FINISHED


def record_in_utc(record: RunRecord) -> RunRecord:
    return dataclasses.replace(
        record,
        scheduled_at=as_utc(record.scheduled_at, "scheduled_at"),
        started_at=optional_utc(record.started_at, "started_at"),
        finished_at=optional_utc(record.finished_at, "finished_at"),
    )


def lease_lost(key: str, token: int) -> LeaseLost:
    return LeaseLost(f"the lease on {key!r} (token {token}) was lost: it expired or was taken")


def unknown_occurrence(key: str) -> JobNotFound:
    return JobNotFound(f"no occurrence has the key {key!r}")


def still_running(key: str) -> ValueError:
    return ValueError(f"occurrence {key!r} is still running; only a finished one can be retried")
