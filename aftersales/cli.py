"""The `aftersales` command: migrate, run services, local development, dead-letter tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from aftersales.registry import (
    SERVICES,
    Environment,
    definition,
    environment,
    preflight,
    service_names,
)
from aftersales.simulation.commands import add_commands as add_simulation_commands
from shared.logs import quiet
from shared.migrations import SchemaNotCurrent
from shared.policy import PolicyError, load_policy

if TYPE_CHECKING:
    from shared.messaging.runtime import ServiceRuntime

log = logging.getLogger("aftersales.cli")
# How long `migrate`, `run` and `report` try to reach the database before giving up.
DATABASE_PROBE_SECONDS = 10.0


class DatabaseUnreachable(Exception):
    """DATABASE_URL cannot be connected to (down, unknown host, no such database, refused)."""


# Exit codes (docs/operations.md, "Settings and commands"): 0 done; 1 a check found something (stale
# documents, no such parked event); 2 bad input or configuration, or the database or the broker
# cannot be reached (one line on stderr naming what and what to do); 130 interrupted.
EXIT_PROBLEM = 2


def main(argv: Sequence[str] | None = None) -> int:
    from aiokafka.errors import KafkaConnectionError
    from sqlalchemy.exc import DBAPIError

    from shared.logs import configure_logging
    from shared.settings import SettingsError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(
            os.environ.get("AFTERSALES_LOG_LEVEL", "INFO"),
            getattr(args, "log_format", None) or os.environ.get("AFTERSALES_LOG_FORMAT"),
        )
        return int(args.func(args) or 0)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"aftersales: {problem}", file=sys.stderr)
        return EXIT_PROBLEM
    except (PolicyError, ValueError, SchemaNotCurrent, DatabaseUnreachable) as exc:
        print(f"aftersales: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KafkaConnectionError as exc:
        print(f"aftersales: {broker_unreachable(exc)}", file=sys.stderr)
        return EXIT_PROBLEM
    except OSError as exc:  # a file or directory named on the command line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"aftersales: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_PROBLEM
    except DBAPIError as exc:  # the schemas are checked first; this is what else it refused
        from shared.messaging.errors import describe_failure

        print(
            f"aftersales: the database refused the command ({describe_failure(exc)}); "
            "is DATABASE_URL the platform's database, migrated by `aftersales migrate`?",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return 130


def broker_unreachable(exc: BaseException) -> str:
    """One line for a broker that cannot be reached: where, and what to check."""
    from shared.settings import DEFAULT_BOOTSTRAP

    where = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP
    return (
        f"cannot reach the Kafka broker at {where}: {type(exc).__name__}; is it running, and are "
        "KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL right?"
    )


def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    parser = argparse.ArgumentParser(
        prog="aftersales",
        description=__doc__,
        epilog="exit codes: 0 done; 1 the command ran and has something to report (stale "
        "documents, an event the broker refused...); 2 it could not start: bad arguments, "
        "settings or input, the database or broker unreachable, a schema to migrate (one line "
        "on stderr saying what and what to do); 130 interrupted",
    )
    try:
        installed = version("aftersales")
    except PackageNotFoundError:  # run from a checkout that was never installed
        installed = "unknown"
    parser.add_argument("--version", action="version", version=f"aftersales {installed}")
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="apply every service's migrations (own schema each)")
    migrate.add_argument(
        "service", nargs="?", default="all", help=f"one of {', '.join(SERVICES)} or all"
    )
    migrate.set_defaults(func=_migrate)

    run = sub.add_parser("run", help="run services (one, several, or all) in one process")
    run.add_argument(
        "service",
        nargs="*",
        help=f"one or more of {', '.join(SERVICES)}, or all (default: AFTERSALES_SERVICE, "
        "the service an image is built for)",
    )
    run.add_argument("--port", type=int, default=None, help="HTTP port for health and metrics")
    run.set_defaults(func=_run)

    dev = sub.add_parser(
        "dev",
        help="local system: embedded broker and PostgreSQL when none configured, migrate, "
        "run every service and play the demo",
    )
    dev.add_argument("--exit-after-demo", action="store_true", help="stop once the demo is done")
    dev.add_argument("--log-format", default="text", choices=["text", "json"])
    dev.set_defaults(func=_dev)

    demo = sub.add_parser("demo", help="play the demo scenario against a running system")
    demo.set_defaults(func=_demo)

    topics = sub.add_parser("topics", help="create every topic the services read and write")
    topics.set_defaults(func=_topics)

    policy = sub.add_parser("policy", help="validate a policy file and print the effective values")
    policy.add_argument("file", nargs="?", default=None)
    policy.set_defaults(func=_policy)

    report = sub.add_parser(
        "report",
        help="follow-up figures per shop (CSAT, response and on-time rate), or `report "
        "refunds`: refunds per day and case type",
    )
    report.add_argument("subject", nargs="?", default="followup", choices=["followup", "refunds"])
    report.add_argument("--since", type=_date, default=None, help="first local date, YYYY-MM-DD")
    report.add_argument("--until", type=_date, default=None, help="last local date, YYYY-MM-DD")
    report.add_argument("--shop", default=None, help="only this shop (followup)")
    report.add_argument(
        "--format", default="table", choices=["table", "csv", "json"], help="(refunds)"
    )
    report.set_defaults(func=_report)

    ledger = sub.add_parser("refunds", help="print one order's refund ledger")
    ledger.add_argument("order_id")
    ledger.set_defaults(func=_refunds)

    notifier = sub.add_parser("notifier", help="notifier maintenance")
    notifier_sub = notifier.add_subparsers(dest="notifier_command", required=True)
    rotate = notifier_sub.add_parser(
        "rotate-keys", help="re-encrypt every stored contact with the primary key of the ring"
    )
    rotate.set_defaults(func=_notifier_rotate_keys)
    erase = notifier_sub.add_parser(
        "erase", help="forget one buyer's contact data (contact, masked recipients, events)"
    )
    erase.add_argument("customer_id")
    erase.set_defaults(func=_notifier_erase)

    asyncapi = sub.add_parser(
        "asyncapi", help="write every service's AsyncAPI document to docs/asyncapi/"
    )
    asyncapi.add_argument("--check", action="store_true", help="fail when they are stale")
    asyncapi.add_argument("--dir", default="docs/asyncapi")
    asyncapi.set_defaults(func=_asyncapi)

    openapi = sub.add_parser(
        "openapi", help="write each service's read API document (OpenAPI) to docs/openapi/"
    )
    openapi.add_argument("--check", action="store_true", help="fail when they are stale")
    openapi.add_argument("--dir", default="docs/openapi")
    openapi.set_defaults(func=_openapi)

    console = sub.add_parser(
        "console",
        help="the operations console: web pages over the services' read APIs (needs "
        "AFTERSALES_CONSOLE_TOKEN and AFTERSALES_CONSOLE_SERVICES outside development mode)",
    )
    console.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    console.set_defaults(func=_console)

    dlq = sub.add_parser("dlq", help="inspect or replay a service's dead-letter topic")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_help = {
        "list": "print a service's dead letters: when, origin (topic/partition@offset), reason "
        "and detail",
        "replay": "publish the dead-lettered records again to their original topic and key "
        "(after the producer or the service was fixed); masked or too old copies are refused",
    }
    for name in ("list", "replay"):
        cmd = dlq_sub.add_parser(name, help=dlq_help[name], description=dlq_help[name])
        cmd.add_argument(
            "service", choices=list(SERVICES), help="whose topic: aftersales.deadletter.SERVICE"
        )
        cmd.add_argument("--reason", default=None, help="only dead letters with this reason")
        cmd.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
        cmd.set_defaults(func=_dlq, action=name)

    send = sub.add_parser(
        "send",
        help="validate CloudEvents (a file, several, or stdin) and publish each to its topic",
        description="Validate CloudEvents as the services do (the envelope, the event's data, "
        "the type on its topic) and publish each to the topic its type belongs on, keyed by "
        "its order_id (or customer_id). A file may hold one event, several one after another, "
        "or one per line; every event is checked before any is sent.",
        epilog="exit codes: 0 sent; 1 the broker refused an event (those before it were sent); "
        "2 nothing sent: a file unreadable, an event invalid (its reason and field named), or "
        "the broker unreachable",
    )
    send.add_argument(
        "files", nargs="*", metavar="FILE", help="files of CloudEvents JSON; - or none: stdin"
    )
    send.set_defaults(func=_send)

    purge = sub.add_parser(
        "purge", help="delete technical rows and case records past their retention periods"
    )
    purge.add_argument(
        "service", nargs="?", default="all", help=f"one of {', '.join(SERVICES)} or all"
    )
    purge.add_argument("--dry-run", action="store_true", help="only count what would go")
    purge.set_defaults(func=_purge)

    outbox = sub.add_parser(
        "outbox", help="outbox events the broker refused (parked): list them or re-queue them"
    )
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True)
    outbox_list = outbox_sub.add_parser("list", help="parked events, oldest first")
    outbox_list.add_argument("service", choices=list(SERVICES))
    outbox_list.set_defaults(func=_outbox, action="list")
    outbox_retry = outbox_sub.add_parser(
        "retry", help="give parked events back to the relay (after raising the broker's limit)"
    )
    outbox_retry.add_argument("service", choices=list(SERVICES))
    which = outbox_retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, action="append", dest="ids", help="one parked event")
    which.add_argument("--all", action="store_true", help="every parked event of the service")
    outbox_retry.set_defaults(func=_outbox, action="retry")
    add_simulation_commands(sub)  # record, simulate
    return parser


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD") from None


def _migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade

    env = environment()
    require_database(env.settings.database_url)
    for name in service_names(args.service):
        print(f"migrating {name} (schema {name})", file=sys.stderr)
        upgrade(name, env.settings.database_url)
    return 0


def _run(args: argparse.Namespace) -> int:
    env = environment()
    port = args.port if args.port is not None else env.settings.aftersales_http_port
    names = service_names(*_services_to_run(args.service))
    require_database(env.settings.database_url)
    asyncio.run(serve(names, port=port))
    return 0


def _services_to_run(named: Sequence[str]) -> Sequence[str]:
    if named:
        return named
    from_image = os.environ.get("AFTERSALES_SERVICE", "").split()
    if not from_image:
        raise ValueError(
            f"name the services to run ({', '.join(SERVICES)} or all), or set AFTERSALES_SERVICE"
        )
    return from_image


async def serve(names: Sequence[str], *, port: int, until: asyncio.Event | None = None) -> None:
    """Run services until SIGTERM/SIGINT (or `until`), then shut down gracefully."""
    from aftersales.http import http_server, require_free_port
    from shared.messaging.runtime import ServiceRuntime
    from shared.migrations import check_current

    require_free_port(port)
    env = environment()
    for name in names:
        preflight(name, env.settings)
        await check_current(name, env.settings.database_url)
    runtimes = [
        ServiceRuntime(
            definition(name, env.policy, env.clock, env.settings), env.settings, env.clock
        )
        for name in names
    ]
    stop = until or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with quiet("aiokafka"):  # an unreachable broker is the command's one line, not the client's
        await start_together(runtimes)
    server = http_server(runtimes, port, env.policy)
    server_task = asyncio.create_task(server.serve())
    log.info("serving", extra={"services": ",".join(names), "http_port": port})
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        # Together: with `run all`, no service goes on fetching while another one stops.
        stopped = await asyncio.gather(*(r.stop() for r in runtimes), return_exceptions=True)
        server.should_exit = True
        await server_task
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for result in stopped:
            if isinstance(result, BaseException):
                raise result


async def start_together(runtimes: Sequence[ServiceRuntime]) -> None:
    """Start every runtime at once: each one's consumer group join takes seconds, so `run all`
    is ready in about the time of the slowest, not the sum. When one fails to start, those
    that started are stopped again and the first failure is raised."""
    from shared.messaging.runtime import ensure_topics

    if not runtimes:
        return
    # Every topic once, before the services race to create the ones they share.
    wanted = sorted({topic for r in runtimes for topic in r.definition.all_topics})
    await ensure_topics(runtimes[0].settings, wanted)
    started = await asyncio.gather(*(r.start() for r in runtimes), return_exceptions=True)
    failures = [result for result in started if isinstance(result, BaseException)]
    if not failures:
        return
    for runtime, result in zip(runtimes, started, strict=True):
        if not isinstance(result, BaseException):
            await runtime.stop()
    raise failures[0]


def _dev(args: argparse.Namespace) -> int:
    run_dev = _dev_tool("dev", "run_dev")
    return int(asyncio.run(run_dev(exit_after_demo=args.exit_after_demo)))


def _demo(args: argparse.Namespace) -> int:
    play = _dev_tool("demo", "play")
    env = environment()
    with quiet("aiokafka"):
        return int(asyncio.run(play(env.settings.kafka_bootstrap_servers, env.policy)))


def _dev_tool(module: str, name: str) -> Any:
    """A function of the development tools (aftersales_dev), looked up by name: they stand a
    layer above the application and are not installed in an image."""
    from importlib import import_module

    try:
        return getattr(import_module(f"aftersales_dev.{module}"), name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("aftersales_dev"):
            raise
        raise ValueError(
            f"`{module}` needs the development tools (aftersales_dev), which are not installed "
            "here; in a checkout run `make install`"
        ) from None


def _topics(args: argparse.Namespace) -> int:
    from shared.messaging.runtime import ensure_topics

    env = environment()
    topics: set[str] = set()
    for name in SERVICES:
        topics.update(definition(name, env.policy, env.clock).all_topics)
    with quiet("aiokafka"):
        asyncio.run(ensure_topics(env.settings, sorted(topics)))
    print("\n".join(sorted(topics)))
    return 0


def _policy(args: argparse.Namespace) -> int:
    path = args.file or os.environ.get("AFTERSALES_POLICY_FILE")
    policy = load_policy(path)
    print(f"policy {path or '(defaults)'} is valid:")
    print(policy.model_dump_json(indent=2))
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    from aftersales.asyncapi import write_or_check

    return _documents(args, "AsyncAPI", "asyncapi", write_or_check)


def _documents(
    args: argparse.Namespace, kind: str, command: str, write_or_check: Callable[..., list[str]]
) -> int:
    """Write the documents of `aftersales <command>`, or (--check) fail when they are stale."""
    from pathlib import Path

    stale = write_or_check(Path(args.dir), check=args.check)
    if args.check and stale:
        print(
            f"{kind} documents are stale (run `.venv/bin/aftersales {command}`): "
            + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    print(f"{kind} documents {'up to date' if not stale else 'written: ' + ', '.join(stale)}")
    return 0


def require_database(
    database_url: str,
    *,
    timeout: float = DATABASE_PROBE_SECONDS,
    schemas: Sequence[str] = (),
) -> None:
    """Connect once before any work, so that a database that is down, unknown or missing is
    one clear line naming host:port (never the password), not a driver's traceback; then
    the `schemas` (services) the command reads must be migrated (SchemaNotCurrent, one line)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    try:
        asyncio.run(_probe(database_url, timeout))
    except Exception as exc:  # any failure to connect is the answer
        reason = _reason(exc)
        if url.password:
            reason = reason.replace(url.password, "***")
        raise DatabaseUnreachable(f"cannot reach the database at {where}: {reason}") from None
    if schemas:
        from shared.migrations import check_current

        async def check() -> None:
            for service in schemas:
                await check_current(service, database_url)

        asyncio.run(check())


