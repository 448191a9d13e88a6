"""Loading and storing the returns aggregates (documents in the `returns` schema)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.returns import tables
from services.returns.domain import Order, OrderLedger, ReturnRequest


class ReturnsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def order(self, order_id: str) -> Order | None:
        state = await self._session.scalar(
            select(tables.orders.c.state).where(tables.orders.c.order_id == order_id)
        )
        return None if state is None else Order.from_dict(state)

    async def save_order(self, order: Order, now: datetime) -> None:
        stmt = insert(tables.orders).values(
            order_id=order.order_id,
            customer_id=order.customer_id,
            state=order.to_dict(),
            updated_at=now,
        )
        await self._session.execute(
            stmt.on_conflict_do_update(
                index_elements=["order_id"],
                set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
            )
        )

    async def outbound_signature(self, order_id: str) -> datetime | None:
        t = tables.outbound_signatures
        return await self._session.scalar(select(t.c.signed_at).where(t.c.order_id == order_id))

    async def record_outbound_signature(self, order_id: str, signed_at: datetime) -> None:
        """The first signature counts; a later one (a redelivery, a re-sign) changes nothing."""
        stmt = insert(tables.outbound_signatures).values(order_id=order_id, signed_at=signed_at)
        await self._session.execute(stmt.on_conflict_do_nothing(index_elements=["order_id"]))

    async def ledger(self, order_id: str) -> OrderLedger:
        t = tables.order_ledgers
        state = await self._session.scalar(select(t.c.state).where(t.c.order_id == order_id))
        return OrderLedger(order_id=order_id) if state is None else OrderLedger.from_dict(state)

    async def save_ledger(self, ledger: OrderLedger, now: datetime) -> None:
        stmt = insert(tables.order_ledgers).values(
            order_id=ledger.order_id, state=ledger.to_dict(), updated_at=now
        )
        await self._session.execute(
            stmt.on_conflict_do_update(
                index_elements=["order_id"],
                set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
            )
        )

    async def return_request(self, return_id: str) -> ReturnRequest | None:
        t = tables.return_requests
        state = await self._session.scalar(select(t.c.state).where(t.c.return_id == return_id))
        return None if state is None else ReturnRequest.from_dict(state)

    async def returns_of_order(self, order_id: str) -> list[ReturnRequest]:
        t = tables.return_requests
        rows = await self._session.scalars(
            select(t.c.state)
            .where(t.c.order_id == order_id)
            .order_by(t.c.created_at, t.c.return_id)
        )
        return [ReturnRequest.from_dict(state) for state in rows]

    async def save_return(self, request: ReturnRequest, now: datetime) -> None:
        stmt = insert(tables.return_requests).values(
            return_id=request.return_id,
            order_id=request.order_id,
            status=str(request.status),
            state=request.to_dict(),
            created_at=now,
            updated_at=now,
        )
        await self._session.execute(
            stmt.on_conflict_do_update(
                index_elements=["return_id"],
                set_={
                    "status": stmt.excluded.status,
                    "state": stmt.excluded.state,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )
