"""``--metrics``: serve ``/metrics`` (Prometheus) and ``/healthz`` over HTTP."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DEFAULT_HOST", "MetricsServer", "parse_address", "prometheus_missing"]

DEFAULT_HOST = "127.0.0.1"
HealthCheck = Callable[[], str | None]
"""Returns ``None`` when healthy, else the reason it is not."""


def prometheus_missing() -> str | None:
    """Why ``--metrics`` cannot work here, or ``None`` when it can."""
    try:
        found = importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        try:
            import prometheus_client  # noqa: F401 - importing is the check
        except ImportError:
            found = False
    if found:
        return None
    return "--metrics needs prometheus-client: install it with pip install 'gnomon[prometheus]'"


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; the host defaults to loopback."""
    host, separator, port_text = text.rpartition(":")
    if not separator:
        host, port_text = "", text
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(
            f"--metrics must be [HOST:]PORT such as 9100 or 0.0.0.0:9100, got {text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--metrics port must be between 0 and 65535, got {port}")
    return host, port


class MetricsServer:
    """A small HTTP server on its own thread."""

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, health: HealthCheck
    ) -> None:
        handler = _handler_class(registry, health)
        server_class = _server_class(address[0])
        self._server = server_class(address, handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gnomon metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    if ":" not in host:
        return ThreadingHTTPServer

    import socket

    class _IPv6Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    return _IPv6Server


def _handler_class(
    registry: CollectorRegistry, health: HealthCheck
) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                problem = health()
                body = (problem or "ok") + "\n"
                self._reply(503 if problem else 200, "text/plain; charset=utf-8", body.encode())
            else:
                self._reply(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds are not worth a log line each."""

    return Handler
