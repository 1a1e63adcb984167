"""The dashboard's ASGI app: pages rendered on the server, actions as plain POSTs."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gnomon._errors import InvalidOption, JobNotFound
from gnomon._events import Outcome
from gnomon._scheduler import AsyncScheduler, Scheduler, _local_zone
from gnomon._stores.contract import RunRecord, Store
from gnomon.web._data import FAILED, JobRow, SchedulerSource, Source, StoreSource
from gnomon.web._guard import LOOPBACK_HOSTS, Auth, Guard

__all__ = ["build", "dashboard"]

JOBS_PER_PAGE = 50
RECORDS_PER_PAGE = 50
MAX_HISTORY_PAGES = 40
"""Deep history pages read every newer record first; older ones are for ``gnomon history``."""
POLL_MS = 5000
REASON_LIMIT = 500
_LOG = logging.getLogger("gnomon.web")
_DONE = {
    "run": "Run started.",
    "pause": "Job paused.",
    "resume": "Job resumed.",
    "retry": "Retry started.",
    "remove": "Job removed.",
}


def dashboard(
    scheduler_or_store: Scheduler | AsyncScheduler | Store,
    *,
    read_only: bool = True,
    auth: Auth | None = None,
    title: str = "gnomon",
    allowed_hosts: Iterable[str] | None = None,
    show_arguments: bool = False,
) -> Starlette:
    """The web dashboard over a scheduler (which it can act on) or a store (read-only).

    An ASGI app: serve it with uvicorn, or mount it under any path of a Starlette or
    FastAPI app. ``auth(request)`` (or an awaitable) returns the actor (a non-empty str,
    recorded with each action), ``True`` (anonymous) or a false value (refused, 401);
    when given it gates every page. Actions need ``read_only=False``, which needs
    ``auth``. Requests whose ``Host`` is not in ``allowed_hosts`` (default: the loopback
    names; ``"*"`` allows any) are refused.
    """
    return build(
        scheduler_or_store,
        read_only=read_only,
        auth=auth,
        title=title,
        allowed_hosts=allowed_hosts,
        show_arguments=show_arguments,
    )


def build(
    target: Scheduler | AsyncScheduler | Store | Source,
    *,
    read_only: bool = True,
    auth: Auth | None = None,
    title: str = "gnomon",
    allowed_hosts: Iterable[str] | None = None,
    show_arguments: bool = False,
) -> Starlette:
    """``dashboard()``, which may also be given a prepared source (the ``gnomon`` command
    gives a store's source the schedule file's zone)."""
    source = target if isinstance(target, Source) else _source(target)
    if not isinstance(read_only, bool):
        raise InvalidOption(f"read_only must be True or False, got {read_only!r}")
    if auth is not None and not callable(auth):
        raise InvalidOption(f"auth must be a callable taking the request, got {auth!r}")
    if not read_only:
        if auth is None:
            raise InvalidOption(
                "read_only=False needs auth: pass auth=callable(request) returning the actor "
                "(a str), True or a false value"
            )
        if not source.can_act:
            raise InvalidOption(
                "a dashboard over a store alone is read-only: pass the scheduler to act"
            )
    if not isinstance(title, str) or not title:
        raise InvalidOption(f"title must be a non-empty string, got {title!r}")
    hosts = _hosts(allowed_hosts)
    pages = _Pages(source, read_only=read_only, title=title, show_arguments=show_arguments)
    static = StaticFiles(directory=str(files("gnomon.web") / "static"))
    routes = [
        Route("/", pages.jobs, name="jobs"),
        Route("/jobs/{job_id:uuid}", pages.job, name="job"),
        Route("/jobs/{job_id:uuid}/occurrence", pages.occurrence, name="occurrence"),
        Route("/jobs/{job_id:uuid}/remove", pages.remove_page, name="remove_page"),
        Route("/cluster", pages.cluster, name="cluster"),
        Route("/jobs/{job_id:uuid}/run", pages.run_now, methods=["POST"]),
        Route("/jobs/{job_id:uuid}/pause", pages.pause, methods=["POST"]),
        Route("/jobs/{job_id:uuid}/resume", pages.resume, methods=["POST"]),
        Route("/jobs/{job_id:uuid}/remove", pages.remove, methods=["POST"]),
        Route("/jobs/{job_id:uuid}/retry", pages.retry, methods=["POST"]),
        Mount("/static", static, name="static"),
    ]
    middleware = [Middleware(Guard, allowed_hosts=hosts, read_only=read_only, auth=auth)]
    app = Starlette(routes=routes, middleware=middleware)
    app.add_exception_handler(404, pages.not_found)
    return app


def _source(target: object) -> Source:
    if isinstance(target, Scheduler | AsyncScheduler):
        return SchedulerSource(target)
    if isinstance(target, Store):
        return StoreSource(target, _local_zone())
    raise InvalidOption(
        "dashboard() takes a gnomon.Scheduler, a gnomon.AsyncScheduler or a store "
        f"(SQLiteStore, PostgresStore, MemoryStore), got {target!r}"
    )


def _hosts(allowed: Iterable[str] | None) -> list[str]:
    if allowed is None:
        return list(LOOPBACK_HOSTS)
    if isinstance(allowed, str):
        raise InvalidOption(
            f"allowed_hosts must be a list of host names, got the string {allowed!r}"
        )
    hosts = list(allowed)
    bad = [host for host in hosts if not isinstance(host, str) or not host]
    if bad:
        raise InvalidOption(f"allowed_hosts must hold host names (non-empty str), got {bad[0]!r}")
    return hosts


# ---------------------------------------------------------------- rendering


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gnomon.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["kind"] = outcome_kind
    env.filters["oname"] = outcome_name
    env.filters["symbol"] = outcome_symbol
    env.filters["duration"] = duration
    return env


def outcome_kind(outcome: Outcome | None) -> str:
    """A CSS class for an outcome: ok, bad, skip or run."""
    if outcome is None:
        return "run"
    if outcome is Outcome.SUCCESS:
        return "ok"
    if outcome in FAILED:
        return "bad"
    return "skip"


def outcome_name(outcome: Outcome | None) -> str:
    return "RUNNING" if outcome is None else outcome.name


_SYMBOLS = {"ok": "\u2713", "bad": "\u2717", "skip": "\u2192", "run": "\u25cf"}


def outcome_symbol(outcome: Outcome | None) -> str:
    """A shape beside the colour, for readers who cannot tell the colours apart."""
    return _SYMBOLS[outcome_kind(outcome)]


def duration(record: RunRecord) -> str:
    if record.started_at is None or record.finished_at is None:
        return ""
    seconds = (record.finished_at - record.started_at).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return str(timedelta(seconds=round(seconds)))


class _Pages:
    def __init__(self, source: Source, *, read_only: bool, title: str, show_arguments: bool):
        self.source = source
        self.read_only = read_only
        self.title = title
        self.show_arguments = show_arguments
        self.env = _environment()

    # ------------------------------------------------------------ helpers

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        zone = self.source.timezone
        root = request.scope.get("root_path", "").rstrip("/")

        def when(moment: datetime | None) -> dict[str, str] | None:
            if moment is None:
                return None
            local = moment.astimezone(zone)
            return {
                "iso": moment.astimezone(ZoneInfo("UTC")).isoformat(timespec="seconds"),
                "text": local.strftime("%Y-%m-%d %H:%M:%S"),
                "zone": local.tzname() or zone.key,
            }

        context = {
            "title": self.title,
            "root": root,
            "zone": zone.key,
            "read_only": self.read_only,
            "can_act": not self.read_only,
            "actor": request.state.actor,
            "when": when,
            "poll_ms": POLL_MS,
            "done": _DONE.get(request.query_params.get("done", "")),
            "outcomes": list(Outcome),
            "with_query": lambda **changes: _with_query(request, changes),
            **values,
        }
        html = self.env.get_template(template).render(context)
        return HTMLResponse(html, status_code=status)

    async def read(self, call: Callable[..., Any], *args: Any) -> Any:
        return await run_in_threadpool(call, *args)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.render(request, "missing.html", 404, what="This page does not exist.")

    def missing_job(self, request: Request) -> Response:
        return self.render(
            request,
            "missing.html",
            404,
            what="No job has this id: it may have been removed.",
        )

    # ------------------------------------------------------------ pages

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        text = params.get("q", "").strip()
        tag = params.get("tag", "").strip()
        outcome_text = params.get("outcome", "")
        outcome = _outcome(outcome_text)
        page = _page(params.get("page"))

        def collect() -> tuple[list[JobRow], list[str], int, int]:
            rows = self.source.job_rows()
            tags = sorted({t for row in rows for t in row.tags})
            total_all = len(rows)
            if tag:
                rows = [row for row in rows if tag in row.tags]
            if text:
                rows = [row for row in rows if row.matches(text)]
            if outcome is not _ANY:
                wanted = self.source.job_ids_with_last(outcome, {row.id for row in rows})
                rows = [row for row in rows if row.id in wanted]
            total = len(rows)
            start = (page - 1) * JOBS_PER_PAGE
            shown = rows[start : start + JOBS_PER_PAGE]
            self.source.recent(shown)
            return shown, tags, total, total_all

        rows, tags, total, total_all = await self.read(collect)
        pages = max(1, math.ceil(total / JOBS_PER_PAGE))
        return self.render(
            request,
            "jobs.html",
            rows=rows,
            tags=tags,
            total=total,
            total_all=total_all,
            page=min(page, pages),
            pages=pages,
            q=text,
            tag=tag,
            outcome=outcome_text,
        )

    async def job(self, request: Request) -> Response:
        job_id: uuid.UUID = request.path_params["job_id"]
        outcome_text = request.query_params.get("outcome", "")
        outcome = _outcome(outcome_text)
        failed_only = outcome_text == "failed"
        page = min(_page(request.query_params.get("page")), MAX_HISTORY_PAGES)

        def collect() -> tuple[Any, list[RunRecord], bool]:
            detail = self.source.job(job_id, self.show_arguments)
            if detail is None:
                return None, [], False
            wanted: frozenset[Outcome | None] | None = None
            if failed_only:
                wanted = frozenset(FAILED)
            elif outcome is not _ANY:
                wanted = frozenset({outcome})
            limit = page * RECORDS_PER_PAGE + 1
            records = self.source.history(job_id, wanted, limit)
            more = len(records) > page * RECORDS_PER_PAGE
            records = records[(page - 1) * RECORDS_PER_PAGE : page * RECORDS_PER_PAGE]
            self.source.recent([detail.row])
            return detail, records, more

        detail, records, more = await self.read(collect)
        if detail is None:
            return self.missing_job(request)
        return self.render(
            request,
            "job.html",
            job=detail,
            row=detail.row,
            records=records,
            page=page,
            more=more and page < MAX_HISTORY_PAGES,
            outcome=outcome_text,
        )

    async def occurrence(self, request: Request) -> Response:
        job_id: uuid.UUID = request.path_params["job_id"]
        key = request.query_params.get("key", "")

        def collect() -> tuple[Any, RunRecord | None]:
            detail = self.source.job(job_id, show_arguments=False)
            return detail, self.source.occurrence(job_id, key) if key else None

        detail, record = await self.read(collect)
        if record is None:
            return self.render(
                request,
                "missing.html",
                404,
                what="No recent occurrence of this job has this key.",
            )
        return self.render(request, "occurrence.html", record=record, job=detail)

    async def cluster(self, request: Request) -> Response:
        nodes = await self.read(self.source.nodes)
        return self.render(request, "cluster.html", nodes=nodes)

    async def remove_page(self, request: Request) -> Response:
        job_id: uuid.UUID = request.path_params["job_id"]
        detail = await self.read(self.source.job, job_id, False)  # noqa: FBT003 - positional in a call-through
        if detail is None:
            return self.missing_job(request)
        return self.render(request, "remove.html", row=detail.row)

    # ------------------------------------------------------------ actions

    async def _act(
        self,
        request: Request,
        done: str,
        action: Callable[[Any, str], object],
    ) -> Response:
        """Apply ``action(job_handle, actor)`` and go back to the page the form named."""
        source = self.source
        assert isinstance(source, SchedulerSource)  # noqa: S101 - dashboard() refuses others
        job_id: uuid.UUID = request.path_params["job_id"]
        actor: str = request.state.actor
        try:
            handle = source.handle(job_id)
        except JobNotFound:
            return self.missing_job(request)
        try:
            result = await self._call(source, lambda: action(handle, actor))
        except JobNotFound:
            return self.missing_job(request)
        except ValueError as error:
            return self.render(request, "missing.html", 409, what=str(error))
        del result
        _LOG.info(
            "dashboard: %s on job %r by %s",
            done,
            handle.name,
            actor,
            extra={"job_name": handle.name},
        )
        return self.back(request, done, job_id)

    async def _call(self, source: SchedulerSource, call: Callable[[], object]) -> object:
        if source.is_async:
            # The async face's actions are coroutines of the loop serving this app.
            return await _maybe_await(call())
        return await run_in_threadpool(call)

    def back(self, request: Request, done: str, job_id: uuid.UUID) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        target = request.query_params.get("back", "")
        path = f"{root}/" if target == "jobs" or done == "remove" else f"{root}/jobs/{job_id}"
        return RedirectResponse(f"{path}?done={done}", status_code=303)

    async def run_now(self, request: Request) -> Response:
        return await self._act(request, "run", lambda job, actor: job.run_now(actor=actor))

    async def pause(self, request: Request) -> Response:
        form = await _form(request)
        reason = form.get("reason", "").strip()[:REASON_LIMIT]

        def pause(job: Any, actor: str) -> object:
            said = f"{reason} (paused by {actor})" if reason else f"paused by {actor}"
            return job.pause(said)

        return await self._act(request, "pause", pause)

    async def resume(self, request: Request) -> Response:
        return await self._act(request, "resume", lambda job, actor: job.resume())

    async def remove(self, request: Request) -> Response:
        return await self._act(request, "remove", lambda job, actor: job.remove())

    async def retry(self, request: Request) -> Response:
        key = request.query_params.get("key", "")
        source = self.source
        assert isinstance(source, SchedulerSource)  # noqa: S101 - dashboard() refuses others
        scheduler = source.scheduler

        def retry(job: Any, actor: str) -> object:
            if not key:
                raise ValueError("Retry needs the occurrence's key.")
            return scheduler.retry(key, actor=actor)

        return await self._act(request, "retry", retry)


_ANY: Any = object()


def _outcome(text: str) -> Any:
    """The outcome a filter names: an ``Outcome``, ``None`` (running) or ``_ANY``."""
    if text == "RUNNING":
        return None
    try:
        return Outcome[text]
    except KeyError:
        return _ANY


def _page(text: str | None) -> int:
    try:
        return max(1, min(int(text or "1"), 1_000_000))
    except ValueError:
        return 1


def _with_query(request: Request, changes: Mapping[str, object]) -> str:
    params = dict(request.query_params)
    params.pop("done", None)
    for name, value in changes.items():
        if value in (None, ""):
            params.pop(name, None)
        else:
            params[name] = str(value)
    return "?" + urlencode(params) if params else "?"


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form body (the pause reason); nothing else is read from it."""
    body = await request.body()
    if len(body) > 8192:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


async def _maybe_await(value: object) -> object:
    if isinstance(value, Awaitable):
        return await value
    return value
