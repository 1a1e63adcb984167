"""The dashboard's gate: Host, same-origin actions, read-only mode, auth, security headers.

A pure ASGI middleware, so that every response (pages, static files, refusals) carries
the same headers and no route can forget a check.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ANONYMOUS", "LOOPBACK_HOSTS", "Auth", "Guard", "host_name"]

Auth = Callable[[Request], "object | Awaitable[object]"]
ANONYMOUS = "anonymous"
"""The actor recorded for an action when ``auth`` returned ``True``."""
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")
_LOG = logging.getLogger("gnomon.web")


def host_name(value: str) -> str:
    """A Host header's (or listen address's) name, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class Guard:
    """Refuses what the dashboard must not serve, then adds the security headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str],
        read_only: bool,
        auth: Auth | None,
    ) -> None:
        self.app = app
        hosts = {host_name(host) for host in allowed_hosts}
        self.any_host = "*" in hosts
        self.hosts = frozenset(hosts)
        self.read_only = read_only
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(scope)
        send = _with_headers(send, static=_is_static(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope) -> PlainTextResponse | None:  # noqa: PLR0911 - one return per refusal
        request = Request(scope)
        host = request.headers.get("host", "")
        if not self.any_host and host_name(host) not in self.hosts:
            _LOG.warning("dashboard refused a request for host %r (not allowed)", host)
            return PlainTextResponse(
                "This host name is not one the dashboard serves (allowed_hosts).", 400
            )
        method = request.method
        if method not in ("GET", "HEAD", "POST"):
            return PlainTextResponse("Method not allowed.", 405, headers={"allow": "GET, POST"})
        if method == "POST":
            if self.read_only:
                return PlainTextResponse("The dashboard is read-only.", 403)
            if not same_origin(request):
                return PlainTextResponse(
                    "Refused: an action must come from the dashboard's own pages "
                    "(Origin / Sec-Fetch-Site).",
                    403,
                )
        state = scope.setdefault("state", {})
        state["actor"] = None
        if self.auth is None or _is_static(scope):
            return None
        actor = await _ask(self.auth, request)
        if actor is None:
            # Pages ask the browser for credentials; an action refused is just refused
            # (a script's request must not open a login prompt).
            challenge = getattr(self.auth, "challenge", None) if method != "POST" else None
            headers = {"www-authenticate": challenge} if isinstance(challenge, str) else None
            return PlainTextResponse("Authentication required.", 401, headers=headers)
        state["actor"] = actor
        return None


async def _ask(auth: Auth, request: Request) -> str | None:
    """The actor ``auth`` names, ``ANONYMOUS`` for ``True``, ``None`` when refused."""
    answer: Any = auth(request)
    if inspect.isawaitable(answer):
        answer = await answer
    if answer is True:
        return ANONYMOUS
    if isinstance(answer, str) and answer:
        return answer
    if not answer:
        return None
    raise TypeError(
        f"dashboard auth must return an actor (a non-empty str), True or a false value, "
        f"got {answer!r}"
    )


def same_origin(request: Request) -> bool:
    """Whether a POST comes from this dashboard's own pages (the contract's rule)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is None and origin is None:
        return False
    if site is not None and site not in ("same-origin", "none"):
        return False
    if origin is not None:
        parsed = urlsplit(origin)
        host = request.headers.get("host", "").lower()
        if not parsed.netloc or parsed.netloc.lower() != host:
            return False
    return True


def _is_static(scope: Scope) -> bool:
    root = scope.get("root_path", "")
    path: str = scope.get("path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith("/static/")


def _with_headers(send: Send, *, static: bool) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.extend(HEADERS)
            if not static:
                headers.append(NO_STORE)
            message["headers"] = headers
        await send(message)

    return sender
