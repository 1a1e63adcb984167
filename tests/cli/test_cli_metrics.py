"""``--metrics``: Prometheus metrics that count the runs that happened, and ``/healthz``;
and the command without prometheus-client installed."""

from __future__ import annotations

import re
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cli_support import Daemon, Workspace, environment, wait_for
from prometheus_client.parser import text_string_to_metric_families

from gnomon._cli import EXIT_OK, EXIT_USAGE

StartDaemon = Callable[..., Daemon]


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a local test server
        return response.status, response.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_the_runs_in_the_state_file_and_healthz_answers_ok(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "tick"
        every = "200ms"
        max_runs = 3
        command = "true"

        [[jobs]]
        name = "boom"
        once = "now"
        command = "exit 2"
        """
    )
    daemon = start_daemon("--metrics", "0")
    announced = daemon.wait_for_message("metrics on http://")
    match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", announced["message"])
    assert match, "the metrics endpoint must bind loopback by default"
    base = f"http://127.0.0.1:{match.group(1)}"
    wait_for("three ticks", lambda: workspace.outcomes("tick") == ["success"] * 3)
    wait_for("the failure", lambda: workspace.outcomes("boom") == ["failed"])

    status, text = fetch(f"{base}/metrics")
    assert status == 200
    values = samples(text)
    assert values[("gnomon_runs_total", (("job", "tick"), ("outcome", "success")))] == 3
    assert values[("gnomon_runs_total", (("job", "boom"), ("outcome", "failed")))] == 1
    assert values[("gnomon_run_duration_seconds_count", (("job", "tick"),))] == 3
    assert values[("gnomon_scheduling_delay_seconds_count", (("job", "tick"),))] == 3
    assert values[("gnomon_running_jobs", (("job", "tick"),))] == 0
    assert fetch(f"{base}/healthz") == (200, "ok\n")

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK


def test_without_prometheus_client_the_command_works_and_metrics_is_a_usage_error(
    workspace: Workspace, tmp_path: Path
) -> None:
    import subprocess
    import sys

    # A package that fails to import stands in for a plain install without the extra.
    blocker = tmp_path / "blocked" / "prometheus_client"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ImportError('prometheus_client is not installed')\n"
    )
    workspace.write('[[jobs]]\nname = "a"\nevery = "1h"\ncommand = "true"\n')

    def gnomon(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gnomon", *arguments],
            cwd=workspace.root,
            env=environment(PYTHONPATH=str(blocker.parent)),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert gnomon("check").returncode == EXIT_OK
    refused = gnomon("run", "--metrics", "9100")
    assert refused.returncode == EXIT_USAGE
    assert "--metrics needs prometheus-client" in refused.stderr
    assert "gnomon[prometheus]" in refused.stderr
