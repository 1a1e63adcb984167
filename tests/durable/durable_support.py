"""What the durable-job tests share: the fake clock's start and the factories' types."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import gnomon
from gnomon._stores.contract import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)

StoreFactory = Callable[[], Store]
SchedulerFactory = Callable[..., gnomon.Scheduler]
