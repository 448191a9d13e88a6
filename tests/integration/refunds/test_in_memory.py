"""The refund ledger in memory (`services.refunds.memory`, on `shared.messaging.membus`) does
what it does on PostgreSQL: the same history, played through both, queues the same events
(ids, amounts, splits, breaches) in the same order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aftersales_dev.events import topic_of, unique
from services.refunds.memory import in_memory
from shared.clock import ManualClock
from shared.contracts import ids
from shared.policy import Policy
from tests.in_memory import as_json, play
from tests.refund_events import (
    order_paid,
    refund_failed,
    refund_requested,
    refund_settled,
)

from .conftest import T0, RefundsService

H = timedelta(hours=1)


def history(order: str, early: str) -> list[tuple[datetime, dict[str, Any]]]:
    complaint, ret = unique("cp"), "rt-" + order
    goods = [("goods", 20000), ("outbound_shipping", 1200)]
    return [
        # A request before its order is known waits for order.paid.
        (
            T0,
            refund_requested(
                early, "complaint", unique("cp"), [("compensation", 500)], T0, T0 + 24 * H
            ),
        ),
        (
            T0 + H,
            order_paid(
                order,
                T0 - 72 * H,
                shipping_fee_paid=1200,
                payments=[("card", 15000), ("balance", 11200)],
            ),
        ),
        (T0 + 2 * H, order_paid(early, T0 - 80 * H)),
        (
            T0 + 3 * H,
            refund_requested(
                order, "complaint", complaint, [("goods", 8000)], T0 + 3 * H, T0 + 27 * H
            ),
        ),
        # Cut by what the complaint got back, and issued after its due_by: a breach.
        (T0 + 30 * H, refund_requested(order, "return", ret, goods, T0 + 4 * H, T0 + 28 * H)),
        (
            T0 + 31 * H,
            refund_failed(order, ids.refund_id("return", ret), "card", 4000, T0 + 31 * H),
        ),
        (T0 + 32 * H, refund_settled(order, ids.refund_id("complaint", complaint), T0 + 32 * H)),
    ]


async def test_the_same_history_queues_the_same_events_in_memory_and_on_the_database(
    svc: RefundsService, clock: ManualClock
) -> None:
    order, early = unique("o"), unique("o")
    steps = history(order, early)
    for at, event in steps:
        clock.set(at)
        await svc.fire_due()
        await svc.feed(event)
    on_database = [
        {k: v for k, v in e.items() if k != "_topic"}
        for key in (order, early)
        for e in await svc.emitted(key)
    ]

    rows = await play(in_memory(Policy(), ManualClock(T0)), steps, topic_of)
    # The database's outbox is read order by order; the bus publishes in one stream.
    in_memory_events = [
        as_json(row) for row in sorted(rows, key=lambda r: (order, early).index(r.key or ""))
    ]

    kinds = [e["type"] for e in on_database]
    assert kinds.count("refund.issued") == 4  # the early one, the complaint, the return, a re-issue
    assert kinds.count("sla.breached") == 1
    assert in_memory_events == on_database
