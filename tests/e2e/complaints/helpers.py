"""The shop platform's side of the complaints end-to-end tests: CloudEvents it publishes, a
reader of the service's output topics, and the service itself with an injected clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from services.complaints.bootstrap import build
from shared.clock import ManualClock
from shared.contracts import dead_letter_topic, topics
from shared.messaging.relay import CONTENT_TYPE
from shared.settings import Settings
from tests.events import cloud_event, topic_of, unique
from tests.harness import RunningService
from tests.polling import eventually
from tests.topic_reader import EventOutput, TopicReader

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


def event(type_: str, data: dict[str, Any], at: datetime, *, id: str | None = None) -> dict:
    return cloud_event(type_, data, at, id=id, platform="/shop-platform/e2e", id_prefix="e2e")


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
    return event(
        "order.paid",
        {
            "order_id": order_id,
            "shop_id": "S-e2e",
            "customer_id": customer_id,
            "paid_at": at.isoformat(),
            "currency": "CNY",
            "lines": [
                {
                    "line_id": f"L{i + 1}",
                    "sku": f"SKU-{i + 1}",
                    "title": f"Item {i + 1}",
                    "category": "home",
                    "quantity": 1,
                    "paid_amount": amount,
                }
                for i, amount in enumerate(goods)
            ],
            "shipping_fee_paid": shipping_fee_paid,
            "standard_shipping_fee": 1000,
            "free_shipping_threshold": None,
            "shipping_insurance": False,
            "presale_ship_by": None if presale_ship_by is None else presale_ship_by.isoformat(),
            "payments": [
                {"method": "alipay", "amount": card},
                {"method": "huabei", "amount": total - card},
            ],
            "customer": {
                "name": "Li Lei",
                "phone": "13900001111",
                "email": "li.lei@example.com",
                "preferred_channel": "sms",
            },
        },
        at,
    )


def order_shipped(order_id: str, *, at: datetime) -> dict:
    data = {"order_id": order_id, "shipped_at": at.isoformat(), "carrier": "SF"}
    return event("order.shipped", {**data, "tracking_no": f"SF-{order_id}"}, at)


def opened(
    complaint_id: str, order_id: str, customer_id: str, category: str, *, at: datetime
) -> dict:
    data = {
        "complaint_id": complaint_id,
        "order_id": order_id,
        "customer_id": customer_id,
        "category": category,
        "description": "call me on 13900001111",  # free text is never stored nor emitted
        "opened_at": at.isoformat(),
    }
    return event("complaint.opened", data, at)


def responded(complaint_id: str, order_id: str, *, at: datetime) -> dict:
    data = {"complaint_id": complaint_id, "order_id": order_id, "agent_id": "agent-7"}
    return event("complaint.responded", {**data, "responded_at": at.isoformat()}, at)


def resolved(
    complaint_id: str,
    order_id: str,
    *,
    at: datetime,
    outcome: str = "upheld",
    remedy: str = "none",
) -> dict:
    data = {
        "complaint_id": complaint_id,
        "order_id": order_id,
        "outcome": outcome,
        "remedy": remedy,
        "agent_id": "agent-7",
        "resolved_at": at.isoformat(),
    }
    return event("complaint.resolved", data, at)


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


class Shop:
    """Publishes CloudEvents as the platform (and the follow-up service) do: keyed by order
    id, or by customer id for satisfaction.*; each one acknowledged before the next."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=0
        )

    async def publish(self, *events: dict) -> None:
        for item in events:
            await self.producer.send_and_wait(
                topic_of(item),
                json.dumps(item, ensure_ascii=False).encode("utf-8"),
                key=key_of(item).encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )


# --- reading the outputs --------------------------------------------------------------------


@dataclass(frozen=True)
class Output(EventOutput):
    topic: str
    key: str
    event: dict[str, Any]


class Outputs(TopicReader):
    """Every output topic read from the beginning, in the background, by a consumer of its own
    (partitions assigned directly: no group to join, no offsets shared with anyone). The broker
    is shared with other tests, so outputs are looked up by key (the order id)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, *OUTPUT_TOPICS)

    def of(self, key: str, event_type: str | None = None) -> list[Output]:
        found = []
        for record in self.records:
            if record.key != key.encode():
                continue
            output = Output(record.topic, key, json.loads(record.value))
            if event_type is None or output.type == event_type:
                found.append(output)
        return found

    def notes(self, key: str, template: str) -> list[Output]:
        return [o for o in self.of(key, "notification.requested") if o.data["template"] == template]

    async def wait(
        self,
        key: str,
        event_type: str,
        *,
        count: int = 1,
        where: Callable[[Output], bool] = lambda _: True,
        timeout: float = 20.0,
    ) -> list[Output]:
        """At least `count` outputs of `event_type` for `key` (matching `where`), or fail."""

        def found() -> list[Output]:
            matching = [o for o in self.of(key, event_type) if where(o)]
            return matching if len(matching) >= count else []

        return await eventually(  # type: ignore[no-any-return]
            found, what=f"{count} x {event_type} for {key}", timeout=timeout
        )

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
