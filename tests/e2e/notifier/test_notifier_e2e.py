"""The notifier end to end: the real broker in, the real database, a real HTTP gateway, the
real broker out.

The broker is shared with other tests: every id is unique and every reader (and the service
itself, renamed for the test) uses a fresh consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from aftersales_dev.events import cloud_event, encode, kettle_order
from services.notifier import tables
from services.notifier.bootstrap import build
from shared.clock import ManualClock
from shared.contracts import dead_letter_topic, topics
from shared.crypto import generate_key
from shared.db import create_engine
from shared.messaging.runtime import ServiceRuntime
from shared.policy import Policy
from tests.harness import broker_settings
from tests.json_gateway import Gateway
from tests.polling import eventually
from tests.topic_reader import TopicReader

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: outside quiet hours
PHONE = "13812345678"
EMAIL = "e2e.buyer@example.com"


def event(type_: str, data: dict[str, Any]) -> bytes:
    return encode(cloud_event(type_, data, T0, platform="/e2e", id_prefix="e2e"))


class Reader(TopicReader):
    """A fresh consumer group reading topics from the earliest offset in the background."""

    def __init__(self, bootstrap: str, *names: str) -> None:
        super().__init__(bootstrap, *names, group="e2e-notifier-reader")

    def events(self, topic: str, **where: str) -> list[dict[str, Any]]:
        out = []
        for record in self.records:
            if record.topic != topic:
                continue
            value = json.loads(record.value)
            if all(value["data"].get(k) == v for k, v in where.items()):
                out.append(value | {"_key": record.key, "_raw": record.value})
        return out


def notifier_runtime(
    database_url: str, kafka_bootstrap: str, gateway: Gateway, clock: ManualClock, name: str
) -> ServiceRuntime:
    """The notifier on the broker, sending SMS to `gateway`, as a service of its own `name`
    (a fresh consumer group for the run: the group id derives from the service name)."""
    settings = broker_settings(
        database_url,
        kafka_bootstrap,
        aftersales_encryption_key=generate_key(),
        aftersales_sms_gateway_url=gateway.url,
    )
    definition = dataclasses.replace(build(Policy(), clock, settings), name=name)
    return ServiceRuntime(
        definition, settings, clock, timer_poll_interval=0.1, relay_poll_interval=0.1
    )


async def test_notifier_end_to_end(
    notifier_database: str, kafka_bootstrap: str, producer: AIOKafkaProducer, gateway: Gateway
) -> None:
    run = uuid.uuid4().hex[:10]
    customer, order, request = f"C-{run}", f"O-{run}", f"N-{run}"
    clock = ManualClock(T0)
    runtime = notifier_runtime(
        notifier_database, kafka_bootstrap, gateway, clock, f"notifier-e2e-{run}"
    )
    definition = runtime.definition
    reader = Reader(kafka_bootstrap, topics.NOTIFICATION_STATUS, dead_letter_topic(definition.name))
    gateway.script[request] = [503]  # the first attempt fails: retried by a durable timer
    engine = create_engine(notifier_database, pool_size=1)

    async def contact_stored() -> bool:
        async with engine.connect() as conn:
            found = await conn.scalar(
                select(tables.contacts.c.customer_id).where(
                    tables.contacts.c.customer_id == customer
                )
            )
        return found is not None

    try:
        await asyncio.gather(runtime.start(), reader.start())
        buyer = {"name": "E2E Buyer", "phone": PHONE, "email": EMAIL, "preferred_channel": "sms"}
        paid = kettle_order(order, customer, buyer, paid_at=T0.isoformat())
        await producer.send_and_wait(topics.ORDERS, event("order.paid", paid), key=order.encode())
        # The service reads other tests' history too (a fresh group reads from the start):
        # let it store this buyer's contact before the request comes.
        await eventually(contact_stored, timeout=60, what="the contact stored")
        params = {"complaint_id": f"K-{run}", "answer_within_hours": 2,
                  "answer_by": (T0 + timedelta(hours=2)).isoformat()}  # fmt: skip
        requested = {
            "request_id": request,
            "customer_id": customer,
            "order_id": order,
            "template": "complaint.acknowledged",
            "params": params,
            "urgent": False,
            "case": {"type": "complaint", "id": f"K-{run}"},
        }
        await producer.send_and_wait(
            topics.NOTIFICATIONS, event("notification.requested", requested), key=order.encode()
        )
        # An unknown template: dead-lettered with a clear reason, the service goes on.
        bad = {**requested, "request_id": f"bad-{run}", "template": "complaint.teleported"}
        await producer.send_and_wait(
            topics.NOTIFICATIONS, event("notification.requested", bad), key=order.encode()
        )

        def statuses() -> list[int]:
            return [
                s for b, s in zip(gateway.bodies, gateway.statuses, strict=True)
                if b["id"] == request
            ]  # fmt: skip

        # The first attempt fails (503): a durable timer retries it a minute later.
        await eventually(lambda: _async(statuses() == [503]), what="the first attempt")
        clock.advance(timedelta(minutes=1))
        await eventually(lambda: _async(200 in statuses()), what="the retry")
        assert statuses() == [503, 200]
        [body] = [b for b, s in zip(gateway.bodies, gateway.statuses, strict=True)
                  if b["id"] == request and s == 200]  # fmt: skip
        assert body["to"] == PHONE and "我们已收到您的投诉" in body["text"]

        sent = await eventually(
            lambda: _async(reader.events(topics.NOTIFICATION_STATUS, request_id=request)),
            what="notification.sent on the status topic",
        )
        assert [e["type"] for e in sent] == ["notification.sent"]
        assert sent[0]["_key"] == order.encode()
        assert sent[0]["data"]["channel"] == "sms"
        assert sent[0]["data"]["recipient"] == "138****5678"
        assert sent[0]["data"]["attempts"] == 2
        letters = await eventually(
            lambda: _async(
                [
                    e
                    for e in reader.events(dead_letter_topic(definition.name))
                    if f"bad-{run}" in e["data"]["value"]
                ]
            ),
            what="the dead letter",
        )
        assert letters[0]["data"]["reason"] == "unknown_template"
        # No personal data on any topic the notifier wrote.
        for record in reader.records:
            assert PHONE.encode() not in record.value and EMAIL.encode() not in record.value
        # One connection pool for the gateway while the service runs, closed when it stops.
        sms = getattr(definition.closers[0], "__self__").channels["sms"]  # noqa: B009
        pool = sms._client
        assert pool is not None and not pool.is_closed
        await runtime.stop()
        assert pool.is_closed and sms._client is None
    finally:
        with contextlib.suppress(Exception):
            await runtime.stop()
        await reader.stop()
        await engine.dispose()


async def _async(value: Any) -> Any:
    return value
