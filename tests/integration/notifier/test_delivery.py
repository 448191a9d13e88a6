"""Delivery through a real HTTP gateway and a real SMTP server: retries, fallbacks, failures."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.notifier import tables
from services.notifier.channels import HttpGateway
from services.notifier.delivering import BUSY_RETRY


async def test_sms_delivery_and_notification_sent(sms_harness: Any, kit: Any, gateway: Any) -> None:
    h = sms_harness
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer))
    event = kit.requested(customer, request_id="req-basic-" + customer)
    await h.consume(event)
    assert gateway.received() == []  # the consumer never talks to a gateway
    assert await h.fire() == 1
    [request] = gateway.received("/sms")
    assert request.body["to"] == kit.PHONE
    assert request.body["template"] == "complaint.acknowledged"
    assert request.body["language"] == "zh-CN"
    assert "我们已收到您的投诉" in request.body["text"] and "K1" in request.body["text"]
    assert request.headers["idempotency-key"] == "req-basic-" + customer
    [sent] = await h.outbox("notification.sent")
    assert sent["_topic"] == "aftersales.notifications.status"
    assert sent["causationid"] == event["id"] and sent["correlationid"] == "K1"
    assert sent["data"] == {
        "request_id": "req-basic-" + customer,
        "customer_id": customer,
        "order_id": "O1",
        "template": "complaint.acknowledged",
        "case": {"type": "complaint", "id": "K1"},
        "urgent": False,
        "channel": "sms",
        "recipient": "138****5678",
        "language": "zh-CN",
        "attempts": 1,
        "sent_at": kit.T0.isoformat().replace("+00:00", "Z"),
    }
    row = await h.delivery("req-basic-" + customer)
    assert (row["status"], row["attempts"], row["recipient"]) == ("sent", 1, "138****5678")
    assert await h.fire() == 0  # nothing left


async def test_retries_after_the_gateway_fails_twice(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    gateway.on("/sms", 503, 503)
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="r3-" + customer))
    await h.fire()
    assert [r.status for r in gateway.received()] == [503]
    row = await h.delivery("r3-" + customer)
    assert (row["status"], row["attempts"]) == ("scheduled", 1)
    assert row["next_attempt_at"] == h.clock.now() + timedelta(minutes=1)
    assert await h.advance(seconds=59) == 0  # not due yet
    await h.advance(seconds=1)
    assert [r.status for r in gateway.received()] == [503, 503]
    await h.advance(minutes=3, seconds=59)
    assert len(gateway.received()) == 2
    await h.advance(seconds=1)
    assert [r.status for r in gateway.received()] == [503, 503, 200]
    # One message, three attempts, one success, the same idempotency key on each.
    assert {r.headers["idempotency-key"] for r in gateway.received()} == {"r3-" + customer}
    [sent] = await h.outbox("notification.sent")
    assert sent["data"]["attempts"] == 3
    assert await h.outbox("notification.failed") == []
    # Durable timer rows: one per attempt, with its attempt number, each followed by the
    # recovery timer of its send, cancelled once the outcome was recorded.
    timers = sorted(await h.rows(tables.messaging.timers), key=lambda t: t["id"])
    fired = [t["payload"]["attempt"] for t in timers if t["cancelled_at"] is None]
    assert fired == [1, 2, 3] and all(t["fired_at"] is not None for t in timers[::2])
    recovery = timers[1::2]
    assert [t["payload"]["reason"] for t in recovery] == ["unconfirmed"] * 3
    assert all(t["cancelled_at"] is not None and t["fired_at"] is None for t in recovery)
    await h.advance(hours=5)
    assert len(gateway.received()) == 3


async def test_retries_exhausted_are_dead_lettered(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    gateway.on("/sms", *([500] * 10))
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="rx-" + customer))
    await h.fire()
    for minutes in (1, 4, 16, 60):
        await h.advance(minutes=minutes)
    assert len(gateway.received()) == 5  # retry_max_attempts
    await h.advance(hours=3)
    assert len(gateway.received()) == 5
    [failed] = await h.outbox("notification.failed")
    assert failed["data"]["reason"] == "retries_exhausted"
    assert failed["data"]["detail"] == "sms gateway: HTTP 500"
    assert failed["data"]["attempts"] == 5 and failed["data"]["recipient"] == "138****5678"
    [letter] = await h.rows(tables.dead_letters)
    assert (letter["delivery_id"], letter["reason"], letter["attempts"]) == (
        "rx-" + customer,
        "retries_exhausted",
        5,
    )
    row = await h.delivery("rx-" + customer)
    assert row["status"] == "failed" and row["slot_day"] is None


async def test_timeouts_and_connection_errors_are_retried(
    make_harness: Any, kit: Any, gateway: Any
) -> None:
    slow = HttpGateway("sms", f"{gateway.url}/sms", timeout=httpx.Timeout(0.3))
    h = make_harness(channels={"sms": slow})
    customer = kit.uid("C")
    gateway.delay = 1.0
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="rt-" + customer))
    await h.fire()
    row = await h.delivery("rt-" + customer)
    assert (row["status"], row["attempts"], row["last_error"]) == (
        "scheduled",
        1,
        "sms gateway: timeout",
    )
    # Nobody listens here: a connection error, retried the same way.
    h.handlers.channels["sms"] = HttpGateway("sms", "http://127.0.0.1:9/sms")
    await h.advance(minutes=1)
    row = await h.delivery("rt-" + customer)
    assert (row["attempts"], row["last_error"]) == (2, "sms gateway: ConnectError")
    gateway.delay = 0.0
    h.handlers.channels["sms"] = HttpGateway("sms", f"{gateway.url}/sms")
    await h.advance(minutes=4)
    assert (await h.delivery("rt-" + customer))["status"] == "sent"


async def test_messages_a_busy_gateway_has_no_connection_for_are_handed_back_uncounted(
    make_harness: Any, kit: Any, gateway: Any
) -> None:
    """A slow gateway and more messages than connections: those that waited for a
    connection past the queue wait never reached the gateway; they use up no attempt (a slow
    gateway would otherwise exhaust the retries of messages it never saw) and go again soon."""
    one_at_a_time = HttpGateway("sms", f"{gateway.url}/sms", concurrency=1, queue_wait=0.2)
    h = make_harness(channels={"sms": one_at_a_time})
    customers = [kit.uid("C") for _ in range(3)]
    gateway.delay = 0.6
    for customer in customers:
        await h.consume(kit.order_paid(customer), kit.requested(customer, request_id=customer))
    await h.fire()
    rows = [await h.delivery(customer) for customer in customers]
    assert sorted(row["status"] for row in rows) == ["scheduled", "scheduled", "sent"]
    assert len(gateway.received("/sms")) == 1
    for row in rows:
        if row["status"] == "scheduled":
            assert (row["attempts"], row["defer_reason"]) == (0, "gateway_busy")
            assert row["next_attempt_at"] == kit.T0 + BUSY_RETRY
    assert await h.outbox("notification.failed") == []
    gateway.delay = 0.0
    await h.advance(seconds=BUSY_RETRY.total_seconds())
    rows = [await h.delivery(customer) for customer in customers]
    assert [(row["status"], row["attempts"]) for row in rows] == [("sent", 1)] * 3
    assert len(gateway.received("/sms")) == 3


async def test_falls_back_to_email_when_sms_has_no_gateway(
    make_harness: Any, kit: Any, mailbox: Any
) -> None:
    h = make_harness(settings=kit.settings(aftersales_smtp_url=mailbox.url))
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer, preferred="sms"), kit.requested(customer))
    await h.fire()
    [(sender, recipients, message)] = mailbox.messages
    assert sender == "aftersales@shop.example" and recipients == [kit.EMAIL]
    assert message["To"] == f"{kit.NAME} <{kit.EMAIL}>"
    assert message["Subject"] == "我们已收到您的投诉"
    assert message["Content-Language"] == "zh-CN"
    body = message.get_content()
    assert "K1" in body and "2024年5月1日 12:00（北京时间）" in body
    [sent] = await h.outbox("notification.sent")
    assert sent["data"]["channel"] == "email" and sent["data"]["recipient"] == "z***@example.com"


async def test_a_permanent_refusal_moves_to_the_next_channel(
    make_harness: Any, kit: Any, gateway: Any, mailbox: Any
) -> None:
    h = make_harness(
        settings=kit.settings(
            aftersales_sms_gateway_url=f"{gateway.url}/sms", aftersales_smtp_url=mailbox.url
        )
    )
    customer = kit.uid("C")
    gateway.on("/sms", 400)  # e.g. the gateway says the number is invalid
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="rp-" + customer))
    await h.fire()
    assert [r.status for r in gateway.received()] == [400]
    assert len(mailbox.messages) == 1
    row = await h.delivery("rp-" + customer)
    assert (row["status"], row["channel"], row["attempts"], row["refused_channels"]) == (
        "sent",
        "email",
        2,
        ["sms"],
    )


async def test_smtp_temporary_errors_are_retried(make_harness: Any, kit: Any, mailbox: Any) -> None:
    h = make_harness(settings=kit.settings(aftersales_smtp_url=mailbox.url))
    customer = kit.uid("C")
    mailbox.refuse_rcpt = ["451 4.3.0 Try again later"]
    await h.consume(
        kit.order_paid(customer, preferred="email"),
        kit.requested(customer, request_id="rs-" + customer),
    )
    await h.fire()
    row = await h.delivery("rs-" + customer)
    assert row["status"] == "scheduled" and row["last_error"].startswith("e-mail: SMTP 451")
    assert mailbox.messages == []
    await h.advance(minutes=1)
    assert len(mailbox.messages) == 1
    assert (await h.delivery("rs-" + customer))["attempts"] == 2


async def test_smtp_permanent_refusal_without_other_channel_fails(
    make_harness: Any, kit: Any, mailbox: Any
) -> None:
    h = make_harness(settings=kit.settings(aftersales_smtp_url=mailbox.url))
    customer = kit.uid("C")
    mailbox.refuse_rcpt = ["550 5.1.1 No such user"]
    await h.consume(
        kit.order_paid(customer, phone=None, preferred="email"), kit.requested(customer)
    )
    await h.fire()
    [failed] = await h.outbox("notification.failed")
    assert failed["data"]["reason"] == "rejected"
    assert failed["data"]["detail"].startswith("e-mail: SMTP 550")
    assert failed["data"]["recipient"] == "z***@example.com"


async def test_no_gateway_for_the_buyer_in_production(make_harness: Any, kit: Any) -> None:
    h = make_harness(settings=kit.settings())  # no gateway, no development log channel
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer), kit.requested(customer))
    await h.fire()
    [failed] = await h.outbox("notification.failed")
    assert failed["data"]["reason"] == "no_channel"
    assert "configured: none" in failed["data"]["detail"]
    assert len(await h.rows(tables.dead_letters)) == 1


async def test_the_log_channel_in_development(make_harness: Any, kit: Any, caplog_all: Any) -> None:
    h = make_harness(settings=kit.settings(aftersales_dev_mode=True))
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer), kit.requested(customer))
    await h.fire()
    lines = [r.getMessage() for r in caplog_all.records if r.getMessage().startswith("✉")]
    assert len(lines) == 1
    assert lines[0].startswith(
        "✉ to 138****5678 via log (instead of sms) [complaint.acknowledged, zh-CN] "
        "我们已收到您的投诉 | "
    )
    [sent] = await h.outbox("notification.sent")
    assert sent["data"]["channel"] == "log" and sent["data"]["recipient"] == "138****5678"


async def test_a_buyer_whose_contact_arrives_late_is_notified(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    await h.consume(kit.requested(customer, request_id="rl-" + customer))
    await h.fire()
    row = await h.delivery("rl-" + customer)
    assert row["last_error"].startswith("no contact data")
    await h.consume(kit.order_paid(customer))
    await h.advance(minutes=1)
    assert len(gateway.received("/sms")) == 1
    # And one that never arrives gives up with no_contact.
    lost = kit.uid("C")
    await h.consume(kit.requested(lost, request_id="rn-" + lost))
    for minutes in (0, 1, 4, 16, 60):
        await h.advance(minutes=minutes)
    [failed] = await h.outbox("notification.failed")
    assert failed["data"]["reason"] == "no_contact" and failed["data"]["attempts"] == 5


async def test_webhook_and_im_channels(make_harness: Any, kit: Any, gateway: Any) -> None:
    from services.notifier import signature

    h = make_harness(
        settings=kit.settings(
            aftersales_webhook_url=f"{gateway.url}/hook",
            aftersales_webhook_secret="s3cret",
            aftersales_im_gateway_url=f"{gateway.url}/im",
        )
    )
    hooked, chatty = kit.uid("C"), kit.uid("C")
    await h.consume(
        kit.order_paid(hooked, preferred="webhook"),
        kit.order_paid(chatty, preferred="im"),
        kit.requested(hooked),
        kit.requested(chatty),
    )
    await h.fire()
    [hook] = gateway.received("/hook")
    # Signed with the send's instant; the reference verifier accepts it then, not much later.
    header = hook.headers["x-aftersales-signature"]
    now = h.clock.now().timestamp()
    assert header.startswith(f"t={int(now)},v1=")
    assert signature.verify("s3cret", header, hook.raw, now=now + 10) == int(now)
    with pytest.raises(signature.InvalidSignature):
        signature.verify("s3cret", header, hook.raw, now=now + signature.TOLERANCE_SECONDS + 1)
    assert hook.body["customer_id"] == hooked and hook.body["title"] == "我们已收到您的投诉"
    [im] = gateway.received("/im")
    assert im.body["to"] == chatty and im.body["channel"] == "im"
    for request in (hook, im):  # addressed by platform account: no contact data at all
        assert kit.PHONE not in request.raw.decode() and kit.EMAIL not in request.raw.decode()
    sent = {e["data"]["customer_id"]: e["data"] for e in await h.outbox("notification.sent")}
    assert sent[hooked]["channel"] == "webhook" and sent[hooked]["recipient"] is None
    assert sent[chatty]["channel"] == "im"


async def test_a_status_event_the_outbox_already_holds_is_not_counted_again(
    sms_harness: Any, kit: Any
) -> None:
    from prometheus_client import REGISTRY

    from services.notifier.repository import DeliveryRepository
    from shared.db import UnitOfWork
    from shared.messaging.context import HandlerContext

    def sent() -> float:
        labels = {"service": "notifier", "template": "complaint.acknowledged", "outcome": "sent"}
        return REGISTRY.get_sample_value("aftersales_notifications_total", labels) or 0.0

    h = sms_harness
    customer = kit.uid("C")
    request_id = "req-counted-" + customer
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id=request_id))
    before = sent()
    assert await h.fire() == 1
    assert sent() == before + 1
    # The same outcome recorded again (a replay): one notification.sent, counted once.
    async with UnitOfWork(h.sessions) as uow:
        ctx = HandlerContext(
            uow=uow, tables=tables.messaging, service="notifier", now=h.clock.now(), cause_id="x"
        )
        repo = DeliveryRepository(uow.session)
        delivery = await repo.get(request_id)
        assert delivery is not None
        assert delivery.status == "sent"
        await h.handlers.deliverer.store(ctx, repo, delivery)
        await uow.commit()
    assert len(await h.outbox("notification.sent")) == 1
    assert sent() == before + 1


async def test_outcomes_recorded_again_one_by_one_count_each_notification_once(
    sms_harness: Any, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcomes of a round are recorded together; when one cannot be, all of them again
    one by one: the others' notifications are sent and counted once."""
    from prometheus_client import REGISTRY

    from services.notifier.repository import DeliveryRepository

    def sent() -> float:
        labels = {"service": "notifier", "template": "complaint.acknowledged", "outcome": "sent"}
        return REGISTRY.get_sample_value("aftersales_notifications_total", labels) or 0.0

    h = sms_harness
    customer = kit.uid("C")  # one buyer: both outcomes in one transaction, the good one first
    good, bad = "req-good-" + customer, "req-bad-" + customer
    await h.consume(kit.order_paid(customer))
    await h.consume(kit.requested(customer, request_id=good))
    await h.consume(kit.requested(customer, request_id=bad))
    save = DeliveryRepository.save

    async def refusing(self: DeliveryRepository, delivery: Any, now: Any) -> None:
        if delivery.delivery_id == bad and delivery.status == "sent":
            raise ValueError("this outcome cannot be stored")
        await save(self, delivery, now)

    monkeypatch.setattr(DeliveryRepository, "save", refusing)
    before = sent()
    await h.fire()
    assert [e["data"]["request_id"] for e in await h.outbox("notification.sent")] == [good]
    assert sent() == before + 1