async def _probe(database_url: str, timeout: float) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(
        database_url, poolclass=NullPool, connect_args={"timeout": timeout}
    )
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout)
    finally:
        await engine.dispose()


def _reason(exc: BaseException) -> str:
    """The driver's own words: SQLAlchemy wraps asyncpg's error (`orig`, its `__cause__`)."""
    orig = getattr(exc, "orig", None)
    cause = getattr(orig, "__cause__", None) or orig or exc
    return str(cause).strip() or type(cause).__name__


def _report(args: argparse.Namespace) -> int:
    from services.followup import report
    from services.refunds import report as refunds

    env = environment()
    require_database(env.settings.database_url, schemas=[args.subject])
    if args.subject == "refunds":
        if args.shop is not None:
            raise ValueError("--shop is for the follow-up report; refunds are not per shop")
        return int(
            refunds.main(
                env.settings.database_url,
                env.policy,
                since=args.since,
                until=args.until,
                fmt=args.format,
            )
        )
    if args.format != "table":
        raise ValueError("--format is for `report refunds`; the follow-up report is a table")
    return int(
        report.main(
            env.settings.database_url,
            env.policy,
            since=args.since,
            until=args.until,
            shop=args.shop,
        )
    )


def _refunds(args: argparse.Namespace) -> int:
    from services.refunds import report

    env = environment()
    require_database(env.settings.database_url, schemas=["refunds"])
    return int(report.show_ledger(env.settings.database_url, args.order_id))


