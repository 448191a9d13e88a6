"""`aftersales notifier erase` and `customer.erasure_requested`: nothing of one buyer's contact
data is left in the notifier, nothing pending is sent after, and a late order stores nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from services.notifier import tables
from services.notifier.channels import Outgoing, Result, transient
from services.notifier.delivering import SERVICE, buyer_lock
from services.notifier.erasure import erase, lock_keys
from shared.contracts import CUSTOMER_ERASURE_REQUESTED, parse_event, topics
from shared.crypto import mask_email, mask_name, mask_phone
from shared.db import UnitOfWork


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
    sms_harness: Any, kit: Any
) -> None:
    h = sms_harness
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


async def test_the_erasure_event_forgets_the_buyer_before_anything_pending_is_sent(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="r-sent"))
    assert await h.fire() == 1
    assert [r.body["id"] for r in gateway.received("/sms")] == ["r-sent"]
    async with h.engine.begin() as conn:  # the relay published the status event
        await conn.execute(update(tables.messaging.outbox).values(published_at=kit.T0))
    # 22:00 in Shanghai: a non-urgent message waits for the end of quiet hours.
    h.clock.advance(timedelta(hours=12))
    await h.consume(kit.requested(customer, request_id="r-pending"))
    await h.fire()
    assert (await h.delivery("r-pending"))["status"] == "scheduled"

    erasure = kit.envelope(
        CUSTOMER_ERASURE_REQUESTED,
        {"customer_id": customer, "requested_at": h.clock.now().isoformat()},
    )
    await h.consume(erasure, topic=topics.CUSTOMERS)
    # An order paid before the request, read after it (another topic): nothing is stored.
    await h.consume(kit.order_paid(customer, paid_at="2024-05-01T20:00:00+08:00"))
    await h.consume(erasure, topic=topics.CUSTOMERS)  # redelivered: no second effect

    assert await h.rows(tables.contacts, tables.contacts.c.customer_id == customer) == []
    stored = await everything_stored(h)
    assert [trace for trace in traces_of(kit) if trace in stored] == []
    # The pending message ended with the erasure; the next morning nothing is sent.
    pending = await h.delivery("r-pending")
    assert (pending["status"], pending["attempts"]) == ("failed", 0)
    assert "no contact" in pending["last_error"] and pending["recipient"] is None
    await h.advance(hours=12)
    assert [r.body["id"] for r in gateway.received("/sms")] == ["r-sent"]

    # An order paid after the request stores the contact the buyer gave anew.
    await h.consume(kit.order_paid(customer, paid_at="2024-05-02T10:00:00+08:00"))
    assert await h.rows(tables.contacts, tables.contacts.c.customer_id == customer)


async def test_pending_notifications_end_at_once_with_the_erasure(
    make_harness: Any, kit: Any, gateway: Any
) -> None:
    h = make_harness(settings=kit.settings(aftersales_sms_gateway_url=f"{gateway.url}/sms"))
    customer, other = kit.uid("C"), kit.uid("C")
    h.clock.advance(timedelta(hours=12))  # 22:00 in Shanghai: quiet hours
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="q-mine"))
    await h.consume(kit.order_paid(other), kit.requested(other, request_id="q-other"))
    await h.fire()
    assert (await h.delivery("q-mine"))["status"] == "scheduled"

    await erase(h.sessions, customer)

    mine = await h.delivery("q-mine")
    assert (mine["status"], mine["attempts"], mine["next_attempt_at"]) == ("failed", 0, None)
    [failed] = await h.outbox("notification.failed")
    assert failed["data"]["request_id"] == "q-mine"
    assert (failed["data"]["reason"], failed["data"]["recipient"]) == ("no_contact", None)
    [dead] = await h.rows(tables.dead_letters)
    assert (dead["delivery_id"], dead["reason"]) == ("q-mine", "no_contact")
    # No timer of it is left; the other buyer's message goes out in the morning.
    await h.advance(hours=12)
    assert [r.body["id"] for r in gateway.received("/sms")] == ["q-other"]
    assert (await h.delivery("q-mine"))["status"] == "failed"
    assert len(await h.outbox("notification.failed")) == 1


# The outcome of an attempt on its way (sent, or a failure that would be retried) and the status
# it ends in.
OUTCOMES = pytest.mark.parametrize(
    ("result", "status"),
    [(Result(ok=True, detail="sent"), "sent"), (transient("sms: HTTP 503"), "failed")],
)


class ErasedWhileSending:
    """An SMS gateway during whose send the buyer is erased (the command, in a transaction of
    its own), answering `result`."""

    name = "sms"

    def __init__(self, h: Any, customer: str, result: Result) -> None:
        self.h, self.customer, self.result = h, customer, result
        self.sent: list[str] = []

    async def send(self, message: Outgoing) -> Result:
        self.sent.append(message.delivery_id)
        await erase(self.h.sessions, self.customer)
        return self.result

    async def close(self) -> None:
        return None


async def _attempt_on_its_way(
    h: Any, kit: Any, channel: ErasedWhileSending, status: str
) -> dict[str, Any]:
    """One notification to `channel`'s buyer, sent through it: its delivery ends `status` with
    no recipient, nor has its status event one (returned)."""
    customer = channel.customer
    h.handlers.channels["sms"] = channel
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="e-" + customer))
    await h.fire()
    assert channel.sent == ["e-" + customer]
    delivery = await h.delivery("e-" + customer)
    assert (delivery["status"], delivery["recipient"]) == (status, None)
    [event] = await h.outbox(f"notification.{status}")
    assert event["data"]["recipient"] is None
    return dict(event)


@OUTCOMES
async def test_an_outcome_recorded_after_the_erasure_puts_no_recipient_back(
    make_harness: Any, kit: Any, result: Result, status: str
) -> None:
    h = make_harness(channels={})
    channel = ErasedWhileSending(h, kit.uid("C"), result)
    await _attempt_on_its_way(h, kit, channel, status)
    stored = await everything_stored(h)
    assert [trace for trace in traces_of(kit) if trace in stored] == []
    # A failed attempt is not tried again: the buyer's contact data is gone.
    await h.advance(hours=24)
    assert channel.sent == ["e-" + channel.customer]


async def test_the_erasure_waits_for_a_delivery_step_of_the_buyer(
    make_harness: Any, kit: Any
) -> None:
    """A delivery's steps (the claim, the outcome) hold the buyer's lock: the erasure takes it
    too, so it never writes between a step's reading and its writing."""
    h = make_harness(channels={})
    customer = kit.uid("C")
    event = kit.envelope(
        CUSTOMER_ERASURE_REQUESTED, {"customer_id": customer, "requested_at": kit.T0.isoformat()}
    )
    assert buyer_lock(customer) in lock_keys(parse_event(json.dumps(event).encode()))
    await h.consume(kit.order_paid(customer))
    async with UnitOfWork(h.sessions, namespace=SERVICE) as step:
        await step.lock([buyer_lock(customer)])
        erasing = asyncio.create_task(erase(h.sessions, customer))
        await asyncio.sleep(0.5)
        assert not erasing.done()
    assert (await asyncio.wait_for(erasing, timeout=10)).contacts == 1


class PurgedWhileSending(ErasedWhileSending):
    """An SMS gateway during whose send the buyer's contact row goes without an erasure (the
    retention purge), answering `result`."""

    async def send(self, message: Outgoing) -> Result:
        self.sent.append(message.delivery_id)
        async with self.h.engine.begin() as conn:
            contacts = tables.contacts
            await conn.execute(contacts.delete().where(contacts.c.customer_id == self.customer))
        return self.result


@OUTCOMES
async def test_an_outcome_recorded_after_the_contact_went_puts_no_recipient_back(
    make_harness: Any, kit: Any, result: Result, status: str
) -> None:
    """The outcome looks for the buyer's own contact: another buyer's does not count."""
    h = make_harness(channels={})
    other = kit.uid("C")
    await h.consume(kit.order_paid(other, phone=kit.PHONE_2, email=kit.EMAIL_2, name=kit.NAME_2))
    event = await _attempt_on_its_way(h, kit, PurgedWhileSending(h, kit.uid("C"), result), status)
    if status == "failed":
        assert event["data"]["reason"] == "no_contact"
