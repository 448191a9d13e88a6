"""Slow batches. A consumer slower than max.poll.interval, on the real broker: the instance
stalled in a batch leaves its group, the other instance takes its partitions and fetches the
stalled batch again, and yet every event applies exactly once (inbox) and the partition goes on
behind it. And the event-by-event path keeps a batch inside its time budget: it commits what it
applied, the rest is fetched again, and every round moves on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts import ORDER_PAID, CloudEvent, OrderPaid
from shared.messaging.consumer import LAST_RESORT_AFTER, BatchCut, Record
from shared.messaging.context import HandlerContext
from shared.messaging.runtime import ServiceRuntime, ensure_topics
from shared.settings import Settings
from tests.polling import eventually

from .helpers import (
    Harness,
    encode,
    order_paid,
    order_shipped,
    records,
)
from .kit import MessagingKit
from .test_consumer import dead_letters
from .test_runtime import new_runtime

MAX_POLL_INTERVAL_MS = 3000
STALL_SECONDS = 10.0  # past the interval, with time to spare for the group to rebalance


class Stall:
    """The paid handler stalls once, on the first attempt of one order's event."""

    def __init__(self, harness: Harness, order_id: str) -> None:
        self.harness = harness
        self.order_id = order_id
        self.started = asyncio.Event()
        self.done = asyncio.Event()

    async def on_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        assert isinstance(event.data, OrderPaid)
        if event.data.order_id == self.order_id and not self.started.is_set():
            self.started.set()
            await asyncio.sleep(STALL_SECONDS)
            self.done.set()
        await self.harness.on_paid(event, ctx)


def seen_offsets(runtime: ServiceRuntime, seen: Counter[tuple[int, int]]) -> None:
    """Count every (partition, offset) the runtime's processor is handed."""
    process = runtime.processor.process

    async def counting(records: Sequence[Record]) -> None:
        seen.update((record.partition, record.offset) for record in records)
        await process(records)

    runtime.processor.process = counting  # type: ignore[method-assign]


async def test_a_consumer_stalled_past_max_poll_interval_loses_nothing_and_applies_once(
    kit: MessagingKit, settings: Settings, producer: AIOKafkaProducer
) -> None:
    settings = settings.model_copy(update={"kafka_max_poll_interval_ms": MAX_POLL_INTERVAL_MS})
    stall = Stall(kit.harness, "o-stall")
    definition = dataclasses.replace(
        kit.harness.definition(),
        handlers={**kit.harness.definition().handlers, ORDER_PAID: stall.on_paid},
    )
    await ensure_topics(settings, definition.all_topics)
    seen: Counter[tuple[int, int]] = Counter()
    runtimes = [
        new_runtime(kit.harness, settings, kit.clock, kit.engine, definition) for _ in range(2)
    ]
    for runtime in runtimes:
        seen_offsets(runtime, seen)

    async def send(order_id: str, document: dict[str, Any]) -> tuple[int, int]:
        sent = await producer.send_and_wait(
            kit.harness.input_topic, encode(document), key=order_id.encode()
        )
        return sent.partition, sent.offset

    async def effects() -> dict[str, int]:
        return dict(await kit.effect_counts())

    try:
        await asyncio.gather(*(runtime.start() for runtime in runtimes))
        stalled = await send("o-stall", order_paid("o-stall", event_id="e-paid-stall"))
        await asyncio.wait_for(stall.started.wait(), timeout=60)
        # Behind the stalled record on its partition, and on the others.
        behind = await send("o-stall", order_shipped("o-stall", event_id="e-shipped-stall"))
        assert behind[0] == stalled[0]
        others = [f"o-{i}" for i in range(12)]
        for order in others:
            await send(order, order_paid(order, event_id=f"e-paid-{order}"))

        expected = {
            "e-paid-stall": 1,
            "e-shipped-stall": 1,
            **{f"e-paid-{order}": 1 for order in others},
        }

        await eventually(lambda: _all_of(effects, expected), timeout=90, what="every event applied")
        assert stall.done.is_set()
        # The stalled batch was handed out again: the group rebalanced while it stalled, and
        # its offset was not committed by the instance that had left.
        await eventually(lambda: seen[stalled] >= 2, timeout=60, what="stalled batch fetched again")
        # Let any last redelivery finish before counting.
        await eventually(
            lambda: all(seen[at] >= 1 for at in [behind]), timeout=30, what="partition moved on"
        )
        await asyncio.sleep(2)
        assert await effects() == expected
    finally:
        for runtime in runtimes:
            with contextlib.suppress(Exception):
                await runtime.stop()


