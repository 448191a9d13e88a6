"""Sending outside the database transaction, still once per notification; the channels' own
safety (pooled HTTP clients, TLS for SMTP credentials)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from services.notifier import tables
from services.notifier.channels import (
    HttpGateway,
    Outgoing,
    Result,
    SmtpChannel,
    parse_smtp_url,
)
from services.notifier.delivering import SEND_LEASE, Claimed
from shared.db import UnitOfWork
from shared.messaging.context import HandlerContext


def outgoing(channel: str, delivery_id: str, address: str | None = None) -> Outgoing:
    from datetime import UTC, datetime

    return Outgoing(
        delivery_id=delivery_id,
        channel=channel,
        customer_id="C1",
        order_id="O1",
        template="t",
        language="zh-CN",
        subject="s",
        body="b",
        urgent=False,
        at=datetime.now(UTC),
        address=address,
    )


class Watching:
    """A channel that, while it sends, reads the delivery through another connection."""

    name = "sms"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.seen: list[dict[str, Any]] = []

    async def send(self, message: Outgoing) -> Result:
        d = tables.deliveries
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(d).where(d.c.delivery_id == message.delivery_id)))
                .mappings()
                .one()
            )
        self.seen.append(dict(row))
        return Result(ok=True, detail="sent")

    async def close(self) -> None:
        return None


async def test_the_send_happens_after_the_claim_committed(
    make_harness: Any, kit: Any, engine: Any
) -> None:
    watching = Watching(engine)
    h = make_harness(channels={"sms": watching})
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="w-" + customer))
    await h.fire()
    # Seen from outside while it was sent: the attempt claimed and committed, not yet recorded.
    [during] = watching.seen
    assert (during["status"], during["attempts"], during["defer_reason"]) == (
        "scheduled",
        1,
        "sending",
    )
    assert during["next_attempt_at"] == h.clock.now() + SEND_LEASE
    row = await h.delivery("w-" + customer)
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert len(await h.outbox("notification.sent")) == 1


async def test_a_crash_between_send_and_record_sends_again_under_the_same_key(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    request_id = "crash-" + customer
    lost: list[tuple[Claimed, Result]] = []
    real_record = h.handlers.deliverer.record

    async def process_died(ctx: HandlerContext, claimed: Claimed, result: Result) -> None:
        lost.append((claimed, result))  # sent, but the outcome never reaches the database

    h.handlers.deliverer.record = process_died
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id=request_id))
    await h.fire()
    assert [r.status for r in gateway.received()] == [200] and len(lost) == 1
    assert await h.outbox("notification.sent") == []
    h.handlers.deliverer.record = real_record
    assert await h.advance(seconds=SEND_LEASE.total_seconds() - 1) == 0  # the send may be live
    await h.advance(seconds=1)  # the recovery timer: sent again, under the same key
    assert [r.headers["idempotency-key"] for r in gateway.received()] == [request_id] * 2
    [sent] = await h.outbox("notification.sent")
    assert sent["data"]["attempts"] == 2
    # The first attempt's outcome arriving now (a stalled process waking up) changes nothing.
    async with UnitOfWork(h.sessions) as uow:
        ctx = HandlerContext(
            uow=uow, tables=tables.messaging, service="notifier", now=h.clock.now(), cause_id="y"
        )
        await real_record(ctx, *lost[0])
        await uow.commit()
    assert len(await h.outbox("notification.sent")) == 1
    assert (await h.delivery(request_id))["attempts"] == 2
    await h.advance(hours=1)
    assert len(gateway.received()) == 2  # nothing left to send


async def test_a_batch_is_sent_at_once_and_recorded_in_one_more_transaction(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customers = [kit.uid("C") for _ in range(6)]
    await h.consume(*(kit.order_paid(c) for c in customers))
    await h.consume(*(kit.requested(c, urgent=True) for c in customers))
    assert await h.scheduler.run_due() == 6  # one claim transaction for the whole batch
    assert len(gateway.received()) == 6
    assert len(await h.outbox("notification.sent")) == 6
    t = tables.messaging.timers
    live = await h.rows(t, t.c.fired_at.is_(None), t.c.cancelled_at.is_(None))
    assert live == []  # every recovery timer cancelled by its recorded outcome


async def test_one_pooled_client_per_gateway_closed_at_stop(kit: Any, gateway: Any) -> None:
    channel = HttpGateway("im", f"{gateway.url}/im")
    message = outgoing("im", "pool-1")
    assert (await channel.send(message)).ok
    client = channel._client
    assert client is not None
    assert (await channel.send(message)).ok
    assert channel._client is client  # the same pool for every message
    await channel.close()
    assert client.is_closed and channel._client is None
    assert (await channel.send(message)).ok  # a restarted service gets a new pool
    await channel.close()


async def test_smtp_credentials_are_never_sent_without_tls(kit: Any, mailbox: Any) -> None:
    # The test server offers no STARTTLS (as if an attacker stripped it from the EHLO answer).
    port = mailbox.url.split(":")[2].split("?")[0]
    target = parse_smtp_url(f"smtp://user:secret@127.0.0.1:{port}")
    assert target.start_tls is True  # required with credentials, not opportunistic
    message = outgoing("email", "tls-1", address=kit.EMAIL)
    result = await SmtpChannel(target).send(message)
    assert (result.ok, result.transient) == (False, False)
    assert result.detail == "e-mail: the SMTP server offers no STARTTLS, which is required"
    assert mailbox.messages == []
    # Without credentials the message goes, upgraded only where the server offers it.
    plain = await SmtpChannel(parse_smtp_url(f"smtp://127.0.0.1:{port}")).send(message)
    assert plain.ok and len(mailbox.messages) == 1


async def test_the_lease_outlasts_the_send_deadline() -> None:
    from services.notifier.channels import HTTP_TIMEOUT, SMTP_TIMEOUT
    from services.notifier.delivering import SEND_DEADLINE

    assert max(HTTP_TIMEOUT.read or 0, SMTP_TIMEOUT) <= SEND_DEADLINE
    assert timedelta(seconds=SEND_DEADLINE * 2) <= SEND_LEASE
