"""Loading and storing order ledgers (documents in the `refunds` schema) and their refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.refunds import tables
from services.refunds.domain import IssuedRefund, OrderLedger


def _refund_row(refund: IssuedRefund) -> dict[str, Any]:
    return {
        "refund_id": refund.refund_id,
        "order_id": refund.order_id,
        "case_type": refund.case_type,
        "case_id": refund.case_id,
        "currency": refund.currency,
        "requested": refund.requested,
        "amount": refund.amount,
        "cut": refund.cut,
        "overflow": refund.overflow,
        "due_by": refund.due_by,
        "issued_at": refund.issued_at,
        "settled_at": refund.settled_at,
        "failed": bool(refund.failures),
        "needs_person": refund.needs_person,
        "reissue_of": refund.reissue_of,
        "requested_by": refund.requested_by,
    }


class RefundsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def ledger(self, order_id: str) -> OrderLedger | None:
        t = tables.ledgers
        state = await self._session.scalar(select(t.c.state).where(t.c.order_id == order_id))
        return None if state is None else OrderLedger.from_dict(state)

    async def save(self, ledger: OrderLedger, now: datetime) -> None:
        """The document, and one row per refund (what changed is rewritten, the rest is equal)."""
        stmt = insert(tables.ledgers).values(
            order_id=ledger.order_id,
            paid=ledger.facts is not None,
            state=ledger.to_dict(),
            updated_at=now,
        )
        await self._session.execute(
            stmt.on_conflict_do_update(
                index_elements=["order_id"],
                set_={
                    "paid": stmt.excluded.paid,
                    "state": stmt.excluded.state,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )
        if not ledger.refunds:
            return
        rows = [_refund_row(refund) for refund in ledger.refunds.values()]
        upsert = insert(tables.refunds)
        changing = ("settled_at", "failed", "needs_person")
        await self._session.execute(
            upsert.on_conflict_do_update(
                index_elements=["refund_id"], set_={c: upsert.excluded[c] for c in changing}
            ),
            rows,
        )
