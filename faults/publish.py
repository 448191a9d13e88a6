"""Publishing the fault run's records, paced, each chunk acknowledged before the next."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from shared.messaging.relay import CONTENT_TYPE

from .flows import Message
from .progress import Published


async def publish(bootstrap: str, messages: Sequence[Message], seconds: float) -> Published:
    """Every message in order, paced over `seconds`; each chunk acknowledged before the next.

    The producer retries a batch cut by a dropped connection itself, one request in flight
    per broker, so the order within a partition holds (a retried batch may be written twice:
    more duplicates). A send that fails for good is sent again and counted.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks="all",
        linger_ms=5,
        request_timeout_ms=120_000,
        retry_backoff_ms=200,
    )
    await producer.start()
    published = Published(messages=list(messages))
    where: list[tuple[str, int, int] | None] = [None] * len(messages)
    headers = [("content-type", CONTENT_TYPE.encode())]
    chunk = max(50, int(len(messages) / max(seconds * 4, 1)))
    started = time.monotonic()
    try:
        for begin in range(0, len(messages), chunk):
            indexes = list(range(begin, min(begin + chunk, len(messages))))
            while indexes:
                futures = [
                    await producer.send(
                        messages[i].topic,
                        messages[i].value,
                        key=messages[i].key.encode(),
                        headers=headers,
                    )
                    for i in indexes
                ]
                results = await asyncio.gather(*futures, return_exceptions=True)
                failed = []
                for i, result in zip(indexes, results, strict=True):
                    if isinstance(result, BaseException):
                        failed.append(i)
                    else:
                        where[i] = (result.topic, result.partition, result.offset)
                published.failures += len(failed)
                indexes = failed
            # pace: the chunk ends at its share of `seconds`
            due = started + seconds * min(begin + chunk, len(messages)) / len(messages)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    finally:
        await producer.stop()
    published.where = [w for w in where if w is not None]
    assert len(published.where) == len(messages)
    return published
