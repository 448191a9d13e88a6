"""What the end-to-end tests share: the session's broker and database server are shared too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError


async def skip_history(bootstrap: str, group: str, topic_names: Iterable[str]) -> None:
    """Commit the group's offsets at the end of its input topics.

    The broker is shared by the session: without this a service's group would start from the
    beginning of `orders` and act on other tests' orders. The end is the fetch's high
    watermark: Tansu lists a shorter one when a batch holds several records.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while await consumer.getmany(*tps, timeout_ms=300):
            pass
        with contextlib.suppress(KafkaError):
            # A live member owns the group: the history is read, unique ids keep tests apart.
            await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    finally:
        await consumer.stop()
