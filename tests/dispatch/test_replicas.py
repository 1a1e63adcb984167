"""Several schedulers on one PostgreSQL store as a highly available, fenced beat in front
of a real Celery worker: replicas killed and paused, each occurrence run once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from celery import Celery
from dispatch_support import (
    HERE,
    POSTGRES_URL,
    RABBITMQ_URL,
    SRC,
    Worker,
    delete_queues,
    require,
    runs_per_occurrence,
    settle,
    sink_entries,
    start_worker,
    unique,
    wait_for,
)

import gnomon
from gnomon import Outcome
from gnomon.celery import dispatch
from gnomon.postgres import PostgresStore

pytestmark = pytest.mark.slow

SCENARIO_SECONDS = int(os.environ.get("GNOMON_DISPATCH_SCENARIO_SECONDS", "20"))
"""How long the three-replica scenario runs: 20 s here, 60 s as ``bench/w_dispatch.py
--replicas``."""


@dataclass
class Fleet:
    worker: Worker
    schema: str
    queue: str
    app: Celery

    def settle(self) -> None:
        def marker(name: str) -> None:
            self.app.send_task(
                "dispatch_tests.record", args=[unique("sink")], queue=self.queue, headers={name: 1}
            )

        settle(self.worker, marker)

    def store(self) -> PostgresStore:
        return PostgresStore(POSTGRES_URL, schema=self.schema, lease_ttl="2s")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require("rabbitmq")
    require("redis")
    require("postgres")
    root = tmp_path_factory.mktemp("replicas")
    schema = unique("gnomon_dispatch")
    PostgresStore(POSTGRES_URL, schema=schema).close()
    queue = unique("gnomon_replicas")
    worker = start_worker(
        "celery", queue=queue, store=f"{POSTGRES_URL}#{schema}", broker=RABBITMQ_URL, logs=root
    )
    try:
        yield Fleet(worker, schema, queue, Celery("gnomon-tests", broker=RABBITMQ_URL))
    finally:
        worker.stop()
        delete_queues(RABBITMQ_URL, queue)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)])}


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=_env(), stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _schedule(path: Path, fleet: Fleet, tick: str, minutely: str) -> None:
    store = f"{POSTGRES_URL}?schema={fleet.schema}"
    path.write_text(
        f"""
[scheduler]
store = "{store}"
broker = "{RABBITMQ_URL}"
timezone = "UTC"

[[jobs]]
name = "{tick}"
every = "1s"
celery = "dispatch_tests.record"
args = ["{tick}"]
queue = "{fleet.queue}"

[[jobs]]
name = "{minutely}"
cron = "* * * * *"
celery = "dispatch_tests.record"
args = ["{minutely}"]
queue = "{fleet.queue}"
"""
    )


def test_three_replicas_publish_every_occurrence_once_while_one_is_killed_and_one_paused(
    fleet: Fleet, tmp_path: Path
) -> None:
    tick, minutely = unique("tick"), unique("minutely")
    schedule = tmp_path / "schedule.toml"
    _schedule(schedule, fleet, tick, minutely)
    command = [sys.executable, "-m", "gnomon", "run", str(schedule), "--log-format", "json"]
    replicas = [_spawn(command, tmp_path / f"replica{index}.log") for index in range(3)]
    store = fleet.store()

    def successes() -> int:
        return len(store.history(job_name=tick, outcomes=[Outcome.SUCCESS], limit=1000))

    def after(count: int, what: str) -> None:
        target = successes() + count
        wait_for(lambda: successes() >= target, what, timeout=max(60.0, 3.0 * count))

    phase = SCENARIO_SECONDS // 5  # 20 s: 4 + 4 + 6 + 6 occurrences
    try:
        after(phase, "the replicas to publish")
        replicas[0].kill()  # SIGKILL
        after(phase, "the survivors to carry on")
        replicas[1].send_signal(signal.SIGSTOP)
        after(SCENARIO_SECONDS // 2 - phase, "the one replica left to carry on")
        replicas[1].send_signal(signal.SIGCONT)
        after(SCENARIO_SECONDS // 2 - phase, "the resumed replica to rejoin")
    finally:
        for replica in replicas:
            _stop(replica)
    records = store.history(job_name=tick, limit=1000)
    records += store.history(job_name=minutely, limit=1000)
    store.close()
    finished = [r for r in records if r.outcome is Outcome.SUCCESS]
    seconds = sorted(r.scheduled_at for r in records if r.job_name == tick)
    assert len(seconds) >= SCENARIO_SECONDS
    assert seconds[-1] - seconds[0] == timedelta(seconds=len(seconds) - 1), "a second was skipped"
    assert len({r.node for r in finished}) >= 2, "one replica did all the work"
    wait_for(
        lambda: (
            set(runs_per_occurrence(tick))
            >= {r.occurrence_key for r in finished if r.job_name == tick}
        ),
        "every published occurrence on the worker",
    )
    fleet.settle()
    ran = runs_per_occurrence(tick) + runs_per_occurrence(minutely)
    assert {key: ran[key] for key in (r.occurrence_key for r in finished)} == {
        r.occurrence_key: 1 for r in finished
    }
    assert max(ran.values()) == 1, "an occurrence ran twice"


def _node(
    fleet: Fleet, job: str, sink: str, gate: Path
) -> tuple[subprocess.Popen[bytes], datetime]:
    """A replica that stops between claim and publish; returns it and its job's first fire."""
    gate.mkdir()
    script = str(HERE / "dispatch_node.py")
    arguments = [POSTGRES_URL, fleet.schema, job, fleet.queue, sink, str(gate)]
    process = _spawn([sys.executable, script, *arguments], gate / "node.log")

    def started() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the node exited:\n{(gate / 'node.log').read_text()[-3000:]}")
        return (gate / "started").exists()

    wait_for(started, "the node to start")
    wait_for((gate / "claimed").exists, "the node to claim")
    return process, datetime.fromisoformat((gate / "started").read_text())


