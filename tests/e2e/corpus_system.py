"""The system the bad-input corpus is fed to: the four services as `aftersales run all` wires them
on a fresh database, a webhook gateway, a producer on one partition and a reader of every
output and dead-letter topic; and look-ups of what the services stored."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from aftersales.registry import SERVICES, definition, preflight
from aftersales_dev.devenv import create_database, drop_database, skip_history
from aftersales_dev.events import encode
from shared.clock import ManualClock
from shared.contracts import dead_letter_topic, topics
from shared.crypto import generate_key
from shared.db import create_engine
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ServiceDefinition, ServiceRuntime, ensure_topics
from shared.migrations import upgrade
from shared.policy import Policy
from shared.settings import Settings
from tests.harness import broker_settings, quick_runtime
from tests.json_gateway import Gateway
from tests.topic_reader import TopicReader

# Monday 2026-03-02 10:00 in Shanghai: working hours, outside the notifier's quiet hours.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
NAMES = tuple(SERVICES)  # returns, complaints, followup, notifier
DEAD_LETTER_TOPICS = {name: dead_letter_topic(name) for name in NAMES}
READ_TOPICS = sorted({*topics.OUTPUT_TOPICS, *DEAD_LETTER_TOPICS.values()})
PARTITION = 0  # everything this test sends goes to one partition, in order


# --- the outside world: a webhook gateway, a producer, a reader -----------------------------


class Webhook(Gateway):
    """The notifier's webhook gateway: records every JSON body, answers 200."""

    def __init__(self) -> None:
        super().__init__("/hook")


class Reader(TopicReader):
    """Every partition of the output and dead-letter topics, from the beginning, no group."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, *READ_TOPICS)

    def keyed(self, prefix: str) -> list[tuple[Any, dict[str, Any]]]:
        """(record, event) of every record whose key starts with `prefix`."""
        out = []
        for record in list(self.records):
            if record.key is not None and record.key.decode("utf-8", "replace").startswith(prefix):
                out.append((record, json.loads(record.value)))
        return out

    def events(self, topic: str, event_type: str, **data: Any) -> list[dict[str, Any]]:
        out, seen = [], set()
        for record in list(self.records):
            if record.topic != topic:
                continue
            value = json.loads(record.value)
            if value["type"] != event_type or value["id"] in seen:
                continue
            if all(value["data"].get(k) == v for k, v in data.items()):
                seen.add(value["id"])
                out.append(value)
        return out


# --- the system -------------------------------------------------------------------------------


@dataclass
class System:
    run: str
    url: str
    settings: Settings
    clock: ManualClock
    definitions: dict[str, ServiceDefinition]
    engines: dict[str, AsyncEngine]
    runtimes: dict[str, ServiceRuntime]
    producer: AIOKafkaProducer
    reader: Reader
    webhook: Webhook
    sent: dict[tuple[str, int, int], str] = field(default_factory=dict)  # origin -> key

    def readers_of(self, topic: str) -> set[str]:
        return {name for name, d in self.definitions.items() if topic in d.topics}

    async def send(self, topic: str, key: str | bytes, value: bytes | None) -> RecordMetadata:
        metadata = await self.producer.send_and_wait(
            topic,
            value,
            key=key.encode() if isinstance(key, str) else key,
            partition=PARTITION,
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
        shown = key if isinstance(key, str) else key.decode("utf-8", "replace")
        self.sent[(metadata.topic, metadata.partition, metadata.offset)] = shown
        return metadata

    async def publish(self, topic: str, *events: dict[str, Any]) -> None:
        for event in events:
            data = event["data"]  # keyed by order, else by buyer (SPEC 1)
            key = data.get("order_id") or data["customer_id"]
            await self.send(topic, key, encode(event))

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engines["returns"].connect() as conn:
            return await conn.scalar(text(sql), params)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engines["returns"].connect() as conn:
            return list(await conn.execute(text(sql), params))


@asynccontextmanager
async def running_system(
    database_url: str, kafka_bootstrap: str, webhook: Webhook
) -> AsyncIterator[System]:
    """The four services on a fresh database (every migration), with a producer and a reader."""
    run = uuid.uuid4().hex[:10]
    url = await create_database(database_url, f"e2e_corpus_{run}")
    for service in NAMES:  # alembic runs its own event loop: keep it off this one
        await asyncio.to_thread(upgrade, service, url)
    key = generate_key()
    settings = broker_settings(
        url,
        kafka_bootstrap,
        aftersales_encryption_key=key,
        aftersales_webhook_url=webhook.url,
        aftersales_dev_mode=False,
    )
    clock = ManualClock(T0)
    policy = Policy()
    definitions = {}
    for service in NAMES:
        # The notifier's start-up checks (its key, the webhook URL), then its definition with
        # the same settings, as `aftersales run all` does.
        preflight(service, settings)
        definitions[service] = definition(service, policy, clock, settings)
    await ensure_topics(
        settings, sorted({t for d in definitions.values() for t in d.all_topics} | set(READ_TOPICS))
    )
    await asyncio.gather(
        *(
            skip_history(kafka_bootstrap, f"aftersales-{n}", list(d.topics))
            for n, d in definitions.items()
        )
    )
    engines = {n: create_engine(url, pool_size=4) for n in NAMES}
    runtimes = {n: quick_runtime(definitions[n], settings, clock, engine=engines[n]) for n in NAMES}
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=False,
        acks="all",
        max_request_size=2 * 1024 * 1024,
    )
    reader = Reader(kafka_bootstrap)
    await asyncio.gather(producer.start(), reader.start(), *(r.start() for r in runtimes.values()))
    system = System(
        run, url, settings, clock, definitions, engines, runtimes, producer, reader, webhook
    )
    try:
        yield system
    finally:
        await asyncio.gather(*(r.stop() for r in runtimes.values()), return_exceptions=True)
        await asyncio.gather(producer.stop(), reader.stop(), return_exceptions=True)
        for engine in engines.values():
            await engine.dispose()
        await drop_database(database_url, url)


# --- what the services stored -----------------------------------------------------------------


async def rows_mentioning(system: System, needle: str) -> dict[str, int]:
    """Rows of every service table whose text mentions `needle` (outboxes apart)."""
    found: dict[str, int] = {}
    for d in system.definitions.values():
        for table in d.metadata.sorted_tables:
            if table.name == "outbox":
                continue
            count = await system.scalar(
                f'SELECT count(*) FROM "{d.schema}"."{table.name}" AS t '
                "WHERE t::text LIKE :pattern",
                pattern=f"%{needle}%",
            )
            if count:
                found[f"{d.schema}.{table.name}"] = count
    return found


async def outbox_rows_mentioning(system: System, needle: str) -> list[tuple[str, str]]:
    """(schema, event type) of every outbox row whose key or payload mentions `needle`."""
    out = []
    for d in system.definitions.values():
        rows = await system.rows(
            f'SELECT event_type FROM "{d.schema}".outbox '
            "WHERE key LIKE :pattern OR convert_from(payload, 'UTF8') LIKE :pattern",
            pattern=f"%{needle}%",
        )
        out += [(d.schema, row.event_type) for row in rows]
    return out


async def stored(system: System, service: str, table: str, column: str, value: str) -> bool:
    t = system.definitions[service].metadata.tables[f"{service}.{table}"]
    async with system.engines[service].connect() as conn:
        return (await conn.scalar(select(t.c[column]).where(t.c[column] == value))) is not None
