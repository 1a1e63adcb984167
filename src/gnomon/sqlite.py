"""The SQLite store: durable jobs, claims and run history in one file, with the standard
library's ``sqlite3`` and nothing to install.

``SQLiteStore("jobs.db")`` serves one machine and any number of processes on it (web
workers too): every scheduler that opens the file shares its jobs, claims each
occurrence in it once, and follows the others' changes. Commits survive a process crash;
with the default ``synchronous="normal"`` the last ones may be lost to a power loss or an
OS crash, which ``synchronous="full"`` prevents at the price of an fsync per commit.
For several machines, use ``gnomon.postgres.PostgresStore``.
"""

from __future__ import annotations

from gnomon._stores.sqlite import SQLiteStore

__all__ = ["SQLiteStore"]
