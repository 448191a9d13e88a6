"""Loading and storing deliveries and dead-letter records (the `notifier` schema)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import tables
from services.notifier.domain.delivery import SCHEDULED, SENT, Delivery

# The aggregate's fields the service writes back (`save`); the rest never change.
_MUTABLE = (
    "status",
    "attempts",
    "refused_channels",
    "timer_seq",
    "slot_day",
    "next_attempt_at",
    "defer_reason",
    "channel",
    "recipient",
    "language",
    "last_error",
    "sent_at",
    "failed_at",
)


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
        next_attempt_at=row["next_attempt_at"],
        defer_reason=row["defer_reason"],
        channel=row["channel"],
        recipient=row["recipient"],
        language=row["language"],
        last_error=row["last_error"],
        sent_at=row["sent_at"],
        failed_at=row["failed_at"],
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

    async def waiting(self, customer_id: str) -> list[Delivery]:
        """The buyer's notifications not ended yet."""
        t = tables.deliveries
        rows = await self._session.execute(
            select(t)
            .where(t.c.customer_id == customer_id, t.c.status == SCHEDULED)
            .order_by(t.c.delivery_id)
        )
        return [_delivery(row) for row in rows.mappings()]

    async def has_contact(self, customer_id: str) -> bool:
        c = tables.contacts
        found = await self._session.scalar(
            select(c.c.customer_id).where(c.c.customer_id == customer_id)
        )
        return found is not None

    async def erased_at(self, customer_id: str) -> datetime | None:
        """When the buyer last asked to be forgotten; None: never."""
        e = tables.erasures
        return await self._session.scalar(
            select(e.c.requested_at).where(e.c.customer_id == customer_id)
        )

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

    async def save(self, delivery: Delivery, now: datetime) -> None:
        """Write back what the aggregate changed."""
        t = tables.deliveries
        values = {name: getattr(delivery, name) for name in _MUTABLE}
        values["refused_channels"] = list(delivery.refused_channels)
        await self._session.execute(
            update(t)
            .where(t.c.delivery_id == delivery.delivery_id)
            .values(updated_at=now, **values)
        )

    async def dead_letter(self, delivery: Delivery, now: datetime) -> None:
        """The record of a notification given up (its reason from the aggregate)."""
        t = tables.dead_letters
        await self._session.execute(
            insert(t)
            .values(
                delivery_id=delivery.delivery_id,
                customer_id=delivery.customer_id,
                order_id=delivery.order_id,
                template=delivery.template,
                urgent=delivery.urgent,
                reason=str(delivery.fail_reason),
                detail=delivery.fail_detail,
                attempts=delivery.attempts,
                channel=delivery.channel,
                failed_at=now,
            )
            .on_conflict_do_nothing(index_elements=["delivery_id"])
        )
