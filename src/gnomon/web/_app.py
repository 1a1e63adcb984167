"""The dashboard's ASGI app: pages rendered on the server, actions as plain POSTs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
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
from gnomon._stores.contract import ActionRecord, RunRecord, Store
from gnomon.web._data import FAILED, JobDetail, SchedulerSource, Source, StoreSource
from gnomon.web._guard import LOOPBACK_HOSTS, Auth, Guard
from gnomon.web._listing import HistoryPage, JobFilter, history_page, jobs_page, page_number

__all__ = ["build", "dashboard"]

POLL_MS = 5000
REASON_LIMIT = 500
ACTIONS_SHOWN = 20
"""How many of a job's latest actions its page lists (``s.actions()`` has them all)."""
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
    _check_options(source, read_only, auth, title)
    hosts = _hosts(allowed_hosts)
    pages = _Pages(source, read_only=read_only, title=title, show_arguments=show_arguments)
    middleware = [Middleware(Guard, allowed_hosts=hosts, read_only=read_only, auth=auth)]
    app = Starlette(routes=_routes(pages), middleware=middleware)
    app.add_exception_handler(404, pages.not_found)
    return app


def _check_options(source: Source, read_only: object, auth: object, title: object) -> None:
    if not isinstance(read_only, bool):
        raise InvalidOption(f"read_only must be True or False, got {read_only!r}")
    if auth is not None and not callable(auth):
        raise InvalidOption(f"auth must be a callable taking the request, got {auth!r}")
    if not read_only and auth is None:
        raise InvalidOption(
            "read_only=False needs auth: pass auth=callable(request) returning the actor "
            "(a str), True or a false value"
        )
    if not read_only and not source.can_act:
        raise InvalidOption(
            "a dashboard over a store alone is read-only: pass the scheduler to act"
        )
    if not isinstance(title, str) or not title:
        raise InvalidOption(f"title must be a non-empty string, got {title!r}")


def _routes(pages: _Pages) -> list[Route | Mount]:
    static = StaticFiles(directory=str(files("gnomon.web") / "static"))
    job = "/jobs/{job_id:uuid}"
    return [
        Route("/", pages.jobs),
        Route(job, pages.job),
        Route(f"{job}/occurrence", pages.occurrence),
        Route(f"{job}/remove", pages.remove_page),
        Route("/cluster", pages.cluster),
        Route(f"{job}/run", pages.run_now, methods=["POST"]),
        Route(f"{job}/pause", pages.pause, methods=["POST"]),
        Route(f"{job}/resume", pages.resume, methods=["POST"]),
        Route(f"{job}/remove", pages.remove, methods=["POST"]),
        Route(f"{job}/retry", pages.retry, methods=["POST"]),
        Mount("/static", static),
    ]


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
        undefined=StrictUndefined,
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
            "nav": "",
            "heading": None,
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
        wanted = JobFilter.from_query(request.query_params)
        page = page_number(request.query_params.get("page"))
        listing = await self.read(jobs_page, self.source, wanted, page)
        return self.render(request, "jobs.html", listing=listing, wanted=wanted)

    async def job(self, request: Request) -> Response:
        job_id: uuid.UUID = request.path_params["job_id"]
        outcome = request.query_params.get("outcome", "")
        page = page_number(request.query_params.get("page"))
        before = request.query_params.get("before", "")

        def collect() -> tuple[JobDetail | None, HistoryPage | None, list[ActionRecord]]:
            detail = self.source.job(job_id, self.show_arguments)
            if detail is None:
                return None, None, []
            self.source.recent([detail.row])
            history = history_page(self.source, job_id, outcome, page, before)
            return detail, history, self.source.actions(job_id, ACTIONS_SHOWN)

        detail, history, done = await self.read(collect)
        if detail is None:
            return self.missing_job(request)
        return self.render(
            request,
            "job.html",
            job=detail,
            row=detail.row,
            history=history,
            outcome=outcome,
            job_actions=done,
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
            await self._call(source, lambda: action(handle, actor))
        except JobNotFound:
            return self.missing_job(request)
        except ValueError as error:
            return self.render(request, "missing.html", 409, heading="Not done", what=str(error))
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
            # The actor also goes into the reason, which `gnomon status` shows.
            said = f"{reason} (paused by {actor})" if reason else f"paused by {actor}"
            return job.pause(said, actor=actor)

        return await self._act(request, "pause", pause)

    async def resume(self, request: Request) -> Response:
        return await self._act(request, "resume", lambda job, actor: job.resume(actor=actor))

    async def remove(self, request: Request) -> Response:
        return await self._act(request, "remove", lambda job, actor: job.remove(actor=actor))

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
