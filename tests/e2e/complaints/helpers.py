"""The shop platform's side of the complaints end-to-end tests: CloudEvents it publishes, a
reader of the service's output topics, and the service itself with an injected clock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from aiokafka.structs import ConsumerRecord

from aftersales_dev import events
from aftersales_dev.events import cloud_event, encode, topic_of, unique
from services.complaints.bootstrap import build
from shared.clock import ManualClock
from shared.contracts import dead_letter_topic, topics
from shared.settings import Settings
from tests.harness import Publisher, RunningService
from tests.topic_reader import EventOutput, KeyedOutputs

# Monday 2026-03-02 10:00 in Shanghai: the service's clock; events happen before it.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
GROUP = "aftersales-complaints"  # the service's consumer group (ServiceRuntime)
INPUT_TOPICS = (topics.ORDERS, topics.COMPLAINTS, topics.FOLLOWUPS, topics.REFUNDS)
OUTPUT_TOPICS = (
    topics.NOTIFICATIONS,
    topics.COUPONS,
    topics.REFUND_REQUESTS,
    topics.FULFILMENT,
    topics.SLA,
    topics.ESCALATIONS,
    dead_letter_topic("complaints"),
)


# --- events ---------------------------------------------------------------------------------

ENVELOPE: dict[str, Any] = {"platform": "/shop-platform/e2e", "id_prefix": "e2e"}
BUYER = events.buyer("Li Lei", "13900001111", "li.lei@example.com")


def event(type_: str, data: dict[str, Any], at: datetime, *, id: str | None = None) -> dict:
    return cloud_event(type_, data, at, id=id, **ENVELOPE)


def order_paid(
    order_id: str,
    customer_id: str,
    *,
    at: datetime = T0 - 2 * 24 * H,
    goods: Sequence[int] = (30000,),
    shipping_fee_paid: int = 0,
    presale_ship_by: datetime | None = None,
) -> dict:
    total = sum(goods) + shipping_fee_paid
    card = total * 3 // 4
    lines = [
        events.order_line(
            f"L{i}", sku=f"SKU-{i}", title=f"Item {i}", category="home", paid_amount=amount
        )
        for i, amount in enumerate(goods, start=1)
    ]
    return events.order_paid(
        order_id,
        customer_id,
        at=at,
        lines=lines,
        customer=BUYER,
        shop_id="S-e2e",
        payments=[("alipay", card), ("huabei", total - card)],
        shipping_fee_paid=shipping_fee_paid,
        presale_ship_by=presale_ship_by,
        **ENVELOPE,
    )


order_shipped = partial(events.order_shipped, **ENVELOPE)
# Free text is never stored nor emitted.
opened = partial(events.complaint_opened, description="call me on 13900001111", **ENVELOPE)
responded = partial(events.complaint_responded, **ENVELOPE)
resolved = partial(events.complaint_resolved, **ENVELOPE)


def reviewed(complaint_id: str, order_id: str, decision: str, *, at: datetime) -> dict:
    data = {
        "complaint_id": complaint_id,
        "order_id": order_id,
        "decision": decision,
        "agent_id": "supervisor-3",
        "note": "long-standing buyer",
        "reviewed_at": at.isoformat(),
    }
    return event("compensation.reviewed", data, at)


def satisfaction_low(customer_id: str, complaint_ids: Sequence[str], *, at: datetime) -> dict:
    data = {
        "callback_id": unique("CB"),
        "customer_id": customer_id,
        "cases": [{"type": "complaint", "id": c} for c in complaint_ids],
        "score": 1,
    }
    return event("satisfaction.low", data, at)


def refund_issued(requested: dict[str, Any], *, amount: int, at: datetime = T0) -> dict:
    """The refund ledger's answer to a `refund.requested`: issued for `amount` (less than asked
    when its order-level cap cut it), paid to one method."""
    cut = requested["amount"] - amount
    breakdown = list(requested["breakdown"])
    if cut:
        breakdown.append({"kind": "already_refunded", "amount": -cut})
    data = {
        "refund_id": requested["refund_id"],
        "order_id": requested["order_id"],
        "customer_id": requested["customer_id"],
        "case": requested["case"],
        "amount": amount,
        "currency": requested["currency"],
        "breakdown": breakdown,
        "payments": [{"method": "alipay", "amount": amount}] if amount else [],
        "due_by": requested["due_by"],
        "issued_at": at.isoformat(),
    }
    return event("refund.issued", data, at)


def key_of(item: dict) -> str:
    """The Kafka key: the order id, or the buyer for satisfaction.* (SPEC 1)."""
    data = item["data"]
    return str(
        data["customer_id"] if item["type"].startswith("satisfaction.") else data["order_id"]
    )


class Shop(Publisher):
    """Publishes CloudEvents as the platform (and the follow-up service) do: keyed by order
    id, or by customer id for satisfaction.*; each one acknowledged before the next."""

    async def publish(self, *events: dict) -> None:
        for item in events:
            await self.send(topic_of(item), key_of(item), encode(item))


# --- reading the outputs --------------------------------------------------------------------


@dataclass(frozen=True)
class Output(EventOutput):
    topic: str
    key: str
    event: dict[str, Any]


class Outputs(KeyedOutputs[Output]):
    """Every output topic read from the beginning, in the background, by a consumer of its own
    (partitions assigned directly: no group to join, no offsets shared with anyone). The broker
    is shared with other tests, so outputs are looked up by key (the order id)."""

    timeout = 20.0

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, *OUTPUT_TOPICS)

    def output(self, record: ConsumerRecord[bytes, bytes]) -> Output:
        return Output(record.topic, record.key.decode(), json.loads(record.value))

    def notes(self, key: str, template: str) -> list[Output]:
        return [o for o in self.of(key, "notification.requested") if o.data["template"] == template]

    async def note(self, key: str, template: str) -> Output:
        found = await self.wait(
            key, "notification.requested", where=lambda o: o.data["template"] == template
        )
        return found[0]


# --- the service ----------------------------------------------------------------------------


class Service(RunningService):
    """The complaints service as `aftersales run complaints` starts it, with a ManualClock."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        super().__init__(build, settings, clock)
