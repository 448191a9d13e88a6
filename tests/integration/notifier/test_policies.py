"""Daily cap, quiet hours, urgency, expiry and deduplication, with a ManualClock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.notifier import tables

SH = ZoneInfo("Asia/Shanghai")


def sh(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=SH).astimezone(UTC)


async def test_daily_cap_defers_the_fourth_message_to_the_next_day(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer, other = kit.uid("C"), kit.uid("C")
    await h.consume(kit.order_paid(customer), kit.order_paid(other))
    ids = [f"cap-{i}-{customer}" for i in range(4)]
    await h.consume(*(kit.requested(customer, request_id=i) for i in ids))
    await h.consume(kit.requested(customer, request_id="urgent-" + customer, urgent=True))
    await h.consume(kit.requested(other, request_id="other-" + other))
    await h.fire()
    sent = {e["data"]["request_id"] for e in await h.outbox("notification.sent")}
    assert sent == {*ids[:3], "urgent-" + customer, "other-" + other}
    fourth = await h.delivery(ids[3])
    assert fourth["status"] == "scheduled" and fourth["defer_reason"] == "daily_cap"
    assert fourth["next_attempt_at"] == sh(2, 9)  # next local day, end of its quiet hours
    for i in ids[:3]:
        assert (await h.delivery(i))["slot_day"] == date(2024, 5, 1)
    assert (await h.delivery("urgent-" + customer))["slot_day"] is None  # urgent: not counted

    # Still 1 May, late evening: nothing more for this buyer today.
    h.clock.set(sh(1, 20, 59))
    await h.consume(kit.requested(customer, request_id="late-" + customer))
    await h.fire()
    assert (await h.delivery("late-" + customer))["next_attempt_at"] == sh(2, 9)
    assert len(gateway.received()) == 5

    # 2 May 09:00: the deferred two go out, counting against the new day.
    h.clock.set(sh(2, 9))
    await h.fire()
    assert (await h.delivery(ids[3]))["status"] == "sent"
    assert (await h.delivery("late-" + customer))["status"] == "sent"
    assert (await h.delivery(ids[3]))["slot_day"] == date(2024, 5, 2)
    assert len(gateway.received()) == 7


async def test_quiet_hours_defer_non_urgent_messages_to_their_end(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    h.clock.set(sh(1, 22, 30))
    await h.consume(kit.order_paid(customer))
    await h.consume(
        kit.requested(customer, request_id="quiet-" + customer),
        kit.requested(customer, request_id="urgent-" + customer, urgent=True),
    )
    await h.fire()
    assert [r.body["id"] for r in gateway.received()] == ["urgent-" + customer]
    row = await h.delivery("quiet-" + customer)
    assert (row["status"], row["defer_reason"], row["next_attempt_at"]) == (
        "scheduled",
        "quiet_hours",
        sh(2, 9),
    )
    # A durable timer row carries it (not dropped, not held in memory).
    t = tables.messaging.timers
    timers = await h.rows(t, t.c.fired_at.is_(None), t.c.cancelled_at.is_(None))
    assert [(t["ref"], t["due_at"]) for t in timers] == [(f"quiet-{customer}#1", sh(2, 9))]
    h.clock.set(sh(2, 8, 59))
    await h.fire()
    assert len(gateway.received()) == 1
    h.clock.set(sh(2, 9))
    await h.fire()
    assert [r.body["id"] for r in gateway.received()] == [
        "urgent-" + customer,
        "quiet-" + customer,
    ]


async def test_a_retry_falling_into_quiet_hours_waits_for_their_end(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    h.clock.set(sh(1, 20, 59))
    gateway.on("/sms", 503)
    await h.consume(kit.order_paid(customer), kit.requested(customer, request_id="rq-" + customer))
    await h.fire()
    await h.advance(minutes=1)  # 21:00: retry due, but quiet now
    row = await h.delivery("rq-" + customer)
    assert (row["attempts"], row["next_attempt_at"]) == (1, sh(2, 9))
    h.clock.set(sh(2, 9))
    await h.fire()
    assert (await h.delivery("rq-" + customer))["status"] == "sent"


async def test_a_message_that_cannot_make_its_deadline_is_dropped_with_a_reason(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    h.clock.set(sh(1, 22))
    survey = {"callback_id": "CB1", "deadline": sh(2, 8).isoformat()}
    await h.consume(kit.order_paid(customer))
    await h.consume(
        kit.requested(customer, "survey.invitation", survey, request_id="sv-" + customer)
    )
    await h.fire()
    assert gateway.received() == []
    [failed] = await h.outbox("notification.failed")
    assert failed["data"]["reason"] == "expired" and failed["data"]["attempts"] == 0
    [letter] = await h.rows(tables.dead_letters)
    assert letter["reason"] == "expired"


async def test_deduplication_by_request_id(sms_harness: Any, kit: Any, gateway: Any) -> None:
    h = sms_harness
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer))
    first = kit.requested(customer, request_id="dup-" + customer)
    again = kit.requested(customer, request_id="dup-" + customer)  # another event, same request
    await h.consume(first, first, again)  # and the first delivered twice in the batch
    await h.consume(first)  # and redelivered in a later batch
    await h.fire()
    await h.advance(hours=30)
    assert len(gateway.received()) == 1
    assert len(await h.rows(tables.deliveries)) == 1
    assert len(await h.outbox("notification.sent")) == 1
    # Sent already: a late copy of the request changes nothing either.
    await h.consume(kit.requested(customer, request_id="dup-" + customer))
    await h.advance(minutes=5)
    assert len(gateway.received()) == 1


async def test_urgent_messages_ignore_quiet_hours_and_the_cap(
    sms_harness: Any, kit: Any, gateway: Any
) -> None:
    h = sms_harness
    customer = kit.uid("C")
    h.clock.set(sh(1, 23, 30))
    await h.consume(kit.order_paid(customer))
    await h.consume(*(kit.requested(customer, urgent=True) for _ in range(5)))
    await h.fire()
    assert len(gateway.received()) == 5
    assert h.clock.now() - sh(1, 23, 30) == timedelta(0)
