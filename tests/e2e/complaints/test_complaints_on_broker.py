"""The complaints service end to end: CloudEvents published to the real broker, the running
service (consumer, database, outbox relay, timer scheduler) and its output topics read back.

One runtime serves the module; every test keeps to its own order and customer ids. Deadlines
are reached with event times in the past or by moving the injected ManualClock, never by
sleeping; the restart test moves the shared clock, so it comes last.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.catchup import CATCH_UP_GRACE
from shared.clock import ManualClock
from shared.contracts.ids import coupon_id, refund_id
from tests.polling import eventually

from .helpers import (
    MIN,
    T0,
    H,
    Output,
    Outputs,
    Service,
    Shop,
    opened,
    order_paid,
    order_shipped,
    refund_issued,
    resolved,
    responded,
    reviewed,
    satisfaction_low,
    unique,
)

pytestmark = pytest.mark.usefixtures("complaints_service")

OPENED = T0 - 10 * MIN
RESOLVED = T0 - 5 * MIN
DUE_BY = RESOLVED + 24 * H


def at(value: str) -> datetime:
    """An instant on the wire (RFC 3339, `Z` or an offset)."""
    return datetime.fromisoformat(value)


def pinned_refund_id(case_type: str, case_id: str) -> str:
    """The id a case's refund has always had, computed apart from the code: finance
    deduplicates on it, so moving refund ids into one module must not change them."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales:ids:v1")
    return f"rf-{uuid.uuid5(namespace, json.dumps(['refund', case_type, case_id]))}"


def one(found: list[Output]) -> Output:
    assert len(found) == 1, found
    return found[0]


# (category, remedy, shipping fee): the order's goods are 30000 (300.00 yuan)
CATEGORIES = [
    ("quality_issue", "none", 0),
    ("logistics_delay", "none", 800),
    ("missing_item", "reship", 0),
    ("wrong_item", "none", 0),
    ("not_received", "reship", 0),
    ("not_received", "refund", 800),
    ("service_attitude", "none", 0),
    ("late_shipment", "none", 0),
]
# Those whose compensation refunds goods or shipping (the complaint's own refund).
REFUNDED_BY_THE_COMPLAINT = {("logistics_delay", "none"), ("not_received", "refund")}


