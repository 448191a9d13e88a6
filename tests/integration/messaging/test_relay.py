"""OutboxRelay against the real database and the real broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import event, text

from shared.messaging.kafka import RecordBatches
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

from .helpers import T0, event_of, header, read_partitions
from .kit import MessagingKit
from .outbox import (
    LimitedTopic,
    assert_commit_order_per_key,
    assert_on_topic_in_commit_order,
    insert_raw,
    publish_all,
    queue_events,
)


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


async def test_the_slot_locks_of_a_round_are_held_until_it_commits(
    kit: MessagingKit, runtime: ServiceRuntime
) -> None:
    # The round's first statement goes to the driver: it must begin the transaction, or the
    # transaction's slot locks would go the moment they were taken.
    free: list[bool] = []

    async def publish(topic: str, key: bytes | None, payload: bytes) -> object:
        try_lock = text("SELECT pg_try_advisory_xact_lock(:id)")
        async with kit.engine.connect() as other:
            free.extend([bool(await other.scalar(try_lock, {"id": i})) for i in r._slot_locks])
            await other.rollback()
        return await runtime._publish(topic, key, payload)

    r = kit.relay(publish)
    await queue_events(kit.harness, kit.sessions, ["o-1"], "l")
    assert await publish_all(r) == 1
    # The half of the slots the round took is locked, the other half is not.
    assert sorted(free) == [False] * SLOTS_PER_BATCH + [True] * (SLOTS - SLOTS_PER_BATCH)


async def test_a_keyless_event_goes_out_in_the_slot_of_the_empty_key(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    await insert_raw(kit.engine, kit.harness, None, b'{"keyless": true}')
    async with kit.engine.connect() as conn:
        slot = await conn.scalar(
            text("SELECT (hashtext('') & 2147483647) % :slots"), {"slots": SLOTS}
        )
    r = kit.relay(runtime._publish)
    assert await r._publish_slots([s for s in range(SLOTS) if s != slot]) == 0
    assert await r._publish_slots([slot]) == 1
    assert await kit.unpublished_count() == 0
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert [(record.key, record.value) for record in published] == [(None, b'{"keyless": true}')]


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


async def test_a_round_whose_session_ends_leaves_its_rows_to_the_next_relay_in_order(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime, producer: AIOKafkaProducer
) -> None:
    """The connection of a round ends while it sends (a database restart, the idle timeout):
    its slot locks go, another instance's relay publishes the rows and later ones, and the
    ended round still sends what it read. Each event is on the topic, every key's events first
    seen in commit order; the ended round marks nothing and its copies come later."""
    from shared.messaging.errors import is_transient

    await queue_events(kit.harness, kit.sessions, ["k-1", "k-2"] * 4, "before")
    took_over: list[int] = []

    async def other_instance(topic: str, key: bytes | None, payload: bytes) -> object:
        return await producer.send(topic, payload, key=key, headers=RELAY_HEADERS)

    other = kit.relay(other_instance)

    class SessionEnds(LimitedTopic):
        async def send_batch(self, batch: Any, topic: str, *, partition: int) -> object:
            if not took_over:
                async with kit.engine.connect() as conn:
                    ended = await conn.scalar(
                        text(
                            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
                            "FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                            "AND state = 'idle in transaction' AND query LIKE '%hashtext%'"
                        )
                    )
                took_over.append(ended)
                await queue_events(kit.harness, kit.sessions, ["k-1", "k-2"], "meanwhile")
                took_over.append(await publish_all(other))
            return await super().send_batch(batch, topic, partition=partition)

    relay_producer = runtime.kafka_producer()
    assert relay_producer is not None
    ends = SessionEnds(relay_producer, too_large=b"none")
    with pytest.raises(Exception) as failed:
        await kit.relay(ends.publish, producer=lambda: ends).publish_pending()
    assert is_transient(failed.value), failed.value
    assert took_over == [1, 10]
    assert await kit.unpublished_count() == 0
    rows = await kit.outbox_rows()
    published = await read_partitions(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    assert {event_of(r)["id"] for r in published} == {row["event_id"] for row in rows}
    assert len(published) > len(rows)  # the ended round's copies
    for key in ("k-1", "k-2"):
        mine = sorted((r for r in published if r.key == key.encode()), key=lambda r: r.offset)
        first_seen = list(dict.fromkeys(event_of(r)["id"] for r in mine))
        assert first_seen == [row["event_id"] for row in rows if row["key"] == key], key
