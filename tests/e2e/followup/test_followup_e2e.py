"""The follow-up service end to end on the real broker: a resolved complaint leads to a survey
invitation and callback.sent; a score of 2 to satisfaction.low; a restart with callbacks due
loses none and sends none twice; an invitation the notifier gave up is an SLA breach, once.
Inputs and outputs carry ids unique to the test."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from aftersales_dev import events
from aftersales_dev.events import unique
from services.followup.domain.rules import CaseType
from services.followup.report import main as report_main
from shared.contracts import topics
from shared.contracts.ids import callback_id
from tests.polling import eventually

T0 = datetime.fromisoformat("2024-05-01T10:00:00+08:00")
H = timedelta(hours=1)


# Every event sent at T0 by the test's platform, with ids of its own.
ENVELOPE: dict[str, Any] = {"time": T0, "platform": "/e2e", "id_prefix": "e2e"}


async def send(producer: AIOKafkaProducer, topic: str, key: str, value: bytes) -> None:
    await producer.send_and_wait(
        topic, value, key=key.encode(), headers=[("content-type", b"application/cloudevents+json")]
    )


def refund(return_id: str, order_id: str, customer_id: str, at: datetime) -> bytes:
    issued = events.refund_issued(
        f"rf-{return_id}",
        order_id,
        customer_id,
        ("return", return_id),
        at=at,
        breakdown=[("goods", 100)],
        **ENVELOPE,
    )
    return events.encode(issued)


async def test_resolved_complaint_to_callback_sent_and_a_low_score(
    runtimes, outputs, producer, capsys
) -> None:
    customer, order, complaint, shop = unique("c"), unique("o"), unique("k"), unique("shop")
    cid = callback_id(CaseType.COMPLAINT.value, complaint)
    await runtimes.ensure()
    t0 = runtimes.clock.now()  # the complaint is resolved now
    tea = events.order_line("l1", sku="s1", title="Tea", category="food", paid_amount=100)
    paid = events.order_paid(
        order,
        customer,
        at=datetime.fromisoformat("2024-04-28T10:00:00+08:00"),
        lines=[tea],
        customer={"phone": "13800000000", "preferred_channel": "sms"},
        shop_id=shop,
        standard_shipping_fee=0,
        **ENVELOPE,
    )
    await send(producer, topics.ORDERS, order, events.encode(paid))
    opened = events.complaint_opened(
        complaint, order, customer, "wrong_item", at=t0 - 3 * H, description="", **ENVELOPE
    )
    resolved = events.complaint_resolved(
        complaint, order, at=t0, outcome="upheld", remedy="refund", agent_id="a-1", **ENVELOPE
    )
    await send(producer, topics.COMPLAINTS, order, events.encode(opened))
    await send(producer, topics.COMPLAINTS, order, events.encode(resolved))

    [scheduled] = await eventually(
        lambda: outputs.of("callback.scheduled", callback_id=cid), what="callback.scheduled"
    )
    assert scheduled["_key"] == customer
    assert datetime.fromisoformat(scheduled["data"]["due_at"]) == t0 + 24 * H

    runtimes.clock.set(t0 + 24 * H)  # the callback falls due
    [sent] = await eventually(
        lambda: outputs.of("callback.sent", callback_id=cid), what="callback.sent"
    )
    assert sent["_topic"] == topics.FOLLOWUPS and sent["_key"] == customer
    assert sent["data"]["cases"] == [{"type": "complaint", "id": complaint}]
    [invitation] = await eventually(
        lambda: outputs.of("notification.requested", customer_id=customer), what="invitation"
    )
    assert invitation["_topic"] == topics.NOTIFICATIONS
    assert invitation["data"]["template"] == "survey.invitation"
    assert invitation["data"]["params"]["callback_id"] == cid

    def answer() -> bytes:
        """The buyer's score of 2, as a new event each time."""
        answered = events.survey_answered(
            cid, customer, at=t0 + 26 * H, score=2, comment="还是不满意", **ENVELOPE
        )
        return events.encode(answered)

    runtimes.clock.set(t0 + 26 * H)
    await send(producer, topics.SURVEYS, customer, answer())
    [low] = await eventually(
        lambda: outputs.of("satisfaction.low", callback_id=cid), what="satisfaction.low"
    )
    assert low["_key"] == customer and low["data"]["score"] == 2
    assert low["data"]["cases"] == [{"type": "complaint", "id": complaint}]
    assert outputs.of("satisfaction.recorded", callback_id=cid)

    # a second answer is dead-lettered with its reason
    await send(producer, topics.SURVEYS, customer, answer())
    letters = await eventually(
        lambda: [
            e
            for e in outputs.of("event.deadlettered", key=customer)
            if e["data"]["reason"] == "already_answered"
        ],
        what="dead letter",
    )
    assert letters[0]["_topic"] == "aftersales.deadletter.followup"

    # and the report shows the shop's figures
    url = runtimes.settings.database_url
    assert await asyncio.to_thread(report_main, url, runtimes.policy, shop=shop) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    # due, on time, on-time rate, delivered (the answer proves it), undelivered, answered,
    # response rate, 4-5, CSAT
    assert row == [shop, "1", "1", "100.0%", "1", "0", "1", "100.0%", "0", "0.0%"]


