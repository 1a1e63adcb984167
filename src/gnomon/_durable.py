"""A scheduler's durable jobs: rows in its store, mirrored into its engine.

The store is the source of truth for durable jobs; the engine holds a mirror of them, so
that firing never waits on the store. Three paths keep the mirror true:

- this process's own calls (``add_job``, ``update_job``, ``remove_job``, ``pause``) write
  the store first and change the engine only once the store accepted the change, so a
  call that raised ``StoreUnavailable`` changed nothing;
- a follower thread applies every row whose change counter moved (other processes'
  changes, and progress written with claims), woken by the store's notification where it
  has one and by a periodic poll always; after an outage it resynchronises in full;
- the same thread sweeps claims whose holders died, so that ``recovery`` decides their
  fate on a live scheduler, heartbeats, and prunes history past its retention.

A row this process cannot use (its task is not registered here, or its definition cannot
be decoded) is *parked*: kept in the store untouched, reported once, and retried when a
task of that name is registered.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gnomon._errors import GnomonError, InvalidJob, StoreUnavailable
from gnomon._job import Durable, JobSpec, JobState, OwnSpecState, new_spec
from gnomon._options import check_rule
from gnomon._stores.bulk import collector_paused
from gnomon._stores.codec import (
    UndecodableDefinition,
    decode_definition,
    encode_definition,
    forget_decoded,
)
from gnomon._stores.contract import IfExists, NewJob, StoredJob
from gnomon._stores.leases import StoreLocker
from gnomon._tasks import LISTENER_OPTIONS, Task, TaskRegistry

if TYPE_CHECKING:
    from gnomon._distributed import Locker
    from gnomon._engine import Engine
    from gnomon._rules import Rule
    from gnomon._stores.codec import Definition
    from gnomon._stores.contract import RunRecord, Store

__all__ = ["STORED_OPTIONS", "DurableJobs", "default_node", "new_job_id"]

STORED_OPTIONS = (
    "tags",
    "singleton",
    "max_runs",
    "start_at",
    "start_immediately",
    "stop_at",
    "jitter",
    "timeout",
    "recovery",
    "catch_up",
    "catch_up_window",
    "catch_up_limit",
    "retry",
)
"""The job options a stored definition keeps (besides rule, arguments and name)."""

_HEARTBEAT = 5.0
_PRUNE_EVERY = 600.0
_SWEEP_MAX = 5.0
_TEMPLATES = 4096
_LOAD_BATCH = 1000
_UNWRITTEN_LIMIT = 10_000

SpecBuilder = Callable[[Mapping[str, Any], object], JobSpec]


_NO_KWARGS: Mapping[str, object] = {}


class _Template:
    """A validated spec whose traits, tags and bounds stored jobs differing only in name
    and arguments share."""

    __slots__ = ("shared", "spec")

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.shared = spec.tags, spec.start_at, spec.stop_at, spec.traits
        """What every row on this template holds: the spec's fields after the arguments."""

    def copy(self, name: str, args: tuple[object, ...], kwargs: Mapping[str, object]) -> JobSpec:
        return new_spec(name, args, kwargs or _NO_KWARGS, *self.shared)

    def state(
        self,
        job_id: int,
        rule: Rule,
        name: str,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
    ) -> OwnSpecState:
        """A loaded job's state that holds its spec itself (one object, not two)."""
        return OwnSpecState(job_id, rule, name, args, kwargs or _NO_KWARGS, *self.shared)


_MILLIS = (1 << 48) - 1
_RANDOM_B = (1 << 62) - 1


def new_job_id() -> uuid.UUID:
    """A new durable job's id: a version-7 UUID (RFC 9562: milliseconds since the epoch,
    then random bits). Ids of jobs added one after another sort together, so a store's
    indexes take each new row at their end rather than on a random page, which a
    database would read, dirty and (PostgreSQL) log in full after every checkpoint."""
    millis = time.time_ns() // 1_000_000 & _MILLIS
    bits = random.getrandbits(74)
    random_a, random_b = bits >> 62, bits & _RANDOM_B
    return uuid.UUID(int=(millis << 80) | (0x7 << 76) | (random_a << 64) | (0x2 << 62) | random_b)


