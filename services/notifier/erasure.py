"""Forgetting one buyer's contact data (SPEC section 7): the platform's
`customer.erasure_requested` event, or `aftersales notifier erase CUSTOMER_ID`.

The notifier is the only service that keeps a buyer's name, phone and e-mail. Erasing deletes
the contact (its encrypted tokens), blanks the masked recipient of the buyer's deliveries and
deletes the buyer's published status events from the outbox (they carry the masked recipient);
events not yet published stay for the relay, which sends them, and the purge removes them after
the outbox period. Deliveries keep their ids, template and outcome (no personal data) for the
case history. It takes effect at once: notifications still waiting for the buyer end there and
then as `no_contact` (`notification.failed`, a dead-letter record), never sent. One whose
attempt is on its way is ended by its outcome, which then keeps the recipient out: the erasure
holds the buyer's lock, as a delivery's steps do, so neither writes over the other.

The erasure is remembered (`erasures`: the buyer's id and when they asked, no personal data):
an `order.paid` paid up to then, read late (the `orders` topic is not ordered with `customers`),
stores nothing; a later paid order stores a contact again (the buyer gave it anew). The
platform's own `orders` topic is outside the notifier's reach.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier import tables
from services.notifier.delivering import DELIVER, ERASED, SERVICE, buyer_lock, failed
from services.notifier.domain.schedule import FailReason
from services.notifier.repository import DeliveryRepository
from shared.clock import SystemClock
from shared.contracts import (
    ORDER_PAID,
    CloudEvent,
    CustomerErasureRequested,
    OrderPaid,
    event_key,
)
from shared.db import UnitOfWork, command_engine, session_factory
from shared.messaging.context import HandlerContext
from shared.settings import Settings
from shared.upserts import upsert

log = logging.getLogger("aftersales.notifier")


@dataclass(frozen=True)
class Erased:
    contacts: int
    deliveries: int
    events: int
    notifications: int = 0  # still waiting, ended


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def erase_in(ctx: HandlerContext, customer_id: str, requested_at: datetime) -> Erased:
    """Erase the buyer's contact data in `ctx`'s transaction (holding the buyer's lock), end
    what is still waiting for them and remember the erasure (the latest request counts).
    Repeating it changes nothing more."""
    session = ctx.session
    ended = await _end_waiting(ctx, customer_id)
    t = tables.erasures
    values = {"customer_id": customer_id, "requested_at": requested_at, "updated_at": func.now()}
    await session.execute(
        upsert(
            t,
            values,
            key=["customer_id"],
            update=("requested_at", "updated_at"),
            where=t.c.requested_at < requested_at,
        )
    )
    outbox = tables.messaging.outbox
    event_customer = (
        func.convert_from(outbox.c.payload, "UTF8").cast(JSONB)["data"]["customer_id"].astext
    )
    contacts = await session.execute(
        delete(tables.contacts).where(tables.contacts.c.customer_id == customer_id)
    )
    deliveries = await session.execute(
        update(tables.deliveries)
        .where(
            tables.deliveries.c.customer_id == customer_id,
            tables.deliveries.c.recipient.is_not(None),
        )
        .values(recipient=None)
    )
    events = await session.execute(
        delete(outbox).where(outbox.c.published_at.is_not(None), event_customer == customer_id)
    )
    return Erased(
        contacts=_count(contacts),
        deliveries=_count(deliveries),
        events=_count(events),
        notifications=ended,
    )


async def _end_waiting(ctx: HandlerContext, customer_id: str) -> int:
    """Give up the buyer's notifications at once (no further attempt), but one whose attempt
    is on its way: its outcome ends it (`Deliverer.record`)."""
    repo = DeliveryRepository(ctx.session)
    ended = 0
    for delivery in await repo.waiting(customer_id):
        if delivery.unconfirmed:
            continue
        await ctx.timers.cancel(DELIVER, delivery.timer_ref, at=ctx.now)
        delivery.give_up(ctx.now, FailReason.NO_CONTACT, ERASED)
        await repo.save(delivery, ctx.now)
        await failed(ctx, repo, delivery)
        ended += 1
    return ended


async def erase(
    sessions: async_sessionmaker[AsyncSession],
    customer_id: str,
    requested_at: datetime | None = None,
) -> Erased:
    """Erase in a transaction of its own (the command); `requested_at` defaults to now."""
    now = SystemClock().now()
    async with UnitOfWork(sessions, namespace=SERVICE) as uow:
        await uow.lock([buyer_lock(customer_id)])
        ctx = HandlerContext(
            uow=uow,
            tables=tables.messaging,
            service=SERVICE,
            now=now,
            cause_id=f"erase:{customer_id}",
        )
        erased = await erase_in(ctx, customer_id, requested_at or now)
        uow.after_commit(*ctx.on_commit)
        await uow.commit()
    return erased


async def erased_since(session: AsyncSession, customer_id: str, paid_at: datetime) -> bool:
    """True when the buyer asked to be forgotten at or after `paid_at`: that order's contact
    data must not be stored."""
    requested_at = await DeliveryRepository(session).erased_at(customer_id)
    return requested_at is not None and paid_at <= requested_at


async def erasure_requested(event: CloudEvent, ctx: HandlerContext) -> None:
    """`customer.erasure_requested` from the platform's `customers` topic."""
    data = event.data_as(CustomerErasureRequested)
    erased = await erase_in(ctx, data.customer_id, data.requested_at)
    log.info(
        "buyer's contact data erased",
        extra={
            "service": "notifier",
            "customer_id": data.customer_id,
            "contacts": erased.contacts,
            "deliveries": erased.deliveries,
            "events": erased.events,
            "notifications_ended": erased.notifications,
        },
    )


def lock_keys(event: CloudEvent) -> Iterable[str]:
    """An `order.paid` also locks its buyer, as the erasure does: the two never interleave, so
    a contact is not stored behind an erasure's back. The erasure takes the lock of the
    buyer's deliveries too (`buyer_lock`)."""
    keys = [event_key(event)]
    if event.type == ORDER_PAID and isinstance(event.data, OrderPaid):
        keys.append(f"customer:{event.data.customer_id}")
    elif isinstance(event.data, CustomerErasureRequested):
        keys = [f"customer:{event.data.customer_id}", buyer_lock(event.data.customer_id)]
    return keys


async def run(settings: Settings, customer_id: str) -> int:
    async with command_engine(settings.database_url) as engine:
        erased = await erase(session_factory(engine), customer_id)
    print(
        f"customer {customer_id}: {erased.contacts} contact(s) deleted, recipient blanked on "
        f"{erased.deliveries} delivery(ies), {erased.events} published event(s) deleted, "
        f"{erased.notifications} pending notification(s) ended"
    )
    return 0


def main(settings: Settings, customer_id: str) -> int:
    return asyncio.run(run(settings, customer_id))
