"""Loading and storing deliveries and dead-letter records (the `notifier` schema)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import tables

SCHEDULED = "scheduled"
SENT = "sent"
FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    source_event_id: str
    customer_id: str
    order_id: str | None
    case_type: str | None
    case_id: str | None
    template: str
    params: dict[str, Any]
    urgent: bool
    deadline: datetime | None
    status: str
    attempts: int
    refused_channels: tuple[str, ...]
    timer_seq: int
    slot_day: date | None

    @property
    def timer_ref(self) -> str:
        return timer_ref(self.delivery_id, self.timer_seq)


def timer_ref(delivery_id: str, seq: int) -> str:
    return f"{delivery_id}#{seq}"


def _delivery(row: Any) -> Delivery:
    return Delivery(
        delivery_id=row["delivery_id"],
        source_event_id=row["source_event_id"],
        customer_id=row["customer_id"],
        order_id=row["order_id"],
        case_type=row["case_type"],
        case_id=row["case_id"],
        template=row["template"],
        params=dict(row["params"]),
        urgent=row["urgent"],
        deadline=row["deadline"],
        status=row["status"],
        attempts=row["attempts"],
        refused_channels=tuple(row["refused_channels"]),
        timer_seq=row["timer_seq"],
        slot_day=row["slot_day"],
    )


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(
        self,
        *,
        delivery_id: str,
        source_event_id: str,
        source_type: str,
        customer_id: str,
        order_id: str | None,
        case_type: str | None,
        case_id: str | None,
        template: str,
        params: dict[str, str | int],
        urgent: bool,
        deadline: datetime | None,
        now: datetime,
    ) -> bool:
        """Record a new notification; False when its request id is known (a duplicate)."""
        t = tables.deliveries
        stmt = (
            insert(t)
            .values(
                delivery_id=delivery_id,
                source_event_id=source_event_id,
                source_type=source_type,
                customer_id=customer_id,
                order_id=order_id,
                case_type=case_type,
                case_id=case_id,
                template=template,
                params=params,
                urgent=urgent,
                deadline=deadline,
                status=SCHEDULED,
                next_attempt_at=now,
                requested_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["delivery_id"])
            .returning(t.c.delivery_id)
        )
        return (await self._session.execute(stmt)).first() is not None

    async def get(self, delivery_id: str) -> Delivery | None:
        t = tables.deliveries
        row = (
            (await self._session.execute(select(t).where(t.c.delivery_id == delivery_id)))
            .mappings()
            .first()
        )
        return None if row is None else _delivery(row)

    async def used_today(self, customer_id: str, day: date, *, other_than: str) -> int:
        """Non-urgent messages of the buyer holding a slot of `day` (sent, or being retried)."""
        t = tables.deliveries
        count = await self._session.scalar(
            select(func.count()).where(
                t.c.customer_id == customer_id,
                t.c.slot_day == day,
                t.c.urgent.is_(False),
                t.c.status.in_((SCHEDULED, SENT)),
                t.c.delivery_id != other_than,
            )
        )
        return int(count or 0)

    async def update(self, delivery_id: str, now: datetime, **values: Any) -> None:
        t = tables.deliveries
        await self._session.execute(
            update(t).where(t.c.delivery_id == delivery_id).values(updated_at=now, **values)
        )

    async def dead_letter(
        self,
        delivery: Delivery,
        *,
        reason: str,
        detail: str,
        attempts: int,
        channel: str | None,
        now: datetime,
    ) -> None:
        t = tables.dead_letters
        await self._session.execute(
            insert(t)
            .values(
                delivery_id=delivery.delivery_id,
                customer_id=delivery.customer_id,
                order_id=delivery.order_id,
                template=delivery.template,
                urgent=delivery.urgent,
                reason=reason,
                detail=detail,
                attempts=attempts,
                channel=channel,
                failed_at=now,
            )
            .on_conflict_do_nothing(index_elements=["delivery_id"])
        )
