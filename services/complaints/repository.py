"""Loading and storing the complaints aggregates (documents in the `complaints` schema)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints import tables
from services.complaints.domain import CompensationBudget, Complaint, LowScore, ShopOrder
from shared.upserts import upsert


class ComplaintsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- orders -----------------------------------------------------------------------------

    async def order(self, order_id: str) -> ShopOrder | None:
        t = tables.orders
        state = await self._session.scalar(select(t.c.state).where(t.c.order_id == order_id))
        return None if state is None else ShopOrder.from_dict(state)

    async def save_order(self, order: ShopOrder, now: datetime) -> None:
        values = {
            "order_id": order.order_id,
            "customer_id": None if order.facts is None else order.facts.customer_id,
            "state": order.to_dict(),
            "updated_at": now,
        }
        await self._session.execute(
            upsert(
                tables.orders,
                values,
                key=["order_id"],
                update=("customer_id", "state", "updated_at"),
            )
        )

    # --- complaints -------------------------------------------------------------------------

    async def complaint(self, complaint_id: str) -> Complaint | None:
        t = tables.complaints
        state = await self._session.scalar(
            select(t.c.state).where(t.c.complaint_id == complaint_id)
        )
        return None if state is None else Complaint.from_dict(state)

    async def order_of_complaint(self, complaint_id: str) -> str | None:
        """A complaint's order id (it never changes), readable before taking the order's lock."""
        t = tables.complaints
        return await self._session.scalar(
            select(t.c.order_id).where(t.c.complaint_id == complaint_id)
        )

    async def complaints_of_order(self, order_id: str) -> list[Complaint]:
        t = tables.complaints
        rows = await self._session.scalars(
            select(t.c.state)
            .where(t.c.order_id == order_id)
            .order_by(t.c.created_at, t.c.complaint_id)
        )
        return [Complaint.from_dict(state) for state in rows]

    async def save_complaint(self, complaint: Complaint, now: datetime) -> None:
        values = {
            "complaint_id": complaint.complaint_id,
            "order_id": complaint.order_id,
            "customer_id": complaint.customer_id or None,
            "status": complaint.status.value,
            "state": complaint.to_dict(),
            "created_at": now,
            "updated_at": now,
        }
        await self._session.execute(
            upsert(
                tables.complaints,
                values,
                key=["complaint_id"],
                update=("customer_id", "status", "state", "updated_at"),
            )
        )

    # --- budgets ----------------------------------------------------------------------------

    async def budget(self, customer_id: str) -> CompensationBudget:
        t = tables.budgets
        state = await self._session.scalar(select(t.c.state).where(t.c.customer_id == customer_id))
        if state is None:
            return CompensationBudget(customer_id=customer_id)
        return CompensationBudget.from_dict(state)

    async def save_budget(self, budget: CompensationBudget, now: datetime) -> None:
        values = {"customer_id": budget.customer_id, "state": budget.to_dict(), "updated_at": now}
        await self._session.execute(
            upsert(tables.budgets, values, key=["customer_id"], update=("state", "updated_at"))
        )

    # --- low scores for complaints not seen yet ---------------------------------------------

    async def park_low_score(self, complaint_id: str, score: LowScore, now: datetime) -> None:
        stmt = insert(tables.parked_low_scores).values(
            complaint_id=complaint_id,
            callback_id=score.callback_id,
            score=score.score,
            received_at=now,
        )
        await self._session.execute(stmt.on_conflict_do_nothing())

    async def take_parked_low_scores(self, complaint_id: str) -> list[LowScore]:
        """The parked scores of a complaint, removed from the parking table."""
        t = tables.parked_low_scores
        rows = await self._session.execute(
            delete(t)
            .where(t.c.complaint_id == complaint_id)
            .returning(t.c.callback_id, t.c.score, t.c.received_at)
        )
        found = sorted(rows.all(), key=lambda row: (row.received_at, row.callback_id))
        return [LowScore(callback_id=row.callback_id, score=row.score) for row in found]
