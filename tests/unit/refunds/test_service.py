"""The ledger's service layer on the bus in memory (no database): what it decides with what it
looks up beyond one order's ledger."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.refunds.memory import in_memory
from shared.clock import ManualClock
from shared.contracts import ids
from shared.policy import Policy
from tests.in_memory import as_json, play, topic_of
from tests.refund_events import order_paid, refund_requested

from . import T0

H = timedelta(hours=1)
DUE = T0 + 30 * H
ASK = [("goods", 1000)]
FULL = [("goods", 25000)]  # o-a's whole order (order_paid's one line)


@pytest.mark.parametrize("b_waits", [False, True], ids=["b-paid-first", "both-wait"])
def test_a_refund_id_asked_for_two_orders_is_issued_once_for_the_first(b_waits: bool) -> None:
    """A requester's bug asks the same refund_id for two orders, o-a's before o-a was paid:
    paid once, for the order that issued it first; the other order's ledger counts none of it
    (its refund.issued would share the first one's event id and never reach finance)."""
    b_paid = (T0 + (3 if b_waits else 0) * H, order_paid("o-b", T0 - 72 * H))
    steps = sorted(
        [
            b_paid,
            (T0 + H, refund_requested("o-a", "complaint", "cp-1", ASK, T0 + H, T0 + 24 * H)),
            (T0 + 2 * H, refund_requested("o-b", "complaint", "cp-1", ASK, T0 + 2 * H, DUE)),
            (T0 + 4 * H, order_paid("o-a", T0 - 72 * H)),
            # o-a's own full refund is not cut by money o-a never paid out.
            (T0 + 5 * H, refund_requested("o-a", "return", "rt-a", FULL, T0 + 5 * H, DUE)),
        ],
        key=lambda step: step[0],
    )
    rows = asyncio.run(play(in_memory(Policy(), ManualClock(T0)), steps, topic_of))
    issued = [
        (e["data"]["order_id"], e["data"]["refund_id"], e["data"]["amount"])
        for e in map(as_json, rows)
        if e["type"] == "refund.issued"
    ]
    assert issued == [
        ("o-b", ids.refund_id("complaint", "cp-1"), 1000),
        ("o-a", ids.refund_id("return", "rt-a"), 25000),
    ]


def test_a_request_for_another_buyer_than_the_orders_is_never_issued() -> None:
    steps = [
        (T0, order_paid("o-a", T0 - 72 * H)),
        (T0 + H, refund_requested("o-a", "return", "rt-a", ASK, T0 + H, DUE, customer_id="c-x")),
        (T0 + 2 * H, refund_requested("o-a", "return", "rt-b", ASK, T0 + 2 * H, DUE)),
    ]
    rows = asyncio.run(play(in_memory(Policy(), ManualClock(T0)), steps, topic_of))
    issued = [
        (e["data"]["refund_id"], e["data"]["customer_id"])
        for e in map(as_json, rows)
        if e["type"] == "refund.issued"
    ]
    assert issued == [(ids.refund_id("return", "rt-b"), "c-refunds")]
