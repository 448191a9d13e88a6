"""Loading and storing the follow-up state (the `followup` schema)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.followup import tables
from services.followup.domain.model import Callback
from services.followup.domain.rules import CallbackStatus, CaseKey
from shared.upserts import upsert

UNKNOWN_SHOP = "unknown"


@dataclass(frozen=True)
class Complaint:
    complaint_id: str
    order_id: str
    customer_id: str | None
    resolution: Mapping[str, Any] | None


class FollowupRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- orders -----------------------------------------------------------------------------

    async def record_order(
        self, order_id: str, shop_id: str, customer_id: str, paid_at: datetime
    ) -> None:
        """The first order.paid counts; a re-sent one changes nothing."""
        stmt = insert(tables.orders).values(
            order_id=order_id, shop_id=shop_id, customer_id=customer_id, paid_at=paid_at
        )
        await self._session.execute(stmt.on_conflict_do_nothing(index_elements=["order_id"]))

    async def shops(self, order_ids: Iterable[str]) -> dict[str, str]:
        """order_id -> shop_id; an order never seen is in the shop `unknown`."""
        wanted = sorted(set(order_ids))
        t = tables.orders
        rows = await self._session.execute(
            select(t.c.order_id, t.c.shop_id).where(t.c.order_id.in_(wanted))
        )
        known = {row.order_id: row.shop_id for row in rows}
        return {order_id: known.get(order_id, UNKNOWN_SHOP) for order_id in wanted}

    # --- complaints -------------------------------------------------------------------------

    async def complaint(self, complaint_id: str) -> Complaint | None:
        t = tables.complaints
        row = (
            await self._session.execute(select(t).where(t.c.complaint_id == complaint_id))
        ).first()
        if row is None:
            return None
        return Complaint(row.complaint_id, row.order_id, row.customer_id, row.resolution)

    async def record_complaint_opened(
        self, complaint_id: str, order_id: str, customer_id: str, opened_at: datetime, now: datetime
    ) -> None:
        values = {
            "complaint_id": complaint_id,
            "order_id": order_id,
            "customer_id": customer_id,
            "opened_at": opened_at,
            "updated_at": now,
        }
        await self._session.execute(
            upsert(
                tables.complaints,
                values,
                key=["complaint_id"],
                update=("customer_id", "opened_at", "updated_at"),
                where=tables.complaints.c.customer_id.is_(None),
            )
        )

    async def record_resolution(
        self, complaint_id: str, order_id: str, resolution: Mapping[str, Any], now: datetime
    ) -> None:
        """Store the complaint's resolution (known buyer or not); the handler decides which one
        counts (`supersedes`: the latest)."""
        values = {
            "complaint_id": complaint_id,
            "order_id": order_id,
            "resolution": dict(resolution),
            "updated_at": now,
        }
        await self._session.execute(
            upsert(
                tables.complaints, values, key=["complaint_id"], update=("resolution", "updated_at")
            )
        )

    # --- cases and callbacks ----------------------------------------------------------------

    async def case_known(self, key: CaseKey) -> bool:
        t = tables.cases
        found = await self._session.scalar(
            select(t.c.callback_id).where(t.c.case_type == str(key.type), t.c.case_id == key.id)
        )
        return found is not None

    async def callback(self, callback_id: str) -> Callback | None:
        t = tables.callbacks
        state = await self._session.scalar(select(t.c.state).where(t.c.callback_id == callback_id))
        return None if state is None else Callback.from_dict(state)

    async def scheduled_callbacks(self, customer_id: str) -> list[Callback]:
        t = tables.callbacks
        rows = await self._session.scalars(
            select(t.c.state)
            .where(t.c.customer_id == customer_id, t.c.status == str(CallbackStatus.SCHEDULED))
            .order_by(t.c.due_at, t.c.callback_id)
        )
        return [Callback.from_dict(state) for state in rows]

    async def save_callback(self, callback: Callback, now: datetime) -> None:
        t = tables.callbacks
        values = {
            "callback_id": callback.callback_id,
            "customer_id": callback.customer_id,
            "status": str(callback.status),
            "due_at": callback.due_at,
            "deadline": callback.deadline,
            "sent_at": callback.sent_at,
            "answered_at": callback.answered_at,
            "score": callback.score,
            "delivery": None if callback.delivery is None else str(callback.delivery),
            "state": callback.to_dict(),
            "created_at": now,
            "updated_at": now,
        }
        changed = [k for k in values if k not in ("callback_id", "created_at")]
        await self._session.execute(upsert(t, values, key=["callback_id"], update=changed))
        for case in callback.cases:
            row = {
                "case_type": str(case.type),
                "case_id": case.case_id,
                "callback_id": callback.callback_id,
                "customer_id": case.customer_id,
                "order_id": case.order_id,
                "closed_at": case.closed_at,
                "closed_by": case.closed_by,
                "deadline": case.deadline,
                "outcome": str(case.outcome),
                "created_at": now,
            }
            await self._session.execute(
                upsert(tables.cases, row, key=["case_type", "case_id"], update=["outcome"])
            )
