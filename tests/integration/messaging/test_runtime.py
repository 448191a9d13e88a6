"""ServiceRuntime end to end: the real broker in, the real database, the real broker out."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from shared.contracts import EVENT_DEADLETTERED, NOTIFICATION_REQUESTED, SLA_BREACHED
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ServiceDefinition, ServiceRuntime, ensure_topics
from shared.settings import Settings
from tests.polling import eventually
from tests.topic_reader import TopicReader

from .helpers import (
    SHIP_WINDOW,
    Harness,
    encode,
    event_of,
    header,
    order_paid,
    order_shipped,
)
from .kit import MessagingKit
from .test_consumer import dead_letters


class Collector(TopicReader):
    """A fresh consumer group reading the topics from the earliest offset, in the background."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        super().__init__(bootstrap, *topics, group="msgtest-reader", poll_ms=200)

    def events(self, topic: str, event_type: str | None = None) -> list[dict[str, Any]]:
        out = []
        for record in self.records:
            if record.topic != topic:
                continue
            event = event_of(record)
            if event_type is None or event["type"] == event_type:
                out.append(event)
        return out


def new_runtime(
    harness: Harness,
    settings: Settings,
    clock: ManualClock,
    engine: AsyncEngine,
    definition: ServiceDefinition | None = None,
) -> ServiceRuntime:
    """A runtime of the harness's service (or of `definition`) with short intervals."""
    return ServiceRuntime(
        definition or harness.definition(),
        settings,
        clock,
        engine=engine,
        max_records=5,  # small batches, so a stop lands in the middle of the stream
        relay_poll_interval=0.1,
        timer_poll_interval=0.2,
        retry_backoff=0.1,
    )


