"""Time rules. (Being written; the names below are the contract the engine relies on.)"""

from __future__ import annotations

import abc
from datetime import datetime
from zoneinfo import ZoneInfo


class Rule(abc.ABC):
    """A pure, frozen description of when a job fires."""

    timezone: ZoneInfo | None

    @abc.abstractmethod
    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after the aware ``moment``, or ``None``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The rule in plain English."""
