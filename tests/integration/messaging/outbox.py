"""Outbox rows queued, published and checked on the topic: the relay tests' shared steps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.contracts import NOTIFICATION_REQUESTED, NotificationRequested
from shared.db import UnitOfWork
from shared.messaging.context import HandlerContext
from shared.messaging.kafka import RecordBatches
from shared.messaging.relay import RELAY_HEADERS, SLOTS, SLOTS_PER_BATCH, OutboxRelay
from shared.settings import Settings

from .helpers import T0, Harness, event_of, read_partitions
from .kit import MessagingKit


async def queue_events(
    harness: Harness,
    sessions: async_sessionmaker[AsyncSession],
    keys: list[str],
    tag: str,
    template: str = "t",
) -> None:
    """One transaction per event, like handlers committing one after another."""
    for i, key in enumerate(keys):
        async with UnitOfWork(sessions) as uow:
            ctx = HandlerContext(
                uow=uow,
                tables=harness.tables,
                service=harness.name,
                now=T0,
                cause_id=f"{tag}-{i}",
            )
            await ctx.emit(
                NOTIFICATION_REQUESTED,
                NotificationRequested(
                    request_id=f"{tag}-{i}", customer_id="c-1", order_id=key, template=template
                ),
                topic=harness.output_topic,
                key=key,
            )
            await uow.commit()


def assert_commit_order_per_key(
    published: list[ConsumerRecord[bytes, bytes]], rows: list[dict[str, Any]]
) -> None:
    """Each key's records are on one partition, in the order of their outbox rows."""
    for key in {row["key"] for row in rows}:
        mine = [r for r in published if r.key == key.encode()]
        on_topic = [event_of(r)["id"] for r in sorted(mine, key=lambda r: r.offset)]
        assert on_topic == [row["event_id"] for row in rows if row["key"] == key], key
        assert len({r.partition for r in mine}) == 1, key


async def assert_on_topic_in_commit_order(
    kit: MessagingKit, settings: Settings, count: int
) -> None:
    """The output topic holds `count` records, each key's in commit order on one partition."""
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert len(published) == count
    assert_commit_order_per_key(published, await kit.outbox_rows())


async def publish_all(r: OutboxRelay) -> int:
    """What `publish_pending` publishes until it finds nothing (a batch takes half the slots)."""
    total = 0
    while published := await r.publish_pending():
        total += published
    return total


async def insert_raw(engine: AsyncEngine, harness: Harness, key: str | None, payload: bytes) -> int:
    """An outbox row with any payload, as no handler would write it (too large for the broker)."""
    t = harness.tables.outbox
    async with engine.begin() as conn:
        return int(
            await conn.scalar(
                t.insert()
                .values(
                    event_id=f"raw-{key}-{len(payload)}",
                    event_type=NOTIFICATION_REQUESTED,
                    topic=harness.output_topic,
                    key=key,
                    payload=payload,
                )
                .returning(t.c.id)
            )
        )


def gauge(name: str, service: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service})


async def key_in_the_same_batch_as(
    engine: AsyncEngine,
    key: str,
    partition: Callable[[str], Awaitable[int]] | None = None,
) -> str:
    """Another key whose slot a relay's batch takes with `key`'s (the same half of the slots),
    and on another partition than `key` when `partition` tells a key's."""
    slot = text("SELECT (hashtext(:k) & 2147483647) % :slots")
    async with engine.connect() as conn:
        mine = await conn.scalar(slot, {"k": key, "slots": SLOTS})
        for n in range(100):
            candidate = f"x-{n}"
            theirs = await conn.scalar(slot, {"k": candidate, "slots": SLOTS})
            if theirs // SLOTS_PER_BATCH == mine // SLOTS_PER_BATCH and (
                partition is None or await partition(candidate) != await partition(key)
            ):
                return candidate
    raise AssertionError("no key found")


class RecordedBatch:
    """A record batch that remembers what went in it."""

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.keys: list[bytes] = []
        self.values: list[bytes] = []

    def append(self, *, key: bytes, value: bytes, **more: Any) -> Any:
        added = self.builder.append(key=key, value=value, **more)
        if added is not None:
            self.keys.append(key)
            self.values.append(value)
        return added


class LimitedTopic:
    """The relay's producer before a topic whose limit is below the producer's: the broker
    refuses a record batch holding the too-large record whole, and the record alone too."""

    def __init__(self, producer: AIOKafkaProducer, too_large: bytes) -> None:
        self.producer = producer
        self.too_large = too_large
        self.batches: list[list[bytes]] = []
        self.one_by_one: list[bytes | None] = []
        self.renewals = 0

    async def renew(self) -> None:
        self.renewals += 1

    def create_batch(self) -> RecordedBatch:
        return RecordedBatch(self.producer.create_batch())

    async def partitions_for(self, topic: str) -> set[int]:
        return set(await self.producer.partitions_for(topic))

    async def send_batch(self, batch: RecordedBatch, topic: str, *, partition: int) -> object:
        self.batches.append(batch.keys)
        if self.too_large in batch.values:
            return refused()
        return await self.producer.send_batch(batch.builder, topic, partition=partition)

    async def publish(self, topic: str, key: bytes | None, payload: bytes) -> object:
        self.one_by_one.append(key)
        if payload == self.too_large:
            return refused()
        return await self.producer.send(topic, payload, key=key, headers=RELAY_HEADERS)


def refused() -> asyncio.Future[object]:
    from aiokafka.errors import MessageSizeTooLargeError

    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(MessageSizeTooLargeError())
    return future


async def key_beside(kit: MessagingKit, producer: AIOKafkaProducer, key: str) -> str:
    """A key in the same relay batch as `key` (the same half of the slots), on another
    partition of the harness's output topic."""
    topic = kit.harness.output_topic
    batches = RecordBatches[None](producer, RELAY_HEADERS)
    return await key_in_the_same_batch_as(
        kit.engine, key, lambda other: batches.partition(topic, other.encode())
    )