def default_node() -> str:
    """The display label of this process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DurableJobs:
    """The bridge between one engine and one store. See the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        tasks: TaskRegistry,
        build: SpecBuilder,
        node: str,
        retention: timedelta,
        log: logging.Logger,
        condition: Locker | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.tasks = tasks
        self._build = build
        self.node = node
        self.instance_id = uuid.uuid4().hex
        self.retention = retention
        self.log = log
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="gnomon-store")
        self._unwritten: deque[RunRecord] = deque()
        """Skip records a store failure kept out (the store was down): written again once
        it answers (``record`` writes a key once, so a write that did land is harmless)."""
        self._rewriting = False
        self._apply_lock = threading.RLock()
        self._parked: dict[uuid.UUID, tuple[StoredJob, str]] = {}
        self._reported: set[tuple[uuid.UUID, str]] = set()
        self._templates: dict[tuple[object, ...], _Template] = {}
        self._gone: set[uuid.UUID] = set()
        """Jobs this process removed, until their tombstone comes back from the store."""
        self._cursor = 0
        self._opened = False
        self._broken = False
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._following = threading.Lock()
        """Held to start or stop the follower, and to close: a start racing a close
        (a ``start()`` racing a shutdown) never leaves a follower on a closed store."""
        self._closed = False
        self.started_at = datetime.now(UTC)
        ttl = store.lease_ttl.total_seconds()
        self._sweep_every = min(_SWEEP_MAX, ttl / 6)
        """Dead holders' claims are found well within a lease ttl of their expiry."""
        engine.store_locker = StoreLocker(
            store, node=node, instance_id=self.instance_id, condition=condition
        )
        engine.store_sink = self._sink
        engine.on_expired = self._expired
        engine.on_retry_dropped = self._retry_dropped

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        """Open the store (idempotent); raises StoreUnavailable / StoreVersionError."""
        if not self._opened:
            self.store.open()
            self._opened = True

    def load(self) -> None:
        """Mirror every live stored job into the engine (at start)."""
        self.open()
        with self._apply_lock, collector_paused():
            try:
                self._reconcile()
            finally:
                # the templates and decoded texts served this load; the jobs keep theirs
                self._templates.clear()
                forget_decoded()

    def join(self) -> None:
        """Join the store's node list as the scheduler starts, so that a started
        scheduler is listed at once (its follower's heartbeats keep it there)."""
        self.store.heartbeat(self.instance_id, self.node, self.started_at, leader=False)

    def start_following(self) -> None:
        with self._following:
            if self._follower is not None or self._closed:
                return
            self._stop.clear()
            thread = threading.Thread(target=self._follow, name="gnomon-follower", daemon=True)
            self._follower = thread
            thread.start()

    def stop_following(self) -> None:
        with self._following:
            self._stop.set()
            thread = self._follower
            self._follower = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def close(self) -> None:
        """At shutdown: stop following, flush pending writes, leave the node list."""
        with self._following:
            self._closed = True
        self.stop_following()
        self._writer.shutdown(wait=True)
        self._rewrite()  # the writer has stopped: here, a last time
        if self._unwritten:
            self.log.warning(
                "%d skip record(s) could not be written to the store %s before shutdown",
                len(self._unwritten),
                self.store.describe(),
            )
        if self._opened:
            try:
                self.store.leave(self.instance_id)
            except GnomonError as exc:
                self.log.warning("could not leave the store's node list: %s", exc)

    # ---------------------------------------------------------------- writes

    def add(
        self,
        task: Task,
        rule: Rule,
        options: Mapping[str, Any],
        *,
        job_id: uuid.UUID,
        if_exists: IfExists,
        source: str | None = None,
    ) -> JobState | None:
        """Store a new job (or act on the stored one of its name) and mirror it."""
        named = options.get("name") is not None
        name = options["name"] if named else f"{task.name}:{job_id}"
        spec = self.spec_for(task, {**options, "name": name})
        checked = check_rule(spec, rule, clustered=True)
        definition = self._encode(checked, spec, task)
        self.open()
        try:
            self.engine.check_timing(spec, checked, self.engine.now())
        except InvalidJob:
            if named and self._finished(name):
                return None  # declared again after it ran out: its tombstone answers
            raise
        keep = not named or self._same_timing(name, checked, spec)
        row, _ = self.store.put_job(
            NewJob(
                job_id,
                name,
                task.name,
                definition,
                source=source,
                anchor=self.engine.now().astimezone(UTC),
            ),
            if_exists=if_exists if named else IfExists.ERROR,
            keep_next_fire=keep,
            tombstone_after=self.engine.now().astimezone(UTC) - self.retention,
        )
        if row is None:
            return None
        with self._apply_lock:
            known = (spec, checked) if row.definition == definition else None
            state = self._apply(row, known)
            if row.seq == self._cursor + 1:
                self._cursor = row.seq  # mirrored just now: the follower need not read it
            return state

    def _finished(self, name: str) -> bool:
        stored = self.store.get_job(name=name)
        return stored is not None and stored.removed == "exhausted"

    def _same_timing(self, name: str, rule: Rule, spec: JobSpec) -> bool:
        """Whether the stored job of ``name`` (if any) has the same rule, start_at and
        stop_at: only then does re-declaring it keep its stored next fire time."""
        stored = self.store.get_job(name=name)
        if stored is None or stored.removed is not None:
            return True
        try:
            old = decode_definition(stored.definition)
        except UndecodableDefinition:
            return False
        options = old.options
        return (
            old.rule == rule
            and options.get("start_at") == spec.start_at
            and options.get("stop_at") == spec.stop_at
        )

    def update(
        self,
        state: JobState,
        spec: JobSpec,
        rule: Rule,
        *,
        expected_version: int | None,
        new_rule: bool,
    ) -> None:
        """Write a changed definition; the caller then updates the engine."""
        durable = state.durable
        assert durable is not None  # noqa: S101 - only durable jobs come here
        definition = self._encode(rule, spec, self.tasks.get(durable.task))
        row = self.store.update_job(
            state.uuid(),
            name=spec.name,
            definition=definition,
            expected_version=expected_version,
            reset_next_fire=new_rule,
        )
        durable.definition, durable.version = hash(row.definition), row.version

    def remove(self, state: JobState) -> None:
        """Remove a job's row; the caller then removes it from the engine. The follower
        waits meanwhile, so that it does not forget the job before the caller removes it
        (the caller would find it gone)."""
        job_id = state.uuid()
        with self._apply_lock:
            self._gone.add(job_id)
            try:
                self.store.remove_job(job_id, reason="removed")
            except BaseException:
                self._gone.discard(job_id)
                raise

    def remove_parked(self, job_id: uuid.UUID) -> bool:
        """Remove a stored job this process could not load (its task is unknown here, or
        its row cannot be decoded): an explicit removal may act on such a row."""
        with self._apply_lock:
            if job_id not in self._parked:
                return False
            self.store.remove_job(job_id, reason="removed")
            del self._parked[job_id]
            return True

    def set_paused(self, state: JobState, paused: bool, reason: str | None) -> None:
        durable = state.durable
        assert durable is not None  # noqa: S101 - only durable jobs come here
        row = self.store.set_paused(state.uuid(), paused, reason)
        durable.version, durable.pause_reason = row.version, row.pause_reason

    def retry(self, key: str, actor: str | None) -> RunRecord:
        self.open()
        return self.store.retry(key, actor=actor)

    def registered(self, task: Task) -> None:
        """A task was registered: rows parked for want of it may now run here."""
        with self._apply_lock:
            waiting = [row for row, _ in self._parked.values() if row.task == task.name]
            for row in waiting:
                self._apply(row, None)

    def parked(self) -> dict[uuid.UUID, tuple[StoredJob, str]]:
        return dict(self._parked)

    # ---------------------------------------------------------------- mirroring

    def _reconcile(self) -> None:
        """Make the mirror equal to the store, read page by page (``jobs_page``), so that
        the rows of one page are let go before the next is read. Pages follow ``seq``
        and hold removed rows too: a row read live on one page and removed before a
        later one is read comes again on it, as its tombstone, and is forgotten."""
        unseen = {s.id for s in self.engine.jobs.values() if s.durable is not None}
        unseen_parked = set(self._parked)
        refused: dict[uuid.UUID, tuple[StoredJob, InvalidJob]] = {}
        cursor = self._mirror_pages(unseen, unseen_parked, refused)
        # mirrored, and no longer in the store at all
        forgot = self._forget_mirrored(unseen, "removed from the store")
        for parked in unseen_parked:
            self._parked.pop(parked, None)
        for row, refusal in refused.values():
            if forgot:  # what it was refused for (its name taken) may be gone with them
                self._apply(row, None)
            else:
                self._park(row, str(refusal))
        self._cursor = max(self._cursor, cursor)

    def _mirror_pages(
        self,
        unseen: set[int],
        unseen_parked: set[uuid.UUID],
        refused: dict[uuid.UUID, tuple[StoredJob, InvalidJob]],
    ) -> int:
        """Mirror the store's rows a page at a time; the last ``seq`` read. Takes out of
        ``unseen`` the jobs read live, out of ``unseen_parked`` every row read.

        A load that fails (the store stops answering) takes back the jobs it added, so
        that a failed ``start()`` leaves no part of the store mirrored."""
        added: list[int] = []
        cursor = 0
        try:
            while rows := self.store.jobs_page(since=cursor, limit=_LOAD_BATCH):
                if rows[-1].seq <= cursor:
                    break  # rows given already: a store that does not page
                cursor = rows[-1].seq
                for row in rows:
                    if row.removed is None:
                        unseen.discard(row.id.int)
                    unseen_parked.discard(row.id)
                    refused.pop(row.id, None)  # the row's newer version decides
                added += self._mirror_batch(rows, self.engine.now(), refused)
                last = len(rows) < _LOAD_BATCH  # the store had no more when it was read
                del rows  # before the next page is read
                if last:
                    break
        except BaseException:
            self._forget_mirrored(added, "the store's load failed")
            raise
        return cursor

    def _forget_mirrored(self, job_ids: Iterable[int], reason: str) -> bool:
        """Forget the stored jobs of ``job_ids`` still mirrored; whether there were any."""
        forgot = False
        for job_id in job_ids:
            state = self.engine.jobs.get(job_id)
            if state is not None and state.durable is not None:
                self.engine.forget(state, reason, cancel=True)
                forgot = True
        return forgot

    def _mirror_batch(
        self,
        rows: list[StoredJob],
        now: datetime,
        refused: dict[uuid.UUID, tuple[StoredJob, InvalidJob]],
    ) -> list[int]:
        """Mirror rows; the new jobs among them, the bulk of a load, in one go. The new
        jobs the engine refuses go into ``refused`` (the load parks them at its end);
        returns the ids of the new jobs added."""
        jobs, gone = self.engine.jobs, self._gone
        fresh: dict[int, tuple[StoredJob, JobState]] = {}
        for row in rows:
            if row.removed is not None or row.id.int in jobs or (gone and row.id in gone):
                self._apply(row, None, now)
                continue
            try:
                new = self._prepared(row, None)
            except (UndecodableDefinition, GnomonError) as exc:
                self._park(row, str(exc))
                continue
            if new is not None:
                fresh[new.id] = (row, new)
        for new, refusal in self.engine.add_prepared([s for _, s in fresh.values()], now):
            row = fresh.pop(new.id)[0]
            refused[row.id] = (row, refusal)
        return list(fresh)

    def _apply(
        self, row: StoredJob, known: tuple[JobSpec, Rule] | None, now: datetime | None = None
    ) -> JobState | None:
        """Mirror one row. ``known``: its spec and rule, when the caller just built them;
        ``now``: the engine's time, when the caller applies many rows at once."""
        state = self.engine.jobs.get(row.id.int)
        if row.removed is None and state is None and self._gone and row.id in self._gone:
            return None  # a row read before this process's own removal reached the store
        if row.removed is not None:
            ours = row.id in self._gone  # removed by this process, which updates its engine
            self._gone.discard(row.id)
            self._parked.pop(row.id, None)
            if state is not None and state.durable is not None and not ours:
                cancel = row.removed != "exhausted"
                self.engine.forget(state, f"{row.removed} in the store", cancel=cancel)
            return None
        try:
            if state is None:
                return self._mirror_new(row, known, self.engine.now() if now is None else now)
            self._mirror_change(state, row, known)
        except (UndecodableDefinition, GnomonError) as exc:
            self._park(row, str(exc))
            return None
        return state

    def _mirror_new(
        self, row: StoredJob, known: tuple[JobSpec, Rule] | None, now: datetime
    ) -> JobState | None:
        state = self._prepared(row, known)
        if state is None:
            return None
        for _, refusal in self.engine.add_prepared([state], now):
            raise refusal
        return state

    def _prepared(self, row: StoredJob, known: tuple[JobSpec, Rule] | None) -> JobState | None:
        """The job state of a new row, ready to register (``None``: the row is parked):
        its spec from a template, its progress from the row, nothing validated again."""
        task = self.tasks.get(row.task)
        if task is None:
            self._park(row, f"its task {row.task!r} is not registered in this process")
            return None
        state = self._decoded_state(task, row) if known is None else JobState(row.id.int, *known)
        if self._parked:
            self._parked.pop(row.id, None)
        state.durable = Durable(
            task=task.name,  # the registry's string, not one more per row
            definition=hash(row.definition),
            anchor=row.anchor,
            version=row.version,
            source=row.source,
            pause_reason=row.pause_reason,
        )
        # A job that never fired has no stored next fire time: its first is counted from
        # when it was stored, so that downtime before it is caught up too.
        state.stored_next = row.next_fire or self.engine.first_fire(state, row.anchor)
        state.runs_started = row.runs
        if row.last_run is not None:
            state.last_run = row.last_run.astimezone(self.engine.tz)
        state.paused = row.paused
        return state

    def _mirror_change(
        self, state: JobState, row: StoredJob, known: tuple[JobSpec, Rule] | None
    ) -> None:
        durable = state.durable
        if durable is None:
            return  # an in-memory job with a colliding id: not ours to touch
        self.engine.sync_progress(state, row.runs, row.last_run)
        if hash(row.definition) != durable.definition:
            task = self.tasks.require(row.task)
            spec, rule = self._decode(task, row) if known is None else known
            durable.definition = hash(row.definition)
            self.engine.update(state.id, spec, rule, self.engine.now(), new_rule=True)
        durable.version, durable.pause_reason, durable.source = (
            row.version,
            row.pause_reason,
            row.source,
        )
        if state.paused != row.paused:
            reason = row.pause_reason if row.paused else None
            self.engine.set_paused(state, row.paused, self.engine.now(), reason=reason)

    def _park(self, row: StoredJob, reason: str) -> None:
        self._parked[row.id] = (row, reason)
        if (row.id, reason) in self._reported:
            return
        self._reported.add((row.id, reason))
        self.log.warning(
            "stored job %r (%s) is kept but not run by this process: %s",
            row.name,
            row.id,
            reason,
            extra={"job_name": row.name, "job_id": str(row.id), "occurrence": None},
        )

    # ---------------------------------------------------------------- specs

    def spec_for(self, task: Task, options: Mapping[str, Any]) -> JobSpec:
        given = [key for key in LISTENER_OPTIONS if options.get(key) is not None]
        if given:
            raise InvalidJob(
                f"a durable job cannot have its own {', '.join(given)}: listeners belong to "
                f"the task's registration (s.register({task.name!r}, {given[0]}=...)), "
                "or pass durable=False"
            )
        if options.get("locker") is False:
            raise InvalidJob(
                "locker=False cannot be used on a durable job: its occurrences are always "
                "claimed in the store (pass durable=False for a job kept in memory)"
            )
        if options.get("interval_from_completion"):
            raise InvalidJob(
                "interval_from_completion=True cannot be used on a durable job: schedulers "
                "sharing the store cannot agree on fire times measured from a local completion"
            )
        merged = {k: v for k, v in options.items() if k != "locker"}
        if merged.get("retry") is None and task.retry is not None:
            merged["retry"] = task.retry  # the task's policy, kept in code, not stored
        return self._build({**merged, **task.listeners}, task.func)

    def _encode(self, rule: Rule, spec: JobSpec, task: Task | None) -> str:
        options = {key: getattr(spec, key) for key in STORED_OPTIONS}
        if task is not None and spec.retry is task.retry:
            options["retry"] = None
        return encode_definition(rule, spec.args, spec.kwargs, options)

    def _decode(self, task: Task, row: StoredJob) -> tuple[JobSpec, Rule]:
        """A stored row's spec, without re-validating what was validated when stored:
        rows that differ only in name and arguments share one validated template."""
        definition, template, built = self._template(task, row)
        if built is not None:
            return built
        return template.copy(row.name, definition.args, definition.kwargs), definition.rule

    def _decoded_state(self, task: Task, row: StoredJob) -> JobState:
        """A new row's job state, as ``_decode`` builds its spec: a row on a template
        holds its name and arguments itself (``OwnSpecState``)."""
        definition, template, built = self._template(task, row)
        if built is not None:
            return JobState(row.id.int, *built)
        args, kwargs = definition.args, definition.kwargs
        return template.state(row.id.int, definition.rule, row.name, args, kwargs)

    def _template(
        self, task: Task, row: StoredJob
    ) -> tuple[Definition, _Template, tuple[JobSpec, Rule] | None]:
        """A row's decoded definition and the template of rows like it; and the row's
        spec and rule when they were built and checked in full (a new template)."""
        definition = decode_definition(row.definition)
        options = definition.options
        options_key = definition.options_key or tuple(sorted(options.items()))
        key = (task.name, task.func, options_key, len(definition.args))
        template = self._templates.get(key)
        if template is None or template.spec.context_parameter is not None:
            spec = self.spec_for(
                task,
                {**options, "args": definition.args, "kwargs": definition.kwargs, "name": row.name},
            )
            if len(self._templates) >= _TEMPLATES:
                self._templates.clear()
            template = self._templates[key] = _Template(spec)
            return definition, template, (spec, check_rule(spec, definition.rule, clustered=True))
        return definition, template, None

    # ---------------------------------------------------------------- engine hooks

    def _sink(self, record: RunRecord, done: Callable[[], None]) -> None:
        self._submit(self._write_record, record, done=done)

    def _write_record(self, record: RunRecord) -> None:
        """Write a skip record; on the writer thread. One the store could not take (it
        was unavailable) is kept, to be written again once it answers."""
        try:
            self.store.record(record)
        except StoreUnavailable:
            if len(self._unwritten) < _UNWRITTEN_LIMIT:
                self._unwritten.append(record)
            else:
                self.log.warning(
                    "%d skip records wait for the store already: %s is not kept",
                    _UNWRITTEN_LIMIT,
                    record.occurrence_key,
                )
            raise

    def _write_unwritten(self) -> None:
        """The store answers: write again, on the writer thread, the skip records it
        could not take (once at a time; nothing to do when none waits)."""
        if not self._unwritten or self._rewriting:
            return
        self._rewriting = True
        try:
            self._writer.submit(self._rewrite)
        except RuntimeError:  # shut down: close() writes them
            self._rewriting = False

    def _rewrite(self) -> None:
        """Write the kept skip records in order, until one fails: the store may answer
        reads and still refuse writes, so a later look tries again (one failed write per
        look, not one per record). A record that can never be written is dropped."""
        try:
            while self._unwritten:
                record = self._unwritten[0]
                try:
                    self.store.record(record)
                except StoreUnavailable:
                    return
                except Exception as exc:
                    self.log.warning("a skip record could not be written: %s", exc)
                self._unwritten.popleft()
        finally:
            self._rewriting = False

    def _retry_dropped(self, key: str) -> None:
        self._submit(self.store.drop_retry, key)

    def _expired(self, state: JobState, reason: str) -> None:
        self._gone.add(state.uuid())
        self._submit(self.store.remove_job, state.uuid(), reason="exhausted")

    def _submit(
        self,
        write: Callable[..., object],
        *args: Any,
        done: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write in the background, in order; a failed write is logged, never raised."""

        def attempt() -> None:
            try:
                write(*args, **kwargs)
            except Exception as exc:
                self.log.warning("a store write failed: %s", exc)
            finally:
                if done is not None:
                    done()

        try:
            self._writer.submit(attempt)
        except RuntimeError:  # shut down: write inline rather than lose it
            attempt()

    # ---------------------------------------------------------------- the follower

    def _follow(self) -> None:
        last = dict.fromkeys(("sweep", "beat", "prune"), 0.0)
        while not self._stop.is_set():
            try:
                self._follow_once(last)
            except Exception as exc:
                self._note_outage(exc)
            self._pause()

    def _pause(self) -> None:
        interval = self.store.poll_interval.total_seconds()
        if self.store.notifies and not self._broken:
            self.store.wait_for_change(interval)
        else:
            self._stop.wait(interval)

    def _follow_once(self, last: dict[str, float]) -> None:
        # Only what waited before the reads below is vouched for by their success.
        noted = self.engine.unclaimed_waiting
        if self._broken:
            self.load()
            self._broken = False
            self.log.warning(
                "the store %s answers again; jobs resynchronised", self.store.describe()
            )
        self.poll()
        self._write_unwritten()
        self.engine.catch_up_unclaimed(noted=noted)
        self.store.upkeep()
        now = time.monotonic()
        if now - last["beat"] >= _HEARTBEAT:
            last["beat"] = now
            leader = self.engine.elector is not None and self.engine.leading
            self.store.heartbeat(self.instance_id, self.node, self.started_at, leader=leader)
        if now - last["sweep"] >= self._sweep_every:
            last["sweep"] = now
            self._sweep()
        if now - last["prune"] >= _PRUNE_EVERY:
            last["prune"] = now
            self.store.prune(self.engine.now().astimezone(UTC) - self.retention)

    def poll(self) -> None:
        """Apply every row that changed since the last poll."""
        if self.store.seq() <= self._cursor:
            return
        with self._apply_lock:
            for row in self.store.jobs(since=self._cursor, include_removed=True):
                self._apply(row, None)
                self._cursor = max(self._cursor, row.seq)

    def _sweep(self) -> None:
        """Offer the occurrences of dead holders again: the claim decides their fate."""
        if not self.engine.started:
            return
        for record in self.store.expired_claims():
            state = self.engine.jobs.get(record.job_id.int)
            if state is not None and state.durable is not None:
                self.engine.recover(state, record.scheduled_at, record.occurrence_key)
        # Retries their scheduler planned and did not start (it died): due for a lease ttl.
        for record in self.store.due_retries(grace=self.store.lease_ttl):
            state = self.engine.jobs.get(record.job_id.int)
            if state is not None and state.durable is not None and not state.paused:
                self.engine.recover(
                    state, record.scheduled_at, record.occurrence_key, attempt=record.attempt + 1
                )

    def _note_outage(self, exc: Exception) -> None:
        if not self._broken:
            self._broken = True
            level = logging.WARNING if isinstance(exc, StoreUnavailable) else logging.ERROR
            self.log.log(
                level,
                "following the store %s failed (%s); loaded jobs keep their schedule, "
                "and the store is retried",
                self.store.describe(),
                exc,
                exc_info=level == logging.ERROR,
            )
