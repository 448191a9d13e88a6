"""`aftersales notifier erase CUSTOMER_ID`: forget one buyer's contact data (SPEC section 7).

The notifier is the only service that keeps a buyer's name, phone and e-mail. Erasing deletes
the contact (its encrypted tokens), blanks the masked recipient of the buyer's deliveries and
deletes the buyer's published status events from the outbox (they carry the masked recipient);
events not yet published stay for the relay, which sends them, and the purge removes them after
the outbox period. Deliveries keep their ids, template and outcome (no personal data) for the
case history. A later paid order of the buyer stores a contact again: erasure is of what is
held now. The platform's own `orders` topic is outside the notifier's reach.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier import tables
from shared.db import create_engine, session_factory
from shared.settings import Settings


@dataclass(frozen=True)
class Erased:
    contacts: int
    deliveries: int
    events: int


async def erase(sessions: async_sessionmaker[AsyncSession], customer_id: str) -> Erased:
    outbox = tables.messaging.outbox
    event_customer = (
        func.convert_from(outbox.c.payload, "UTF8").cast(JSONB)["data"]["customer_id"].astext
    )
    async with sessions() as session, session.begin():
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
        contacts=int(getattr(contacts, "rowcount", 0) or 0),
        deliveries=int(getattr(deliveries, "rowcount", 0) or 0),
        events=int(getattr(events, "rowcount", 0) or 0),
    )


async def run(settings: Settings, customer_id: str) -> int:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        erased = await erase(session_factory(engine), customer_id)
    finally:
        await engine.dispose()
    print(
        f"customer {customer_id}: {erased.contacts} contact(s) deleted, recipient blanked on "
        f"{erased.deliveries} delivery(ies), {erased.events} published event(s) deleted"
    )
    return 0


def main(settings: Settings, customer_id: str) -> int:
    return asyncio.run(run(settings, customer_id))
