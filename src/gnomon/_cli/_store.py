"""Where ``gnomon`` keeps jobs, claims and history: a SQLite file or a PostgreSQL schema.

``[scheduler] store = "sqlite:PATH"`` (``state = PATH`` is its short form) or a
``postgresql://`` URL. A PostgreSQL schema other than ``gnomon`` rides in the URL as
``?schema=NAME``, so that one string names the whole store wherever a store is given
(the schedule file, and later ``gnomon web --store``); it is taken out of the URL before
libpq sees it, since libpq refuses query parameters it does not know.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from gnomon._cli._migrate import migrate_state_file
from gnomon._cli._secrets import mask_secrets
from gnomon._errors import GnomonError, InvalidJob, StoreUnavailable
from gnomon._stores.contract import Store

__all__ = [
    "DEFAULT_SCHEMA",
    "StateFileMissing",
    "StateFileUnusable",
    "StoreLocation",
    "migrate_old_history",
    "open_built",
    "open_store",
    "read_store",
]

SQLITE_PREFIX = "sqlite:"
POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "gnomon"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class StateFileMissing(GnomonError, FileNotFoundError):
    """There is no state file where one was expected."""


class StateFileUnusable(GnomonError):
    """The state file cannot be opened, created or read (permissions, not a database)."""


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A SQLite file (``path``) or a PostgreSQL database (``url``, without ``?schema=``)."""

    path: Path | None = None
    url: str | None = None
    schema: str = DEFAULT_SCHEMA

    def describe(self) -> str:
        """How messages name the store; a URL's password is masked."""
        if self.path is not None:
            return f"{SQLITE_PREFIX}{self.path}"
        shown = mask_secrets(self.url or "")
        return shown if self.schema == DEFAULT_SCHEMA else f"{shown} (schema {self.schema})"

    def build(self) -> Store:
        """The store object, not yet opened (a missing driver raises ``ImportError``)."""
        if self.path is not None:
            from gnomon.sqlite import SQLiteStore

            return SQLiteStore(self.path)
        from gnomon.postgres import PostgresStore

        return PostgresStore(self.url or "", schema=self.schema)


def read_store(value: object, base: Path) -> StoreLocation:
    """``[scheduler] store``: ``"sqlite:PATH"`` (relative to ``base``) or a PostgreSQL URL."""
    if isinstance(value, str) and value.startswith(SQLITE_PREFIX):
        path = value.removeprefix(SQLITE_PREFIX)
        if path.strip():
            return StoreLocation(path=base / path)
    elif isinstance(value, str) and value.partition("://")[0].lower() in POSTGRES_SCHEMES:
        return _postgres(value)
    shown = mask_secrets(value) if isinstance(value, str) else value
    raise InvalidJob(
        'store must be "sqlite:PATH" (relative to the schedule file) or a postgresql:// URL '
        f"(with ?schema=NAME for a schema other than {DEFAULT_SCHEMA!r}), got {shown!r}"
    )


def _postgres(url: str) -> StoreLocation:
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in pairs if key == "schema"]
    if not schemas:
        return StoreLocation(url=url)
    schema = schemas[-1]
    if not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidJob(
            "store: ?schema= must be a plain identifier (letters, digits and underscores, at "
            f"most 63 characters, not starting with a digit), got {schema!r}"
        )
    rest = urlencode([(k, v) for k, v in pairs if k != "schema"], quote_via=quote)
    return StoreLocation(url=urlunsplit(parts._replace(query=rest)), schema=schema)


def open_store(location: StoreLocation, *, create: bool) -> Store:
    """Open the store, first migrating an old state file's history into it.

    ``create=False`` (``history``, ``status``) refuses to create a SQLite file: an absent
    one means no daemon ever ran here, which is worth saying rather than showing nothing.
    """
    store = location.build()
    try:
        open_built(store, location, create=create)
        migrate_old_history(store, location)
    except BaseException:
        store.close()
        raise
    return store


def open_built(store: Store, location: StoreLocation, *, create: bool) -> None:
    """Open ``store``, built from ``location``; a state file's problems are named as such."""
    path = location.path
    if path is None:
        store.open()
        return
    if not create and not path.exists():
        raise StateFileMissing(
            f"no state file at {path}: it is created by 'gnomon run' (or pass --state PATH)"
        )
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        store.open()
    except (OSError, StoreUnavailable) as error:
        reason = error.__cause__ or error
        raise StateFileUnusable(f"cannot use the state file {path}: {reason}") from None


def migrate_old_history(store: Store, location: StoreLocation) -> int:
    """Copy the history of a state file from before stores into ``store`` (see
    ``gnomon._cli._migrate``); nothing to do for PostgreSQL."""
    if location.path is None:
        return 0
    try:
        return migrate_state_file(store, location.path)
    except sqlite3.Error as error:
        raise StateFileUnusable(
            f"cannot copy the old history of the state file {location.path}: {error}"
        ) from None
