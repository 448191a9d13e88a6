"""A backlog drawn by the time-ordered batch subscriber (shared.messaging.fetch) from the real
broker through FastStream: batches cut at one instant, and each batch's acknowledgement commits
the offsets after the records it handed over, not the consumer's positions past the records
the cut kept for the next batch."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.messaging.fetch import draw_in_time_order
from shared.messaging.runtime import ensure_topics
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
    subscriber = broker.subscriber(
        orders,
        returns,
        group_id=group,
        batch=True,
        max_records=50,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    made = draw_in_time_order(subscriber, (orders, returns))
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
