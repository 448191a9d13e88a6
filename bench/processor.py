"""The returns service's (or the refund ledger's) EventProcessor alone, on a real database,
without the broker.

    python -m bench.processor [--flows 5000] [--batch 500] [--service returns|refunds]
                              [--order flows|topics] [--profile cprofile]

Feeds the benchmark's return flows (bench/backlog.py) to the processor in batches of `--batch`
records, the way the runtime hands it a fetched batch, and prints events/s and SQL statements
per event (counted with a cursor hook). For the ledger, the flows go through the returns
service first (in a database of its own) and the ledger is fed each flow's `order.paid` and
the `refund.requested` the returns service wrote. It isolates the service's own work per
event from the broker, the relay and the other processes of `make bench`: the figure to watch
while changing the hot path. Uses DATABASE_URL's server when given, else a throwaway cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import event, func, select

from aftersales_dev.devenv import (
    LocalPostgres,
    create_database,
    drop_database,
    find_postgres_bindir,
)
from faults import events as ev
from services.complaints.bootstrap import build as build_complaints
from services.refunds.bootstrap import build as build_refunds
from services.returns.bootstrap import build as build_returns
from shared import heap
from shared.clock import SystemClock
from shared.contracts import topics
from shared.db import create_engine, session_factory
from shared.migrations import upgrade
from shared.policy import Policy

from .backlog import complaint_flow_events, flow_events


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def records(
    flows: int, events: Callable[..., list[dict[str, object]]] = flow_events
) -> list[FakeRecord]:
    """The flows in the order a backlog is fetched: each flow's events in order, interleaved."""
    run_id = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    out: list[FakeRecord] = []
    for n in range(flows):
        for item in events(run_id, n, now):
            out.append(
                FakeRecord(
                    ev.topic_of(item), 0, len(out), ev.key_of(item).encode(), ev.encode(item)
                )
            )
    return out


def in_turn(fed: Sequence[FakeRecord], batch: int) -> list[FakeRecord]:
    """The records as a consumer fetches a backlog of several topics: batches of one topic
    each (a partition's records come together), the topics in turn, each in its own order.
    A flow's events then arrive in different batches, some before the event they follow (a
    return requested before its order is paid): the work a real backlog costs, where `records`
    hands each flow's events over together."""
    by_topic: dict[str, list[FakeRecord]] = {}
    for record in fed:
        by_topic.setdefault(record.topic, []).append(record)
    out: list[FakeRecord] = []
    for begin in range(0, max(map(len, by_topic.values()), default=0), batch):
        for records_of_topic in by_topic.values():
            out.extend(records_of_topic[begin : begin + batch])
    return out


async def ledger_records(url: str, flows: int, batch: int) -> list[FakeRecord]:
    """Each flow's `order.paid` and the `refund.requested` the returns service wrote for it,
    in the order a backlog of both topics is fetched."""
    fed = records(flows)
    database = await create_database(url, "bench_processor_returns")
    try:
        await asyncio.to_thread(upgrade, "returns", database)
        engine = create_engine(database, pool_size=2)
        definition = build_returns(Policy(), SystemClock())
        processor = definition.processor(session_factory(engine), SystemClock())
        for begin in range(0, len(fed), batch):
            await processor.process(fed[begin : begin + batch])
        outbox = definition.tables.outbox
        async with session_factory(engine)() as session:
            rows = (
                await session.execute(
                    select(outbox.c.key, outbox.c.payload)
                    .where(outbox.c.event_type == "refund.requested")
                    .order_by(outbox.c.id)
                )
            ).all()
        await engine.dispose()
    finally:
        await drop_database(url, database)
    requested = {key: payload for key, payload in rows}
    out: list[FakeRecord] = []
    for record in fed:
        if record.topic == topics.ORDERS:
            out.append(record)
            key = (record.key or b"").decode()
            out.append(FakeRecord(topics.REFUND_REQUESTS, 0, len(out), record.key, requested[key]))
    return out


def print_profile(profiler: cProfile.Profile) -> None:
    """The profile's top functions: BENCH_SORT (tottime) and BENCH_TOP (30) choose them."""
    stats = pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "tottime"))
    stats.print_stats(int(os.environ.get("BENCH_TOP", "30")))


async def measure(
    url: str, flows: int, batch: int, profile: bool, service: str, order: str = "flows"
) -> None:
    if service == "complaints":
        warm = records(min(flows, 200), complaint_flow_events)
        fed = records(flows, complaint_flow_events)
        build, output = build_complaints, "coupon.granted"
    elif service == "refunds":
        warm, fed = (
            await ledger_records(url, min(flows, 200), batch),
            await ledger_records(url, flows, batch),
        )
        build, output = build_refunds, "refund.issued"
    else:
        # Warm up (compiled statement caches, imports) on flows of their own.
        warm, fed = records(min(flows, 200)), records(flows)
        build, output = build_returns, "refund.requested"
    if order == "topics":
        warm, fed = in_turn(warm, batch), in_turn(fed, batch)
    database = await create_database(url, "bench_processor")
    try:
        await asyncio.to_thread(upgrade, service, database)
        engine = create_engine(database, pool_size=2)
        statements = 0

        def count(*_: object) -> None:
            nonlocal statements
            statements += 1

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        definition = build(Policy(), SystemClock())
        processor = definition.processor(session_factory(engine), SystemClock())
        await processor.process(warm)
        # As `aftersales run` does once its services have started (`shared.heap.settle`), so
        # the figure is the one a service process pays.
        heap.settle()
        statements = 0
        profiler = cProfile.Profile() if profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        for begin in range(0, len(fed), batch):
            await processor.process(fed[begin : begin + batch])
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        async with session_factory(engine)() as session:
            outbox = definition.tables.outbox
            refunds = await session.scalar(
                select(func.count()).where(outbox.c.event_type == output)
            )
        await engine.dispose()
        print(
            f"{len(fed):,} events in {elapsed:.2f} s: {len(fed) / elapsed:,.0f} events/s, "
            f"{1e6 * elapsed / len(fed):.0f} µs/event ({1e6 * cpu / len(fed):.0f} µs of it "
            "this process's CPU), "
            f"{statements / len(fed):.2f} statements/event (batches of {batch}, {order}); "
            f"{output} queued: {refunds:,}"
        )
        if profiler is not None:
            print_profile(profiler)
    finally:
        gc.unfreeze()
        await drop_database(url, database)


async def main_async(args: argparse.Namespace) -> None:
    url = os.environ.get("DATABASE_URL")
    if url:
        await measure(
            url, args.flows, args.batch, args.profile == "cprofile", args.service, args.order
        )
        return
    with LocalPostgres(bindir=find_postgres_bindir()) as pg:
        await measure(
            pg.url, args.flows, args.batch, args.profile == "cprofile", args.service, args.order
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--service", choices=["returns", "refunds", "complaints"], default="returns"
    )
    parser.add_argument(
        "--order",
        choices=["flows", "topics"],
        default="flows",
        help="flows: each flow's events together; topics: batches of one topic in turn",
    )
    parser.add_argument("--profile", choices=["cprofile"], default=None)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
