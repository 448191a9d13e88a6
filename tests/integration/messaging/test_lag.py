"""Consumer lag per partition, read from the real broker."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from shared.messaging.lag import ConsumerLag
from shared.messaging.runtime import ensure_topics
from shared.settings import Settings

from .helpers import unique


def lag_gauge(service: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "aftersales_consumer_lag",
        {"service": service, "topic": topic, "partition": str(partition)},
    )


async def test_lag_is_what_lies_after_the_groups_committed_offset(settings: Settings) -> None:
    topic, group, service = unique("lag.in."), unique("lag-group-"), unique("lagtest_")
    await ensure_topics(settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for i in range(9):  # one request each: every record its own batch
            await producer.send_and_wait(topic, b"{}", key=f"o-{i}".encode())
    finally:
        await producer.stop()
    lag = ConsumerLag(service=service, settings=settings, group_id=group, topics=[topic])
    try:
        # Nothing committed: the whole partition is behind.
        before = await lag.refresh()
        assert sum(before.values()) == 9
        assert len(before) == settings.kafka_topic_partitions
        for tp, behind in before.items():
            assert lag_gauge(service, topic, tp.partition) == behind

        # The group commits the end of one partition and the middle of another.
        busy = sorted((tp for tp in before if before[tp] > 1), key=lambda tp: tp.partition)
        done, half = busy[0], busy[-1] if len(busy) > 1 else None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            targets = [done] + ([half] if half else [])
            consumer.assign(targets)
            ends = await consumer.end_offsets(targets)
            offsets = {done: ends[done]}
            if half:
                offsets[half] = ends[half] - 1
            await consumer.commit(offsets)
        finally:
            await consumer.stop()
        after = await lag.refresh()
        assert after[done] == 0 and lag_gauge(service, topic, done.partition) == 0
        if half:
            assert after[half] == 1
        others = set(before) - {done, half}
        assert all(after[tp] == before[tp] for tp in others)
        assert sum(after.values()) == sum(before.values()) - before[done] - (
            before[half] - 1 if half else 0
        )
    finally:
        await lag.close()
    assert TopicPartition(topic, 0) in after
