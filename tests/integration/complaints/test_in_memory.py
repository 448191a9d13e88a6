"""The complaints service in memory (`services.complaints.memory`, on `shared.messaging.membus`)
does what it does on PostgreSQL: the same history, played through both, queues the same events
(acknowledgements, breaches, escalations, coupons, refunds) in the same order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aftersales_dev.events import unique
from services.complaints.memory import in_memory
from shared.catchup import CATCH_UP_GRACE
from shared.clock import ManualClock
from shared.policy import Policy
from tests.in_memory import as_json, play

from ...e2e.complaints.helpers import (
    T0,
    opened,
    order_paid,
    order_shipped,
    resolved,
    responded,
    satisfaction_low,
    topic_of,
)
from .harness import ComplaintsService

H = timedelta(hours=1)


def history(buyer: str, late: str, order: str) -> list[tuple[datetime, dict[str, Any] | None]]:
    """(instant, event); None: only the clock moves, to a deadline (its timer fires then)."""
    quality, wrong = unique("K"), unique("K")
    return [
        (T0 - 48 * H, order_paid(late, buyer, at=T0 - 48 * H)),  # never shipped
        (T0 - 47 * H, order_paid(order, buyer, at=T0 - 47 * H, shipping_fee_paid=800)),
        (T0 - 20 * H, order_shipped(order, at=T0 - 20 * H)),
        # A low score for a complaint not seen yet: parked until it opens.
        (T0 - H, satisfaction_low(buyer, [wrong], at=T0 - H)),
        (T0, opened(quality, order, buyer, "quality_issue", at=T0)),
        (T0 + H, opened(wrong, order, buyer, "wrong_item", at=T0 + H)),
        (T0 + 2 * H + CATCH_UP_GRACE, None),  # the quality complaint's first response is due
        (T0 + 3 * H, responded(quality, order, at=T0 + 3 * H)),  # late
        (
            T0 + 3 * H + CATCH_UP_GRACE,
            None,
        ),  # the wrong-item complaint's first response, resolution
        (T0 + 4 * H, responded(wrong, order, at=T0 + 4 * H)),
        (T0 + 5 * H, resolved(quality, order, at=T0 + 5 * H)),
        (T0 + 6 * H, resolved(wrong, order, at=T0 + 6 * H)),
        (T0 + 8 * H + CATCH_UP_GRACE, None),  # a deadline of the reopened complaint
        (T0 + 24 * H + CATCH_UP_GRACE, None),  # the late order's 72 h, and the grace
    ]


async def test_the_same_history_queues_the_same_events_in_memory_and_on_the_database(
    svc: ComplaintsService, clock: ManualClock
) -> None:
    buyer, late, order = unique("C"), unique("O"), unique("O")
    keys = [late, order, buyer]
    steps = history(buyer, late, order)
    for at, event in steps:
        clock.set(at)
        await svc.fire_due()
        if event is not None:
            await svc.feed(event)
    on_database = [e for key in keys for e in await svc.outbox(key)]

    rows = await play(in_memory(Policy(), ManualClock(T0)), steps, topic_of)
    # The database's outbox is read key by key; the bus publishes in one stream.
    in_memory_events = [as_json(row) for row in sorted(rows, key=lambda r: keys.index(r.key or ""))]

    kinds = [e["type"] for e in on_database]
    assert {"sla.breached", "complaint.escalated", "coupon.granted", "refund.requested"} <= set(
        kinds
    )
    assert in_memory_events == on_database
