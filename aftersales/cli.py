"""The `aftersales` command: migrate, run services, local development, dead-letter tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date

from aftersales.commands import devtools, documents, maintenance, serving
from aftersales.commands.database import DatabaseUnreachable
from aftersales.registry import SERVICES
from aftersales.simulation.commands import add_commands as add_simulation_commands
from shared.migrations import SchemaNotCurrent
from shared.policy import PolicyError

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
    migrate.set_defaults(func=serving.migrate)

    run = sub.add_parser("run", help="run services (one, several, or all) in one process")
    run.add_argument(
        "service",
        nargs="*",
        help=f"one or more of {', '.join(SERVICES)}, or all (default: AFTERSALES_SERVICE, "
        "the service an image is built for)",
    )
    run.add_argument("--port", type=int, default=None, help="HTTP port for health and metrics")
    run.set_defaults(func=serving.run)

    dev = sub.add_parser(
        "dev",
        help="local system: embedded broker and PostgreSQL when none configured, migrate, "
        "run every service and play the demo",
    )
    dev.add_argument("--exit-after-demo", action="store_true", help="stop once the demo is done")
    dev.add_argument("--log-format", default="text", choices=["text", "json"])
    dev.set_defaults(func=devtools.dev)

    demo = sub.add_parser("demo", help="play the demo scenario against a running system")
    demo.set_defaults(func=devtools.demo)

    topics = sub.add_parser("topics", help="create every topic the services read and write")
    topics.set_defaults(func=serving.topics)

    policy = sub.add_parser("policy", help="validate a policy file and print the effective values")
    policy.add_argument("file", nargs="?", default=None)
    policy.set_defaults(func=documents.check_policy)

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
    report.set_defaults(func=maintenance.report)

    ledger = sub.add_parser("refunds", help="print one order's refund ledger")
    ledger.add_argument("order_id")
    ledger.set_defaults(func=maintenance.refunds)

    notifier = sub.add_parser("notifier", help="notifier maintenance")
    notifier_sub = notifier.add_subparsers(dest="notifier_command", required=True)
    rotate = notifier_sub.add_parser(
        "rotate-keys", help="re-encrypt every stored contact with the primary key of the ring"
    )
    rotate.set_defaults(func=maintenance.notifier_rotate_keys)
    erase = notifier_sub.add_parser(
        "erase", help="forget one buyer's contact data (contact, masked recipients, events)"
    )
    erase.add_argument("customer_id")
    erase.set_defaults(func=maintenance.notifier_erase)

    asyncapi = sub.add_parser(
        "asyncapi", help="write every service's AsyncAPI document to docs/asyncapi/"
    )
    asyncapi.add_argument("--check", action="store_true", help="fail when they are stale")
    asyncapi.add_argument("--dir", default="docs/asyncapi")
    asyncapi.set_defaults(func=documents.asyncapi)

    openapi = sub.add_parser(
        "openapi", help="write each service's read API document (OpenAPI) to docs/openapi/"
    )
    openapi.add_argument("--check", action="store_true", help="fail when they are stale")
    openapi.add_argument("--dir", default="docs/openapi")
    openapi.set_defaults(func=documents.openapi)

    console = sub.add_parser(
        "console",
        help="the operations console: web pages over the services' read APIs (needs "
        "AFTERSALES_CONSOLE_TOKEN and AFTERSALES_CONSOLE_SERVICES outside development mode)",
    )
    console.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    console.set_defaults(func=serving.console)

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
        cmd.set_defaults(func=maintenance.dlq, action=name)

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
    send.set_defaults(func=maintenance.send_events)

    purge = sub.add_parser(
        "purge", help="delete technical rows and case records past their retention periods"
    )
    purge.add_argument(
        "service", nargs="?", default="all", help=f"one of {', '.join(SERVICES)} or all"
    )
    purge.add_argument("--dry-run", action="store_true", help="only count what would go")
    purge.set_defaults(func=maintenance.purge)

    outbox = sub.add_parser(
        "outbox", help="outbox events the broker refused (parked): list them or re-queue them"
    )
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True)
    outbox_list = outbox_sub.add_parser("list", help="parked events, oldest first")
    outbox_list.add_argument("service", choices=list(SERVICES))
    outbox_list.set_defaults(func=maintenance.outbox, action="list")
    outbox_retry = outbox_sub.add_parser(
        "retry", help="give parked events back to the relay (after raising the broker's limit)"
    )
    outbox_retry.add_argument("service", choices=list(SERVICES))
    which = outbox_retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, action="append", dest="ids", help="one parked event")
    which.add_argument("--all", action="store_true", help="every parked event of the service")
    outbox_retry.set_defaults(func=maintenance.outbox, action="retry")
    add_simulation_commands(sub)  # record, simulate
    return parser


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD") from None


if __name__ == "__main__":
    raise SystemExit(main())
