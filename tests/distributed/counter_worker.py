"""A lost-update worker: read-sleep-write a shared counter under occurrence claims.

Run as ``python counter_worker.py KIND URL NAMESPACE COUNTER_FILE TARGET``; prints how
many increments this worker made. Used by ``test_lost_update.py`` for threads and for
processes alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from gnomon import Locker, LockHeld


def read_counter(path: Path) -> int:
    return int(path.read_text())


def write_counter(path: Path, value: int) -> None:
    scratch = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    scratch.write_text(str(value))
    scratch.replace(path)  # atomic: a reader never sees half a number


async def increment_until(locker: Locker, path: Path, target: int) -> int:
    """Claim ``counter@<value>`` and, holding it, read, sleep, write value + 1."""
    made = 0
    while (seen := read_counter(path)) < target:
        try:
            lease = await locker.acquire(f"counter@{seen}", locker.lease_ttl)
        except LockHeld:
            await asyncio.sleep(0.001)
            continue
        value = read_counter(path)
        await asyncio.sleep(0.003)  # the window in which a second holder would lose an update
        write_counter(path, value + 1)
        made += 1
        await lease.release()
    return made


async def main(kind: str, url: str, namespace: str, path: Path, target: int) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from distributed_support import make_locker

    locker = make_locker(kind, url, namespace, lease_ttl=2)
    try:
        return await increment_until(locker, path, target)
    finally:
        await locker.close()


if __name__ == "__main__":
    kind, url, namespace, counter_file, target = sys.argv[1:6]
    print(asyncio.run(main(kind, url, namespace, Path(counter_file), int(target))))
