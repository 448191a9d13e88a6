"""Counters count an emitted event once: a replay that finds it in the outbox is not counted."""

from __future__ import annotations

from prometheus_client import REGISTRY

from shared.contracts import NOTIFICATION_REQUESTED, NotificationRequested
from shared.db import UnitOfWork
from shared.messaging.context import HandlerContext

from .helpers import T0, records
from .kit import MessagingKit


async def test_is_new_only_for_an_event_the_outbox_did_not_hold(kit: MessagingKit) -> None:
    async def emit_once_more() -> tuple[bool, bool]:
        async with UnitOfWork(kit.sessions) as uow:
            ctx = HandlerContext(
                uow=uow,
                tables=kit.harness.tables,
                service=kit.harness.name,
                now=T0,
                cause_id="cause-1",
            )
            data = NotificationRequested(
                request_id="r-1", customer_id="c-1", order_id="o-1", template="t"
            )
            first = await ctx.emit(
                NOTIFICATION_REQUESTED, data, topic=kit.harness.output_topic, key="o-1"
            )
            again = await ctx.emit(
                NOTIFICATION_REQUESTED, data, topic=kit.harness.output_topic, key="o-1"
            )
            await uow.commit()
            return ctx.is_new(first), ctx.is_new(again)

    assert await emit_once_more() == (True, False)
    assert await emit_once_more() == (False, False)  # a replay in a later transaction


async def test_a_record_dead_lettered_again_is_counted_once(kit: MessagingKit) -> None:
    def counted() -> float:
        labels = {"service": kit.harness.name, "reason": "malformed_json"}
        return REGISTRY.get_sample_value("aftersales_dead_letters_total", labels) or 0.0

    consumer = kit.processor()
    batch = records(kit.harness.input_topic, [("o-1", b'{"broken": ')], start=7)
    before = counted()
    await consumer.process(batch)
    # Fetched again (its offset was not committed): the same dead letter, not a second one.
    await consumer.process(batch)
    assert counted() == before + 1
