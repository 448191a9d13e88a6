"""OutboxRelay before a broker that refuses records: rows parked, sent again one at a time,
their keys' later rows held back, and the producer renewed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer

from shared.messaging.kafka import RecordBatches
from shared.messaging.parked import parked_rows, retry_parked
from shared.messaging.relay import RELAY_HEADERS
from shared.messaging.runtime import ServiceRuntime
from shared.settings import Settings

from .helpers import T0, event_of, read_partitions
from .kit import MessagingKit
from .outbox import (
    LimitedTopic,
    RecordedBatch,
    assert_commit_order_per_key,
    gauge,
    insert_raw,
    key_beside,
    key_in_the_same_batch_as,
    publish_all,
    queue_events,
)


async def test_a_record_the_broker_refuses_is_parked_and_the_others_go_out_in_order(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    await queue_events(kit.harness, kit.sessions, ["o-1", "o-2", "o-big"], "before")
    # Over the producer's 1 MiB request limit (the broker's default message limit).
    big = await insert_raw(
        kit.engine, kit.harness, "o-big", b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    )
    await queue_events(kit.harness, kit.sessions, ["o-big", "o-1", "o-3"], "after")

    # Before parking existed, every cycle failed on the big row and nothing after it left.
    producer = runtime.kafka_producer()
    assert await publish_all(runtime.relay) == 6  # 5 published + 1 parked; 1 held
    # Refused by the producer's own check before it was numbered: the producer stays.
    assert runtime.kafka_producer() is producer
    rows = {row["id"]: row for row in await kit.outbox_rows()}
    assert rows[big]["parked_at"] == T0
    assert rows[big]["parked_error"].startswith("MessageSizeTooLargeError")
    assert rows[big]["published_at"] is None
    held = [r for r in rows.values() if r["key"] == "o-big" and r["id"] > big]
    assert [r["published_at"] for r in held] == [None] and held[0]["parked_at"] is None
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert len(published) == 5
    # Every other key in commit order; o-big's event before the parked one went out, the one
    # after it waits.
    assert_commit_order_per_key(
        published, [r for r in rows.values() if r["published_at"] is not None]
    )
    assert gauge("aftersales_outbox_parked", kit.harness.name) == 1
    assert gauge("aftersales_outbox_held", kit.harness.name) == 1
    assert gauge("aftersales_outbox_pending", kit.harness.name) == 0
    # Nothing is sent again while it is parked.
    assert await runtime.relay.publish_pending() == 0

    listed = await parked_rows(kit.sessions, kit.harness.tables)
    assert [(p.id, p.key, p.held_behind) for p in listed] == [(big, "o-big", 1)]
    assert listed[0].size > 1024 * 1024

    # Re-queued, it is tried again in its place: still refused by this producer, parked again.
    assert await retry_parked(kit.sessions, kit.harness.tables, [big]) == [big]
    assert await parked_rows(kit.sessions, kit.harness.tables) == []
    kit.clock.advance(timedelta(minutes=5))
    assert await runtime.relay.publish_pending() == 1
    assert (await parked_rows(kit.sessions, kit.harness.tables))[0].parked_at == T0 + timedelta(
        minutes=5
    )
    assert await retry_parked(kit.sessions, kit.harness.tables, [big + 1000]) == []

    # Once the limit allows it (a producer with a larger request limit), the parked event
    # and then the one held behind it go out, in the key's commit order.
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:

        async def larger(topic: str, key: bytes | None, payload: bytes) -> object:
            return await producer.send(topic, payload, key=key)

        assert await retry_parked(kit.sessions, kit.harness.tables, None) == [big]
        assert await publish_all(kit.relay(larger)) == 2
    finally:
        await producer.stop()
    rows_after = await kit.outbox_rows()
    assert all(r["published_at"] is not None for r in rows_after)
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    keyed = [r for r in sorted(published, key=lambda r: r.offset) if r.key == b"o-big"]
    assert [r.value == rows[big]["payload"] for r in keyed] == [False, True, False]
    await runtime.relay.observe()
    assert gauge("aftersales_outbox_parked", kit.harness.name) == 0
    assert gauge("aftersales_outbox_held", kit.harness.name) == 0


async def test_an_error_that_is_not_about_the_record_parks_nothing(kit: MessagingKit) -> None:
    # A bug or an outage refuses every record: parking them all would hide it.
    await queue_events(kit.harness, kit.sessions, ["o-1", "o-2"], "bug")

    async def broken(topic: str, key: bytes | None, payload: bytes) -> object:
        raise TypeError("publish() got an unexpected keyword argument")

    with pytest.raises(TypeError):
        await kit.relay(broken).publish_pending()
    assert await parked_rows(kit.sessions, kit.harness.tables) == []
    assert await kit.unpublished_count() == 2


async def test_a_produce_request_the_broker_refuses_is_sent_again_one_row_at_a_time(
    kit: MessagingKit,
) -> None:
    # A topic whose limit is below the producer's: the broker refuses the whole request the
    # too-large record went in, good records with it.
    from aiokafka.errors import MessageSizeTooLargeError

    other = await key_in_the_same_batch_as(kit.engine, "k")  # all four rows in one batch
    await queue_events(kit.harness, kit.sessions, ["k"], "first")
    big = await insert_raw(kit.engine, kit.harness, "k", b'{"big": true}')
    await queue_events(kit.harness, kit.sessions, ["k", other], "then")
    sent: list[tuple[bytes | None, bool]] = []

    async def broker_limit(topic: str, key: bytes | None, payload: bytes) -> object:
        in_batch = len(sent) < 4  # the first pass: one produce request for all four
        sent.append((key, in_batch))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if in_batch or payload == b'{"big": true}':
            future.set_exception(MessageSizeTooLargeError())
        else:
            future.set_result(None)
        return future

    assert await publish_all(kit.relay(broker_limit)) == 3
    rows = await kit.outbox_rows()
    state = {
        r["id"]: ("published" if r["published_at"] else "parked" if r["parked_at"] else "waiting")
        for r in rows
    }
    ids = [r["id"] for r in rows]
    assert [state[i] for i in ids] == ["published", "parked", "waiting", "published"]
    assert ids[1] == big
    # Retried one at a time in order: k's first event, the big one; k's next is held; then x.
    assert [key for key, in_batch in sent if not in_batch] == [b"k", b"k", other.encode()]


async def test_a_record_batch_the_broker_refuses_is_sent_again_one_row_at_a_time(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    producer = runtime.kafka_producer()
    assert producer is not None
    topic = kit.harness.output_topic
    other = await key_beside(kit, producer, "k")
    await queue_events(kit.harness, kit.sessions, ["k"], "first")
    big = await insert_raw(kit.engine, kit.harness, "k", b'{"big": true}')
    await queue_events(kit.harness, kit.sessions, ["k", other], "then")
    limited = LimitedTopic(producer, b'{"big": true}')
    relay = kit.relay(limited.publish, producer=lambda: limited, renew_producer=limited.renew)

    assert await publish_all(relay) == 3  # 2 published, 1 parked
    rows = await kit.outbox_rows()
    state = {
        r["id"]: ("published" if r["published_at"] else "parked" if r["parked_at"] else "waiting")
        for r in rows
    }
    ids = [r["id"] for r in rows]
    assert ids[1] == big
    assert [state[i] for i in ids] == ["published", "parked", "waiting", "published"]
    # k's three rows went in one batch, refused; the other key's batch went out. Then k's rows
    # one at a time, in order: its first, the big one (parked); its next is held.
    assert sorted(limited.batches) == sorted([[b"k", b"k", b"k"], [other.encode()]])
    assert limited.one_by_one == [b"k", b"k"]
    # A new producer after each refusal in an acknowledgement: the refused batch, then the row.
    assert limited.renewals == 2
    published = await read_partitions(settings.kafka_bootstrap_servers, topic)
    assert sorted(event_of(r)["id"] for r in published) == sorted(
        r["event_id"] for r in rows if r["published_at"] is not None
    )


async def test_a_record_batch_failing_otherwise_marks_nothing(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    producer = runtime.kafka_producer()
    assert producer is not None
    await queue_events(kit.harness, kit.sessions, [f"o-{i % 3}" for i in range(6)], "down")

    class Unacknowledged(LimitedTopic):
        async def send_batch(self, batch: RecordedBatch, topic: str, *, partition: int) -> object:
            future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            future.set_exception(OSError("not acknowledged"))
            return future

    down = Unacknowledged(producer, b"")
    relay = kit.relay(down.publish, producer=lambda: down, renew_producer=down.renew)
    with pytest.raises(OSError, match="not acknowledged"):
        await relay.publish_pending()
    assert down.one_by_one == [] and down.renewals == 0  # not taken for a refusal of the records
    assert await kit.unpublished_count() == 6
    assert await parked_rows(kit.sessions, kit.harness.tables) == []


async def test_a_row_refused_in_one_record_batch_is_not_overtaken_by_its_key_in_the_next(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    producer = runtime.kafka_producer()
    assert producer is not None
    await queue_events(kit.harness, kit.sessions, ["k"], "first")
    # Batched (under 64 KiB) but larger than a record batch (16 KiB): it fills a batch of its
    # own, and k's next row starts another batch of the same partition. The topic's limit is
    # below this row's size: the broker refuses its batch, and it alone.
    too_large = b'{"x": "' + b"a" * (20 * 1024) + b'"}'
    big = await insert_raw(kit.engine, kit.harness, "k", too_large)
    await queue_events(kit.harness, kit.sessions, ["k"], "then")
    limited = LimitedTopic(producer, too_large)

    published_or_parked = await publish_all(kit.relay(limited.publish, producer=lambda: limited))
    rows = await kit.outbox_rows()
    assert rows[1]["id"] == big and rows[1]["parked_at"] is not None
    # k's row after the parked one waits behind it: it is not on the topic.
    assert rows[2]["published_at"] is None and rows[2]["parked_at"] is None
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert [event_of(r)["id"] for r in published] == [rows[0]["event_id"]]
    assert published_or_parked == 2
    # k's first row in a batch, the large one in the next of the same partition; k's next row
    # was not handed over once that batch was refused.
    assert limited.batches == [[b"k"], [b"k"]]


async def test_a_row_sent_alone_waits_for_the_refused_record_batch_of_its_key(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    producer = runtime.kafka_producer()
    assert producer is not None
    refused_row = await insert_raw(kit.engine, kit.harness, "k", b'{"big": true}')
    # Above what goes in record batches: sent with `send` once k's open batch is handed over.
    await insert_raw(kit.engine, kit.harness, "k", b'{"x": "' + b"a" * (100 * 1024) + b'"}')
    limited = LimitedTopic(producer, b'{"big": true}')

    relay = kit.relay(limited.publish, producer=lambda: limited, renew_producer=limited.renew)
    assert await publish_all(relay) == 1
    rows = await kit.outbox_rows()
    assert rows[0]["id"] == refused_row and rows[0]["parked_at"] is not None
    # The large row waits behind the parked one: it was not sent after its key's refused batch.
    assert rows[1]["published_at"] is None and rows[1]["parked_at"] is None
    assert await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic) == []
    assert limited.one_by_one == [b"k"]  # the refused row alone, again refused
    assert limited.renewals == 2


async def test_an_idempotent_relay_producer_is_renewed_and_sends_again(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime, monkeypatch
) -> None:
    before = runtime.kafka_producer()
    assert before is not None
    await runtime.renew_relay_producer()
    assert runtime.kafka_producer() is before  # without idempotence: no numbers to start again

    # Idempotent (the embedded broker has no idempotent producer: a plain one stands in).
    monkeypatch.setattr(
        runtime, "settings", settings.model_copy(update={"kafka_idempotence": True})
    )
    monkeypatch.setattr(
        runtime,
        "_new_relay_producer",
        lambda: AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers),
    )
    await runtime.renew_relay_producer()
    after = runtime.kafka_producer()
    assert after is not None and after is not before
    assert before._closed  # the old one stopped, its acknowledged batches done
    await queue_events(kit.harness, kit.sessions, ["k"], "renewed")
    assert await publish_all(runtime.relay) == 1
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert [r.key for r in published] == [b"k"]


async def test_a_renewed_producer_that_cannot_start_yet_is_started_by_the_next_send(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime, monkeypatch
) -> None:
    from aiokafka.errors import KafkaConnectionError

    monkeypatch.setattr(
        runtime, "settings", settings.model_copy(update={"kafka_idempotence": True})
    )
    starts: list[str] = []

    def new_producer() -> AIOKafkaProducer:
        # The broker unreachable for the first start after the renewal.
        if not starts:
            starts.append("refused")
            return AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", request_timeout_ms=500)
        starts.append("started")
        return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)

    monkeypatch.setattr(runtime, "_new_relay_producer", new_producer)
    with pytest.raises(KafkaConnectionError):
        await runtime.renew_relay_producer()
    assert runtime.kafka_producer() is None
    await queue_events(kit.harness, kit.sessions, ["k"], "after-renewal")
    # Sent through a new producer of the relay's own, not the broker's (FastStream's) one.
    assert await publish_all(runtime.relay) == 1
    assert starts == ["refused", "started"] and runtime.kafka_producer() is not None
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert [r.key for r in published] == [b"k"]


def failed_with(exc: BaseException) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def test_a_refusal_beside_another_failure_still_renews_the_producer_first(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    producer = runtime.kafka_producer()
    assert producer is not None
    other = await key_beside(kit, producer, "k")
    await insert_raw(kit.engine, kit.harness, "k", b'{"big": true}')
    await queue_events(kit.harness, kit.sessions, [other], "then")

    class AlsoDown(LimitedTopic):
        async def send_batch(self, batch: RecordedBatch, topic: str, *, partition: int) -> object:
            if other.encode() in batch.keys:
                self.batches.append(batch.keys)
                return failed_with(OSError("not acknowledged"))
            return await super().send_batch(batch, topic, partition=partition)

    down = AlsoDown(producer, b'{"big": true}')
    relay = kit.relay(down.publish, producer=lambda: down, renew_producer=down.renew)
    with pytest.raises(OSError, match="not acknowledged"):
        await relay.publish_pending()
    # k's batch was refused (numbers spent): renewed although the round ends in another error.
    assert down.renewals == 1
    assert await kit.unpublished_count() == 2  # nothing marked: both are sent again later
    assert await parked_rows(kit.sessions, kit.harness.tables) == []


async def test_an_out_of_order_sequence_renews_the_producer(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    from aiokafka.errors import OutOfOrderSequenceNumber

    producer = runtime.kafka_producer()
    assert producer is not None
    await queue_events(kit.harness, kit.sessions, ["k"], "stuck")

    class OutOfOrder(LimitedTopic):
        async def send_batch(self, batch: RecordedBatch, topic: str, *, partition: int) -> object:
            return failed_with(OutOfOrderSequenceNumber())

    stuck = OutOfOrder(producer, b"")
    relay = kit.relay(stuck.publish, producer=lambda: stuck, renew_producer=stuck.renew)
    with pytest.raises(OutOfOrderSequenceNumber):
        await relay.publish_pending()
    assert stuck.renewals == 1  # a new producer id for the next round, not the same error again
    assert await kit.unpublished_count() == 1


async def test_a_record_of_a_stopped_partition_gets_no_headers_made(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    producer = runtime.kafka_producer()
    assert producer is not None
    topic = kit.harness.output_topic
    limited = LimitedTopic(producer, b'{"big": true}')
    batches = RecordBatches[str](limited, RELAY_HEADERS)  # type: ignore[arg-type]  # a test double
    made: list[bytes] = []

    def traced(topic: str, key: bytes) -> list[tuple[str, bytes]]:
        made.append(key)  # with tracing on: a span per record
        return [*RELAY_HEADERS, ("traceparent", b"00-" + key)]

    await batches.add(topic, b"k", b'{"big": true}', "refused", traced)
    refused_batch = await batches.flush()
    assert not await batches.settled(topic, b"k")  # its batch refused: the partition stops
    assert await batches.add(topic, b"k", b"{}", "held", traced) == []
    assert made == [b"k"]  # the held record made no span
    assert [tags for tags, _ in refused_batch] == [["refused"]]