def _successor(fleet: Fleet, job: str, at: datetime, sink: str) -> gnomon.Scheduler:
    """Another replica: claims what the first left behind once its lease expires."""
    scheduler = gnomon.Scheduler(store=fleet.store())
    scheduler.register_broker("celery", fleet.app)
    scheduler.register(dispatch("dispatch_tests.record", args=[sink], queue=fleet.queue), name=job)
    recovery = gnomon.Recovery.AT_LEAST_ONCE
    scheduler.add_job(job, gnomon.every("10m"), name=job, start_at=at, recovery=recovery)
    scheduler.start()
    return scheduler


def _close(scheduler: gnomon.Scheduler) -> None:
    scheduler.shutdown()
    if scheduler.store is not None:
        scheduler.store.close()  # a scheduler never closes the store it was given


def _finished(fleet: Fleet, job: str) -> list[gnomon.RunRecord]:
    store = fleet.store()
    try:
        return store.history(job_name=job, outcomes=[Outcome.SUCCESS])
    finally:
        store.close()


def test_a_replica_killed_between_claim_and_publish_leaves_the_occurrence_to_another_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    job, sink = unique("job"), unique("sink")
    first, at = _node(fleet, job, sink, tmp_path / "gate")
    try:
        first.kill()
        first.wait(10)
    finally:
        _stop(first)
    successor = _successor(fleet, job, at, sink)
    try:
        wait_for(lambda: bool(_finished(fleet, job)), "the occurrence to be re-claimed and sent")
    finally:
        _close(successor)
    [record] = _finished(fleet, job)
    assert record.attempt == 2
    wait_for(lambda: len(sink_entries(sink)) >= 1, "the run on the worker")
    fleet.settle()
    [entry] = sink_entries(sink)
    assert (entry["token"], entry["attempt"]) == (record.fencing_token, 2)


def test_a_replica_paused_past_its_lease_publishes_late_and_the_guard_drops_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    job, sink = unique("job"), unique("sink")
    gate = tmp_path / "gate"
    first, at = _node(fleet, job, sink, gate)
    try:
        first.send_signal(signal.SIGSTOP)
        successor = _successor(fleet, job, at, sink)
        try:
            wait_for(lambda: bool(_finished(fleet, job)), "another replica to take over")
        finally:
            _close(successor)
        wait_for(lambda: len(sink_entries(sink)) >= 1, "the successor's run on the worker")
        dropped = len(fleet.worker.dropped())
        (gate / "open").write_text("1")
        first.send_signal(signal.SIGCONT)  # its publish goes out now, with its old token
        wait_for(lambda: len(fleet.worker.dropped()) > dropped, "the guard to drop the late one")
    finally:
        _stop(first)
    fleet.settle()
    [record] = _finished(fleet, job)
    [entry] = sink_entries(sink)
    assert (entry["token"], entry["attempt"]) == (record.fencing_token, 2)
    late = fleet.worker.dropped()[dropped]
    assert record.occurrence_key in late
    assert "is not the current claim token" in late
