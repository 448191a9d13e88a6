"""Loading and storing deliveries and dead-letter records (the `notifier` schema)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, Update, and_, bindparam, case, exists, func, select, update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from services.notifier import tables
from services.notifier.domain.delivery import SCHEDULED, SENT, Delivery
from shared.projection import from_row

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
    return from_row(
        Delivery, row, params=dict(row["params"]), refused_channels=tuple(row["refused_channels"])
    )


@dataclass(frozen=True)
class Due:
    """A delivery whose timer fired, with what its step reads, all under the buyer's lock."""

    delivery: Delivery
    # Non-urgent messages of the buyer holding a slot of the day asked for, this one aside
    # (counted only when the delivery needs a slot: 0 otherwise).
    used_today: int
    # The buyer's contact row as stored (its tokens still sealed); None: no contact.
    contact: Mapping[str, Any] | None
    # When the buyer last asked to be forgotten; None: never.
    erased_at: datetime | None


@dataclass(frozen=True)
class Outcome:
    """A delivery whose attempt's outcome is being recorded, with the erasure checks."""

    delivery: Delivery
    has_contact: bool
    erased_at: datetime | None


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
        values = {
            "delivery_id": delivery_id,
            "source_event_id": source_event_id,
            "source_type": source_type,
            "customer_id": customer_id,
            "order_id": order_id,
            "case_type": case_type,
            "case_id": case_id,
            "template": template,
            "params": params,
            "urgent": urgent,
            "deadline": deadline,
            "status": SCHEDULED,
            "next_attempt_at": now,
            "requested_at": now,
            "updated_at": now,
        }
        return (await self._session.execute(_ADD, values)).first() is not None

    async def get(self, delivery_id: str) -> Delivery | None:
        row = (await self._session.execute(_GET, {"b_id": delivery_id})).mappings().first()
        return None if row is None else _delivery(row)

    async def due(self, delivery_id: str, day: date) -> Due | None:
        """The delivery with, in the same statement, the buyer's slots used on `day`, contact
        row and erasure: what a timer's step reads."""
        row = (
            (await self._session.execute(_DUE, {"b_id": delivery_id, "b_day": day}))
            .mappings()
            .first()
        )
        if row is None:
            return None
        delivery = _delivery(row)
        contact = None
        if row[_CONTACT_PREFIX + "customer_id"] is not None:
            contact = {name: row[_CONTACT_PREFIX + name] for name in _CONTACT_COLUMNS}
        return Due(
            delivery=delivery,
            used_today=int(row["used_today"] or 0),
            contact=contact,
            erased_at=row["erased_at"],
        )

    async def outcome(self, delivery_id: str) -> Outcome | None:
        """The delivery with, in the same statement, whether the buyer's contact is still
        there and their latest erasure: what recording an attempt's outcome reads."""
        row = (await self._session.execute(_OUTCOME, {"b_id": delivery_id})).mappings().first()
        if row is None:
            return None
        return Outcome(
            delivery=_delivery(row), has_contact=row["has_contact"], erased_at=row["erased_at"]
        )

    async def waiting(self, customer_id: str) -> list[Delivery]:
        """The buyer's notifications not ended yet."""
        t = tables.deliveries
        rows = await self._session.execute(
            select(t)
            .where(t.c.customer_id == customer_id, t.c.status == SCHEDULED)
            .order_by(t.c.delivery_id)
        )
        return [_delivery(row) for row in rows.mappings()]

    async def erased_at(self, customer_id: str) -> datetime | None:
        """When the buyer last asked to be forgotten; None: never."""
        return await self._session.scalar(_ERASED_AT, {"b_customer": customer_id})

    async def save(self, delivery: Delivery, now: datetime) -> None:
        """Write back what the aggregate changed."""
        values = {f"b_{name}": getattr(delivery, name) for name in _MUTABLE}
        values["b_refused_channels"] = list(delivery.refused_channels)
        await self._session.execute(
            _SAVE, {"b_id": delivery.delivery_id, "b_updated_at": now, **values}
        )

    async def dead_letter(self, delivery: Delivery, now: datetime) -> None:
        """The record of a notification given up (its reason from the aggregate)."""
        await self._session.execute(
            _DEAD_LETTER,
            {
                "delivery_id": delivery.delivery_id,
                "customer_id": delivery.customer_id,
                "order_id": delivery.order_id,
                "template": delivery.template,
                "urgent": delivery.urgent,
                "reason": str(delivery.fail_reason),
                "detail": delivery.fail_detail,
                "attempts": delivery.attempts,
                "channel": delivery.channel,
                "failed_at": now,
            },
        )


# Statements built once and executed with parameters (building one costs more CPU than running
# it). A delivery's step reads everything it needs in one statement: the delivery, and of its
# buyer the slots of the daily cap used, the contact row and the erasure.

_CONTACT_PREFIX = "contact_"
_CONTACT_COLUMNS = tuple(c.name for c in tables.contacts.c)


def _erasure_of(customer_id: Any) -> Select[Any]:
    e = tables.erasures
    return select(e.c.requested_at).where(e.c.customer_id == customer_id)


def _get() -> Select[Any]:
    t = tables.deliveries
    return select(t).where(t.c.delivery_id == bindparam("b_id"))


def _due() -> Select[Any]:
    d, c = tables.deliveries, tables.contacts
    other = d.alias("other")
    used = (
        select(func.count())
        .where(
            other.c.customer_id == d.c.customer_id,
            other.c.slot_day == bindparam("b_day"),
            other.c.urgent.is_(False),
            other.c.status.in_((SCHEDULED, SENT)),
            other.c.delivery_id != d.c.delivery_id,
        )
        .scalar_subquery()
    )
    # Counted only for a message that takes a slot (`Delivery.needs_slot`).
    needs_slot = and_(d.c.urgent.is_(False), d.c.slot_day.is_(None))
    return (
        select(
            d,
            case((needs_slot, used), else_=0).label("used_today"),
            *(column.label(_CONTACT_PREFIX + column.name) for column in c.c),
            _erasure_of(d.c.customer_id).scalar_subquery().label("erased_at"),
        )
        .select_from(d.outerjoin(c, c.c.customer_id == d.c.customer_id))
        .where(d.c.delivery_id == bindparam("b_id"))
    )


def _outcome() -> Select[Any]:
    d, c = tables.deliveries, tables.contacts
    return select(
        d,
        exists().where(c.c.customer_id == d.c.customer_id).label("has_contact"),
        _erasure_of(d.c.customer_id).scalar_subquery().label("erased_at"),
    ).where(d.c.delivery_id == bindparam("b_id"))


def _save() -> Update:
    t = tables.deliveries
    return (
        update(t)
        .where(t.c.delivery_id == bindparam("b_id"))
        .values(
            {
                name: bindparam(f"b_{name}", type_=t.c[name].type)
                for name in (*_MUTABLE, "updated_at")
            }
        )
    )


def _add() -> ReturningInsert[Any]:
    t = tables.deliveries
    return (
        insert(t).on_conflict_do_nothing(index_elements=["delivery_id"]).returning(t.c.delivery_id)
    )


def _dead_letter() -> Insert:
    t = tables.dead_letters
    return insert(t).on_conflict_do_nothing(index_elements=["delivery_id"])


_ADD = _add()
_DEAD_LETTER = _dead_letter()
_GET = _get()
_DUE = _due()
_OUTCOME = _outcome()
_ERASED_AT = _erasure_of(bindparam("b_customer"))
_SAVE = _save()
