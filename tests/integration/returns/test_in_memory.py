"""The returns service in memory (`services.returns.memory`, on `shared.messaging.membus`) does
what the service does on PostgreSQL: the same history, played through both, queues the same
events (ids, times, causes, data) in the same order, timers included."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aftersales_dev.events import topic_of, unique
from services.returns.memory import in_memory
from shared.clock import ManualClock
from shared.policy import Policy
from tests.in_memory import as_json, play

from .helpers import (
    T0,
    D,
    H,
    ReturnsService,
    evidence_submitted,
    order_paid,
    outbound_signed,
    paid_line,
    return_requested,
    return_shipped,
    return_signed,
)


def history(o1: str, o2: str, o3: str) -> list[tuple[datetime, Mapping[str, Any] | None]]:
    """(instant, event): an event arrives then; None: only the clock moves (timers fire)."""
    r1, r2, r3 = f"{o1}-R", f"{o2}-R", f"{o3}-R"
    return [
        # Asked before the order and its delivery are known: waits, then is approved.
        (T0, return_requested(o1, r1, at=T0, lines={"L1": 1})),
        (T0 + H, order_paid(o1, at=T0 - 4 * D, lines=[paid_line("L1", quantity=2, paid=9999)])),
        (T0 + 2 * H, outbound_signed(o1, at=T0 - 2 * D)),
        (T0 + 3 * H, return_shipped(o1, r1, at=T0 + 3 * H, fee=800)),
        (T0 + 1 * D, return_signed(o1, r1, at=T0 + 1 * D)),
        # Seller fault without photos: waits for them; they come; approved and refunded.
        (T0, order_paid(o2, at=T0 - 6 * D, shipping_fee_paid=600)),
        (T0 + H, outbound_signed(o2, at=T0 - 4 * D)),
        (T0 + 2 * H, return_requested(o2, r2, at=T0 + 2 * H, reason="quality_issue")),
        (T0 + 5 * H, evidence_submitted(o2, r2, at=T0 + 5 * H)),
        (T0 + 6 * H, return_shipped(o2, r2, at=T0 + 6 * H, fee=1500)),
        (T0 + 2 * D, return_signed(o2, r2, at=T0 + 2 * D)),
        # An order never seen: the signature wait runs out (a timer) and it is rejected.
        (T0 + 4 * H, return_requested(o3, r3, at=T0 + 4 * H)),
        (T0 + 4 * H + 48 * H, None),
    ]


async def test_the_same_history_queues_the_same_events_in_memory_and_on_the_database(
    svc: ReturnsService, clock: ManualClock
) -> None:
    orders = unique("O"), unique("O"), unique("O")
    steps = sorted(history(*orders), key=lambda step: step[0])

    for at, event in steps:
        await svc.at(at, *([event] if event is not None else []))
    on_database = [e.event for order_id in orders for e in await svc.outbox(order_id)]

    rows = await play(in_memory(Policy(), ManualClock(T0)), steps, topic_of)
    # The database's outbox is read order by order; the bus publishes in one stream.
    in_memory_events = [
        as_json(row) for row in sorted(rows, key=lambda r: orders.index(r.key or ""))
    ]

    assert [e["type"] for e in on_database].count("refund.requested") == 2
    assert [e["type"] for e in on_database].count("return.rejected") == 1
    assert in_memory_events == on_database
