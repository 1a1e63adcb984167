"""Multi-process scenarios: three scheduler processes (five for the thundering herd)
sharing Redis or PostgreSQL, with faults injected by signals, by stopping private
servers, and through a TCP proxy. A checker reads the history the jobs wrote and the
suite prints its counts.

Timings: lease ttl 2 s (renewed every 2/3 s), interval 1 s, elector retry 0.5 s.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from fault_proxy import FaultProxy
from private_servers import PrivatePostgres, PrivateRedis
from scenario_support import Cluster, ClusterFactory, Report, Row, check, wait_for

TTL = 2.0
RETRY = 0.5
STORES = ["redis", "postgres"]

pytestmark = [pytest.mark.services, pytest.mark.slow]

Summary = Callable[[str], None]


def _assert_each_started_once(report: Report) -> None:
    assert report.twice_started == [], report.twice_started[:5]
    assert report.twice_accepted == []
    assert report.effects_accepted == report.occurrences
    assert report.token_regressions == [], report.token_regressions[:5]


def _first(rows: list[Row]) -> Row:
    return min(rows, key=lambda r: r.ts)


@pytest.mark.parametrize("store", STORES)
def test_baseline_three_nodes_start_every_occurrence_once_and_a_long_job_keeps_its_lease(
    cluster_factory: ClusterFactory, store: str, summary: Summary
) -> None:
    long_at = int(time.time()) + 5
    cluster = cluster_factory(store, "--ttl", str(TTL), "--duration", "16")
    for n in range(3):
        cluster.start(f"n{n}", "--jobs", "25", "--long-at", str(long_at), "--long-seconds", "10.2")
    cluster.wait_started()
    cluster.finish()
    report = check(cluster.history)
    summary(f"[{store}] baseline (+ a 10.2 s job, ttl 2 s): {report.line()}")
    assert report.occurrences >= 300
    _assert_each_started_once(report)
    assert report.lock_errors == report.abandoned == 0
    [long_end] = report.events("end", job="long")
    assert long_end.cancelled is False  # renewed all along: never told to stop
    assert len(report.events("start", job="long")) == 1


@pytest.mark.parametrize("store", STORES)
def test_staggered_starts_with_fast_jobs_never_run_an_occurrence_twice(
    cluster_factory: ClusterFactory, store: str, summary: Summary
) -> None:
    cluster = cluster_factory(store, "--ttl", str(TTL), "--duration", "7")
    for n in range(3):
        cluster.start(f"n{n}", "--jobs", "10", "--interval", "0.5", "--job-seconds", "0.005")
        time.sleep(0.35)  # offset tickers: gocron issue 841
    cluster.wait_started()
    cluster.finish()
    report = check(cluster.history)
    summary(f"[{store}] staggered starts 0/350/700 ms: {report.line()}")
    assert report.occurrences >= 80
    _assert_each_started_once(report)


@pytest.mark.parametrize("store", STORES)
def test_a_node_whose_clock_runs_3s_ahead_causes_no_duplicate(
    cluster_factory: ClusterFactory, store: str, summary: Summary
) -> None:
    cluster = cluster_factory(store, "--ttl", str(TTL), "--duration", "8", "--jobs", "10")
    cluster.start("n0")
    cluster.start("n1")
    cluster.start("skewed", "--offset", "3")
    cluster.wait_started()
    cluster.finish()
    report = check(cluster.history)
    summary(f"[{store}] one clock +3 s: {report.line()}")
    assert report.occurrences >= 60
    _assert_each_started_once(report)


def _kill_victim_runners(cluster: Cluster) -> tuple[dict[str, Row], float]:
    """SIGKILL the nodes running the first occurrence of each victim job scheduled once
    every node runs (an earlier one may have no other node watching it), mid-run."""
    ready = cluster.ready_at
    assert ready is not None

    def first_starts() -> dict[str, Row] | None:
        found = {}
        for row in check(cluster.history).events("start"):
            if (
                row.job
                and row.job.startswith("victim_")
                and row.job not in found
                and row.scheduled_at is not None
                and row.scheduled_at > ready
            ):
                found[row.job] = row
        if len(found) == 2:
            keys = {r.scheduled_at for r in found.values()}
            return found if len(keys) == 1 else None
        return None

    victims = wait_for(first_starts, 20, "both victims to start")
    time.sleep(0.3)
    killed_at = 0.0
    for node in {row.node for row in victims.values()}:
        killed_at = cluster.signal(node, signal.SIGKILL)
    return victims, killed_at


@pytest.mark.parametrize("store", STORES)
def test_sigkill_of_a_runner_reruns_at_least_once_jobs_and_abandons_at_most_once_jobs(
    cluster_factory: ClusterFactory, store: str, summary: Summary
) -> None:
    cluster = cluster_factory(
        store, "--ttl", str(TTL), "--duration", "30", "--victim-every", "5", "--victim-seconds", "2"
    )
    for n in range(3):
        cluster.start(f"n{n}")
    cluster.wait_started()
    victims, killed_at = _kill_victim_runners(cluster)
    least, most = victims["victim_at_least_once"], victims["victim_at_most_once"]

    def settled() -> Report | None:
        report = check(cluster.history)
        rerun = [r for r in report.events("end") if r.occurrence_key == least.occurrence_key]
        gave_up = [r for r in report.rows if r.event == "abandoned"]
        next_runs = report.events("end", job="victim_at_most_once")
        return report if rerun and gave_up and next_runs else None

    report = wait_for(settled, 15, "the re-run, the abandoned record and the next occurrence")
    for node in set(cluster.processes) - cluster.killed:
        cluster.signal(node, signal.SIGTERM)
    cluster.finish()
    report = check(cluster.history)
    [first, again] = sorted(report.starts_of(least.occurrence_key or ""), key=lambda r: r.ts)
    failover = again.ts.timestamp() - killed_at
    report.extra["rerun_after_s"] = round(failover, 2)
    summary(f"[{store}] SIGKILL mid-run: {report.line()}")
    assert (first.attempt, again.attempt) == (1, 2)
    assert (again.token or 0) > (first.token or 0)
    assert again.node not in cluster.killed
    assert failover <= TTL + 1.0
    assert report.starts_of(most.occurrence_key or "") == [most]  # never re-run
    [abandoned] = [r for r in report.rows if r.event == "abandoned"]
    assert abandoned.occurrence_key == most.occurrence_key
    assert report.twice_accepted == []
    assert report.twice_started == [least.occurrence_key]  # the re-run, and nothing else


@pytest.mark.parametrize("store", STORES)
def test_a_runner_paused_beyond_its_ttl_is_fenced_when_it_wakes(
    cluster_factory: ClusterFactory, store: str, summary: Summary
) -> None:
    # The victim's first run stops its own process as soon as it has started, so the
    # pause never lands after the run has finished or renewed; its effect is fenced per
    # occurrence, so a later occurrence of the job cannot outrun the heir to the sink.
    cluster = cluster_factory(
        store, "--ttl", str(TTL), "--duration", "30", "--victim-every", "4", "--victim-seconds",
        "2", "--recovery", "at_least_once", "--pause-victim", "--fence-by", "occurrence",
    )  # fmt: skip
    for n in range(3):
        cluster.start(f"n{n}")
    cluster.wait_started()
    cluster.arm_pause("victim_at_least_once")
    [zombie] = wait_for(lambda: check(cluster.history).events("pause"), 20, "the victim to pause")
    wait_for(lambda: cluster.stopped(zombie.node), 10, "the victim's node to stop")
    key = zombie.occurrence_key
    wait_for(
        lambda: [r for r in check(cluster.history).events("effect") if r.occurrence_key == key],
        TTL + 6,
        "the heir's effect",
    )
    cluster.signal(zombie.node, signal.SIGCONT)
    wait_for(
        lambda: [
            r
            for r in check(cluster.history).events("end")
            if r.occurrence_key == key and r.node == zombie.node
        ],
        10,
        "the zombie to finish",
    )
    for node in cluster.processes:
        cluster.signal(node, signal.SIGTERM)
    cluster.finish()
    report = check(cluster.history)
    summary(f"[{store}] SIGSTOP beyond ttl: {report.line()}")
    effects = [r for r in report.events("effect") if r.occurrence_key == key]
    # The first effect is an heir's (a slow heir may itself lose its lease to another).
    heir = effects[0]
    assert heir.node != zombie.node
    assert heir.attempt > zombie.attempt
    assert (heir.once_ok, heir.fenced_ok) == (True, True)
    # Both sinks reject the zombie. (Whether its run noticed the lost lease before writing
    # is a race on waking: a paused process cannot know it was paused.)
    [late] = [r for r in effects if r.node == zombie.node]
    assert (late.once_ok, late.fenced_ok) == (False, False)
    assert report.twice_accepted == []


@pytest.mark.parametrize("store", STORES)
def test_when_the_leader_is_killed_a_follower_leads_within_ttl_plus_retry(
    cluster_factory: ClusterFactory, store: str, summary: Summary
) -> None:
    cluster = cluster_factory(
        store, "--elector", "--ttl", str(TTL), "--retry", str(RETRY), "--duration", "30",
        "--jobs", "2", "--interval", "0.25",
    )  # fmt: skip
    for n in range(3):
        cluster.start(f"n{n}")
    cluster.wait_started()
    leader = wait_for(lambda: check(cluster.history).events("start"), 10, "a first run").pop().node
    time.sleep(1)
    killed_at = cluster.signal(leader, signal.SIGKILL)
    heir = wait_for(
        lambda: [r for r in check(cluster.history).events("start") if r.node != leader],
        TTL + RETRY + 5,
        "another node to run jobs",
    )
    time.sleep(1)
    for node in set(cluster.processes) - {leader}:
        cluster.signal(node, signal.SIGTERM)
    cluster.finish()
    report = check(cluster.history, strict_tokens=False)
    failover = _first(heir).ts.timestamp() - killed_at
    report.extra["failover_s"] = round(failover, 2)
    report.extra["bound_s"] = TTL + RETRY + 0.25
    summary(f"[{store}] leader SIGKILLed: {report.line()}")
    assert failover <= TTL + RETRY + 0.25 + 0.5  # + one interval for the next fire time
    assert report.twice_started == []
    assert {r.node for r in report.events("start") if r.ts.timestamp() > killed_at + 0.1} == {
        _first(heir).node
    }


def _restart_scenario(
    cluster: Cluster, stop: Callable[[], None], start: Callable[[], None]
) -> Report:
    for n in range(3):
        cluster.start(f"n{n}")
    cluster.wait_started()
    wait_for(lambda: len(check(cluster.history).events("start")) >= 10, 15, "runs")
    stop()
    time.sleep(1.5)
    start()
    back = time.time()
    wait_for(
        lambda: [r for r in check(cluster.history).events("start") if r.ts.timestamp() > back + 1],
        20,
        "runs after the store came back",
    )
    time.sleep(2)
    for node in cluster.processes:
        cluster.signal(node, signal.SIGTERM)
    cluster.finish()  # every node exits cleanly: nothing crashed
    return check(cluster.history)


def test_a_private_redis_restarted_without_persistence_mid_run(
    cluster_factory: ClusterFactory, private_redis: PrivateRedis, summary: Summary
) -> None:
    cluster = cluster_factory(
        "redis", "--ttl", str(TTL), "--duration", "60", "--jobs", "5",
        store_url=private_redis.url,
    )  # fmt: skip
    report = _restart_scenario(cluster, private_redis.kill, private_redis.start)
    report.extra["rerun_after_restart"] = len(report.twice_started)
    summary(f"[redis] private Redis restarted, no persistence: {report.line()}")
    assert report.lock_errors > 0  # the outage was reported, with a reason
    assert report.twice_accepted == []  # a claim lost with the data is caught by the sink
    assert report.token_regressions == []


def test_a_private_postgres_stopped_immediately_mid_run(
    cluster_factory: ClusterFactory, private_postgres: PrivatePostgres, summary: Summary
) -> None:
    cluster = cluster_factory(
        "postgres", "--ttl", str(TTL), "--duration", "60", "--jobs", "5",
        store_url=private_postgres.url,
    )  # fmt: skip
    report = _restart_scenario(cluster, private_postgres.stop_immediate, private_postgres.start)
    summary(f"[postgres] private PostgreSQL stop -m immediate: {report.line()}")
    assert report.lock_errors > 0
    _assert_each_started_once(report)


_HERDS: dict[str, Report] = {}


@pytest.fixture(params=STORES)
def herd(
    request: pytest.FixtureRequest, cluster_factory: ClusterFactory, summary: Summary
) -> Report:
    """Five nodes started together: an anchored interval job, and two jobs whose first
    occurrence is already due at start (``once()`` and ``start_immediately``)."""
    store = request.param
    if store in _HERDS:  # one cluster run serves both tests
        return _HERDS[store]
    # Runs last 1.5 s, so nodes that start while the first holds the due occurrence are
    # refused with a retry_after and ask again (the path that once mis-keyed it).
    cluster = cluster_factory(
        store, "--ttl", str(TTL), "--duration", "5", "--due", "--jobs", "3",
        "--job-seconds", "1.5",
    )  # fmt: skip
    for n in range(5):
        cluster.start(f"n{n}")
    cluster.wait_started()
    cluster.finish()
    report = check(cluster.history)
    summary(f"[{store}] five nodes started together: {report.line()}")
    _HERDS[store] = report
    return report


def test_five_nodes_starting_together_claim_each_interval_occurrence_once(herd: Report) -> None:
    interval_runs = [r for r in herd.events("start") if (r.job or "").startswith("job")]
    assert len(interval_runs) >= 6
    assert len({r.occurrence_key for r in interval_runs}) == len(interval_runs)
    assert herd.twice_accepted == []


def test_five_nodes_starting_together_with_an_occurrence_already_due_claim_it_once(
    herd: Report,
) -> None:
    assert len(herd.events("start", job="due_once")) == 1
    assert len(herd.events("start", job="due_immediately")) == 1


@pytest.mark.parametrize("store", STORES)
def test_a_partitioned_leader_stops_by_its_deadline_and_a_short_partition_changes_nothing(
    cluster_factory: ClusterFactory, proxy_factory: type[FaultProxy], store: str, summary: Summary
) -> None:
    cluster = cluster_factory(
        store, "--elector", "--ttl", str(TTL), "--retry", str(RETRY), "--duration", "40",
        "--jobs", "2", "--interval", "0.25",
    )  # fmt: skip
    host, port = cluster.store_url.split("//")[1].split("/")[0].split("@")[-1].split(":")
    proxy = proxy_factory(host, int(port))
    cluster.start("cut", store_url=cluster.store_url.replace(f"{host}:{port}", proxy.url_host))
    cluster.wait_started()
    wait_for(lambda: check(cluster.history).events("start"), 10, "the proxied node to lead")
    cluster.start("n1")
    cluster.start("n2")
    cluster.wait_started()

    def nodes_since(moment: float) -> set[str]:
        return {r.node for r in check(cluster.history).events("start") if r.ts.timestamp() > moment}

    short_at = time.time()
    proxy.blackhole()
    time.sleep(0.4)
    proxy.heal()
    time.sleep(TTL + 1)
    assert nodes_since(short_at) == {"cut"}  # no failover for a short partition

    long_at = time.time()
    proxy.blackhole()
    heir = wait_for(
        lambda: [r for r in check(cluster.history).events("start") if r.node != "cut"],
        TTL + RETRY + 5,
        "another node to lead",
    )
    time.sleep(1)
    proxy.heal()
    time.sleep(1)
    for node in cluster.processes:
        cluster.signal(node, signal.SIGTERM)
    cluster.finish()
    report = check(cluster.history, strict_tokens=False)
    last_cut = max(r.ts.timestamp() for r in report.events("start") if r.node == "cut")
    stopped, failover = last_cut - long_at, _first(heir).ts.timestamp() - long_at
    report.extra.update(cut_stopped_after_s=round(stopped, 2), failover_s=round(failover, 2))
    summary(f"[{store}] leader partitioned (0.4 s, then > ttl): {report.line()}")
    # It stops at its own deadline (under 0.99 x ttl after its last renewal began); the
    # 0.2 s allows for the history write that records a start.
    assert stopped < TTL + 0.2
    assert last_cut < _first(heir).ts.timestamp()  # the two leaders never overlap
    assert failover <= TTL + RETRY + 0.25 + 0.5
    assert report.twice_started == []
    assert nodes_since(long_at + TTL) <= {_first(heir).node}
