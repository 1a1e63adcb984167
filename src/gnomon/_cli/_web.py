"""The dashboard from the ``gnomon`` command.

``gnomon run FILE --web ADDRESS [--web-token-file PATH]`` serves it beside the daemon, on
its own thread: read-only without a token file; with one, every page and action needs the
token (``Authorization: Bearer TOKEN``, or HTTP Basic with the token as the password, the
user name being recorded as the actor). ``gnomon web [FILE] [--store URL]`` serves a
store read-only in the foreground, for a fleet of daemons on it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import signal
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gnomon._cli._logging import LOGGER

__all__ = [
    "DEFAULT_LISTEN",
    "TokenAuth",
    "WebServer",
    "parse_listen",
    "read_token",
    "serve_store",
    "web_missing",
]

DEFAULT_LISTEN = "127.0.0.1:8421"
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def web_missing() -> str | None:
    """Why the dashboard cannot be served here, or ``None``."""
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        return f"the dashboard needs the web extra: pip install 'gnomon[web]' ({error})"
    return None


def parse_listen(text: str, option: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; the host defaults to loopback."""
    host, separator, port_text = text.rpartition(":")
    if not separator:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(
            f"{option} must be [HOST:]PORT such as 8421 or 127.0.0.1:8421, got {text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{option} port must be between 0 and 65535, got {port}")
    return host, port


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace ignored); at least 16 characters."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--web-token-file {str(path)!r} cannot be read: {error}") from None
    if len(token) < 16:
        raise ValueError(
            f"--web-token-file {str(path)!r} must hold a token of at least 16 characters, "
            f"got {len(token)}"
        )
    return token


class TokenAuth:
    """``auth`` for the dashboard: a bearer token, or HTTP Basic with it as the password."""

    challenge = 'Basic realm="gnomon", charset="UTF-8"'

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    def __call__(self, request: Any) -> str | None:
        header: str = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return "token" if self._matches(value.strip()) else None
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, _, password = decoded.partition(":")
            return (user.strip() or "token") if self._matches(password) else None
        return None

    def _matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8"), self._token)


def allowed_hosts(host: str) -> list[str]:
    """The loopback names and the listen address (against DNS rebinding)."""
    hosts = list(_LOOPBACK)
    if host not in ("0.0.0.0", "::", ""):  # noqa: S104 - compared, not bound
        hosts.append(host)
    return hosts


class WebServer:
    """uvicorn serving an ASGI app on its own thread (beside the daemon)."""

    def __init__(self, app: Any, address: tuple[str, int], *, read_only: bool = True) -> None:
        import uvicorn

        self.read_only = read_only
        config = uvicorn.Config(
            app,
            host=address[0],
            port=address[1],
            log_level="warning",
            lifespan="off",
            access_log=False,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="gnomon web", daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; returns the URL it listens on."""
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.02)
        if not self._server.started:
            raise OSError("the dashboard's web server did not start (is the port in use?)")
        return self.url

    @property
    def url(self) -> str:
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5.0)


def daemon_dashboard(scheduler: Any, listen: str, token_file: Path | None) -> WebServer:
    """The dashboard over the daemon's scheduler (raises ``ValueError`` on bad options)."""
    from gnomon.web._app import build

    address = parse_listen(listen, "--web")
    # Each action is logged with its actor, beside the daemon's own records.
    logging.getLogger("gnomon.web").setLevel(LOGGER.getEffectiveLevel())
    if token_file is None:
        app = build(scheduler, read_only=True, allowed_hosts=allowed_hosts(address[0]))
    else:
        auth = TokenAuth(read_token(token_file))
        app = build(scheduler, read_only=False, auth=auth, allowed_hosts=allowed_hosts(address[0]))
    return WebServer(app, address, read_only=token_file is None)


def serve_store(location: Any, zone: ZoneInfo, listen: str) -> int:
    """``gnomon web``: a store's jobs and history, read-only, until SIGINT or SIGTERM."""
    from gnomon._cli import EXIT_OK
    from gnomon.web._app import build
    from gnomon.web._data import StoreSource

    address = parse_listen(listen, "--listen")
    store = location.build()
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    server = None
    try:
        source = StoreSource(store, zone)
        app = build(source, read_only=True, allowed_hosts=allowed_hosts(address[0]))
        server = WebServer(app, address)
        url = server.start()
        LOGGER.info(f"dashboard of {location.describe()} (read-only) on {url}")
        while not stop.wait(1.0):
            pass
    finally:
        if server is not None:
            server.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        store.close()
    return EXIT_OK
