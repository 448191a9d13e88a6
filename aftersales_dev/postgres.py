"""The local PostgreSQL cluster: ``initdb`` + ``pg_ctl`` on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from aftersales_dev.processes import (
    DevEnvError,
    LocalServer,
    PostgresNotFoundError,
    clean_env,
    free_port,
    log,
    port_is_free,
    running,
    running_lock,
    tail,
    wait_for_port,
)

PG_OS_USER_FALLBACK = "aftersales-pg"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin for ".s.PGSQL.NNNNN"


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


class LocalPostgres(LocalServer):
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
    def pid(self) -> int | None:
        """The server's process (postmaster.pid), None when it is not running."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (DevEnvError, OSError, ValueError):
            return None

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
            env=clean_env({"HOME": str(self._base())}),
            check=False,
            **kwargs,
        )

    def _pg(self, program: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run one of the PostgreSQL programs (``pg_ctl``, ``initdb``, ``postgres``)."""
        return self._run([self._bin(program), *args], **kwargs)

    def _pg_ctl(
        self, action: str, *args: str, wait: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`pg_ctl <action>` on the data directory, waiting silently up to `wait` seconds (60:
        pg_ctl's own default) for it to finish."""
        data, seconds = str(self.data_dir), str(int(wait))
        return self._pg(
            "pg_ctl", action, "-D", data, *args, "-w", "-s", "-t", seconds, timeout=wait + 10
        )

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
        result = self._pg_ctl("start", "-l", str(self.log_path), wait=self.startup_timeout)
        if result.returncode != 0:
            raise DevEnvError(
                f"PostgreSQL did not start (pg_ctl status {result.returncode}): "
                f"{(result.stdout + result.stderr).strip()}\n"
                f"log {self.log_path}:\n{tail(self.log_path)}"
            )
        self._running = True
        with running_lock:
            running.add(self)
        try:
            wait_for_port(self.host, self.port, self.startup_timeout)
        except TimeoutError as exc:
            raise DevEnvError(f"{exc}\nlog {self.log_path}:\n{tail(self.log_path)}") from exc
        log(f"PostgreSQL ready: {self.url} ({time.monotonic() - started:.1f}s)")

    def _stop_stale(self) -> None:
        """A server left running in this data directory by a crashed earlier run."""
        if (self.data_dir / "postmaster.pid").exists():
            log(f"stopping a stale PostgreSQL server in {self.data_dir}")
            self._pg_ctl("stop", "-m", "immediate")

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
        with running_lock:
            running.discard(self)
        result = self._pg_ctl("stop", "-m", "fast", wait=self.stop_timeout)
        if result.returncode != 0:
            self._pg_ctl("stop", "-m", "immediate")
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
