"""The daemon's log: human text by default, JSON lines on request, secrets always masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from gnomon._cli._secrets import mask_secrets

__all__ = ["FIELDS", "configure_logging", "log_fields", "quiet_drivers"]

FIELDS = "gnomon_fields"
"""The ``extra`` key under which a record carries its structured fields."""

LOGGER = logging.getLogger("gnomon.cli")
DRIVERS = logging.getLogger("psycopg")
"""The PostgreSQL driver's pool logs each failed connection attempt itself."""


def log_fields(**fields: object) -> dict[str, object]:
    """``extra=`` for a record: ``LOGGER.info("...", extra=log_fields(job=...))``."""
    return {FIELDS: {key: value for key, value in fields.items() if value is not None}}


def configure_logging(log_format: str, level: str, stream: TextIO = sys.stderr) -> None:
    """Send gnomon's records to ``stream``.

    The engine's own routine records (run starts and ends, skips) repeat what the daemon
    logs about each run, so below DEBUG only its warnings and errors are shown.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_drop_reported_command_failures)
    engine = logging.getLogger("gnomon")
    engine.handlers[:] = [handler]
    engine.propagate = False
    chosen = getattr(logging, level.upper())
    engine.setLevel(chosen if chosen == logging.DEBUG else max(chosen, logging.WARNING))
    LOGGER.setLevel(chosen)
    # Through gnomon's handler, so that they are formatted and masked like its own.
    DRIVERS.handlers[:] = [handler]
    DRIVERS.propagate = False
    DRIVERS.setLevel(max(chosen, logging.WARNING))


def quiet_drivers() -> None:
    """For the commands that print a report: a store they cannot reach is reported once,
    as their error, not by the driver's pool at every attempt."""
    DRIVERS.handlers[:] = [logging.NullHandler()]
    DRIVERS.propagate = False


def _drop_reported_command_failures(record: logging.LogRecord) -> bool:
    """A failed command's traceback says less than the daemon's own line about that run."""
    from gnomon._cli._actions import CommandFailed

    if record.name.startswith("gnomon.cli") or not record.exc_info:
        return True
    return not isinstance(record.exc_info[1], CommandFailed)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC).astimezone()
    return moment.isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``TIME LEVEL [job] message key=value ...``, then the output tail, indented."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, FIELDS, {}))
        job = fields.pop("job", None)
        output = fields.pop("output", None)
        if fields.pop("stream", None) == "output":
            fields.clear()
        parts = [_timestamp(record), f"{record.levelname:<7}"]
        if job is not None:
            parts.append(f"[{job}]")
        parts.append(record.getMessage())
        parts.extend(f"{key}={_text(value)}" for key, value in fields.items())
        text = " ".join(parts)
        if output:
            text += "\n" + "\n".join(f"    | {line}" for line in str(output).splitlines())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return mask_secrets(text)


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() for c in text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(getattr(record, FIELDS, {}))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(document, default=str, ensure_ascii=False))
