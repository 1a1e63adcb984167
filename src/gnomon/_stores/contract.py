"""The store contract: durable jobs, their progress, claims with history, and nodes.

A store keeps what must outlive a process and be shared by every scheduler that uses it:

- **jobs**: one row per durable job. The job's definition (task name, rule, arguments,
  options) is an opaque JSON text written and read by ``gnomon._codec``; the store never
  interprets it, so a row this version cannot decode is kept untouched. Beside it the
  store keeps what the scheduler needs without decoding: name, task, anchor, progress
  (next fire time, run count, last run), paused state and reason, version, source, and
  a change counter (``seq``) that grows with every write, so a follower can ask "what
  changed since ``seq`` n". A removed job stays as a row with ``removed`` set (the
  reason), so that followers learn of the removal and exhausted jobs leave a tombstone.
- **occurrences**: one row per occurrence key. The row *is* both the claim and the
  history record: claiming inserts it (in progress, ``outcome=None``) in the same
  transaction that takes a fencing token and counts the run on its job; finishing
  writes the outcome. Skips are recorded as rows without a token, which a later claim
  may take over (a skip decided by one process must not stop another from running it).
- **nodes**: one row per live scheduler instance (heartbeats).

The API is synchronous and thread-safe: the thread face calls it from the caller's
thread, the run pipeline and the async face through ``asyncio.to_thread``. Any failure
to reach the store is raised as :class:`~gnomon.StoreUnavailable`, and a call that
raised it changed nothing.

Times are aware UTC datetimes everywhere in this API. Lease times (``lease_until``,
expiry checks) are judged by the store's own clock (``now()``).
"""

from __future__ import annotations

import abc
import enum
import traceback
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gnomon._errors import InvalidOption
from gnomon._events import Outcome, Recovery

__all__ = [
    "ACTIONS",
    "SCHEMA_VERSION",
    "ActionRecord",
    "Claim",
    "CommandResult",
    "HistoryCursor",
    "IfExists",
    "NewJob",
    "NodeInfo",
    "RunRecord",
    "Store",
    "StoredJob",
    "check_page_limit",
    "describe_error",
    "describe_traceback",
]

HistoryCursor = tuple[datetime, str]
"""Where a page of history ended: the last record's ``scheduled_at`` and key."""

SCHEMA_VERSION = 1
"""The schema version this gnomon writes. A store at a higher version is refused."""


class IfExists(enum.Enum):
    """What ``add_job`` does when a live job (or a tombstone) already has the name."""

    REPLACE = "replace"
    KEEP = "keep"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class StoredJob:
    """One row of the jobs table, as stored."""

    id: uuid.UUID
    name: str
    task: str
    definition: str
    """Opaque JSON text (``gnomon._codec``): rule, arguments, options."""
    anchor: datetime
    """When the job was first stored; the phase of an ``every`` job without start_at."""
    next_fire: datetime | None
    runs: int
    """Occurrences claimed so far (``max_runs`` counts these)."""
    last_run: datetime | None
    paused: bool
    pause_reason: str | None
    version: int
    """Grows when the definition, paused state or pause reason changes."""
    source: str | None
    """Who declared the job (a schedule file's path), else ``None``."""
    seq: int
    """The change counter's value at this row's latest write."""
    removed: str | None
    """``None`` while live; else why it went ("removed", "exhausted", ...)."""
    removed_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewJob:
    """What ``Store.put_job`` writes: a definition, by name."""

    id: uuid.UUID
    name: str
    task: str
    definition: str
    source: str | None = None
    paused: bool = False
    next_fire: datetime | None = None
    anchor: datetime | None = None
    """The anchor to store for a new job; ``None``: the store's ``now()``."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A granted claim on one occurrence."""

    key: str
    token: int
    attempt: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One occurrence in the history: a run (finished or in progress) or a skip.

    ``count`` is 1 except for an aggregated ``SKIPPED_MISSED`` record, which stands for
    ``count`` missed occurrences (``scheduled_at`` is the first, ``detail`` names the
    last). ``attempts`` is how many attempts were made, ``attempt`` the last one's
    number. ``outcome`` is ``None`` while the run is in progress.
    """

    occurrence_key: str
    job_id: uuid.UUID
    job_name: str
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outcome: Outcome | None
    attempt: int = 1
    attempts: int = 1
    node: str | None = None
    fencing_token: int | None = None
    error: str | None = None
    detail: str | None = None
    count: int = 1
    exit_status: int | None = None
    output: str | None = None
    actor: str | None = None


ACTIONS = ("pause", "resume", "remove")
"""The actions on a job that are recorded (``ActionRecord.action``)."""


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action taken on a job: who paused, resumed or removed it, and when.

    ``actor`` is who asked (a dashboard user), ``None`` for a call made by code;
    ``detail`` is the pause reason. Kept apart from the job, so it outlives a removal.
    """

    job_id: uuid.UUID
    job_name: str
    action: str
    actor: str | None
    at: datetime
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One scheduler on a store, as its heartbeats describe it."""

    node: str
    instance_id: str
    started_at: datetime
    last_seen: datetime
    leader: bool


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Everything ``Store.claim`` needs about the occurrence it is asked to claim."""

    key: str
    job_id: uuid.UUID
    job_name: str
    scheduled_at: datetime
    node: str
    instance_id: str
    ttl: timedelta
    recovery: Recovery = Recovery.AT_MOST_ONCE
    max_runs: int | None = None
    """The claim is refused once the job has claimed this many occurrences."""
    next_fire: datetime | None = None
    """Written to the job's row with the claim (progress), when given."""
    counts: bool = True
    """Whether the claim counts a run on the job (retries and re-claims do not)."""
    actor: str | None = None
    started_at: datetime | None = None
    """The run's start by the scheduler's clock: the job's ``last_run`` when the claim
    counts; ``None``: the store's now."""