async def process_until_done(consumer: Any, batch: Sequence[Record]) -> list[int]:
    """Process `batch` as the runtime would: fetched again from its start after each cut,
    until it completes; how many records each cut round applied."""
    cuts: list[int] = []
    for _ in range(2 * len(batch)):
        try:
            await consumer.process(batch)
            return cuts
        except BatchCut as cut:
            cuts.append(cut.applied)
    raise AssertionError(f"the batch never completed: cuts after {cuts}")


async def test_the_event_by_event_path_keeps_inside_its_budget_and_always_moves_on(
    kit: MessagingKit,
) -> None:
    elapsed = [0.0]

    async def slow_paid(event: CloudEvent, ctx: HandlerContext) -> None:
        elapsed[0] += 6.0  # each event takes 6 s; the budget is 10
        await kit.harness.on_paid(event, ctx)

    # Sends the batch down the event-by-event path.
    kit.harness.faults["o-bad"] = ValueError("a bug")
    orders = ["o-1", "o-2", "o-bad", "o-3", "o-4"]
    batch = records(
        kit.harness.input_topic,
        [(order, encode(order_paid(order, event_id=f"e-{order}"))) for order in orders],
    )
    consumer = kit.processor(
        handlers={ORDER_PAID: slow_paid},
        budget=10.0,
        monotonic=lambda: elapsed[0],
    )
    cuts = await process_until_done(consumer, batch)
    # Over budget, each round committed a prefix that reached one record further.
    assert cuts == [1, 2, 3, 4]
    assert await kit.effect_counts() == {
        "e-o-1": 1,
        "e-o-2": 1,
        "e-o-3": 1,
        "e-o-4": 1,
    }
    [(_, letter)] = dead_letters(await kit.outbox_rows())
    assert (letter.reason, letter.origin.offset) == ("handler_error", 2)


async def test_a_runtime_fetches_a_cut_batch_again_and_applies_each_event_once(
    kit: MessagingKit, settings: Settings, producer: AIOKafkaProducer
) -> None:
    # Budget: half of 3 s. The first event fails, so the batch goes event by event at 0.4 s
    # each: it cannot finish within one budget.
    settings = settings.model_copy(update={"kafka_max_poll_interval_ms": MAX_POLL_INTERVAL_MS})
    kit.harness.handler_delay = 0.4
    kit.harness.faults["o-bad"] = ValueError("a bug")
    orders = ["o-bad", *(f"o-{i}" for i in range(7))]
    await ensure_topics(settings, kit.harness.definition().all_topics)
    for order in orders:  # one partition, sent before the runtime starts: one batch
        await producer.send_and_wait(
            kit.harness.input_topic,
            encode(order_paid(order, event_id=f"e-{order}")),
            key=order.encode(),
            partition=0,
        )
    runtime = ServiceRuntime(kit.harness.definition(), settings, kit.clock, engine=kit.engine)
    seen: Counter[tuple[int, int]] = Counter()
    seen_offsets(runtime, seen)
    failed: list[BaseException] = []
    runtime.health.failed = failed.append  # type: ignore[method-assign]
    expected = {f"e-{order}": 1 for order in orders[1:]}

    async def effects() -> dict[str, int]:
        return dict(await kit.effect_counts())

    try:
        await runtime.start()
        await eventually(
            lambda: _all_of(effects, expected), timeout=90, what="every good event applied"
        )
        assert await effects() == expected
        # Cut and fetched again, never counted as a failure.
        assert seen[(0, len(orders) - 1)] >= 2
        assert failed == []
        letters = dead_letters(await kit.outbox_rows())
        assert [(d.reason, d.origin.offset) for _, d in letters] == [("handler_error", 0)]
    finally:
        await runtime.stop()


