"""The outbox relay alone, CPU per published row: `python -m bench.relay [--flows N] [--repeats N]`.

The returns service's processor fills its outbox from the benchmark's return flows (as in
`bench.processor`), then the relay of a `ServiceRuntime` (its own aiokafka producer, as in
`aftersales run`) publishes every row to the broker, `--repeats` times (the rows are made
unpublished again between passes). Each pass prints this process's CPU per published row
(time.process_time), which covers the relay's queries, its sends and the producer's work.
Uses KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL when given, else a local broker and a throwaway
PostgreSQL cluster (bench/backlog.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update

from services.returns.bootstrap import build as build_returns
from shared.clock import SystemClock
from shared.db import create_engine, session_factory
from shared.messaging.runtime import ServiceRuntime
from shared.policy import Policy
from shared.settings import Settings

from .backlog import fresh_database, fresh_topics, infrastructure
from .processor import print_profile, records


async def measure(flows: int, repeats: int, profile: bool) -> None:
    async with (
        infrastructure() as infra,
        fresh_database(infra, "bench_relay", ["returns"]) as database,
    ):
        definition = build_returns(Policy(), SystemClock())
        await fresh_topics(infra, {}, definition.all_topics)
        engine = create_engine(database, pool_size=2)
        fed = records(flows)
        processor = definition.processor(session_factory(engine), SystemClock())
        for begin in range(0, len(fed), 500):
            await processor.process(fed[begin : begin + 500])
        outbox = definition.tables.outbox
        sessions = session_factory(engine)
        async with sessions() as session:
            rows = int(await session.scalar(select(func.count()).select_from(outbox)) or 0)
        settings = Settings(
            kafka_bootstrap_servers=infra.bootstrap, database_url=database, kafka_idempotence=False
        )
        runtime = ServiceRuntime(
            definition, settings, SystemClock(), engine=engine, lag_interval=None
        )
        await runtime.broker.connect()
        await runtime.start_relay_producer()
        try:

            async def unpublish() -> None:
                async with sessions.begin() as session:
                    await session.execute(update(outbox).values(published_at=None))

            await runtime.relay.drain()  # warm-up: statements compiled, metadata fetched
            relay = runtime.relay
            sending = 0.0
            send = relay._send

            async def timed_send(rows: Sequence[Any]) -> Any:
                # The CPU spent from the first send to the last acknowledgement of a batch:
                # the relay's publishing, the producer's work, little else (the process is
                # otherwise idle while the relay waits).
                nonlocal sending
                cpu = time.process_time()
                try:
                    return await send(rows)
                finally:
                    sending += time.process_time() - cpu

            relay._send = timed_send  # type: ignore[method-assign]
            gc.collect()
            gc.freeze()
            per_row: list[float] = []
            sending_per_row: list[float] = []
            profiler = cProfile.Profile(time.process_time) if profile else None
            for n in range(repeats):
                await unpublish()
                if profiler is not None:
                    profiler.enable()
                sending = 0.0
                started, cpu_started = time.perf_counter(), time.process_time()
                await relay.drain()
                cpu = time.process_time() - cpu_started
                elapsed = time.perf_counter() - started
                if profiler is not None:
                    profiler.disable()
                per_row.append(1e6 * cpu / rows)
                sending_per_row.append(1e6 * sending / rows)
                print(
                    f"pass {n + 1}: {rows:,} rows in {elapsed:.2f} s, "
                    f"{per_row[-1]:.1f} µs of CPU per row ({sending_per_row[-1]:.1f} µs sending)"
                )
            print(
                f"relay: median {statistics.median(per_row):.1f} µs of CPU per published row "
                f"(min {min(per_row):.1f}, max {max(per_row):.1f}; sending: median "
                f"{statistics.median(sending_per_row):.1f} µs), {repeats} passes of {rows:,}"
            )
            if profiler is not None:
                print_profile(profiler)
        finally:
            gc.unfreeze()
            await runtime.stop_relay_producer()
            await runtime.broker.stop()
            await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", choices=["cpu"], default=None)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.flows, args.repeats, args.profile == "cpu"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
