"""All five services together on the real broker and one database (a schema each).

One buyer has a return refunded (returns asks, the refund ledger issues) and a complaint
upheld; the follow-up service coalesces both cases into one satisfaction callback, the notifier
delivers the survey, the buyer answers 2, and the complaints service reopens the complaint
with an escalation. Services talk only through
topics here, exactly as in production; the injected clock replaces the 24 hours of waiting.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY

from aftersales.registry import SERVICES
from aftersales_dev import events
from aftersales_dev.events import cloud_event, encode, kettle_order
from shared.clock import ManualClock
from shared.contracts import topics
from shared.policy import NotifierPolicy, Policy
from tests.harness import broker_settings, every_service_running, migrated_database
from tests.polling import eventually

# Monday 10:00 in Shanghai: outside quiet hours, like the moment a day later.
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
# The buyer's daily cap of non-urgent messages (3) raised: the clock jumps a day while the
# first day's notices may still be on their way, so with the cap which of them fall on the
# second day, and whether the survey is pushed to the third, would depend on timing. The cap
# itself is proven in tests/integration/notifier/test_policies.py.
POLICY = Policy(notifier=NotifierPolicy(max_non_urgent_per_day=20))
WATCHED = (
    topics.REFUNDS,
    topics.COUPONS,
    topics.FOLLOWUPS,
    topics.NOTIFICATIONS,
    topics.NOTIFICATION_STATUS,
    topics.ESCALATIONS,
)


# The platform of the system test, with ids of its own.
SYSTEM: dict[str, Any] = {"platform": "/shop-platform/system-test", "id_prefix": "sys"}


def _order(order_id: str, customer_id: str, category: str, amount: int) -> dict[str, Any]:
    """The order.paid of one kettle paid five days before T0."""
    buyer = {
        "name": "Han Meimei",
        "phone": "13700002222",
        "email": "han@example.com",
        "preferred_channel": "sms",
    }
    paid_at = T0 - 5 * 24 * H
    data = kettle_order(
        order_id,
        customer_id,
        buyer,
        paid_at=paid_at.isoformat(),
        amount=amount,
        shop_id="S-sys",
        sku="SKU-1",
        category=category,
    )
    return cloud_event("order.paid", data, paid_at, **SYSTEM)


def _shipped(order_id: str) -> dict[str, Any]:
    """The order shipped by SF four days before T0."""
    return events.order_shipped(order_id, at=T0 - 4 * 24 * H, tracking_no=f"T-{order_id}", **SYSTEM)


def _resolved(complaint_id: str, order_id: str, remedy: str, at: datetime) -> dict[str, Any]:
    """The complaint upheld by agent-1 with `remedy`."""
    return events.complaint_resolved(
        complaint_id, order_id, at=at, outcome="upheld", remedy=remedy, agent_id="agent-1", **SYSTEM
    )


class Outputs:
    """Everything the services publish about our buyer, read from the start of each topic."""

    def __init__(self, bootstrap: str, customer_id: str) -> None:
        self._consumer = AIOKafkaConsumer(
            *WATCHED,
            bootstrap_servers=bootstrap,
            group_id=f"sys-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self._customer = customer_id
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 45.0
    ) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [e for e in self.events if predicate(e)]
            if found:
                return found
            if asyncio.get_running_loop().time() > deadline:
                types = sorted({e["type"] for e in self.events})
                raise AssertionError(f"not seen in {timeout}s; seen types: {types}")
            for records in (await self._consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    event = json.loads(record.value)
                    if event["data"].get("customer_id") == self._customer:
                        self.events.append(event)


@pytest.fixture(scope="module")
async def system(database_url: str, kafka_bootstrap: str) -> AsyncIterator[dict[str, Any]]:
    async with migrated_database(database_url, "e2e_system", *SERVICES) as url:
        # The notifier's log channel and an ephemeral key.
        settings = broker_settings(url, kafka_bootstrap, aftersales_dev_mode=True)
        clock = ManualClock(T0)
        async with every_service_running(settings, clock, POLICY, timer_poll_interval=0.1):
            yield {"clock": clock, "bootstrap": kafka_bootstrap}


async def test_a_buyer_s_return_and_complaint_close_into_one_callback_and_a_low_score_reopens(
    system: dict[str, Any],
) -> None:
    clock: ManualClock = system["clock"]
    run = uuid.uuid4().hex[:8]
    customer, return_order, complaint_order = f"C-{run}", f"OR-{run}", f"OC-{run}"
    return_id, complaint_id = f"R-{run}", f"K-{run}"
    outputs = Outputs(system["bootstrap"], customer)
    await outputs.start()
    producer = AIOKafkaProducer(bootstrap_servers=system["bootstrap"], enable_idempotence=False)
    await producer.start()

    async def send(topic: str, key: str, event: dict[str, Any]) -> None:
        await producer.send_and_wait(topic, encode(event), key=key.encode())

    try:
        for order_id, amount in ((return_order, 12000), (complaint_order, 30000)):
            await send(topics.ORDERS, order_id, _order(order_id, customer, "home", amount))
            await send(topics.ORDERS, order_id, _shipped(order_id))
            signed = events.parcel_signed(
                order_id, at=T0 - 3 * 24 * H, tracking_no=f"T-{order_id}", **SYSTEM
            )
            await send(topics.SIGNATURES, order_id, signed)
        requested = events.return_requested(
            return_order,
            return_id,
            customer,
            at=T0 - 2 * H,
            lines={"L1": 1},
            reason="dislike",
            **SYSTEM,
        )
        await send(topics.RETURNS, return_order, requested)
        back = events.parcel_signed(
            return_order, return_id, at=T0 - H, tracking_no=f"RT-{run}", **SYSTEM
        )
        await send(topics.SIGNATURES, return_order, back)
        opened_at, resolved_at = T0 - 90 * timedelta(minutes=1), T0 - 30 * timedelta(minutes=1)
        opened = events.complaint_opened(
            complaint_id,
            complaint_order,
            customer,
            "quality_issue",
            at=opened_at,
            description="the lid cracked",
            **SYSTEM,
        )
        await send(topics.COMPLAINTS, complaint_order, opened)
        await send(
            topics.COMPLAINTS,
            complaint_order,
            _resolved(complaint_id, complaint_order, "none", resolved_at),
        )

        refund = (await outputs.wait_for(lambda e: e["type"] == "refund.issued"))[0]["data"]
        assert (refund["amount"], refund["case"]) == (12000, {"type": "return", "id": return_id})
        assert refund["payments"] == [{"method": "alipay", "amount": 12000}]  # the ledger's split
        coupon = (await outputs.wait_for(lambda e: e["type"] == "coupon.granted"))[0]["data"]
        assert coupon["value"] == 1500  # 5 % of 300.00, within 5.00-50.00
        await outputs.wait_for(
            lambda e: (
                e["type"] == "notification.sent"
                and e["data"]["template"] == "complaint.acknowledged"
            )
        )
        # Both cases wait in one callback, a day after the later close.
        scheduled = await outputs.wait_for(
            lambda e: e["type"] == "callback.scheduled" and len(e["data"]["cases"]) == 2
        )
        callback_id = scheduled[-1]["data"]["callback_id"]

        clock.advance(24 * H + timedelta(minutes=5))
        sent = await outputs.wait_for(lambda e: e["type"] == "callback.sent")
        assert len(sent) == 1
        assert {(c["type"], c["id"]) for c in sent[0]["data"]["cases"]} == {
            ("return", return_id),
            ("complaint", complaint_id),
        }
        survey = await outputs.wait_for(
            lambda e: (
                e["type"] == "notification.sent" and e["data"]["template"] == "survey.invitation"
            )
        )
        assert "13700002222" not in json.dumps(survey) and "han@example.com" not in json.dumps(
            outputs.events
        )

        answered = events.survey_answered(
            callback_id, customer, at=clock.now(), score=2, comment="slow", **SYSTEM
        )
        await send(topics.SURVEYS, customer, answered)
        low = await outputs.wait_for(lambda e: e["type"] == "satisfaction.low")
        assert low[0]["data"]["score"] == 2
        escalated = await outputs.wait_for(
            lambda e: (
                e["type"] == "complaint.escalated" and e["data"]["reason"] == "low_satisfaction"
            )
        )
        assert escalated[0]["data"]["complaint_id"] == complaint_id
        # One refund (shipped in time: no late-shipment penalty) and one coupon for the buyer.
        assert [e["data"]["case"] for e in outputs.events if e["type"] == "refund.issued"] == [
            {"type": "return", "id": return_id}
        ]
        assert len([e for e in outputs.events if e["type"] == "coupon.granted"]) == 1
    finally:
        await producer.stop()
        await outputs.stop()


# Every row of the compensation table that refunds (services/complaints/domain/compensation.py),
# with the remedy that makes it refund; tests/unit/complaints/test_compensation.py checks the
# list against the table.
REFUNDING = [
    ("logistics_delay", "none"),
    ("not_received", "refund"),
    ("fake_shipment", "refund"),
    ("late_shipment", "none"),
]
# The refunds each asks of the ledger, by case type: its own (goods or shipping) and the
# order's late-shipment penalty.
REFUNDED_CASES = {
    "logistics_delay": {"complaint"},
    "not_received": {"complaint"},
    "fake_shipment": {"complaint", "late_shipment"},
    "late_shipment": {"late_shipment"},
}


def _skipped_refund_notices() -> float:
    labels = {"service": "notifier", "template": "refund.issued", "outcome": "skipped"}
    return REGISTRY.get_sample_value("aftersales_notifications_total", labels) or 0.0


@pytest.mark.parametrize(("category", "remedy"), REFUNDING)
async def test_an_upheld_complaint_that_refunds_is_told_once_with_the_amount_issued(
    system: dict[str, Any], category: str, remedy: str
) -> None:
    """Complaints asks, the refund ledger issues, and the buyer gets one notice of the
    compensation (besides the acknowledgement), stating what the ledger issued; the notifier
    sends no refund notice of its own for it."""
    clock: ManualClock = system["clock"]
    run = uuid.uuid4().hex[:8]
    customer, order_id, complaint_id = f"C-{run}", f"OK-{run}", f"K-{run}"
    outputs = Outputs(system["bootstrap"], customer)
    await outputs.start()
    producer = AIOKafkaProducer(bootstrap_servers=system["bootstrap"], enable_idempotence=False)
    await producer.start()
    skipped_before = _skipped_refund_notices()

    async def send(topic: str, event: dict[str, Any]) -> None:
        await producer.send_and_wait(topic, encode(event), key=order_id.encode())

    try:
        order = _order(order_id, customer, "home", 30000)
        order["data"]["shipping_fee_paid"] = 800
        order["data"]["payments"] = [{"method": "alipay", "amount": 30800}]
        await send(topics.ORDERS, order)
        if category not in ("late_shipment", "fake_shipment"):
            await send(topics.ORDERS, _shipped(order_id))
        now = clock.now()
        opened_at, resolved_at = now - 90 * timedelta(minutes=1), now - 30 * timedelta(minutes=1)
        opened = events.complaint_opened(
            complaint_id,
            order_id,
            customer,
            category,
            at=opened_at,
            description="where is it",
            **SYSTEM,
        )
        await send(topics.COMPLAINTS, opened)
        await send(topics.COMPLAINTS, _resolved(complaint_id, order_id, remedy, resolved_at))

        expected_cases = REFUNDED_CASES[category]
        for case_type in expected_cases:
            await outputs.wait_for(
                lambda e, t=case_type: (
                    e["type"] == "refund.issued" and e["data"]["case"]["type"] == t
                )
            )
        for kind in ("notification.requested", "notification.sent"):
            await outputs.wait_for(
                lambda e, k=kind: (
                    e["type"] == k and e["data"]["template"] == "complaint.compensated"
                )
            )
        issued = {
            e["data"]["case"]["type"]: e["data"]["amount"]
            for e in outputs.events
            if e["type"] == "refund.issued"
        }
        assert set(issued) == expected_cases
        # The notifier has processed every one of them, and told none.
        await eventually(
            lambda: _skipped_refund_notices() - skipped_before >= len(issued),
            what="the notifier skipping the refund notices",
        )
        notices = [
            e
            for e in outputs.events
            if e["type"] in ("notification.requested", "notification.sent")
            and e["data"]["template"] != "complaint.acknowledged"
        ]
        assert {(e["type"], e["data"]["template"]) for e in notices} == {
            ("notification.requested", "complaint.compensated"),
            ("notification.sent", "complaint.compensated"),
        }
        (requested,) = [e for e in notices if e["type"] == "notification.requested"]
        params = requested["data"]["params"]
        if "complaint" in issued:
            assert params["refund_amount"] == issued["complaint"] > 0
        else:
            assert "refund_amount" not in params
        if "late_shipment" in issued:
            assert params["late_shipment_refund"] == issued["late_shipment"] == 1500
    finally:
        await producer.stop()
        await outputs.stop()
