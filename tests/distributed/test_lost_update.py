"""The lost-update counter test: workers read, sleep and write one shared counter, each
increment under a claim on ``counter@<value>``. If two workers ever held the same claim,
both would write the same value and the final count would fall short of the increments
made. Threads share a store; processes share a server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

from counter_worker import increment_until, write_counter
from distributed_support import Backend, make_locker, store_url

from gnomon import Locker
from gnomon.testing import MemoryLocker

TARGET = 60
WORKERS = 4


def _threads_increment(make: object, path: Path) -> list[int]:
    made: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        async def body() -> int:
            locker: Locker = make()  # type: ignore[operator]
            try:
                return await increment_until(locker, path, TARGET)
            finally:
                await locker.close()

        try:
            made.append(asyncio.run(body()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return made


def test_threads_never_lose_an_update_under_the_lock(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "counter"
    write_counter(path, 0)
    if backend.kind == "memory":
        shared = MemoryLocker(lease_ttl=2)  # real time: the threads race for real
        made = _threads_increment(lambda: shared, path)
    else:
        url = store_url(backend.kind)
        made = _threads_increment(
            lambda: make_locker(backend.kind, url, backend.namespace, lease_ttl=2), path
        )
    assert int(path.read_text()) == TARGET
    assert sum(made) == TARGET
    assert len(made) == WORKERS


def test_processes_never_lose_an_update_under_the_lock(
    real_backend: Backend, tmp_path: Path
) -> None:
    kind = real_backend.kind
    path = tmp_path / "counter"
    write_counter(path, 0)
    worker = Path(__file__).with_name("counter_worker.py")
    url = store_url(kind)
    command = [
        sys.executable,
        str(worker),
        kind,
        url,
        real_backend.namespace,
        str(path),
        str(TARGET),
    ]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    made = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        made.append(int(out.strip()))
    assert int(path.read_text()) == TARGET
    assert sum(made) == TARGET
