"""`customer.erasure_requested` end to end: the platform's event on the `customers` topic, the
real notifier runtime, the real database and gateway. After it nothing of the buyer's contact
data is left in the notifier, a notification still pending is never sent, an order paid before
the request and read after it stores nothing, and the event redelivered changes nothing."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import tables
from shared.clock import ManualClock
from shared.contracts import CUSTOMER_ERASURE_REQUESTED, topics
from shared.crypto import mask_email, mask_phone
from shared.db import create_engine
from tests.e2e.notifier.test_notifier_e2e import T0, event, notifier_runtime
from tests.integration.messaging.helpers import (
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    CUSTOMER_PHONE,
    encode,
    order_paid,
)
from tests.json_gateway import Gateway
from tests.polling import eventually


def notification(request: str, customer: str, order: str, run: str) -> dict[str, Any]:
    return {
        "request_id": request,
        "customer_id": customer,
        "order_id": order,
        "template": "complaint.acknowledged",
        "params": {
            "complaint_id": f"K-{run}",
            "answer_within_hours": 2,
            "answer_by": (T0 + timedelta(hours=2)).isoformat(),
        },
        "urgent": False,
        "case": {"type": "complaint", "id": f"K-{run}"},
    }


async def buyer_rows(engine: AsyncEngine, customer: str) -> str:
    """Every notifier row about the buyer, as text: contact, deliveries, dead letters, outbox."""
    out: list[str] = []
    outbox = tables.messaging.outbox
    async with engine.connect() as conn:
        for table in (tables.contacts, tables.deliveries, tables.dead_letters):
            rows = await conn.execute(select(table).where(table.c.customer_id == customer))
            out += [str(value) for row in rows.mappings() for value in row.values()]
        payloads = await conn.execute(
            select(outbox.c.payload).where(
                func.strpos(func.convert_from(outbox.c.payload, "UTF8"), customer) > 0
            )
        )
        out += [bytes(payload).decode() for payload in payloads.scalars()]
    return "\n".join(out)


async def test_an_erasure_event_leaves_nothing_and_nothing_pending_is_sent(
    notifier_database: str, kafka_bootstrap: str, producer: AIOKafkaProducer, gateway: Gateway
) -> None:
    run = uuid.uuid4().hex[:10]
    customer, order, late_order = f"C-{run}", f"O-{run}", f"O2-{run}"
    sent_request, pending_request = f"N1-{run}", f"N2-{run}"
    clock = ManualClock(T0)  # 10:00 in Shanghai
    runtime = notifier_runtime(
        notifier_database, kafka_bootstrap, gateway, clock, f"notifier-er-{run}"
    )
    engine = create_engine(notifier_database, pool_size=1)

    async def scalar(statement: Any) -> Any:
        async with engine.connect() as conn:
            return await conn.scalar(statement)

    def contact() -> Any:
        return scalar(
            select(tables.contacts.c.paid_at).where(tables.contacts.c.customer_id == customer)
        )

    def delivery(request: str, column: str) -> Any:
        t = tables.deliveries
        return scalar(select(t.c[column]).where(t.c.delivery_id == request))

    async def status_published() -> bool:
        outbox = tables.messaging.outbox
        payload = func.convert_from(outbox.c.payload, "UTF8")
        return bool(
            await scalar(
                select(func.count()).where(
                    func.strpos(payload, sent_request) > 0, outbox.c.published_at.is_not(None)
                )
            )
        )

    async def send(topic: str, key: str, value: bytes) -> bytes:
        await producer.send_and_wait(topic, value, key=key.encode())
        return value

    def paid(order_id: str, at: datetime) -> bytes:
        return encode(order_paid(order_id, paid_at=at.isoformat(), customer_id=customer))

    try:
        await runtime.start()
        await send(topics.ORDERS, order, paid(order, T0))
        # A fresh group reads other tests' history first: wait for this buyer's contact.
        await eventually(contact, timeout=90, what="the contact stored")
        notice = notification(sent_request, customer, order, run)
        await send(topics.NOTIFICATIONS, order, event("notification.requested", notice))
        await eventually(lambda: delivery(sent_request, "sent_at"), what="the first message sent")
        await eventually(status_published, what="its status event published")

        # 22:00 in Shanghai: a non-urgent message waits for the morning.
        clock.advance(timedelta(hours=12))
        notice = notification(pending_request, customer, order, run)
        await send(topics.NOTIFICATIONS, order, event("notification.requested", notice))
        await eventually(
            lambda: delivery(pending_request, "next_attempt_at"), what="the second one deferred"
        )

        erasure = {"customer_id": customer, "requested_at": clock.now().isoformat()}
        erasure_event = event(CUSTOMER_ERASURE_REQUESTED, erasure)
        await send(topics.CUSTOMERS, customer, erasure_event)
        await eventually(lambda: _not(contact()), what="the contact erased")
        # Redelivered, and an order paid before the request read after it: nothing comes back.
        await send(topics.CUSTOMERS, customer, erasure_event)
        before = paid(late_order, T0 + timedelta(hours=11))
        late = json.loads(await send(topics.ORDERS, late_order, before))["id"]
        inbox = tables.messaging.inbox
        await eventually(
            lambda: scalar(select(inbox.c.event_id).where(inbox.c.event_id == late)),
            what="the late order.paid applied",
        )

        # The pending message ended with the erasure, never tried; the morning sends nothing.
        await eventually(
            lambda: _equals(delivery(pending_request, "status"), "failed"),
            what="the pending message ended",
        )
        assert await delivery(pending_request, "attempts") == 0
        clock.advance(timedelta(hours=12))
        assert await contact() is None
        # (The gateway also receives other tests' history, which this fresh group reads.)
        mine = [b["id"] for b in gateway.bodies if b["id"] in (sent_request, pending_request)]
        assert mine == [sent_request]
        assert await delivery(pending_request, "sent_at") is None
        stored = await buyer_rows(engine, customer)
        traces = [CUSTOMER_PHONE, CUSTOMER_EMAIL, CUSTOMER_NAME]
        traces += [mask_phone(CUSTOMER_PHONE), mask_email(CUSTOMER_EMAIL)]
        assert [trace for trace in traces if trace in stored] == []
    finally:
        with contextlib.suppress(Exception):
            await runtime.stop()
        await engine.dispose()


async def _not(value: Any) -> bool:
    return not await value


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)
