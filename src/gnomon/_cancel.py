"""The ``ctx.cancelled`` event, made cheap to create.

Every run that hands its task a ``JobContext`` needs its own ``threading.Event``. The
standard one builds a ``Condition`` (and its lock) up front, which is most of a run's
bookkeeping cost when a thousand jobs fire at once. This subclass keeps the flag in a
plain attribute and builds the condition only when somebody actually waits.
"""

from __future__ import annotations

import threading

__all__ = ["CancelEvent"]

_creating = threading.Lock()


class CancelEvent(threading.Event):
    """A ``threading.Event`` whose condition variable is created on first ``wait()``."""

    def __init__(self) -> None:  # the base initialiser would build the condition now
        self._is_set = False
        self._waiters: threading.Condition | None = None

    def is_set(self) -> bool:
        return self._is_set

    isSet = is_set  # noqa: N815 - the name threading.Event also answers to

    def set(self) -> None:
        self._is_set = True
        # Read after the flag is written: a waiter that created the condition after this
        # read will see the flag before it sleeps.
        waiters = self._waiters
        if waiters is not None:
            with waiters:
                waiters.notify_all()

    def clear(self) -> None:
        self._is_set = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._is_set:
            return True
        waiters = self._condition()
        with waiters:
            if not self._is_set:
                waiters.wait(timeout)
            return self._is_set

    def _condition(self) -> threading.Condition:
        with _creating:
            if self._waiters is None:
                self._waiters = threading.Condition(threading.Lock())
            return self._waiters

    def __reduce__(self) -> tuple[type[CancelEvent], tuple[()], bool]:
        """Copies and pickles keep the flag; a waiter's condition stays behind."""
        return (CancelEvent, (), self._is_set)

    def __setstate__(self, state: bool) -> None:
        self._is_set = state

    def __repr__(self) -> str:
        return f"<CancelEvent {'set' if self._is_set else 'unset'}>"
