"""The minimal consumer the services are measured against: aiokafka + asyncpg, one INSERT per
event (autocommit: one transaction each), offsets committed after each fetched batch.

    python -m bench.baseline --bootstrap HOST:PORT --dsn postgresql://... --expect N
                             [--topics orders,signatures,returns] [--mark parcel.signed]

Reads the given topics (the returns service's input topics by default) with its own consumer
group from the beginning, stores every event (id, type, topic, partition, offset, the JSON
value) and exits once `N` distinct events are stored, printing one JSON line of figures: when
it started consuming, when the last insert committed, the CPU time it used in between, and for
every event of the `--mark` type (a `parcel.signed` only of the return leg) its publish
timestamp (the record's CreateTime) and the instant its insert committed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer

TOPICS = ("orders", "signatures", "returns")
DDL = """
CREATE TABLE IF NOT EXISTS baseline_events (
    event_id text PRIMARY KEY,
    event_type text NOT NULL,
    topic text NOT NULL,
    partition int NOT NULL,
    "offset" bigint NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""
INSERT = """
INSERT INTO baseline_events (event_id, event_type, topic, partition, "offset", payload)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)
ON CONFLICT (event_id) DO NOTHING
"""


async def consume(
    bootstrap: str, dsn: str, group: str, expect: int, topics: Sequence[str], mark: str
) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    await conn.execute(DDL)
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    await consumer.start()
    stored = 0
    first: float | None = None
    cpu_first = 0.0
    marked: list[tuple[int, float]] = []  # (publish ms, insert committed s)
    try:
        while stored < expect:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batch.values():
                for record in records:
                    if first is None:
                        first, cpu_first = time.time(), time.process_time()
                    event = json.loads(record.value)
                    status = await conn.execute(
                        INSERT,
                        event["id"],
                        event["type"],
                        record.topic,
                        record.partition,
                        record.offset,
                        record.value.decode("utf-8"),
                    )
                    if status.endswith(" 1"):
                        stored += 1
                        if event["type"] == mark and event["data"].get("leg", "return") == "return":
                            marked.append((record.timestamp, time.time()))
            if batch:
                await consumer.commit()
        last, cpu = time.time(), time.process_time() - cpu_first
    finally:
        await consumer.stop()
        await conn.close()
    return {
        "first": first,
        "last": last,
        "cpu": cpu,
        "stored": stored,
        "marked": marked,
        # Peak resident set size of this process (Linux reports KiB).
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--group", default="bench-baseline")
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--topics", default=",".join(TOPICS), help="comma-separated")
    parser.add_argument("--mark", default="parcel.signed", help="the event type timed")
    args = parser.parse_args(argv)
    topics = args.topics.split(",")
    result = asyncio.run(
        consume(args.bootstrap, args.dsn, args.group, args.expect, topics, args.mark)
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
