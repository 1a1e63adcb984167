"""What a job does: run a command in its own process group, or call a Python function.

A command runs with ``start_new_session=True`` so that terminating it reaches everything
it started (a shell's children included), and its output is read line by line: each line
is logged, and a bounded tail is kept for the failure report.

A command job's task is registered under ``command:<job name>`` and looks its command up
when it runs, so that a reload that changes the command needs no new registration (a task
name stays bound to one function for the life of a process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO

from gnomon._cli._config import CommandAction
from gnomon._cli._secrets import mask_secrets
from gnomon._events import JobContext
from gnomon._stores.contract import CommandResult

__all__ = ["KILL_GRACE", "CommandFailed", "ProcessGroups", "command_task"]

KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when a command's process group is terminated."""
TAIL_LINES = 20
TAIL_CHARS = 4000
LINE_CHARS = 2000
_POLL = 0.05

OutputSink = Callable[[JobContext, str], None]


class CommandFailed(Exception):
    """A command exited with a non-zero status, or was killed by a signal.

    ``result`` is what history keeps of it: the exit status and the output's tail, with
    passwords in URLs masked.
    """

    def __init__(self, exit_status: int, output: str, *, terminated_because: str = "") -> None:
        self.exit_status = exit_status
        self.output = output
        self.result = CommandResult(exit_status, mask_secrets(output) or None)
        ending = describe_exit(exit_status)
        super().__init__(
            f"terminated {terminated_because}: {ending}" if terminated_because else ending
        )


def describe_exit(exit_status: int) -> str:
    if exit_status < 0:
        try:
            name = signal.Signals(-exit_status).name
        except ValueError:
            name = f"signal {-exit_status}"
        return f"killed by {name}"
    return f"exited with status {exit_status}"


class ProcessGroups:
    """The commands in flight, so that a stop can wait for them and then terminate them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen[bytes]] = set()
        self.stopping = threading.Event()
        self.terminating = threading.Event()

    def add(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.add(process)

    def discard(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.discard(process)

    def begin_stop(self) -> None:
        """From now on a run's cancellation waits for :meth:`terminate_all`: the stop
        timeout belongs to the runs."""
        self.stopping.set()

    def terminate_all(self, timeout: float) -> int:
        """Terminate every command still running and wait up to ``timeout`` for them to
        end; returns how many are still there."""
        self.terminating.set()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                left = len(self._processes)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(_POLL)


class _Tail:
    """The last lines of a command's output, bounded in lines and characters."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self._lines)[-TAIL_CHARS:]


def command_task(
    name: str, commands: Mapping[str, CommandAction], groups: ProcessGroups, sink: OutputSink
) -> Callable[[JobContext], CommandResult]:
    """The task of the command job ``name``: it runs ``commands[name]`` as it is when the
    run starts; the scheduler injects its ``JobContext``."""

    def run_command(context: JobContext) -> CommandResult:
        return _run(commands[name], groups, sink, context)

    return run_command


def _run(
    action: CommandAction, groups: ProcessGroups, sink: OutputSink, context: JobContext
) -> CommandResult:
    process = _spawn(action, context)
    tail = _Tail()
    reader = threading.Thread(
        target=_pump,
        args=(process.stdout, tail, sink, context),
        name=f"gnomon output {context.job_name}",
        daemon=True,
    )
    reader.start()
    groups.add(process)
    try:
        exit_status, terminated_because = _wait(process, groups, context)
    finally:
        groups.discard(process)
    # A background grandchild may hold the pipe open; its output is not worth a hang.
    reader.join(timeout=1.0)
    if exit_status != 0:
        raise CommandFailed(exit_status, tail.text(), terminated_because=terminated_because)
    # A success keeps no output, as before stores: the log has every line.
    return CommandResult(exit_status, None)


def _spawn(action: CommandAction, context: JobContext) -> subprocess.Popen[bytes]:
    """Start the command in a new session, so that its process group is its own."""
    environment = {
        **os.environ,
        **dict(action.env),
        "GNOMON_JOB": context.job_name,
        "GNOMON_OCCURRENCE": context.occurrence_key,
        "GNOMON_SCHEDULED_AT": context.scheduled_at.isoformat(),
    }
    return subprocess.Popen(  # noqa: S603 - running the user's command is the point
        action.program(),
        cwd=action.cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _pump(stream: IO[bytes] | None, tail: _Tail, sink: OutputSink, context: JobContext) -> None:
    if stream is None:
        return
    with stream:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")[:LINE_CHARS]
            tail.add(line)
            sink(context, line)


def _wait(
    process: subprocess.Popen[bytes], groups: ProcessGroups, context: JobContext
) -> tuple[int, str]:
    """The exit status, and why gnomon terminated the command (empty if it did not)."""
    while True:
        try:
            return process.wait(timeout=_POLL), ""
        except subprocess.TimeoutExpired:
            pass
        if groups.terminating.is_set():
            return _terminate(process), "because gnomon stopped"
        if context.cancelled.is_set() and not groups.stopping.is_set():
            return _terminate(process), "on cancellation (timeout or removal)"


def _terminate(process: subprocess.Popen[bytes]) -> int:
    _signal_group(process, signal.SIGTERM)
    try:
        return process.wait(timeout=KILL_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        return process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
