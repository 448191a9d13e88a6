"""OutboxRelay against the real database and the real broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.contracts import NOTIFICATION_REQUESTED, NotificationRequested
from shared.db import UnitOfWork
from shared.messaging.context import HandlerContext
from shared.messaging.kafka import RecordBatches
from shared.messaging.parked import parked_rows, retry_parked
from shared.messaging.relay import (
    CONTENT_TYPE,
    RELAY_HEADERS,
    SLOTS,
    SLOTS_PER_BATCH,
    OutboxRelay,
    Publish,
)
from shared.messaging.runtime import ServiceRuntime
from shared.messaging.topics import ensure_topics
from shared.settings import Settings

from .helpers import (
    T0,
    Harness,
    event_of,
    header,
    read_partitions,
)
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


async def test_publishes_in_order_with_key_and_content_type(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    keys = [f"o-{i % 3}" for i in range(12)]
    await queue_events(kit.harness, kit.sessions, keys, "a")
    rows = await kit.outbox_rows()

    assert await publish_all(runtime.relay) == 12
    assert await runtime.relay.publish_pending() == 0
    assert await kit.unpublished_count() == 0
    assert {row["published_at"] for row in await kit.outbox_rows()} == {T0}

    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert len(published) == 12
    payload_by_id = {row["event_id"]: row["payload"] for row in rows}
    for record in published:
        event = event_of(record)
        assert record.key == event["data"]["order_id"].encode()
        assert header(record, "content-type") == CONTENT_TYPE.encode()
        assert record.value == payload_by_id[event["id"]]
    # Per key (so per partition), the order on the topic is the commit order.
    assert_commit_order_per_key(published, rows)


async def test_two_relays_at_once_publish_each_event_once_in_commit_order_per_key(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    keys = [f"o-{i % 16}" for i in range(96)]
    await queue_events(kit.harness, kit.sessions, keys, "b")
    calls: Counter[str] = Counter()

    def slow(name: str) -> Publish:
        async def publish(topic: str, key: bytes | None, payload: bytes) -> object:
            calls[name] += 1
            await asyncio.sleep(0.002)  # hold the slots while the other relay tries
            return await runtime._publish(topic, key, payload)

        return publish

    one = kit.relay(slow("one"), batch_size=4)
    two = kit.relay(slow("two"), batch_size=4)

    async def run_until_empty(r: OutboxRelay) -> None:
        while await kit.unpublished_count():
            if not await r.publish_pending():
                await asyncio.sleep(0.005)  # the other relay held the slots with events

    await asyncio.gather(run_until_empty(one), run_until_empty(two))

    assert await kit.unpublished_count() == 0
    assert calls["one"] > 0 and calls["two"] > 0, "one relay did all the work"
    assert sum(calls.values()) == 96  # nothing published twice
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert Counter(event_of(r)["id"] for r in published) == Counter(
        row["event_id"] for row in await kit.outbox_rows()
    )
    # Whichever relay sent them, the events of one key are on the topic in commit order.
    assert_commit_order_per_key(published, await kit.outbox_rows())


async def test_a_relay_of_the_version_before_slots_excludes_the_slot_relays(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    # During a rollout an old relay holds the leader lock alone while it publishes.
    await queue_events(kit.harness, kit.sessions, ["o-1", "o-2", "o-3"], "e")
    r = kit.relay(runtime._publish)
    async with kit.engine.connect() as old:
        await old.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": r._leader_lock})
        assert await r.publish_pending() == 0
        assert await kit.unpublished_count() == 3
        await old.rollback()
    assert await publish_all(r) == 3


async def test_a_publish_failure_leaves_the_batch_for_the_next_run(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    await queue_events(kit.harness, kit.sessions, [f"o-{i % 2}" for i in range(6)], "c")
    sent = 0

    async def flaky(topic: str, key: bytes | None, payload: bytes) -> object:
        nonlocal sent
        if sent == 1:  # whichever slots the batch has, it has a second event
            raise ConnectionError("broker went away")
        sent += 1
        return await runtime._publish(topic, key, payload)

    with pytest.raises(ConnectionError):
        await kit.relay(flaky).publish_pending()
    assert await kit.unpublished_count() == 6

    # A failing acknowledgement (after the send) counts as a failure too.
    async def unacknowledged(topic: str, key: bytes | None, payload: bytes) -> object:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        future.set_exception(OSError("not acknowledged"))
        return future

    with pytest.raises(OSError, match="not acknowledged"):
        await kit.relay(unacknowledged).publish_pending()
    assert await kit.unpublished_count() == 6

    await runtime.relay.drain()
    assert await kit.unpublished_count() == 0
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    rows = await kit.outbox_rows()
    # At least once: what was sent before the failure appears again after the retry.
    assert {event_of(r)["id"] for r in published} == {row["event_id"] for row in rows}
    on_topic = [event_of(r)["id"] for r in sorted(published, key=lambda r: r.offset)]
    for key in ("o-0", "o-1"):
        expected = [row["event_id"] for row in rows if row["key"] == key]
        keyed = [i for i in on_topic if i in expected]
        # The last complete pass is in commit order.
        assert keyed[-len(expected) :] == expected


async def test_relay_run_loop_publishes_when_woken_and_stops(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    # Only a wake-up can make it publish within the test.
    r = kit.relay(runtime._publish, poll_interval=30)
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await asyncio.sleep(0.3)
    await queue_events(kit.harness, kit.sessions, ["o-1", "o-2"], "d")
    r.wake()
    deadline = asyncio.get_running_loop().time() + 10
    while await kit.unpublished_count():
        assert asyncio.get_running_loop().time() < deadline, "woken relay did not publish"
        await asyncio.sleep(0.05)
    stop.set()
    r.wake()
    await asyncio.wait_for(task, 5)


async def test_the_run_loop_looks_at_drained_slots_again_only_after_a_wake_up_or_a_poll(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    r = kit.relay(runtime._publish)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(kit.engine.sync_engine, "before_cursor_execute", count)
    try:
        await queue_events(kit.harness, kit.sessions, [f"o-{i}" for i in range(8)], "w")
        assert await publish_all(r) == 8
        # Both halves were found with nothing left: the loop's look asks the database nothing.
        statements = 0
        assert await r.publish_pending(skip_drained=True) == 0
        assert statements == 0
        # An event committed without a wake-up (another instance's) waits for the poll ...
        await queue_events(kit.harness, kit.sessions, ["o-late"], "x")
        assert await r.publish_pending(skip_drained=True) == 0
        r.forget_drained()
        assert await r.publish_pending(skip_drained=True) == 1
        # ... one of this instance's comes with its wake-up.
        await queue_events(kit.harness, kit.sessions, ["o-woken"], "y")
        r.wake()
        assert await r.publish_pending(skip_drained=True) == 1
        assert await kit.unpublished_count() == 0
        # Without `skip_drained` (drain, tests) every half is asked each time.
        statements = 0
        assert await r.publish_pending() == 0
        assert statements > 0
    finally:
        event.remove(kit.engine.sync_engine, "before_cursor_execute", count)


async def test_an_event_committed_while_its_slot_is_published_goes_out_after_its_wake_up(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    """Committed after the relay's select (so not in its batch), in a slot of the half being
    published: its wake-up comes after the look began, so the half is not taken as drained."""
    committed: list[bytes | None] = []

    async def publish(topic: str, key: bytes | None, value: bytes) -> Any:
        if not committed:  # while the first batch is being sent
            committed.append(key)
            await queue_events(kit.harness, kit.sessions, [(key or b"").decode()], "meanwhile")
            r.wake()
        return await runtime._publish(topic, key, value)

    r = kit.relay(publish)
    await queue_events(kit.harness, kit.sessions, [f"o-{i}" for i in range(8)], "f")
    total = 0
    while published := await r.publish_pending(skip_drained=True):
        total += published
    assert committed
    assert total == 9
    assert await kit.unpublished_count() == 0


async def insert_raw(engine: AsyncEngine, harness: Harness, key: str, payload: bytes) -> int:
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


async def test_record_batches_go_to_the_partition_send_gives_the_key(
    settings: Settings, runtime: ServiceRuntime
) -> None:
    # Relays of the versions before batches sent each record with `send`: during a rollout
    # both kinds publish a key's events, which must stay on one partition.
    producer = runtime.kafka_producer()
    assert producer is not None
    keys = [f"o-{i}".encode() for i in range(60)] + [b"", "ø-€".encode(), b"x" * 301]
    for partitions in (3, 7, 12):
        topic = f"{runtime.name}.spread-{partitions}"
        await ensure_topics(
            settings.model_copy(update={"kafka_topic_partitions": partitions}), [topic]
        )
        batches = RecordBatches[None](producer, RELAY_HEADERS)
        chosen = [await batches.partition(topic, key) for key in keys]
        acks = [await producer.send(topic, b"{}", key=key) for key in keys]
        assert chosen == [(await ack).partition for ack in acks], partitions
        assert len(set(chosen)) == partitions  # the keys are spread, not all on one


async def test_a_key_stays_on_its_partition_whether_its_events_go_in_batches_or_one_by_one(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    keys = [f"o-{i % 20}" for i in range(80)]
    await queue_events(kit.harness, kit.sessions, keys[:40], "one-by-one")
    assert await publish_all(kit.relay(runtime._publish)) == 40  # `send` per record
    await queue_events(kit.harness, kit.sessions, keys[40:], "batched")
    assert await publish_all(runtime.relay) == 40
    await assert_on_topic_in_commit_order(kit, settings, 80)


async def test_a_partition_whose_rows_fill_several_record_batches_gets_them_in_order(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    # About 600 bytes an event, 80 a key: several 16 KiB batches for a partition.
    keys = [f"o-{i % 4}" for i in range(320)]
    await queue_events(kit.harness, kit.sessions, keys, "full", template="t" * 250)
    producer = runtime.kafka_producer()
    assert producer is not None
    counted = LimitedTopic(producer, too_large=b"none")
    assert await publish_all(kit.relay(counted.publish, producer=lambda: counted)) == 320
    # Batches of many records, but none took a key's 80 events: they filled several.
    assert 10 < max(len(batch) for batch in counted.batches) < 80
    assert counted.one_by_one == []
    await assert_on_topic_in_commit_order(kit, settings, 320)


async def test_a_row_too_large_for_a_batch_goes_out_after_the_batched_rows_of_its_key(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    await queue_events(kit.harness, kit.sessions, ["k", "k"], "before")
    # Above what goes in record batches, below the producer's request limit: sent with `send`.
    await insert_raw(kit.engine, kit.harness, "k", b'{"x": "' + b"a" * (100 * 1024) + b'"}')
    await queue_events(kit.harness, kit.sessions, ["k"], "after")
    assert await publish_all(runtime.relay) == 4
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    on_topic = [r.value for r in sorted(published, key=lambda r: r.offset)]
    assert on_topic == [row["payload"] for row in await kit.outbox_rows()]


class _Recorded:
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

    def create_batch(self) -> _Recorded:
        return _Recorded(self.producer.create_batch())

    async def partitions_for(self, topic: str) -> set[int]:
        return set(await self.producer.partitions_for(topic))

    async def send_batch(self, batch: _Recorded, topic: str, *, partition: int) -> object:
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


async def test_a_record_batch_the_broker_refuses_is_sent_again_one_row_at_a_time(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    producer = runtime.kafka_producer()
    assert producer is not None
    topic = kit.harness.output_topic
    batches = RecordBatches[None](producer, RELAY_HEADERS)
    # A key in the same relay batch as "k" (the same half of the slots), on another partition.
    other = await key_in_the_same_batch_as(
        kit.engine,
        "k",
        lambda key: batches.partition(topic, key.encode()),
    )
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
        async def send_batch(self, batch: _Recorded, topic: str, *, partition: int) -> object:
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