async def _all_of(get: Any, expected: dict[str, int]) -> bool:
    current = await get()
    return all(current.get(k, 0) >= 1 for k in expected)


async def test_the_last_resort_leaves_out_what_a_cut_round_applied(kit: MessagingKit) -> None:
    elapsed = [0.0]
    broken = [False]

    async def slow_paid(event: CloudEvent, ctx: HandlerContext) -> None:
        elapsed[0] += 6.0
        await kit.harness.on_paid(event, ctx)

    def lock_keys(event: CloudEvent) -> list[str]:
        if broken[0]:
            raise ValueError("a bug in lock_keys")  # the whole batch fails, on both paths
        return [event.data.order_id]  # type: ignore[attr-defined]

    kit.harness.faults["o-bad"] = ValueError("a bug")
    orders = ["o-1", "o-bad", "o-2"]
    batch = records(
        kit.harness.input_topic,
        [(order, encode(order_paid(order, event_id=f"e-{order}"))) for order in orders],
    )
    consumer = kit.processor(
        handlers={ORDER_PAID: slow_paid},
        lock_keys=lock_keys,
        budget=10.0,
        monotonic=lambda: elapsed[0],
    )
    with pytest.raises(BatchCut):
        await consumer.process(batch)  # o-1 applied and committed
    broken[0] = True
    for _ in range(LAST_RESORT_AFTER - 1):
        with pytest.raises(ValueError):
            await consumer.process(batch)
    await consumer.process(batch)
    assert await kit.effect_counts() == {"e-o-1": 1}
    letters = dead_letters(await kit.outbox_rows())
    assert [(d.reason, d.origin.offset) for _, d in letters] == [
        ("batch_refused", 1),
        ("batch_refused", 2),
    ]


async def test_a_batch_naming_more_lock_keys_than_a_transaction_takes_is_cut_and_moves_on(
    kit: MessagingKit,
) -> None:
    """Events that each name many keys (a follow-up event names up to 1,000 cases): a whole
    batch of them would ask PostgreSQL for more advisory locks than its lock table holds
    (53200, a passing fault, fetched again for ever). The batch is cut after the events whose
    keys fit; each round applies at least one event, and each event applies once."""
    extra = {"o-1": 1, "o-2": 1, "o-big": 5, "o-3": 1, "o-4": 1}

    def lock_keys(event: CloudEvent) -> list[str]:
        order = event.data.order_id  # type: ignore[attr-defined]
        return [order, *(f"case:{order}:{i}" for i in range(extra[order]))]

    batch = records(
        kit.harness.input_topic,
        [(order, encode(order_paid(order, event_id=f"e-{order}"))) for order in extra],
    )
    locked: list[int] = []
    consumer = kit.processor(lock_keys=lock_keys, max_lock_keys=4)
    original = consumer._lock_plan

    def plan(items: Any) -> tuple[int, set[str]]:
        fitting, keys = original(items)
        locked.append(len(keys))
        return fitting, keys

    consumer._lock_plan = plan  # type: ignore[method-assign]
    cuts = await process_until_done(consumer, batch)
    # o-1 and o-2 (4 keys); o-big alone (6 keys, over the limit: one event always goes);
    # o-3 and o-4. Events committed by an earlier round are not locked again.
    assert cuts == [2, 3]
    assert locked == [4, 6, 4]
    assert await kit.effect_counts() == {f"e-{order}": 1 for order in extra}


async def test_forty_thousand_lock_keys_in_one_batch_apply_on_the_real_database(
    kit: MessagingKit,
) -> None:
    """What the cut is for: 40 events of 1,000 keys each, one batch. Locked in one
    transaction they fail with 53200 (out of shared memory) every time."""
    orders = [f"o-{n}" for n in range(40)]

    def lock_keys(event: CloudEvent) -> list[str]:
        order = event.data.order_id  # type: ignore[attr-defined]
        return [f"case:{order}:{i}" for i in range(1000)]

    batch = records(
        kit.harness.input_topic,
        [(order, encode(order_paid(order, event_id=f"e-{order}"))) for order in orders],
    )
    consumer = kit.processor(lock_keys=lock_keys)
    await process_until_done(consumer, batch)
    assert await kit.effect_counts() == {f"e-{order}": 1 for order in orders}
