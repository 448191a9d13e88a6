"""OutboxRelay against the real database and the real broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.clock import ManualClock
from shared.contracts import NOTIFICATION_REQUESTED, NotificationRequested
from shared.db import UnitOfWork
from shared.messaging.context import HandlerContext
from shared.messaging.relay import CONTENT_TYPE, OutboxRelay, Publish
from shared.messaging.runtime import ServiceRuntime, ensure_topics
from shared.settings import Settings

from .helpers import (
    T0,
    Harness,
    event_of,
    header,
    outbox_rows,
    read_partitions,
    unpublished_count,
)


@pytest.fixture
async def runtime(
    harness: Harness, settings: Settings, engine: AsyncEngine, clock: ManualClock
) -> AsyncIterator[ServiceRuntime]:
    """A runtime whose broker is connected for publishing only (no consumer group)."""
    runtime = ServiceRuntime(harness.definition(), settings, clock, engine=engine)
    await ensure_topics(settings, [harness.output_topic])
    await runtime.broker.connect()
    yield runtime
    await runtime.broker.stop()


async def queue_events(
    harness: Harness, sessions: async_sessionmaker[AsyncSession], keys: list[str], tag: str
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
                harness.output_topic,
                NOTIFICATION_REQUESTED,
                NotificationRequested(
                    request_id=f"{tag}-{i}", customer_id="c-1", order_id=key, template="t"
                ),
                key=key,
            )
            await uow.commit()


def relay(
    harness: Harness,
    sessions: async_sessionmaker[AsyncSession],
    publish: Publish,
    clock: ManualClock,
    batch_size: int = 500,
) -> OutboxRelay:
    return OutboxRelay(
        service=harness.name,
        sessions=sessions,
        tables=harness.tables,
        publish=publish,
        clock=clock,
        batch_size=batch_size,
    )


async def test_publishes_in_order_with_key_and_content_type(
    harness: Harness,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    settings: Settings,
    runtime: ServiceRuntime,
    clock: ManualClock,
) -> None:
    keys = [f"o-{i % 3}" for i in range(12)]
    await queue_events(harness, sessions, keys, "a")
    rows = await outbox_rows(engine, harness)

    assert await runtime.relay.publish_pending() == 12
    assert await runtime.relay.publish_pending() == 0
    assert await unpublished_count(engine, harness) == 0
    assert {row["published_at"] for row in await outbox_rows(engine, harness)} == {T0}

    published = await read_partitions(settings.kafka_bootstrap_servers, harness.output_topic)
    assert len(published) == 12
    payload_by_id = {row["event_id"]: row["payload"] for row in rows}
    for record in published:
        event = event_of(record)
        assert record.key == event["data"]["order_id"].encode()
        assert header(record, "content-type") == CONTENT_TYPE.encode()
        assert record.value == payload_by_id[event["id"]]
    # Per key (so per partition), the order on the topic is the commit order.
    for key in set(keys):
        on_topic = [
            event_of(r)["id"]
            for r in sorted(published, key=lambda r: r.offset)
            if r.key == key.encode()
        ]
        assert on_topic == [row["event_id"] for row in rows if row["key"] == key]
        assert len({r.partition for r in published if r.key == key.encode()}) == 1


async def test_two_relays_at_once_publish_each_event_once(
    harness: Harness,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    settings: Settings,
    runtime: ServiceRuntime,
    clock: ManualClock,
) -> None:
    await queue_events(harness, sessions, [f"o-{i % 4}" for i in range(30)], "b")
    calls: Counter[str] = Counter()

    def slow(name: str) -> Publish:
        async def publish(topic: str, key: bytes | None, payload: bytes) -> object:
            calls[name] += 1
            await asyncio.sleep(0.01)  # hold the leader lock while the other relay tries
            return await runtime._publish(topic, key, payload)

        return publish

    one = relay(harness, sessions, slow("one"), clock, batch_size=4)
    two = relay(harness, sessions, slow("two"), clock, batch_size=4)

    refused = 0

    async def run_until_empty(r: OutboxRelay) -> None:
        nonlocal refused
        while await unpublished_count(engine, harness):
            if not await r.publish_pending():
                refused += 1  # the other relay held the leader lock
                await asyncio.sleep(0.005)

    await asyncio.gather(run_until_empty(one), run_until_empty(two))

    assert await unpublished_count(engine, harness) == 0
    assert refused > 0, "the relays never overlapped"
    assert sum(calls.values()) == 30
    published = await read_partitions(settings.kafka_bootstrap_servers, harness.output_topic)
    ids = Counter(event_of(r)["id"] for r in published)
    assert len(ids) == 30
    assert set(ids.values()) == {1}


async def test_a_publish_failure_leaves_the_batch_for_the_next_run(
    harness: Harness,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    settings: Settings,
    runtime: ServiceRuntime,
    clock: ManualClock,
) -> None:
    await queue_events(harness, sessions, [f"o-{i % 2}" for i in range(6)], "c")
    sent = 0

    async def flaky(topic: str, key: bytes | None, payload: bytes) -> object:
        nonlocal sent
        if sent == 3:
            raise ConnectionError("broker went away")
        sent += 1
        return await runtime._publish(topic, key, payload)

    with pytest.raises(ConnectionError):
        await relay(harness, sessions, flaky, clock).publish_pending()
    assert await unpublished_count(engine, harness) == 6

    # A failing acknowledgement (after the send) counts as a failure too.
    async def unacknowledged(topic: str, key: bytes | None, payload: bytes) -> object:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        future.set_exception(OSError("not acknowledged"))
        return future

    with pytest.raises(OSError, match="not acknowledged"):
        await relay(harness, sessions, unacknowledged, clock).publish_pending()
    assert await unpublished_count(engine, harness) == 6

    await runtime.relay.drain()
    assert await unpublished_count(engine, harness) == 0
    published = await read_partitions(settings.kafka_bootstrap_servers, harness.output_topic)
    rows = await outbox_rows(engine, harness)
    # At least once: the three sent before the failure appear again after the retry.
    assert {event_of(r)["id"] for r in published} == {row["event_id"] for row in rows}
    on_topic = [event_of(r)["id"] for r in sorted(published, key=lambda r: r.offset)]
    for key in ("o-0", "o-1"):
        expected = [row["event_id"] for row in rows if row["key"] == key]
        keyed = [i for i in on_topic if i in expected]
        # The last complete pass is in commit order.
        assert keyed[-len(expected) :] == expected


async def test_relay_run_loop_publishes_when_woken_and_stops(
    harness: Harness,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    runtime: ServiceRuntime,
    clock: ManualClock,
) -> None:
    r = OutboxRelay(
        service=harness.name,
        sessions=sessions,
        tables=harness.tables,
        publish=runtime._publish,
        clock=clock,
        poll_interval=30,  # only a wake-up can make it publish within the test
    )
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await asyncio.sleep(0.3)
    await queue_events(harness, sessions, ["o-1", "o-2"], "d")
    r.wake()
    deadline = asyncio.get_running_loop().time() + 10
    while await unpublished_count(engine, harness):
        assert asyncio.get_running_loop().time() < deadline, "woken relay did not publish"
        await asyncio.sleep(0.05)
    stop.set()
    r.wake()
    await asyncio.wait_for(task, 5)