async def test_each_category_is_compensated_per_the_rules(shop: Shop, outputs: Outputs) -> None:
    cases = []
    for category, remedy, fee in CATEGORIES:
        o, c, k = unique("O"), unique("C"), unique("K")
        cases.append((category, remedy, o, c, k))
        events = [order_paid(o, c, shipping_fee_paid=fee)]
        if category != "late_shipment":
            events.append(order_shipped(o, at=T0 - 24 * H))
        events += [
            opened(k, o, c, category, at=OPENED),
            resolved(k, o, at=RESOLVED, remedy=remedy),
        ]
        await shop.publish(*events)

    for category, remedy, o, c, k in cases:
        ack = await outputs.note(o, "complaint.acknowledged")
        assert ack.data["customer_id"] == c
        assert ack.data["urgent"] is True
        assert ack.data["case"] == {"type": "complaint", "id": k}
        assert ack.event["correlationid"] == k
        if (category, remedy) in REFUNDED_BY_THE_COMPLAINT:
            # The compensation notice waits for the ledger; here the test is the ledger, and
            # its cap cuts the refund by 300.
            asked = one(await outputs.wait(o, "refund.requested")).data
            await shop.publish(refund_issued(asked, amount=asked["amount"] - 300))
            notice = await outputs.note(o, "complaint.compensated")
            assert notice.data["params"]["refund_amount"] == asked["amount"] - 300
            assert notice.data["params"]["refund_already_refunded"] == 1
        else:
            await outputs.note(o, "complaint.compensated")

    def coupons(o: str) -> list[int]:
        return [out.data["value"] for out in outputs.of(o, "coupon.granted")]

    def refunds(o: str) -> list[dict]:
        return [out.data for out in outputs.of(o, "refund.requested")]

    by = {(category, remedy): (o, c, k) for category, remedy, o, c, k in cases}
    expected_coupons = {
        ("quality_issue", "none"): 1500,  # 5 % of 30000
        ("logistics_delay", "none"): 500,
        ("missing_item", "reship"): 1000,
        ("wrong_item", "none"): 1000,
        ("not_received", "reship"): 1000,
        ("not_received", "refund"): 1000,
        ("service_attitude", "none"): 500,
    }
    for key, value in expected_coupons.items():
        o, c, k = by[key]
        coupon = one(await outputs.wait(o, "coupon.granted"))
        assert coupon.data["value"] == value, key
        assert coupon.data["coupon_id"] == coupon_id(k)
        assert coupon.data["complaint_id"] == k and coupon.data["customer_id"] == c
        assert at(coupon.data["expires_at"]) == T0 + timedelta(days=30)
        assert at(coupon.data["granted_at"]) == T0

    o, c, k = by[("logistics_delay", "none")]
    refund = one(await outputs.wait(o, "refund.requested")).data
    assert refund["refund_id"] == refund_id("complaint", k) == pinned_refund_id("complaint", k)
    assert refund["case"] == {"type": "complaint", "id": k}
    assert refund["amount"] == 800
    assert refund["breakdown"] == [{"kind": "outbound_shipping", "amount": 800}]
    assert "payments" not in refund  # the refund ledger splits over alipay and huabei
    assert refund["requested_by"] == "complaints"
    assert at(refund["due_by"]) == DUE_BY

    o, c, k = by[("not_received", "refund")]
    refund = one(await outputs.wait(o, "refund.requested")).data
    assert refund["amount"] == 30800
    assert refund["breakdown"] == [
        {"kind": "goods", "amount": 30000},
        {"kind": "outbound_shipping", "amount": 800},
    ]
    assert "payments" not in refund

    for key in [("missing_item", "reship"), ("not_received", "reship")]:
        o, c, k = by[key]
        reship = one(await outputs.wait(o, "reshipment.requested")).data
        assert reship["case"] == {"type": "complaint", "id": k}
        assert reship["lines"] == [{"line_id": "L1", "quantity": 1}]
        assert at(reship["due_by"]) == DUE_BY

    o, c, k = by[("late_shipment", "none")]
    refund = one(await outputs.wait(o, "refund.requested")).data
    assert refund["refund_id"] == refund_id("late_shipment", o)
    assert refund["refund_id"] == pinned_refund_id("late_shipment", o)
    assert refund["case"] == {"type": "late_shipment", "id": o}
    assert refund["amount"] == 1500
    assert refund["breakdown"] == [{"kind": "compensation", "amount": 1500}]
    assert not coupons(o)

    for o in (by[("quality_issue", "none")][0], by[("wrong_item", "none")][0]):
        assert not refunds(o) and not outputs.of(o, "reshipment.requested")

    # SPEC 7: the buyer's name, phone and e-mail never leave the service
    for _, _, o, _, _ in cases:
        for out in outputs.of(o):
            text_ = str(out.event)
            assert "13900001111" not in text_ and "Li Lei" not in text_
            assert "li.lei@example.com" not in text_


async def test_the_budget_caps_a_buyers_coupons_in_30_days(shop: Shop, outputs: Outputs) -> None:
    c = unique("C")
    cases = [(unique("O"), unique("K")) for _ in range(4)]
    for o, k in cases:
        await shop.publish(
            order_paid(o, c, goods=(200000,)),  # 5 % is 10000: the coupon's maximum, 5000
            order_shipped(o, at=T0 - 24 * H),
            opened(k, o, c, "quality_issue", at=OPENED),
            resolved(k, o, at=RESOLVED),
        )
    for o, _ in cases:
        await outputs.note(o, "complaint.compensated")
    granted = [o for o, _ in cases if outputs.of(o, "coupon.granted")]
    pending = [o for o, _ in cases if outputs.of(o, "compensation.pending")]
    assert len(granted) == 2  # 5000 + 5000 is exactly the budget of 10000
    assert len(pending) == 2  # above it, the coupon waits for a supervisor
    for o in granted:
        assert one(outputs.of(o, "coupon.granted")).data["value"] == 5000
    first = one(outputs.of(pending[0], "compensation.pending")).data
    assert (first["value"], first["used"], first["budget"], first["window_days"]) == (
        5000,
        10000,
        10000,
        30,
    )
    note = one(outputs.notes(pending[0], "complaint.compensated")).data
    assert note["params"]["coupon_pending_value"] == 5000

    # A supervisor approves one and denies the other.
    k_of = dict(cases)
    approve, deny = pending
    await shop.publish(
        reviewed(k_of[approve], approve, "approve", at=T0),
        reviewed(k_of[deny], deny, "deny", at=T0),
    )
    coupon = one(await outputs.wait(approve, "coupon.granted")).data
    assert coupon["value"] == 5000 and coupon["coupon_id"] == first["coupon_id"]
    await outputs.note(approve, "complaint.compensation_approved")
    denied = await outputs.note(deny, "complaint.compensation_denied")
    assert denied.data["params"]["value"] == 5000
    assert not outputs.of(deny, "coupon.granted")


async def test_duplicates_and_a_resolution_before_the_opening(shop: Shop, outputs: Outputs) -> None:
    o, c, k = unique("O"), unique("C"), unique("K")
    resolution = resolved(k, o, at=RESOLVED)
    opening = opened(k, o, c, "wrong_item", at=OPENED)
    await shop.publish(
        order_paid(o, c),
        order_shipped(o, at=T0 - 24 * H),
        resolution,  # before the opening
        opening,
        resolution,  # the same event delivered again
        opening,
        resolved(k, o, at=RESOLVED + MIN),  # resolved again, under another event id
    )
    coupon = one(await outputs.wait(o, "coupon.granted"))
    assert coupon.data["value"] == 1000

    # A marker on the same order (same partition, same outbox): once its acknowledgement is
    # out, anything the events above could cause has been published.
    marker = unique("K")
    await shop.publish(opened(marker, o, c, "other", at=T0))
    await outputs.wait(
        o, "notification.requested", where=lambda out: out.data["case"]["id"] == marker
    )
    await asyncio.sleep(0.3)
    assert len(outputs.of(o, "coupon.granted")) == 1
    assert len(outputs.notes(o, "complaint.compensated")) == 1
    # Already resolved when it opened: no "we will answer within 2 hours".
    acks = outputs.notes(o, "complaint.acknowledged")
    assert [a.data["case"]["id"] for a in acks] == [marker]


async def test_compensation_waits_for_an_order_paid_that_comes_late(
    shop: Shop, outputs: Outputs
) -> None:
    o, c, k = unique("O"), unique("C"), unique("K")
    await shop.publish(opened(k, o, c, "quality_issue", at=OPENED), resolved(k, o, at=RESOLVED))
    await outputs.note(o, "complaint.acknowledged")
    await asyncio.sleep(0.3)
    assert not outputs.of(o, "coupon.granted")  # the goods total is not known yet
    await shop.publish(order_paid(o, c, goods=(12000, 8000)), order_shipped(o, at=T0 - H))
    coupon = one(await outputs.wait(o, "coupon.granted"))
    assert coupon.data["value"] == 1000  # 5 % of 20000


async def test_an_unanswered_complaint_breaches_its_slas_and_escalates(
    shop: Shop, outputs: Outputs, service_clock: ManualClock
) -> None:
    o, c, k = unique("O"), unique("C"), unique("K")
    opened_at = service_clock.now() - 3 * H  # both deadlines (2 h) passed an hour ago
    await shop.publish(
        order_paid(o, c), order_shipped(o, at=T0 - 24 * H), opened(k, o, c, "other", at=opened_at)
    )
    await outputs.note(o, "complaint.acknowledged")
    # Learnt of after its deadlines: checked after a grace, in case the response is right behind.
    service_clock.advance(CATCH_UP_GRACE + MIN)
    breaches = await outputs.wait(o, "sla.breached", count=2)
    assert {b.data["sla"]: at(b.data["due_at"]) for b in breaches} == {
        "complaint_first_response": opened_at + 2 * H,
        "complaint_resolution": opened_at + 2 * H,
    }
    for b in breaches:
        assert b.data["case"] == {"type": "complaint", "id": k}
        assert at(b.data["detected_at"]) == service_clock.now()
    escalations = await outputs.wait(o, "complaint.escalated", count=2)
    assert {e.data["reason"]: e.data["priority"] for e in escalations} == {
        "first_response_overdue": "high",
        "resolution_overdue": "urgent",
    }
    for e in escalations:
        assert e.topic == "aftersales.escalations"
        assert (e.data["complaint_id"], e.data["customer_id"]) == (k, c)
        assert e.data["category"] == "other"
        assert at(e.data["due_at"]) == opened_at + 2 * H
    await outputs.note(o, "complaint.escalated")  # the buyer is told once
    await asyncio.sleep(0.3)
    assert len(outputs.notes(o, "complaint.escalated")) == 1


async def test_a_late_response_escalates_before_its_timer_fires(
    shop: Shop, outputs: Outputs, service_clock: ManualClock
) -> None:
    """The response is dated an hour after its 2-hour deadline and arrives while the clock
    is still short of it: the timer never fires, the response itself is found late."""
    o, c, k = unique("O"), unique("C"), unique("K")
    opened_at = service_clock.now()
    await shop.publish(
        order_paid(o, c),
        order_shipped(o, at=T0 - 24 * H),
        opened(k, o, c, "quality_issue", at=opened_at),
        responded(k, o, at=opened_at + 3 * H),
    )
    breach = one(await outputs.wait(o, "sla.breached"))
    assert breach.data["sla"] == "complaint_first_response"
    assert at(breach.data["due_at"]) == opened_at + 2 * H
    escalation = one(await outputs.wait(o, "complaint.escalated"))
    assert (escalation.data["reason"], escalation.data["priority"]) == (
        "first_response_overdue",
        "high",
    )
    assert at(escalation.data["due_at"]) == opened_at + 2 * H


async def test_a_low_satisfaction_score_reopens_with_priority(
    shop: Shop, outputs: Outputs, service_clock: ManualClock
) -> None:
    now = service_clock.now()
    c = unique("C")
    (o1, k1), (o2, k2) = (unique("O"), unique("K")), (unique("O"), unique("K"))
    await shop.publish(
        order_paid(o1, c),
        order_shipped(o1, at=T0 - 24 * H),
        opened(k1, o1, c, "service_attitude", at=OPENED),
        resolved(k1, o1, at=RESOLVED, outcome="not_upheld"),
    )
    await outputs.note(o1, "complaint.acknowledged")
    # k2's score arrives before anything about k2: it waits for the complaint.
    await shop.publish(satisfaction_low(c, [k1, k2], at=T0))
    await shop.publish(
        order_paid(o2, c),
        order_shipped(o2, at=T0 - 24 * H),
        opened(k2, o2, c, "quality_issue", at=OPENED),
        resolved(k2, o2, at=RESOLVED, outcome="not_upheld"),
    )
    for o, k, hours in ((o1, k1, 2), (o2, k2, 24)):
        escalation = one(await outputs.wait(o, "complaint.escalated")).data
        assert escalation["complaint_id"] == k
        assert escalation["reason"] == "low_satisfaction"
        assert escalation["priority"] == "urgent"
        assert escalation["score"] == 1
        assert at(escalation["due_at"]) == now + hours * H
        reopened = await outputs.note(o, "complaint.reopened")
        assert at(reopened.data["params"]["resolve_by"]) == now + hours * H


@pytest.mark.parametrize("case_type", ["return", "late_shipment"])
async def test_a_low_score_for_a_return_asks_a_person_to_call_back(
    shop: Shop, outputs: Outputs, service_clock: ManualClock, case_type: str
) -> None:
    """A return's or a late shipment's case (its id the order's) is not reopened here: a
    person calls the buyer back, and the buyer is told so."""
    c = unique("C")
    r = unique("R") if case_type == "return" else unique("O")
    low = satisfaction_low(c, [], at=T0)
    low["data"]["cases"] = [{"type": case_type, "id": r}]
    low["data"]["score"] = 2
    await shop.publish(low)
    escalation = one(await outputs.wait(c, "case.escalated"))
    assert escalation.topic == "aftersales.escalations"
    assert escalation.data["case"] == {"type": case_type, "id": r}
    assert (escalation.data["priority"], escalation.data["score"]) == ("urgent", 2)
    assert escalation.data["callback_id"] == low["data"]["callback_id"]
    assert at(escalation.data["due_at"]) == service_clock.now() + 2 * H
    # A late-shipment case's notice is keyed by its order, a return's by the buyer.
    notice = await outputs.note(r if case_type == "late_shipment" else c, "case.priority_callback")
    assert notice.data["params"]["case_id"] == r
    assert notice.data["customer_id"] == c


async def test_the_late_shipment_timer_fires_after_a_restart(
    shop: Shop,
    outputs: Outputs,
    complaints_service: Service,
    service_clock: ManualClock,
    complaints_engine: AsyncEngine,
) -> None:
    now = service_clock.now()
    c = unique("C")
    late, in_time, presale = unique("O"), unique("O"), unique("O")
    shipped_while_down = unique("O")
    paid_at = now - 71 * H  # due to ship by an hour from now
    await shop.publish(
        order_paid(late, c, at=paid_at, goods=(80000,)),  # 5 % is 4000: capped at 3000
        order_paid(in_time, c, at=paid_at),
        order_paid(shipped_while_down, c, at=paid_at),
        order_shipped(in_time, at=paid_at + 20 * H),
        order_paid(presale, c, at=now - 10 * 24 * H, presale_ship_by=now + 30 * MIN),
    )

    async def timers() -> dict[str, tuple[object, object]]:
        async with complaints_engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT ref, due_at, cancelled_at FROM complaints.timers WHERE kind = :k"),
                {"k": "late_shipment"},
            )
            found = {row.ref: (row.due_at, row.cancelled_at) for row in rows}
        wanted = (late, in_time, presale, shipped_while_down)
        return found if all(ref in found for ref in wanted) else {}

    rows = await eventually(timers, what="the late-shipment timers")
    # judged a grace after the ship-by, for an order.shipped on its way through the platform
    assert rows[late] == (paid_at + 72 * H + CATCH_UP_GRACE, None)
    # the presale date replaces the 72 hours
    assert rows[presale] == (now + 30 * MIN + CATCH_UP_GRACE, None)
    assert rows[in_time][1] is not None  # shipped in time: cancelled

    await complaints_service.stop()
    # shipped in time while the service was down: in its backlog when it starts again
    await shop.publish(order_shipped(shipped_while_down, at=paid_at + 71 * H + 30 * MIN))
    service_clock.advance(2 * H)
    await complaints_service.start()

    # The timers fire at once, long after their due times: each is judged after the catch-up
    # grace, so the shipment in the backlog stops its order's watch instead of a penalty.
    restarted = now + 2 * H

    async def rearmed() -> bool:
        async with complaints_engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT ref, due_at, cancelled_at FROM complaints.timers WHERE kind = :k"),
                {"k": "late_shipment"},
            )
            found = {row.ref: (row.due_at, row.cancelled_at) for row in rows}
        again = (restarted + CATCH_UP_GRACE, None)
        return (
            found.get(late) == again
            and found.get(presale) == again
            and found.get(shipped_while_down, (None, None))[1] is not None
        )

    await eventually(rearmed, what="the timers judged after the grace")
    service_clock.advance(CATCH_UP_GRACE)

    refund = one(await outputs.wait(late, "refund.requested")).data
    assert refund["case"] == {"type": "late_shipment", "id": late}
    assert refund["refund_id"] == refund_id("late_shipment", late)
    assert refund["amount"] == 3000
    assert refund["breakdown"] == [{"kind": "compensation", "amount": 3000}]
    assert at(refund["due_by"]) == paid_at + 96 * H
    assert at(refund["requested_at"]) == restarted + CATCH_UP_GRACE
    apology = await outputs.note(late, "complaint.apology_late_shipment")
    assert apology.data["params"]["amount"] == 3000
    assert apology.data["case"] == {"type": "late_shipment", "id": late}

    refund = one(await outputs.wait(presale, "refund.requested")).data
    assert refund["amount"] == 1500  # 5 % of 30000
    assert not outputs.of(in_time, "refund.requested")
    assert not outputs.of(shipped_while_down, "refund.requested")


async def test_sla_timers_that_fire_after_a_restart_wait_for_the_answers_in_the_backlog(
    shop: Shop,
    outputs: Outputs,
    complaints_service: Service,
    service_clock: ManualClock,
    complaints_engine: AsyncEngine,
) -> None:
    now = service_clock.now()
    c = unique("C")
    (answered, ka), (ignored, ki) = (unique("O"), unique("K")), (unique("O"), unique("K"))
    opened_at = now - H  # both deadlines (2 h) an hour from now
    await shop.publish(
        order_paid(answered, c),
        order_paid(ignored, c),
        opened(ka, answered, c, "other", at=opened_at),
        opened(ki, ignored, c, "other", at=opened_at),
    )
    await outputs.note(answered, "complaint.acknowledged")
    await outputs.note(ignored, "complaint.acknowledged")

    async def timers(*wanted: tuple[str, str, datetime]) -> bool:
        async with complaints_engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT ref, kind, due_at FROM complaints.timers"
                    " WHERE ref IN (:a, :b) AND cancelled_at IS NULL AND fired_at IS NULL"
                ),
                {"a": ka, "b": ki},
            )
            found = {(row.ref, row.kind, row.due_at) for row in rows}
        return all(want in found for want in wanted)

    due = opened_at + 2 * H + CATCH_UP_GRACE  # a grace after the deadlines
    sla = ("complaint_first_response", "complaint_resolution")
    await eventually(
        lambda: timers(*[(k, kind, due) for k in (ka, ki) for kind in sla]), what="the SLA timers"
    )

    await complaints_service.stop()
    # resolved in time while the service was down: in its backlog when it starts again
    await shop.publish(resolved(ka, answered, at=opened_at + 90 * MIN, outcome="not_upheld"))
    service_clock.advance(2 * H)
    await complaints_service.start()

    # The timers fire at once, long after their due times: judged a grace later, so the
    # resolution in the backlog is read first.
    again = now + 2 * H + CATCH_UP_GRACE
    await eventually(
        lambda: timers(*[(ki, kind, again) for kind in sla]), what="the timers set again"
    )
    service_clock.advance(CATCH_UP_GRACE)

    breaches = await outputs.wait(ignored, "sla.breached", count=2)
    assert {b.data["sla"]: at(b.data["due_at"]) for b in breaches} == {
        "complaint_first_response": opened_at + 2 * H,
        "complaint_resolution": opened_at + 2 * H,
    }
    await outputs.wait(ignored, "complaint.escalated", count=2)
    await asyncio.sleep(0.3)
    assert not outputs.of(answered, "sla.breached")
    assert not outputs.of(answered, "complaint.escalated")
