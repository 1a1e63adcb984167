"""gnomon: a job scheduler for Python.

Create a scheduler, register jobs (a callable, a time rule, options), and gnomon runs them
on time, in threads (:class:`Scheduler`) or on an asyncio loop (:class:`AsyncScheduler`),
on one machine or on several that share Redis or PostgreSQL.
"""

from __future__ import annotations

from gnomon._dispatch import message_id
from gnomon._distributed import Elector, Lease, Locker, occurrence_key
from gnomon._durations import format_duration, parse_duration
from gnomon._errors import (
    GnomonError,
    InvalidJob,
    InvalidJobArguments,
    InvalidOption,
    InvalidRule,
    JobChanged,
    JobExists,
    JobNotFound,
    LeaseLost,
    LockHeld,
    OccurrenceAbandoned,
    SchedulerForked,
    SchedulerShutDown,
    ShutdownTimedOut,
    StoreUnavailable,
    StoreVersionError,
    UnknownTask,
)
from gnomon._events import JobContext, LimitMode, Monitor, Outcome, Recovery, RunEvent
from gnomon._job import Job
from gnomon._options import JobOptions
from gnomon._retry import Retry
from gnomon._rules import (
    Rule,
    Weekday,
    cron,
    daily,
    every,
    every_random,
    monthly,
    once,
    weekly,
)
from gnomon._scheduler import AsyncScheduler, Scheduler
from gnomon._stores.contract import ActionRecord, NodeInfo, RunRecord, Store

__all__ = [
    "ActionRecord",
    "AsyncScheduler",
    "Elector",
    "GnomonError",
    "InvalidJob",
    "InvalidJobArguments",
    "InvalidOption",
    "InvalidRule",
    "Job",
    "JobChanged",
    "JobContext",
    "JobExists",
    "JobNotFound",
    "JobOptions",
    "Lease",
    "LeaseLost",
    "LimitMode",
    "LockHeld",
    "Locker",
    "Monitor",
    "NodeInfo",
    "OccurrenceAbandoned",
    "Outcome",
    "Recovery",
    "Retry",
    "Rule",
    "RunEvent",
    "RunRecord",
    "Scheduler",
    "SchedulerForked",
    "SchedulerShutDown",
    "ShutdownTimedOut",
    "Store",
    "StoreUnavailable",
    "StoreVersionError",
    "UnknownTask",
    "Weekday",
    "cron",
    "daily",
    "every",
    "every_random",
    "format_duration",
    "message_id",
    "monthly",
    "occurrence_key",
    "once",
    "parse_duration",
    "weekly",
]
