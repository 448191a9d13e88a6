"""What becomes a notification: requests, return decisions, refunds (coupons are the complaints
service's to tell); and what is dead-lettered (unknown template, missing parameter) while the
service goes on."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import REGISTRY

from services.notifier import tables


async def test_template_problems_are_dead_lettered_and_the_batch_goes_on(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    missing = kit.requested(customer, params={"complaint_id": "K1", "answer_within_hours": 2})
    unknown = kit.requested(customer, "complaint.teleported", {"complaint_id": "K1"})
    bad_time = kit.requested(customer, params={**kit.ACK, "answer_by": "soon"})
    good = kit.requested(customer, request_id="good-" + customer)
    await h.consume(kit.order_paid(customer), missing, unknown, bad_time, good)
    letters = await h.dead_letters_topic()
    reasons = {json.loads(d["data"]["value"])["id"]: d["data"] for d in letters}
    assert reasons[missing["id"]]["reason"] == "template_error"
    assert reasons[missing["id"]]["detail"] == (
        "template 'complaint.acknowledged' (zh-CN): parameter 'answer_by' is missing"
    )
    assert reasons[unknown["id"]]["reason"] == "unknown_template"
    assert "complaint.teleported" in reasons[unknown["id"]]["detail"]
    assert reasons[bad_time["id"]]["reason"] == "template_error"
    assert "RFC 3339" in reasons[bad_time["id"]]["detail"]
    # The rejected ones left nothing behind (not even their inbox row: a replay after the
    # fix is processed); the good one goes out.
    assert [r["delivery_id"] for r in await h.rows(tables.deliveries)] == ["good-" + customer]
    inbox = {r["event_id"] for r in await h.rows(tables.messaging.inbox)}
    assert missing["id"] not in inbox and good["id"] in inbox
    await h.fire()
    assert [r.body["id"] for r in gateway.received()] == ["good-" + customer]


async def test_return_decisions_and_refunds_become_notifications(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    rejected = kit.decision("return.rejected", customer)
    await h.consume(
        kit.order_paid(customer),
        rejected,
        kit.decision("return.pending", customer, rule="evidence_missing", waiting_for="evidence"),
        # what the refund ledger issued: return.completed does not state an amount it may cut
        kit.refund(customer, "return", "R1", 9000, [("goods", 9000)]),
        kit.refund(customer, "late_shipment", "O1", 500),  # told by the late-shipment apology
        kit.refund(customer, "complaint", "K9", 0),  # nothing to tell
    )
    await h.consume(rejected)  # a redelivered decision: once
    await h.fire()
    texts = {r.body["template"]: r.body["text"] for r in gateway.received()}
    assert set(texts) == {"return.rejected", "return.pending", "refund.issued"}
    assert "售后单号 R1" in texts["refund.issued"] and "¥90.00" in texts["refund.issued"]
    assert texts["return.rejected"].startswith(
        "售后申请未能通过\n您好，很抱歉，7天无理由退货期限已结束"
    )
    assert "平台介入" in texts["return.rejected"]
    assert texts["return.pending"].startswith("请补充售后凭证\n")
    [sent] = [
        e for e in await h.outbox("notification.sent") if e["data"]["template"] == "return.rejected"
    ]
    assert sent["data"]["case"] == {"type": "return", "id": "R1"}
    assert sent["causationid"] == rejected["id"] and sent["correlationid"] == "R1"

    # A complaint refund is told by its own notice.
    other = kit.uid("C")
    await h.consume(
        kit.order_paid(other, language="en-US"),
        kit.refund(other, "complaint", "K1", 1200),
        kit.decision("return.approved", other),
    )
    await h.fire()
    by_template = {
        r.body["template"]: r.body for r in gateway.received() if r.body["to"] == kit.PHONE
    }
    assert {"refund.issued", "return.approved"} <= set(by_template)
    assert by_template["refund.issued"]["language"] == "en"
    assert "we have refunded CNY 12.00" in by_template["refund.issued"]["text"]
    assert "Hello, we are sorry: the 7-day period ended" in by_template["return.approved"]["text"]

    # A refund the order-level cap cut to nothing is told, so the buyer is not left waiting.
    third = kit.uid("C")
    cut = [("goods", 1200), ("already_refunded", -1200)]
    await h.consume(
        kit.order_paid(third, language="en-US"), kit.refund(third, "complaint", "K2", 0, cut)
    )
    await h.fire()
    [told] = [r.body for r in gateway.received() if r.body["text"].find("K2") >= 0]
    assert "already refunded in full" in told["text"] and "CNY" not in told["text"]


async def test_return_decisions_use_the_returns_english_message_for_english_buyers(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    await h.consume(
        kit.order_paid(customer, language="fr"), kit.decision("return.rejected", customer)
    )
    await h.fire()
    [request] = gateway.received()
    assert request.body["language"] == "en"
    assert request.body["text"].startswith("Your after-sales request could not be accepted\n")


async def test_a_coupon_is_told_once_by_the_complaints_service_without_waiting(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    """Every coupon comes with the complaints service's own notice that states it
    (`complaint.compensated`, `complaint.compensation_approved`): the notifier does not read
    aftersales.coupons, and a coupon.granted reaching it anyway tells the buyer nothing."""
    from services.notifier.bootstrap import build
    from shared.clock import ManualClock
    from shared.contracts import topics
    from shared.policy import Policy

    definition = build(Policy(), ManualClock(kit.T0), kit.settings())
    assert topics.COUPONS not in definition.topics and "coupon.granted" not in definition.handlers
    h = sms_harness
    customer = kit.uid("C")
    compensated = {"complaint_id": "K7", "currency": "CNY", "coupon_value": 500}
    await h.consume(
        kit.order_paid(customer),
        kit.coupon(customer, "K7"),
        kit.requested(customer, "complaint.compensated", compensated, case_id="K7"),
    )
    assert await h.fire() == 1  # at once: nothing waits for another notice
    [message] = gateway.received()
    assert message.body["template"] == "complaint.compensated"
    assert "¥5.00" in message.body["text"]
    assert [r["template"] for r in await h.rows(tables.deliveries)] == ["complaint.compensated"]
    assert await h.dead_letters_topic() == []
    assert await h.advance(seconds=60) == 0
    assert len(gateway.received()) == 1


async def test_a_template_problem_is_counted_once(sms_harness: Any, kit: Any) -> None:
    # The batch is applied together first; the rejected request sends it the event-by-event
    # way, which rejects it again: the refusal is counted once, when its dead letter commits.
    h = sms_harness
    customer = kit.uid("C")
    unknown = kit.requested(customer, "complaint.teleported", {"complaint_id": "K1"})
    labels = {"service": "notifier", "template": "(invalid)", "outcome": "unknown_template"}
    before = REGISTRY.get_sample_value("aftersales_notifications_total", labels) or 0.0
    await h.consume(kit.order_paid(customer), unknown)
    after = REGISTRY.get_sample_value("aftersales_notifications_total", labels) or 0.0
    assert after - before == 1