def _notifier_rotate_keys(args: argparse.Namespace) -> int:
    from services.notifier import keys

    env = environment()
    require_database(env.settings.database_url, schemas=["notifier"])
    return int(keys.main(env.settings))


def _notifier_erase(args: argparse.Namespace) -> int:
    from services.notifier import erasure

    env = environment()
    require_database(env.settings.database_url, schemas=["notifier"])
    return int(erasure.main(env.settings, args.customer_id))


def _openapi(args: argparse.Namespace) -> int:
    from aftersales.openapi import write_or_check

    return _documents(args, "OpenAPI", "openapi", write_or_check)


def _console(args: argparse.Namespace) -> int:
    from aftersales.console.server import console_config, serve_console
    from shared.settings import load_settings

    # Settings only: the console needs no policy file and no database.
    config = console_config(os.environ, load_settings(), list(SERVICES))
    if not os.environ.get("AFTERSALES_CONSOLE_TOKEN"):
        print(f"development token: {config.token}", file=sys.stderr)
    asyncio.run(serve_console(config, args.port))
    return 0


def _dlq(args: argparse.Namespace) -> int:
    from shared.messaging.deadletters import list_dead_letters, replay_dead_letters

    env = environment()
    with quiet("aiokafka"):
        if args.action == "list":
            return asyncio.run(
                list_dead_letters(env.settings, args.service, args.reason, args.limit)
            )
        return asyncio.run(replay_dead_letters(env.settings, args.service, args.reason, args.limit))