async def test_restart_with_callbacks_due_loses_none_and_sends_none_twice(
    runtimes, outputs, producer
) -> None:
    buyers = [unique("c"), unique("c")]
    returns = [unique("r"), unique("r")]
    ids = [callback_id(CaseType.RETURN.value, r) for r in returns]
    await runtimes.ensure()
    t0 = runtimes.clock.now()  # both returns are refunded now
    for buyer, return_id in zip(buyers, returns, strict=True):
        order = unique("o")
        await send(producer, topics.REFUNDS, order, refund(return_id, order, buyer, t0))
    for cid in ids:
        await eventually(lambda cid=cid: outputs.of("callback.scheduled", callback_id=cid))
    await runtimes.stop()

    runtimes.clock.set(t0 + 30 * H)  # both fell due while the service was down
    await runtimes.start()
    for cid in ids:
        await eventually(
            lambda cid=cid: outputs.of("callback.sent", callback_id=cid), what="callback.sent"
        )
    await asyncio.sleep(1.0)  # anything sent twice would show up by now
    for cid, buyer in zip(ids, buyers, strict=True):
        assert len(outputs.of("callback.sent", callback_id=cid)) == 1
        assert len(outputs.of("notification.requested", customer_id=buyer)) == 1


def survey_status(event_type: str, cid: str, customer: str, order: str, at: datetime) -> bytes:
    """The notifier's status of a callback's survey invitation, as a new event each time."""
    data: dict[str, Any] = {
        "request_id": f"survey-{cid}",
        "customer_id": customer,
        "order_id": order,
        "template": "survey.invitation",
        "urgent": False,
        "attempts": 1,
    }
    if event_type == "notification.failed":
        data |= {"reason": "expired", "detail": "past its deadline", "failed_at": at.isoformat()}
    else:
        data |= {"channel": "sms", "recipient": "138****0000", "language": "zh-CN"}
        data |= {"sent_at": at.isoformat()}
    return events.encode(events.cloud_event(event_type, data, at, id_prefix="e2e"))


async def test_an_invitation_the_notifier_gave_up_is_reported_once(
    runtimes, outputs, producer
) -> None:
    buyer, order, return_id = unique("c"), unique("o"), unique("r")
    cid = callback_id(CaseType.RETURN.value, return_id)
    await runtimes.ensure()
    t0 = runtimes.clock.now()
    await send(producer, topics.REFUNDS, order, refund(return_id, order, buyer, t0))
    await eventually(lambda: outputs.of("callback.scheduled", callback_id=cid))
    runtimes.clock.set(t0 + 24 * H)
    await eventually(lambda: outputs.of("callback.sent", callback_id=cid), what="callback.sent")

    runtimes.clock.set(t0 + 73 * H)
    failed = survey_status("notification.failed", cid, buyer, order, t0 + 72 * H)
    await send(producer, topics.NOTIFICATION_STATUS, order, failed)
    case = {"type": "return", "id": return_id}
    [breach] = await eventually(lambda: outputs.of("sla.breached", case=case), what="sla.breached")
    assert breach["_topic"] == topics.SLA and breach["data"]["sla"] == "callback"
    assert datetime.fromisoformat(breach["data"]["due_at"]) == t0 + 72 * H

    # another failure and a contradicting delivery (new ids) change nothing
    again = survey_status("notification.failed", cid, buyer, order, t0 + 72 * H)
    await send(producer, topics.NOTIFICATION_STATUS, order, again)
    late = survey_status("notification.sent", cid, buyer, order, t0 + 30 * H)
    await send(producer, topics.NOTIFICATION_STATUS, order, late)
    await asyncio.sleep(1.0)
    assert len(outputs.of("sla.breached", case=case)) == 1
    assert outputs.of("event.deadlettered", key=order) == []
