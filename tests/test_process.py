"""Process-level behaviour: signals for run_forever, and a scheduler that crossed a fork."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import gnomon

RUN_FOREVER = textwrap.dedent(
    """
    import sys, gnomon

    def tick():
        print("tick", flush=True)

    s = gnomon.Scheduler()
    s.add_job(tick, gnomon.every("50ms"))
    s.run_forever()
    print("stopped cleanly", flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_forever_returns_cleanly_on_a_stop_signal(signum: int) -> None:
    child = subprocess.Popen([sys.executable, "-c", RUN_FOREVER], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "tick"  # it is running: now stop it
    child.send_signal(signum)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    assert out.splitlines()[-1] == "stopped cleanly"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_scheduler_started_before_fork_refuses_to_work_in_the_child() -> None:
    s = gnomon.Scheduler()
    s.start()
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what using the scheduler does, then leave
            try:
                s.add_job(print, gnomon.every(1))
                verdict = b"no error"
            except gnomon.SchedulerForked as exc:
                verdict = b"forked: " + str(exc).encode()
            os.write(write, verdict)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            verdict = pipe.read()
        os.waitpid(pid, 0)
    finally:
        s.shutdown()
    assert verdict.startswith(b"forked: ")
    assert b"create the scheduler after the fork" in verdict