def _send(args: argparse.Namespace) -> int:
    from aftersales import send

    files = args.files or ["-"]
    outgoing = []
    for name in files:
        if name == "-":
            if sys.stdin.isatty():
                raise ValueError("send: name a file of CloudEvents, or pipe them into stdin")
            raw, origin = sys.stdin.buffer.read(), "stdin"
        else:
            try:
                with open(name, "rb") as fh:
                    raw = fh.read()
            except OSError as exc:
                raise ValueError(f"send: cannot read {name}: {exc.strerror}") from None
            origin = name
        outgoing.extend(send.check(raw, origin=origin))
    env = environment()
    try:
        with quiet("aiokafka"):
            return asyncio.run(send.publish(env.settings, outgoing, print))
    except send.BrokerRefused as exc:
        print(f"aftersales: {exc}", file=sys.stderr)
        return send.EXIT_REFUSED


def _purge(args: argparse.Namespace) -> int:
    env = environment()
    names = service_names(args.service)
    require_database(env.settings.database_url, schemas=names)
    return asyncio.run(_purge_services(env, names, dry_run=args.dry_run))


async def _purge_services(env: Environment, names: Sequence[str], *, dry_run: bool) -> int:
    from shared.db import create_engine, session_factory
    from shared.messaging.retention import RetentionPeriods, purge

    periods = RetentionPeriods.from_settings(env.settings)
    engine = create_engine(env.settings.database_url, pool_size=1)
    try:
        for name in names:
            retained = definition(name, env.policy, env.clock, env.settings).retained
            counts = await purge(
                session_factory(engine), retained, periods, env.clock.now(), dry_run=dry_run
            )
            verb = "would delete" if dry_run else "deleted"
            listed = ", ".join(f"{table} {n}" for table, n in counts.items())
            print(f"{name}: {verb} {listed}")
    finally:
        await engine.dispose()
    return 0


def _outbox(args: argparse.Namespace) -> int:
    from shared.messaging.parked import main as outbox_main

    env = environment()
    require_database(env.settings.database_url, schemas=[args.service])
    ids = None if args.action == "list" or getattr(args, "all", False) else args.ids
    return asyncio.run(outbox_main(env.settings.database_url, args.service, args.action, ids))


if __name__ == "__main__":
    raise SystemExit(main())
