"""What reading many rows at once shares: a paused collector, and values made cheaply.

A scheduler loads every stored job when it starts (100,000 rows and more), so each row
costs several frozen values (its ``StoredJob``, the job's ``JobSpec``) and a few dozen
objects; these two helpers keep that path linear and short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["collector_paused", "maker"]

_Frozen = TypeVar("_Frozen")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Loading many rows makes many objects, none of them cyclic; the cyclic collector
    would rescan them (and the whole heap) several times over while they are made."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def maker(cls: type[_Frozen]) -> Callable[[Iterable[object]], _Frozen]:
    """A function making ``cls`` (a frozen dataclass with slots) from its field values in
    order, at half the cost of ``cls(*values)``, whose ``__init__`` sets each field through
    ``object.__setattr__`` and so looks the field up again every time. A class with a
    ``__post_init__`` is made by its ``__init__``, which calls it."""
    if hasattr(cls, "__post_init__"):
        return lambda values: cls(*values)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    setters = tuple(cls.__dict__[field.name].__set__ for field in fields)
    new = object.__new__

    def make(values: Iterable[object]) -> _Frozen:
        made: _Frozen = new(cls)
        for set_field, value in zip(setters, values, strict=True):
            set_field(made, value)
        return made

    return make
