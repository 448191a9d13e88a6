"""Operations on the stored data and the topics: reports, a refund ledger, the notifier's keys
and erasure, dead letters, sending events, purging, parked outbox events."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from aftersales.commands.database import require_database
from aftersales.registry import Environment, definition, environment, service_names
from shared.logs import quiet


def report(args: argparse.Namespace) -> int:
    from services.followup import report
    from services.refunds import report as refunds

    env = environment()
    require_database(env.settings.database_url, schemas=[args.subject])
    period = {"since": args.since, "until": args.until}
    if args.subject == "refunds":
        if args.shop is not None:
            raise ValueError("--shop is for the follow-up report; refunds are not per shop")
        return int(refunds.main(env.settings.database_url, env.policy, **period, fmt=args.format))
    if args.format != "table":
        raise ValueError("--format is for `report refunds`; the follow-up report is a table")
    return int(report.main(env.settings.database_url, env.policy, **period, shop=args.shop))


def refunds(args: argparse.Namespace) -> int:
    from services.refunds import report

    env = environment()
    require_database(env.settings.database_url, schemas=["refunds"])
    return int(report.show_ledger(env.settings.database_url, args.order_id))


def notifier_rotate_keys(args: argparse.Namespace) -> int:
    from services.notifier import keys

    env = environment()
    require_database(env.settings.database_url, schemas=["notifier"])
    return int(keys.main(env.settings))


def notifier_erase(args: argparse.Namespace) -> int:
    from services.notifier import erasure

    env = environment()
    require_database(env.settings.database_url, schemas=["notifier"])
    return int(erasure.main(env.settings, args.customer_id))


def dlq(args: argparse.Namespace) -> int:
    from shared.messaging.deadletters import list_dead_letters, replay_dead_letters

    env = environment()
    with quiet("aiokafka"):
        if args.action == "list":
            return asyncio.run(
                list_dead_letters(env.settings, args.service, args.reason, args.limit)
            )
        return asyncio.run(replay_dead_letters(env.settings, args.service, args.reason, args.limit))


def send_events(args: argparse.Namespace) -> int:
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


def purge(args: argparse.Namespace) -> int:
    env = environment()
    names = service_names(args.service)
    require_database(env.settings.database_url, schemas=names)
    return asyncio.run(purge_services(env, names, dry_run=args.dry_run))


async def purge_services(env: Environment, names: Sequence[str], *, dry_run: bool) -> int:
    from shared.db import command_engine, session_factory
    from shared.messaging.retention import RetentionPeriods, purge

    periods = RetentionPeriods.from_settings(env.settings)
    async with command_engine(env.settings.database_url) as engine:
        for name in names:
            retained = definition(name, env.policy, env.clock, env.settings).retained
            counts = await purge(
                session_factory(engine), retained, periods, env.clock.now(), dry_run=dry_run
            )
            verb = "would delete" if dry_run else "deleted"
            listed = ", ".join(f"{table} {n}" for table, n in counts.items())
            print(f"{name}: {verb} {listed}")
    return 0


def outbox(args: argparse.Namespace) -> int:
    from shared.messaging.parked import main as outbox_main

    env = environment()
    require_database(env.settings.database_url, schemas=[args.service])
    ids = None if args.action == "list" or getattr(args, "all", False) else args.ids
    return asyncio.run(outbox_main(env.settings.database_url, args.service, args.action, ids))