async def test_runtime_end_to_end(
    kit: MessagingKit, settings: Settings, producer: AIOKafkaProducer
) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    await ensure_topics(settings, kit.harness.definition().all_topics)
    outputs = Collector(bootstrap, kit.harness.output_topic, kit.harness.dead_letter_topic)
    runtime = new_runtime(kit.harness, settings, kit.clock, kit.engine)
    runtimes = [runtime]

    async def send(key: str, value: bytes) -> RecordMetadata:
        return await producer.send_and_wait(kit.harness.input_topic, value, key=key.encode())

    async def effects() -> dict[str, int]:
        return dict(await kit.effect_counts())

    try:
        await asyncio.gather(runtime.start(), outputs.start())
        assert await runtime.ready() == {"database": True, "broker": True}
        # The relay sends through an aiokafka producer of its own (not FastStream's publish).
        assert runtime.kafka_producer() is not None

        # --- duplicates, and a poison message ahead of a good one on the same partition ---
        paid = encode(order_paid("o-1", event_id="e-paid-1"))
        first = await send("o-1", paid)
        await send("o-1", paid)  # delivered twice
        poison = await send("o-1", b'{"specversion": "1.0", "id": "e-cut", "type": "order.pa')
        shipped = await send("o-1", encode(order_shipped("o-1", event_id="e-shipped-1")))
        assert first.partition == poison.partition == shipped.partition

        await eventually(
            lambda: _has(effects, {"e-paid-1": 1, "e-shipped-1": 1}), what="o-1 applied"
        )
        letters = await eventually(
            lambda: _ready(outputs.events(kit.harness.dead_letter_topic, EVENT_DEADLETTERED)),
            what="dead letter published",
        )
        assert len(letters) == 1
        origin = letters[0]["data"]["origin"]
        assert origin == {
            "topic": kit.harness.input_topic,
            "partition": poison.partition,
            "offset": poison.offset,
        }
        assert letters[0]["data"]["reason"] == "malformed_json"
        assert letters[0]["data"]["key"] == "o-1"

        # --- a passing fault: the batch is fetched again until it goes through, once ---
        kit.harness.faults["o-t"] = ConnectionError("database restarting")
        await send("o-t", encode(order_paid("o-t", event_id="e-paid-t")))
        await eventually(
            lambda: _async(kit.harness.attempts["o-t"] >= 3), what="transient batch redelivered"
        )
        assert "e-paid-t" not in await effects()
        del kit.harness.faults["o-t"]
        await eventually(lambda: _has(effects, {"e-paid-t": 1}), what="retried event applied")

        # --- stop in the middle of a stream, go on with a new runtime ---
        kit.harness.handler_delay = 0.05
        stream = [f"o-{i}" for i in range(10, 50)]
        ids = {order: f"e-paid-{order}" for order in stream}
        sends = [
            await producer.send(
                kit.harness.input_topic,
                encode(order_paid(order, event_id=ids[order])),
                key=order.encode(),
            )
            for order in stream
        ]
        await asyncio.gather(*sends)
        await eventually(
            lambda: _async_count(effects, set(ids.values()), at_least=5), what="stream started"
        )
        await runtime.stop()
        applied_at_stop = set(await effects()) & set(ids.values())
        assert len(applied_at_stop) < len(stream), "the stream ended before the stop"
        # What committed before the stop was published at the stop.
        assert await kit.unpublished_count() == 0

        # Sent while no runtime runs: picked up by the next one.
        late = await send("o-late", encode(order_paid("o-late", event_id="e-paid-late")))
        assert late.offset >= 0
        kit.harness.handler_delay = 0.0
        runtime = new_runtime(kit.harness, settings, kit.clock, kit.engine)
        runtimes.append(runtime)
        await runtime.start()

        expected = {
            "e-paid-1": 1,
            "e-shipped-1": 1,
            "e-paid-t": 1,
            "e-paid-late": 1,
            **{event_id: 1 for event_id in ids.values()},
        }
        await eventually(lambda: _has(effects, expected), what="every event applied once")
        assert await effects() == expected
        # The runtime reports its consumer lag per partition; all of it is committed now.
        assert runtime.lag is not None
        await eventually(
            lambda: _lag_is_zero(runtime, kit.harness.input_topic), what="consumer lag back to 0"
        )

        orders = {"o-1", "o-t", "o-late", *stream}
        notices = await eventually(
            lambda: _ready(
                outputs.events(kit.harness.output_topic, NOTIFICATION_REQUESTED),
                lambda events: {e["data"]["order_id"] for e in events} == orders,
            ),
            what="every notification published",
        )
        for record in outputs.records:
            assert header(record, "content-type") == CONTENT_TYPE.encode()
            if record.topic == kit.harness.output_topic:
                assert record.key == event_of(record)["data"]["order_id"].encode()
        # Outputs carry deterministic ids: whatever the relay sent twice has the same id.
        assert len({e["id"] for e in notices}) == len(orders) + 1  # o-1: paid and shipped

        # --- the runtime's scheduler fires the ship deadline of every order not shipped ---
        kit.clock.advance(SHIP_WINDOW + timedelta(hours=1))
        breaches = await eventually(
            lambda: _ready(
                outputs.events(kit.harness.output_topic, SLA_BREACHED),
                lambda events: {e["data"]["order_id"] for e in events} == orders - {"o-1"},
            ),
            what="ship deadlines fired",
        )
        assert "o-1" not in {e["data"]["order_id"] for e in breaches}
        timers = await kit.timer_rows()
        assert timers["o-1"]["cancelled_at"] is not None
        assert all(timers[o]["fired_at"] is not None for o in orders - {"o-1"})
        assert set(kit.harness.timer_calls.values()) == {1}
    finally:
        for r in runtimes:
            with contextlib.suppress(Exception):
                await r.stop()
        await outputs.stop()


async def _lag_is_zero(runtime: ServiceRuntime, topic: str) -> bool:
    assert runtime.lag is not None
    lag = await runtime.lag.refresh()
    reported = REGISTRY.get_sample_value(
        "aftersales_consumer_lag", {"service": runtime.name, "topic": topic, "partition": "0"}
    )
    return bool(lag) and sum(lag.values()) == 0 and reported == 0


