"""Reading and replaying a service's dead-letter topic (ops tools behind `aftersales dlq`)."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.clock import Clock, SystemClock
from shared.contracts import ORDER_PAID, DeadLettered, InvalidEvent, dead_letter_topic, parse_event
from shared.contracts.outputs import MAX_DEAD_LETTER_BYTES
from shared.settings import Settings

from .kafka import client_security
from .relay import CONTENT_TYPE

# Types whose data carry the buyer's contact data (SPEC section 7: `customer` of order.paid).
# Their dead-letter copy has it masked: replayed, the services would take a masked name, phone
# and e-mail for the buyer's own. The platform must send such an event again instead.
PERSONAL_DATA_TYPES = frozenset({ORDER_PAID})
# What masking leaves in free text (138****5678, a***@example.com): such a copy is not the
# event that was sent either.
MASK_MARK = "***"


async def read_topic(
    bootstrap: str, topic: str, security: Mapping[str, Any] | None = None
) -> AsyncGenerator[tuple[int, int, bytes | None], None]:
    """Every record now in `topic`, from the beginning to the current end, without a group.
    `security`: the client options of `client_security` (SASL_SSL...)."""
    async for record in read_records(bootstrap, topic, security):
        yield record.partition, record.offset, record.value


async def read_records(
    bootstrap: str,
    topic: str,
    security: Mapping[str, Any] | None = None,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """`read_topic`'s records whole (key, timestamp), each partition in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **(security or {})
    )
    await _started(consumer)
    try:
        await consumer.topics()  # refreshes the cluster metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=2000)
            for records in batch.values():
                for record in records:
                    yield record
            for tp in list(remaining):
                # The end is the fetch's high watermark, not only the listed end offset: Tansu
                # lists the base offset of the last record batch plus one, short of the end.
                end = max(ends[tp], consumer.highwater(tp) or 0)
                if await consumer.position(tp) >= end:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def _started(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Start a client; one that cannot reach the broker is closed before the error goes on
    (the command says so in one line, without a warning about an unclosed client after it)."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


async def list_dead_letters(
    settings: Settings, service: str, reason: str | None, limit: int
) -> int:
    n = 0
    async for _, _, item in dead_letters_at(settings, service, limit, reason=reason):
        n += 1
        origin = item.origin
        print(
            f"{item.received_at.isoformat()}  {origin.topic}/{origin.partition}@{origin.offset}  "
            f"{item.reason}: {item.detail}"
        )
    print(f"{n} dead letter(s) on {dead_letter_topic(service)}", file=sys.stderr)
    return 0


async def replay_dead_letters(
    settings: Settings, service: str, reason: str | None, limit: int, clock: Clock | None = None
) -> int:
    """Publish dead-lettered values again to their original topic with their original key.

    Events that were processed in the meantime are ignored by the consumers' inbox, so a replay
    is safe to repeat; an event that is still invalid is dead-lettered again. A copy whose
    personal data was masked (`masked_reason`) is never replayed: it is not what was sent; nor
    one older than the inbox keeps event ids (`too_old`).
    """
    from aiokafka.errors import KafkaConnectionError, KafkaError

    producer = await _replay_producer(settings)
    replayed = skipped = refused = 0
    now = (clock or SystemClock()).now()
    try:
        async for _, _, item in dead_letters_at(settings, service, limit, reason=reason):
            origin = item.origin
            where = f"{origin.topic}/{origin.partition}@{origin.offset}"
            if why := refusal(item, settings, now):
                if item.value_truncated:
                    skipped += 1
                else:
                    refused += 1
                print(f"not replayed {where}: {why}")
                continue
            try:
                await _send_back(producer, item)
            except KafkaConnectionError:
                raise
            except KafkaError as exc:
                # Stop here: a later dead letter of the same key must not overtake this one.
                print(
                    f"aftersales: the broker refused the replay of {where} "
                    f"({type(exc).__name__}); {replayed} replayed before it, none after it",
                    file=sys.stderr,
                )
                return 1
            replayed += 1
            print(f"replayed {where}")
    finally:
        await producer.stop()
    print(
        f"{replayed} replayed, {skipped} skipped (truncated), {refused} refused",
        file=sys.stderr,
    )
    return 0


async def _replay_producer(settings: Settings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=settings.kafka_idempotence,
        acks="all",
        **client_security(settings),
    )
    await _started(producer)
    return producer


async def _send_back(producer: AIOKafkaProducer, item: DeadLettered) -> None:
    """Publish a dead letter's value to its original topic with its original key."""
    value = (
        item.value.encode("utf-8")
        if item.value_encoding == "utf-8"
        else base64.b64decode(item.value)
    )
    await producer.send_and_wait(
        item.origin.topic,
        value,
        key=item.key.encode("utf-8") if item.key is not None else None,
        headers=[("content-type", CONTENT_TYPE.encode())],
    )


async def dead_letters_at(
    settings: Settings, service: str, limit: int, *, reason: str | None = None
) -> AsyncGenerator[tuple[int, int, DeadLettered], None]:
    """The service's dead letters (those of `reason` when given), at most `limit`, with where
    each one is (partition, offset of the dead-letter topic), oldest first: what `aftersales
    dlq` lists and replays, and the read API lists and replays one by one."""
    count = 0
    records = read_topic(
        settings.kafka_bootstrap_servers, dead_letter_topic(service), client_security(settings)
    )
    async with aclosing(records):  # its consumer stops as soon as the reader is done
        async for partition, offset, value in records:
            try:
                event = parse_event(value, max_bytes=MAX_DEAD_LETTER_BYTES)
            except InvalidEvent:
                continue
            data = event.data
            if isinstance(data, DeadLettered) and (not reason or data.reason == reason):
                yield partition, offset, data
                count += 1
                if count >= limit:
                    return


def refusal(item: DeadLettered, settings: Settings, now: datetime) -> str | None:
    """Why this dead letter must not be replayed, or None."""
    if item.value_truncated:
        return "its value was truncated in the dead letter; have it sent again"
    return masked_reason(item) or too_old(item, settings, now)


async def replay_one(
    settings: Settings, service: str, partition: int, offset: int, now: datetime
) -> str | None:
    """Replay the dead letter at partition/offset of the service's dead-letter topic, with the
    same guards as `replay_dead_letters`. Returns why it was not replayed, or None."""
    found: DeadLettered | None = None
    letters = dead_letters_at(settings, service, 1_000_000)
    async with aclosing(letters):
        async for at_partition, at_offset, item in letters:
            if (at_partition, at_offset) == (partition, offset):
                found = item
                break
    if found is None:
        return f"no dead letter at {dead_letter_topic(service)}/{partition}@{offset}"
    if why := refusal(found, settings, now):
        return why
    from aiokafka.errors import KafkaConnectionError, KafkaError

    producer = await _replay_producer(settings)
    try:
        await _send_back(producer, found)
    except KafkaConnectionError:
        raise
    except KafkaError as exc:  # refused for this record: said, as the CLI says it
        return f"the broker refused it ({type(exc).__name__}); have it sent again"
    finally:
        await producer.stop()
    return None


def too_old(item: DeadLettered, settings: Settings, now: datetime | None = None) -> str | None:
    """A dead letter older than the inbox keeps event ids: were the event applied meanwhile (sent
    again by its producer), its id is gone from the inbox and a replay would apply it twice."""
    days = settings.aftersales_retention_inbox_days
    if (now or datetime.now(UTC)) - item.received_at <= timedelta(days=days):
        return None
    return (
        f"dead-lettered more than {days} days ago (AFTERSALES_RETENTION_INBOX_DAYS): "
        "a duplicate would no longer be recognised; have it sent again"
    )


def masked_reason(item: DeadLettered) -> str | None:
    """Why this dead letter's copy must not be replayed (None: it may be)."""
    try:
        document = json.loads(item.value) if item.value_encoding == "utf-8" else None
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        document = None
    event_type = document.get("type") if isinstance(document, dict) else None
    if event_type in PERSONAL_DATA_TYPES:
        return (
            f"{event_type} carries the buyer's contact data, masked in the dead letter; "
            "have the platform send the event again"
        )
    if MASK_MARK in item.value:
        return "personal data in its text was masked in the dead letter; have it sent again"
    return None
