"""Loading and storing the complaints aggregates (documents in the `complaints` schema)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints import tables
from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.model import Complaint, LowScore
from services.complaints.domain.orders import ShopOrder


class ComplaintsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- orders -----------------------------------------------------------------------------

    async def order(self, order_id: str) -> ShopOrder | None:
        state = await self._session.scalar(_ORDER, {"b_id": order_id})
        return None if state is None else ShopOrder.from_dict(state)

    async def save_order(self, order: ShopOrder, now: datetime) -> None:
        await self._session.execute(
            _SAVE_ORDER,
            {
                "order_id": order.order_id,
                "customer_id": None if order.facts is None else order.facts.customer_id,
                "state": order.to_dict(),
                "updated_at": now,
            },
        )

    # --- complaints -------------------------------------------------------------------------

    async def complaint(self, complaint_id: str) -> Complaint | None:
        state = await self._session.scalar(_COMPLAINT, {"b_id": complaint_id})
        return None if state is None else Complaint.from_dict(state)

    async def order_of_complaint(self, complaint_id: str) -> str | None:
        """A complaint's order id (it never changes), readable before taking the order's lock."""
        return await self._session.scalar(_ORDER_OF_COMPLAINT, {"b_id": complaint_id})

    async def complaints_of_order(self, order_id: str) -> list[Complaint]:
        rows = await self._session.scalars(_COMPLAINTS_OF_ORDER, {"b_id": order_id})
        return [Complaint.from_dict(state) for state in rows]

    async def save_complaint(self, complaint: Complaint, now: datetime) -> None:
        await self._session.execute(
            _SAVE_COMPLAINT,
            {
                "complaint_id": complaint.complaint_id,
                "order_id": complaint.order_id,
                "customer_id": complaint.customer_id or None,
                "status": complaint.status.value,
                "state": complaint.to_dict(),
                "created_at": now,
                "updated_at": now,
            },
        )

    # --- budgets ----------------------------------------------------------------------------

    async def budget(self, customer_id: str) -> CompensationBudget:
        state = await self._session.scalar(_BUDGET, {"b_id": customer_id})
        if state is None:
            return CompensationBudget(customer_id=customer_id)
        return CompensationBudget.from_dict(state)

    async def save_budget(self, budget: CompensationBudget, now: datetime) -> None:
        await self._session.execute(
            _SAVE_BUDGET,
            {"customer_id": budget.customer_id, "state": budget.to_dict(), "updated_at": now},
        )

    # --- low scores for complaints not seen yet ---------------------------------------------

    async def park_low_score(self, complaint_id: str, score: LowScore, now: datetime) -> None:
        await self._session.execute(
            _PARK_LOW_SCORE,
            {
                "complaint_id": complaint_id,
                "callback_id": score.callback_id,
                "score": score.score,
                "received_at": now,
            },
        )

    async def take_parked_low_scores(self, complaint_id: str) -> list[LowScore]:
        """The parked scores of a complaint, removed from the parking table."""
        rows = await self._session.execute(_TAKE_PARKED_LOW_SCORES, {"b_id": complaint_id})
        found = sorted(rows.all(), key=lambda row: (row.received_at, row.callback_id))
        return [LowScore(callback_id=row.callback_id, score=row.score) for row in found]


# Statements built once and executed with parameters: building one (an upsert's `excluded`
# alias above all) cost more CPU than running it, for every event.


def _insert(table: Table) -> Insert:
    """An insert of every column of `table`, each bound by its name."""
    return insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in table.c})


def _upsert(table: Table, key: str, updated: tuple[str, ...]) -> Insert:
    stmt = _insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[key], set_={name: stmt.excluded[name] for name in updated}
    )


_O, _C, _B, _P = tables.orders, tables.complaints, tables.budgets, tables.parked_low_scores
_ORDER = select(_O.c.state).where(_O.c.order_id == bindparam("b_id"))
_SAVE_ORDER = _upsert(_O, "order_id", ("customer_id", "state", "updated_at"))
_COMPLAINT = select(_C.c.state).where(_C.c.complaint_id == bindparam("b_id"))
_ORDER_OF_COMPLAINT = select(_C.c.order_id).where(_C.c.complaint_id == bindparam("b_id"))
_COMPLAINTS_OF_ORDER = (
    select(_C.c.state)
    .where(_C.c.order_id == bindparam("b_id"))
    .order_by(_C.c.created_at, _C.c.complaint_id)
)
_SAVE_COMPLAINT = _upsert(_C, "complaint_id", ("customer_id", "status", "state", "updated_at"))
_BUDGET = select(_B.c.state).where(_B.c.customer_id == bindparam("b_id"))
_SAVE_BUDGET = _upsert(_B, "customer_id", ("state", "updated_at"))
_PARK_LOW_SCORE = _insert(_P).on_conflict_do_nothing()
_TAKE_PARKED_LOW_SCORES = (
    delete(_P)
    .where(_P.c.complaint_id == bindparam("b_id"))
    .returning(_P.c.callback_id, _P.c.score, _P.c.received_at)
)
