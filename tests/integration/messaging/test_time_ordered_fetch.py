"""A backlog drawn by the time-ordered batch subscriber (shared.messaging.fetch) from the real
broker through FastStream: batches cut at one instant, and each batch's acknowledgement commits
the offsets after the records it handed over, not the consumer's positions past the records
the cut kept for the next batch."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.messaging.fetch import TimeOrderedBatches, draw_in_time_order
from shared.messaging.runtime import _records_as_they_came, ensure_topics
from shared.settings import Settings

RECORDS = 300  # per topic
T0 = 1_800_000_000_000  # ms


async def committed(bootstrap: str, group: str, tps: list[TopicPartition]) -> dict[str, int]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await reader.start()
    try:
        return {tp.topic: await reader.committed(tp) or 0 for tp in tps}
    finally:
        await reader.stop()


def time_ordered(
    broker: KafkaBroker, topics: tuple[str, ...], group: str, **options: Any
) -> tuple[Any, TimeOrderedBatches]:
    """A batch subscriber of `topics` as the services make it (50 records a batch)."""
    subscriber = broker.subscriber(
        *topics,
        group_id=group,
        batch=True,
        max_records=50,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **options,
    )
    return subscriber, draw_in_time_order(subscriber, topics)


async def test_a_cut_batch_commits_only_what_it_handed_over(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    run = uuid.uuid4().hex[:8]
    orders, returns, group = f"orders-{run}", f"returns-{run}", f"fetch-{run}"
    await ensure_topics(settings, [orders, returns])
    # Each topic's records a millisecond apart, the returns a millisecond after the orders: a
    # partition drawn a chunk ahead of the other must not be handed over past it.
    for i in range(RECORDS):
        await producer.send(orders, b"o", partition=0, timestamp_ms=T0 + 2 * i)
        await producer.send(returns, b"r", partition=0, timestamp_ms=T0 + 2 * i + 1)
    await producer.flush()
    tps = [TopicPartition(orders, 0), TopicPartition(returns, 0)]

    bootstrap = settings.kafka_bootstrap_servers
    broker = KafkaBroker(bootstrap)
    subscriber, made = time_ordered(broker, (orders, returns), group)
    batches: list[list[tuple[str, int, int]]] = []
    commits_seen: list[tuple[dict[str, int], dict[str, int]]] = []
    done = asyncio.Event()

    @subscriber
    async def handle(body: list[bytes], message: KafkaMessage) -> None:
        records = message.raw_message
        assert isinstance(records, tuple)
        if batches:  # the previous batch was acknowledged before this one was drawn
            handed = {tp.topic: n for tp, n in previous.items()}
            commits_seen.append((await committed(bootstrap, group, tps), handed))
        batches.append([(r.topic, r.offset, r.timestamp) for r in records])
        previous.clear()
        previous.update(made.handed)
        if sum(map(len, batches)) >= 2 * RECORDS:
            done.set()

    previous: dict[TopicPartition, int] = {}
    async with broker:
        await broker.start()
        await asyncio.wait_for(done.wait(), timeout=60)
        await asyncio.sleep(0.5)  # the last acknowledgement
    handed = [record for batch in batches for record in batch]
    # every record once, each topic's in order, and in time order across the batches
    assert sorted(handed) == sorted(
        [(orders, i, T0 + 2 * i) for i in range(RECORDS)]
        + [(returns, i, T0 + 2 * i + 1) for i in range(RECORDS)]
    )
    assert [ts for _, _, ts in handed] == sorted(ts for _, _, ts in handed)
    assert any(len(batch) < 50 for batch in batches[:-1])  # some batches were cut
    # What each acknowledgement committed: the offsets after the records handed over.
    assert commits_seen
    for seen, handed_over in commits_seen:
        for topic, offset in handed_over.items():
            assert seen[topic] == offset
    assert await committed(bootstrap, group, tps) == {orders: RECORDS, returns: RECORDS}


async def test_a_batch_with_headers_that_are_not_text_is_handled_not_passed(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    # FastStream's parser decodes each header as UTF-8; a batch it failed to parse was neither
    # acknowledged nor sought back, and the next batch's commit passed it, unread.
    run = uuid.uuid4().hex[:8]
    topic, group = f"headers-{run}", f"headers-{run}"
    await ensure_topics(settings, [topic])
    odd: list[list[tuple[str, bytes | None]]] = [[("trace", b"\xff")], [("x", None)]]
    for headers in [[], *odd, []]:
        await producer.send(topic, b"{}", partition=0, headers=headers)
    await producer.flush()
    broker = KafkaBroker(settings.kafka_bootstrap_servers)
    subscriber, _ = time_ordered(broker, (topic,), group, decoder=_records_as_they_came)
    seen: list[int] = []
    done = asyncio.Event()

    @subscriber
    async def handle(records: tuple[ConsumerRecord[Any, Any], ...]) -> None:
        seen.extend(r.offset for r in records)
        if 7 in seen:
            done.set()

    async with broker:
        await broker.start()
        await asyncio.sleep(1)  # the first batch, then another one after it
        for _ in range(4):
            await producer.send(topic, b"{}", partition=0)
        await producer.flush()
        await asyncio.wait_for(done.wait(), timeout=20)
        await asyncio.sleep(0.5)  # the last acknowledgement
    assert sorted(set(seen)) == list(range(8))
    assert await committed(settings.kafka_bootstrap_servers, group, [TopicPartition(topic, 0)]) == {
        topic: 8
    }
