"""What a batch writes at commit (each ledger's document and one row per refund, sent as one
JSON parameter per table) is what the ledger holds: every column of every refund row, the
document as written, and rows updated by a later batch."""

from __future__ import annotations

import json
from datetime import timedelta, timezone

from sqlalchemy import Text, cast, select

from aftersales_dev.events import unique
from services.refunds import tables
from services.refunds.domain.model import OrderLedger
from services.refunds.repository import _refund_row
from shared.contracts import ids
from tests.refund_events import order_paid, refund_failed, refund_requested, refund_settled

from .conftest import T0, RefundsService

H = timedelta(hours=1)
# An instant with an offset and microseconds, which a row must keep.
AT = (T0 + 3 * H + timedelta(microseconds=123456)).astimezone(timezone(timedelta(hours=8)))


async def stored(svc: RefundsService, order_id: str) -> tuple[OrderLedger, str, bool]:
    t = tables.ledgers
    async with svc.engine.connect() as conn:
        state, paid = (
            await conn.execute(
                select(cast(t.c.state, Text), t.c.paid).where(t.c.order_id == order_id)
            )
        ).one()
    return OrderLedger.from_json(state), state, paid


async def test_batched_rows_are_the_ledgers_own(svc: RefundsService) -> None:
    orders = [unique("o") for _ in range(3)]
    cases = {order: unique("rt") for order in orders}
    await svc.feed(
        *(
            event
            for order in orders
            for event in (
                order_paid(order, T0 - 72 * H, payments=[("card", 20000), ("alipay", 5000)]),
                refund_requested(order, "return", cases[order], [("goods", 25000)], T0, T0 + H),
            )
        )
    )
    first, second, _ = orders
    rid = ids.refund_id("return", cases[first])
    # A later batch updates rows: a failed part reissued, another refund settled.
    await svc.feed(
        refund_failed(first, rid, "card", 20000, T0 + 2 * H),
        refund_settled(second, ids.refund_id("return", cases[second]), AT),
    )
    for order in orders:
        ledger, state, paid = await stored(svc, order)
        assert paid and json.loads(ledger.to_json()) == json.loads(state)
        rows = {row["refund_id"]: row for row in await svc.refund_rows(order)}
        assert rows == {refund.refund_id: _refund_row(refund) for refund in ledger.refunds.values()}
    ledger, _, _ = await stored(svc, first)
    assert len(ledger.refunds) == 2  # the reissue's row was written by the second batch
    rows = {row["refund_id"]: row for row in await svc.refund_rows(second)}
    assert rows[ids.refund_id("return", cases[second])]["settled_at"] == AT
