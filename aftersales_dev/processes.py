"""Shared pieces of the local broker and database: errors, ports, logs, child processes.

Everything started here and still running is stopped when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class LocalServer:
    """A local server process of the dev tools, used as a `with` block: started on entry,
    stopped on exit. Subclasses provide start, stop, is_running, host and port."""

    host: str
    port: int

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def is_running(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


class DevEnvError(RuntimeError):
    """A local service could not be started or stopped."""


class PostgresNotFoundError(DevEnvError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) were found."""


# --------------------------------------------------------------------------------------------
# small helpers


def log(message: str) -> None:
    """A short progress line on stderr (``make run`` shows these)."""
    print(f"[devenv] {message}", file=sys.stderr, flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it by binding port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (SO_REUSEADDR, like the servers themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Wait until a TCP connection to host:port succeeds; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{host}:{port} did not accept connections within {timeout:.0f}s ({last_error})"
            )
        time.sleep(0.05)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file (ANSI colours removed), or a note when it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C")
    env["NO_COLOR"] = "1"
    if extra:
        env.update(extra)
    return env


def process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Everything started here and still running is stopped when the interpreter exits.
running: set[Any] = set()
running_lock = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    with running_lock:
        leftovers = list(running)
    for service in leftovers:
        with contextlib.suppress(Exception):
            service.stop()
