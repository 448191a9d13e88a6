"""`aftersales notifier erase`: nothing of one buyer's contact data is left in the notifier."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from services.notifier import tables
from services.notifier.erasure import erase
from shared.crypto import mask_email, mask_name, mask_phone


async def everything_stored(h: Any) -> str:
    """Every row of every notifier table, as text (tokens, JSON, payloads decoded)."""
    out = []
    async with h.engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            rows = await conn.execute(table.select())
            for row in rows.mappings():
                for value in row.values():
                    out.append(bytes(value).decode() if isinstance(value, bytes) else str(value))
    return "\n".join(out)


def traces_of(kit: Any) -> list[str]:
    masked = [mask_phone(kit.PHONE), mask_email(kit.EMAIL), mask_name(kit.NAME)]
    return [kit.PHONE, kit.EMAIL, kit.NAME, *masked]


async def test_erasing_a_buyer_leaves_nothing_of_their_contact_data(
    make_harness: Any, kit: Any, gateway: Any
) -> None:
    h = make_harness(settings=kit.settings(aftersales_sms_gateway_url=f"{gateway.url}/sms"))
    customer, other = kit.uid("C"), kit.uid("C")
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="r-" + customer))
    other_paid = kit.order_paid(other, phone=kit.PHONE_2, email=kit.EMAIL_2, name=kit.NAME_2)
    await h.consume(other_paid, kit.requested(other, request_id="r-" + other))
    assert await h.fire() == 2
    async with h.engine.begin() as conn:  # the relay published the status events
        await conn.execute(update(tables.messaging.outbox).values(published_at=kit.T0))
    contact_tokens = [
        row[column]
        for row in await h.rows(tables.contacts, tables.contacts.c.customer_id == customer)
        for column in ("name", "phone", "email")
    ]
    stored = await everything_stored(h)
    assert all(token in stored for token in contact_tokens)
    assert mask_phone(kit.PHONE) in stored  # the masked recipient of the delivery and event

    erased = await erase(h.sessions, customer)
    assert (erased.contacts, erased.deliveries, erased.events) == (1, 1, 1)

    # The other buyer's data is untouched, this one's is gone, in clear, masked or encrypted.
    assert await h.rows(tables.contacts, tables.contacts.c.customer_id == other)
    mine = [
        row
        for table in (tables.contacts, tables.deliveries)
        for row in await h.rows(table, table.c.customer_id == customer)
    ]
    assert [r["recipient"] for r in mine] == [None]  # the delivery stays, without a recipient
    stored = await everything_stored(h)
    assert [trace for trace in contact_tokens + traces_of(kit) if trace in stored] == []
    assert mask_phone(kit.PHONE_2) in stored
    assert await erase(h.sessions, customer) == type(erased)(0, 0, 0)  # safe to repeat