class Store(abc.ABC):
    """Durable, shared state for schedulers. See the module docstring.

    Every method may raise :class:`~gnomon.StoreUnavailable` (nothing changed), and
    ``open`` may raise :class:`~gnomon.StoreVersionError`. Implementations are
    thread-safe. ``open`` is idempotent and is called by every scheduler's ``start``;
    a scheduler never calls ``close``.
    """

    lease_ttl: timedelta = timedelta(seconds=30)
    """How long a claim lives without renewal (judged by the store's clock)."""
    renew_interval: timedelta = timedelta(seconds=10)
    """How often a running claim is renewed (at most a third of ``lease_ttl``)."""
    poll_interval: timedelta = timedelta(milliseconds=250)
    """How often a follower asks for changes (a backstop where notification exists)."""

    @abc.abstractmethod
    def open(self) -> None:
        """Connect, then create the schema, or migrate an older one, or refuse a newer
        one with ``StoreVersionError`` (writing nothing)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files. The store may not be used afterwards."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The store's clock (aware UTC), which judges leases."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short label for messages: the path, or the URL with its password masked."""

    # ---------------------------------------------------------------- jobs

    notifies: bool = False
    """True when ``wait_for_change`` returns early on a change (PostgreSQL LISTEN/NOTIFY,
    memory); followers of other stores poll ``seq`` every ``poll_interval``."""

    def wait_for_change(self, timeout: float) -> None:  # noqa: B027 - optional hook
        """Block up to ``timeout`` seconds, returning early when another writer (or this
        one) signals a change. Never raises: a broken notification channel just waits
        out the timeout and is re-established on a later call. The default waits for
        nothing (stores with ``notifies = False`` are polled)."""

    def upkeep(self) -> None:  # noqa: B027 - optional hook
        """Housekeeping that a scheduler's follower runs after each poll, off the path of
        the calls that write (``SQLiteStore`` checkpoints its write-ahead log here). The
        default does nothing."""

    @abc.abstractmethod
    def seq(self) -> int:
        """The change counter's current value: cheap, for polling."""

    @abc.abstractmethod
    def jobs(self, *, since: int = 0, include_removed: bool = False) -> list[StoredJob]:
        """Rows with ``seq > since``, in ``seq`` order. Removed rows only when
        ``include_removed`` (a follower passes it, to learn of removals)."""

    def jobs_page(self, *, since: int, limit: int) -> list[StoredJob]:
        """Rows with ``seq > since``, removed ones included, in ``seq`` order; at most
        ``limit`` of them where the store can stop there. A scheduler loads a store page
        by page, each page after the last one's ``seq``, until a page holds fewer than
        ``limit`` rows, so that it never holds every row (and its driver's copy of them)
        at once. Paging relies on what the follower relies on: rows become visible in
        ``seq`` order, so no row appears below a ``seq`` already read. The default
        returns every such row, which the loader reads as one page (and then asks once
        more, for what came after it)."""
        check_page_limit(limit)
        return self.jobs(since=since, include_removed=True)

    @abc.abstractmethod
    def get_job(
        self, *, job_id: uuid.UUID | None = None, name: str | None = None
    ) -> StoredJob | None:
        """One row by id or by name (the live one, else the newest tombstone), or None."""

    @abc.abstractmethod
    def put_job(
        self,
        job: NewJob,
        *,
        if_exists: IfExists,
        expected_version: int | None = None,
        keep_next_fire: bool = True,
        tombstone_after: datetime | None = None,
    ) -> tuple[StoredJob | None, bool]:
        """Insert ``job``, or act on the live row that has its name.

        Returns ``(row, created)``. With no live row of that name: a tombstone
        (``removed="exhausted"``) newer than ``tombstone_after`` makes the call return
        ``(None, False)`` and write nothing; otherwise the job is inserted (anchor and
        ``seq`` set by the store, version 1). With a live row: ``ERROR`` raises
        ``JobExists``; ``KEEP`` returns it unchanged; ``REPLACE`` writes task,
        definition and source, keeps id, anchor, runs, last_run and paused state, keeps
        ``next_fire`` only when ``keep_next_fire`` (else writes ``job.next_fire``), and
        bumps ``version`` only when task or definition differ. ``expected_version``
        that differs from the row's raises ``JobChanged``.
        """

    @abc.abstractmethod
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
        """Rewrite a live job's name and/or definition (version + 1 when either
        changes); with ``reset_next_fire`` write ``next_fire`` too. Raises
        ``JobNotFound`` (no live row), ``JobChanged`` (stale ``expected_version``),
        ``JobExists`` (the new name is taken)."""

    @abc.abstractmethod
    def set_paused(
        self,
        job_id: uuid.UUID,
        paused: bool,
        reason: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> StoredJob:
        """Pause or resume a live job (version + 1 when state or reason changes)."""

    @abc.abstractmethod
    def remove_job(self, job_id: uuid.UUID, *, reason: str = "removed") -> StoredJob | None:
        """Mark a live job removed (``seq`` grows; the row stays as a tombstone until
        ``prune``). Returns the row, or ``None`` when it was not live (idempotent)."""

    @abc.abstractmethod
    def save_progress(self, job_id: uuid.UUID, next_fire: datetime | None) -> None:
        """Record a live job's next fire time. Does not change ``version``."""

    # ---------------------------------------------------------------- occurrences

    @abc.abstractmethod
    def claim(self, request: ClaimRequest) -> Claim:
        """Claim one occurrence, in one transaction with its history record.

        The job must be live (or removed as ``"exhausted"``, whose last occurrence may
        still be claimed), not paused, and under ``max_runs`` when ``counts``; else
        ``LockHeld`` (no ``retry_after``). Then, judged by the store's clock:

        - no row, a skip row (no token), or a row put up by ``retry``: a new claim,
          attempt 1 (after ``retry``: the old attempt + 1), a token larger than every
          earlier one; ``runs + 1`` and ``last_run`` (``started_at``) on the job when
          ``counts``, and ``next_fire`` when given; when that run is the job's
          ``max_runs``-th, the job is removed as ``"exhausted"`` in the same transaction;
        - a running row with a live lease: ``LockHeld(retry_after=time left)``;
        - a running row whose lease expired: ``AT_LEAST_ONCE`` re-claims it (attempt + 1,
          new token); ``AT_MOST_ONCE`` records it ``ABANDONED`` and raises
          ``OccurrenceAbandoned`` to this one caller;
        - a finished row: ``LockHeld``.
        """

    @abc.abstractmethod
    def renew(self, key: str, token: int, ttl: timedelta) -> None:
        """Extend a running claim's lease to ``ttl`` from the store's now; ``LeaseLost``
        when the token no longer holds it or its lease expired."""

    @abc.abstractmethod
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
        """Write a claimed occurrence's outcome; ``LeaseLost`` when ``token`` no longer
        holds it (a zombie's result is not recorded). With ``retry_at`` the attempt
        failed and the job retries it then: the row waits for its next claim (a pending
        retry, which survives the process), and its outcome is the attempt's meanwhile."""

    @abc.abstractmethod
    def record(self, record: RunRecord) -> bool:
        """Record a skip (no claim) unless the key already has a row. True if written."""

    @abc.abstractmethod
    def expired_claims(self, *, limit: int = 100) -> list[RunRecord]:
        """Running rows whose lease has expired by the store's clock (dead holders)."""

    @abc.abstractmethod
    def occurrence(self, key: str) -> RunRecord | None:
        """One occurrence's record by its key (its latest attempt), ``None`` if unknown."""

    @abc.abstractmethod
    def due_retries(self, *, grace: timedelta, limit: int = 100) -> list[RunRecord]:
        """Pending retries (``finish(..., retry_at=...)``) due more than ``grace`` ago by
        the store's clock: their scheduler did not take them (it died)."""

    @abc.abstractmethod
    def drop_retry(self, key: str) -> None:
        """Give up an occurrence's pending retry (its job was paused, removed or fired
        again): the row keeps its last attempt's outcome. Nothing if none is pending."""

    @abc.abstractmethod
    def retry(self, key: str, *, actor: str | None = None) -> RunRecord:
        """Put a finished occurrence up for another attempt: the next ``claim`` of the
        key gets ``attempt + 1``. ``LookupError`` (``JobNotFound``) for an unknown key,
        ``ValueError`` for one that is still running."""

    @abc.abstractmethod
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
        """Records newest first by ``scheduled_at``, then by key (descending);
        ``outcomes`` may hold ``None`` (in progress); ``since`` compares ``scheduled_at``
        (inclusive). ``before`` is the ``(scheduled_at, occurrence_key)`` of the last
        record of a page: the next page starts just after it in that order (keyset
        pagination, indexed, so a deep page costs what the first does)."""

    @abc.abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete finished records, tombstones and actions older than ``before``; the
        count."""

    # ---------------------------------------------------------------- actions

    @abc.abstractmethod
    def record_action(self, record: ActionRecord) -> None:
        """Keep an action taken on a job. It is not tied to the job's row: it stays
        after the job is removed, until ``prune`` drops it."""

    @abc.abstractmethod
    def actions(
        self,
        *,
        job_id: uuid.UUID | None = None,
        job_name: str | None = None,
        limit: int = 100,
    ) -> list[ActionRecord]:
        """Actions newest first by ``at`` (of two at one instant, the later recorded
        first), of one job (by id or by name) or of all."""

    # ---------------------------------------------------------------- nodes

    @abc.abstractmethod
    def heartbeat(self, instance_id: str, node: str, started_at: datetime, leader: bool) -> None:
        """Record that a scheduler instance is alive (its ``last_seen`` = now)."""

    @abc.abstractmethod
    def leave(self, instance_id: str) -> None:
        """Forget an instance (a clean shutdown)."""

    @abc.abstractmethod
    def nodes(self, *, alive_within: timedelta) -> list[NodeInfo]:
        """Instances seen within ``alive_within``, by ``started_at``."""


def describe_error(error: BaseException | None) -> str | None:
    """An exception as history keeps it: its type and message."""
    if error is None:
        return None
    text = str(error)
    name = type(error).__qualname__
    return f"{name}: {text}" if text else name


TRACEBACK_KEPT = 8000
"""How many characters of a failed run's traceback history keeps (the end of it)."""


def describe_traceback(error: BaseException | None) -> str | None:
    """A failed run's traceback as history keeps it in ``output`` (its last characters)."""
    if error is None or error.__traceback__ is None:
        return None
    text = "".join(traceback.format_exception(error))
    return text[-TRACEBACK_KEPT:]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A task's return value that history keeps beside the outcome: an exit status and
    the tail of its output (the ``gnomon`` command's command jobs return one)."""

    exit_status: int | None
    output: str | None


def outcome_names(outcomes: Sequence[Outcome | None]) -> list[str | None]:
    """Outcomes as stored (their values; ``None`` for in progress)."""
    return [None if o is None else o.value for o in outcomes]


def check_page_limit(limit: object) -> None:
    """``jobs_page``'s ``limit``: a positive int."""
    if type(limit) is not int or limit < 1:
        raise InvalidOption(f"limit must be a positive int, got {limit!r}")
