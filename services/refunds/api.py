"""The refund ledger's read API: an order's ledger, and refund on-time rates per period.

Amounts in minor units, as the ledger keeps them. On time by issue = issued by `due_by`; by
settlement = settled by `due_by`, of those settled (the same rules as `aftersales report
refunds`: `IssuedRefund.on_time` and `settled_on_time`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select

from services.refunds import tables
from services.refunds.domain.model import OrderLedger
from services.refunds.repository import RefundsRepository
from shared.messaging.readapi import (
    Figure,
    KpiQuery,
    NotFound,
    ReadContext,
    ReadRoute,
    order_shops,
    rates_by_period,
)


class Amount(BaseModel):
    kind: str
    amount: int


class Failure(BaseModel):
    method: str
    amount: int
    reason: str
    failed_at: datetime


class Refund(BaseModel):
    refund_id: str
    case_type: str
    case_id: str
    currency: str
    requested: int
    amount: int
    cut: int
    to_payout_method: int
    breakdown: list[Amount]
    payments: list[Amount]
    due_by: datetime
    issued_at: datetime
    on_time: bool
    settled_at: datetime | None
    settled_on_time: bool | None
    needs_person: bool
    reissue_of: str | None
    failures: list[Failure]


class Waiting(BaseModel):
    refund_id: str
    case_type: str
    case_id: str
    amount: int


class Ledger(BaseModel):
    order_id: str
    customer_id: str | None
    paid: bool
    currency: str | None
    goods_total: int | None
    shipping_fee_paid: int | None
    payments: list[Amount]
    goods_given: int
    outbound_given: int
    overflow_given: int
    refunds: list[Refund]
    waiting: list[Waiting]


def _amounts(pairs: Iterable[tuple[str, int]]) -> list[Amount]:
    """(kind or method, amount) pairs as the answer lists them."""
    return [Amount(kind=kind, amount=amount) for kind, amount in pairs]


def ledger_answer(ledger: OrderLedger) -> Ledger:
    facts = ledger.facts
    return Ledger(
        order_id=ledger.order_id,
        customer_id=facts.customer_id if facts is not None else None,
        paid=facts is not None,
        currency=facts.currency if facts is not None else None,
        goods_total=facts.goods_total if facts is not None else None,
        shipping_fee_paid=facts.shipping_fee_paid if facts is not None else None,
        payments=_amounts(facts.payments if facts else ()),
        goods_given=ledger.goods_given,
        outbound_given=ledger.outbound_given,
        overflow_given=ledger.overflow_given,
        refunds=[
            Refund(
                refund_id=r.refund_id,
                case_type=r.case_type,
                case_id=r.case_id,
                currency=r.currency,
                requested=r.requested,
                amount=r.amount,
                cut=r.cut,
                to_payout_method=r.overflow,
                breakdown=_amounts(r.breakdown),
                payments=_amounts(r.payments),
                due_by=r.due_by,
                issued_at=r.issued_at,
                on_time=r.on_time,
                settled_at=r.settled_at,
                settled_on_time=r.settled_on_time,
                needs_person=r.needs_person,
                reissue_of=r.reissue_of,
                failures=[
                    Failure(
                        method=f.method, amount=f.amount, reason=f.reason, failed_at=f.failed_at
                    )
                    for f in r.failures
                ],
            )
            for r in ledger.refunds.values()
        ],
        waiting=[
            Waiting(
                refund_id=w.refund_id, case_type=w.case_type, case_id=w.case_id, amount=w.amount
            )
            for w in ledger.waiting.values()
        ],
    )


def routes(ctx: ReadContext) -> list[ReadRoute]:
    async def ledger(order_id: str) -> Ledger:
        """What the order was paid, every refund issued for it and what became of it, and the
        requests waiting for its order.paid."""
        async with ctx.sessions() as session:
            found = await RefundsRepository(session).ledger(order_id)
        if found is None:
            raise NotFound(f"the refund ledger knows no order {order_id!r}")
        return ledger_answer(found)

    return [ReadRoute("/orders/{order_id}/ledger", ledger, Ledger, "An order's ledger")]


async def kpis(ctx: ReadContext, query: KpiQuery) -> list[Figure]:
    t = tables.refunds
    zone = ctx.policy.zone
    async with ctx.sessions() as session:
        rows = (
            await session.execute(
                select(t)
                .where(
                    t.c.issued_at >= query.start,
                    t.c.issued_at < query.end,
                    t.c.reissue_of.is_(None),  # a re-issue pays the same refund again
                )
                .order_by(t.c.issued_at, t.c.refund_id)
            )
        ).all()
        if query.shop is not None:
            shops = await order_shops(ctx, session)
            rows = [r for r in rows if shops.get(r.order_id) == query.shop]
    by_issue = rates_by_period(
        "refund_on_time_by_issue",
        ((query.label(r.issued_at, zone), r.issued_at <= r.due_by) for r in rows),
    )
    by_settlement = rates_by_period(
        "refund_on_time_by_settlement",
        (
            (query.label(r.issued_at, zone), r.settled_at <= r.due_by)
            for r in rows
            if r.settled_at is not None
        ),
    )
    return by_issue + by_settlement