async def _async(value: Any) -> Any:
    return value


async def _ready(items: list[Any], check: Any = bool) -> list[Any] | None:
    return items if check(items) else None


async def _has(get: Any, expected: dict[str, int]) -> bool:
    current = await get()
    return all(current.get(k, 0) >= v for k, v in expected.items())


async def _async_count(get: Any, keys: set[str], *, at_least: int) -> bool:
    return len(set(await get()) & keys) >= at_least


async def test_ensure_topics_creates_missing_topics_and_is_safe_to_repeat(
    harness: Harness, settings: Settings
) -> None:
    topics = harness.definition().all_topics
    assert harness.dead_letter_topic in topics and harness.output_topic in topics
    await asyncio.gather(ensure_topics(settings, topics), ensure_topics(settings, topics))
    await ensure_topics(settings, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        existing = await consumer.topics()
        assert set(topics) <= existing
        for topic in topics:
            assert consumer.partitions_for_topic(topic) == set(
                range(settings.kafka_topic_partitions)
            )
    finally:
        await consumer.stop()


async def test_a_record_labelled_json_that_is_not_json_does_not_stop_its_partition(
    kit: MessagingKit, settings: Settings, producer: AIOKafkaProducer
) -> None:
    """The runtime hands the records to the processor as they came: a body labelled
    `application/json` that is not JSON is dead-lettered like any other malformed record, and
    the events behind it on its partition apply."""
    await ensure_topics(settings, kit.harness.definition().all_topics)
    runtime = new_runtime(kit.harness, settings, kit.clock, kit.engine)
    labelled = [("content-type", b"application/json")]
    try:
        await runtime.start()
        cut = await producer.send_and_wait(
            kit.harness.input_topic, b'{"specversion": "1.0", "id"', key=b"o-j", headers=labelled
        )
        after = await producer.send_and_wait(
            kit.harness.input_topic,
            encode(order_paid("o-j", event_id="e-paid-j")),
            key=b"o-j",
            headers=labelled,
        )
        assert cut.partition == after.partition

        async def applied() -> bool:
            return (await kit.effect_counts()).get("e-paid-j") == 1

        await eventually(applied, what="the event behind the malformed record applied")
        letters = dead_letters(await kit.outbox_rows())
        assert [data.reason for _, data in letters] == ["malformed_json"]
        assert letters[0][1].origin.offset == cut.offset
    finally:
        await runtime.stop()


async def test_records_with_headers_that_are_not_text_apply_with_the_rest(
    kit: MessagingKit, settings: Settings, producer: AIOKafkaProducer
) -> None:
    """Kafka's header values are bytes, or null, and the contract is the record's value: events
    carrying a header that is not UTF-8 or has no value apply, and so does the rest of their
    batch (FastStream's parser decodes headers as text; a batch it failed on was passed over)."""
    await ensure_topics(settings, kit.harness.definition().all_topics)
    runtime = new_runtime(kit.harness, settings, kit.clock, kit.engine)
    odd: list[list[tuple[str, bytes | None]]] = [[("trace", b"\xff\xfe")], [("x", None)], []]
    ids = [f"e-paid-h{n}" for n in range(len(odd))]
    for n, headers in enumerate(odd):
        await producer.send(
            kit.harness.input_topic,
            encode(order_paid(f"o-h{n}", event_id=ids[n])),
            key=f"o-h{n}".encode(),
            headers=headers,
        )
    await producer.flush()
    try:
        await runtime.start()

        async def applied() -> bool:
            counts = await kit.effect_counts()
            return all(counts.get(event_id) == 1 for event_id in ids)

        await eventually(applied, what="every event applied, whatever its headers")
        assert dead_letters(await kit.outbox_rows()) == []
    finally:
        await runtime.stop()


class _RawHeaderKey(str):
    """A header key whose bytes on the wire are `raw` (Kafka's header keys are strings, but no
    broker checks that they are UTF-8)."""

    raw = b""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return self.raw


async def send_raw_batch(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
) -> RecordMetadata:
    """One record batch of (key, value, headers), built by aiokafka's pure-Python builder,
    which writes a header key's bytes as `encode` gives them."""
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    batch = producer.create_batch()
    batch._builder = _DefaultRecordBatchBuilderPy(  # type: ignore[attr-defined]
        2,
        0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=0,
        batch_size=1 << 20,
    )
    for key, value, headers in records:
        assert batch.append(timestamp=None, key=key, value=value, headers=headers) is not None
    return await (await producer.send_batch(batch, topic, partition=partition))


async def test_a_header_key_that_is_not_utf8_does_not_stop_the_consumer(
    kit: MessagingKit, settings: Settings, producer: AIOKafkaProducer
) -> None:
    """Kafka's client reader decodes a header's key as UTF-8 and raised on anything else, in the
    middle of a fetch: not a Kafka error, so the consume task ended (restarted, it failed on
    the same record again), every partition stopped. The record's event applies with its
    neighbours in the same record batch, the records behind it and those of another
    partition."""
    await ensure_topics(settings, kit.harness.definition().all_topics)
    runtime = new_runtime(kit.harness, settings, kit.clock, kit.engine)
    odd = _RawHeaderKey("trace")
    odd.raw = b"\xff\xfetrace"
    ids = ["e-paid-k0", "e-paid-k1", "e-paid-k2"]
    await send_raw_batch(
        producer,
        kit.harness.input_topic,
        0,
        [
            (f"o-k{n}".encode(), encode(order_paid(f"o-k{n}", event_id=event_id)), headers)
            for n, (event_id, headers) in enumerate(zip(ids, [[], [(odd, b"x")], []], strict=True))
        ],
    )
    later = await producer.send_and_wait(
        kit.harness.input_topic,
        encode(order_paid("o-k3", event_id="e-paid-k3")),
        key=b"o-k3",
        partition=0,
    )
    assert later.offset == 3
    assert settings.kafka_topic_partitions > 1
    elsewhere = await producer.send_and_wait(
        kit.harness.input_topic,
        encode(order_paid("o-k4", event_id="e-paid-k4")),
        key=b"o-k4",
        partition=1,
    )
    assert elsewhere.offset == 0
    try:
        await runtime.start()

        async def applied() -> bool:
            counts = await kit.effect_counts()
            return all(counts.get(e) == 1 for e in [*ids, "e-paid-k3", "e-paid-k4"])

        await eventually(applied, what="every event applied, whatever its header keys")
        assert dead_letters(await kit.outbox_rows()) == []
    finally:
        await runtime.stop()


@pytest.mark.parametrize("compression", ["snappy", "lz4", "zstd"])
async def test_events_a_producer_compressed_apply(
    kit: MessagingKit, settings: Settings, compression: str
) -> None:
    """Kafka producers compress their batches (lz4, zstd and snappy are common settings). The
    consumer read gzip only: a batch compressed otherwise raised on every fetch, and its
    partition waited behind it for ever."""
    await ensure_topics(settings, kit.harness.definition().all_topics)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=False,
        acks="all",
        compression_type=compression,
    )
    ids = [f"e-paid-{compression}-{n}" for n in range(3)]
    await producer.start()
    try:
        sent = [
            await producer.send(
                kit.harness.input_topic,
                encode(order_paid(f"o-{compression}", event_id=event_id)),
                key=f"o-{compression}".encode(),
            )
            for event_id in ids
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    runtime = new_runtime(kit.harness, settings, kit.clock, kit.engine)
    try:
        await runtime.start()

        async def applied() -> bool:
            counts = await kit.effect_counts()
            return all(counts.get(event_id) == 1 for event_id in ids)

        await eventually(applied, what=f"every {compression}-compressed event applied")
    finally:
        await runtime.stop()
