"""Private Redis and PostgreSQL servers, on free ports, that tests may kill and restart.

The shared servers are never touched. PostgreSQL refuses to run as root, so when the
tests run as root the private cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


class PrivateRedis:
    """``redis-server`` without persistence: a restart loses every key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="gnomon-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def kill(self) -> None:
        """Stop at once, like a crash: the data is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (``initdb`` + ``postgres``) with trust auth."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="gnomon-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._user = _run_as()
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self._as_owner(
            [
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, command: list[str]) -> None:
        subprocess.run(command, check=True, capture_output=True, user=self._owner())

    def _owner(self) -> int | None:
        return None if self._user is None else self._user.pw_uid

    def start(self) -> None:
        command = [
            "postgres",
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, user=self._owner()
            )
        wait_for_port(self.port)
        self._wait_accepting()

    def _wait_accepting(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop_immediate(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, crash recovery at the next start."""
        self._as_owner(["pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w"])
        if self.process is not None:
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.stop_immediate()
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("postgres")
