"""Registered tasks: the only code a stored job may name.

A stored row never holds code, a pickle or an importable path. It names a task, and a
task is whatever this process registered under that name (``@s.task``, ``s.register``).
A name nobody registered here is never resolved by import: the job waits, kept, until a
process that has the task runs it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gnomon._errors import InvalidJob, UnknownTask
from gnomon._retry import Retry

__all__ = ["LISTENER_OPTIONS", "Task", "TaskRegistry", "default_task_name"]

LISTENER_OPTIONS = ("before_run", "after_run", "after_error", "after_lock_error")


@dataclass(frozen=True, slots=True)
class Task:
    """A registered task: its function and the listeners every job of it gets."""

    name: str
    func: Callable[..., object]
    listeners: Mapping[str, Callable[..., object]]
    retry: Retry | None = None
    """The retry policy of the task's durable jobs that set none of their own."""


def default_task_name(func: object) -> str:
    """``module.qualname``, the name a task is registered under unless told otherwise."""
    module = getattr(func, "__module__", None) or ""
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{qualname}" if module else qualname


class TaskRegistry:
    """Task names to functions (and back), shared by one scheduler's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Task] = {}
        self._names: dict[object, str] = {}

    def register(
        self,
        func: object,
        name: object,
        listeners: Mapping[str, Any],
        *,
        retry: object = None,
    ) -> Task:
        if not callable(func):
            raise InvalidJob(f"a task must be callable, got {func!r}")
        task_name = _check_task_name(func, name)
        checked = {key: _check_listener(key, value) for key, value in listeners.items() if value}
        if retry is not None and not isinstance(retry, Retry):
            raise InvalidJob(f"retry must be a gnomon.Retry or None, got {retry!r}")
        task = Task(task_name, func, checked, retry)
        with self._lock:
            known = self._by_name.get(task_name)
            if known is not None and known.func != func:
                raise InvalidJob(
                    f"the task name {task_name!r} is already registered to {known.func!r}; "
                    "give this one another name="
                )
            self._by_name[task_name] = task
            self._names[_identity(func)] = task_name
        return task

    def get(self, name: str) -> Task | None:
        return self._by_name.get(name)

    def require(self, name: str) -> Task:
        task = self._by_name.get(name)
        if task is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownTask(
                f"no task named {name!r} is registered in this process (registered: {known}); "
                "every process that adds a task's jobs registers the task with @s.task "
                "or s.register()"
            )
        return task

    def name_of(self, func: object) -> str | None:
        name = self._names.get(_identity(func))
        if name is None:
            return None
        task = self._by_name.get(name)
        return name if task is not None and task.func == func else None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def _identity(func: object) -> object:
    """How a function is recognised again: by equality (a bound method is a new object
    at every attribute access, but equal), else by identity when it is unhashable."""
    try:
        hash(func)
    except TypeError:
        return ("id", id(func))
    return func


def _check_task_name(func: object, name: object) -> str:
    if name is None:
        if getattr(func, "__name__", None) == "<lambda>":
            raise InvalidJob(
                f"a lambda has no name to be stored under: register {func!r} with name="
            )
        return default_task_name(func)
    if not isinstance(name, str) or not name.strip():
        raise InvalidJob(f"a task name must be a non-empty string, got {name!r}")
    return name


def _check_listener(field: str, value: object) -> Callable[..., object]:
    if field not in LISTENER_OPTIONS:
        raise TypeError(f"register() got an unknown option {field!r}")
    if not callable(value):
        raise InvalidJob(f"{field} must be a callable taking a RunEvent, got {value!r}")
    return value
