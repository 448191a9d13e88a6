"""Return flows through the wired service on the real database: decisions, the refunds they
ask the refund ledger for and their money, events in any order, exchanges and partial
returns."""

from __future__ import annotations

import json
import uuid

from aftersales_dev.events import unique
from shared.clock import ManualClock
from shared.contracts import deterministic_id, topics
from shared.contracts.ids import refund_id

from .helpers import (
    T0,
    D,
    H,
    ReturnsService,
    delivered,
    instant,
    order_paid,
    outbound_signed,
    paid_line,
    refunded,
    return_requested,
    return_shipped,
    return_signed,
    types,
)


def expected_refund_id(return_id: str) -> str:
    """The refund id pinned independently of the code: uuid5 over a fixed namespace, so finance
    sees the same id for a case whatever replays or redeliveries happen."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales:ids:v1")
    return "rf-" + str(uuid.uuid5(namespace, json.dumps(["refund", "return", return_id])))


async def test_no_reason_return_from_request_to_refund(svc: ReturnsService, clock: ManualClock):
    o, r = unique("O"), unique("R")
    paid = order_paid(
        o,
        at=T0 - 4 * D,
        lines=[paid_line("L1", quantity=3, paid=10000)],
        payments=[("alipay", 7000), ("coupon", 3000)],
        customer_id="C-happy",
    )
    requested = return_requested(
        o, r, at=T0, condition=["opened_for_inspection"], customer_id="C-happy"
    )
    await svc.feed(paid)
    await svc.feed(outbound_signed(o, at=T0 - 2 * D))
    await svc.feed(requested)

    [approved] = await svc.outbox(o)
    assert (approved.type, approved.topic, approved.key) == (
        "return.approved",
        topics.RETURN_DECISIONS,
        o,
    )
    data = approved.data
    assert data["return_id"] == r and data["order_id"] == o and data["customer_id"] == "C-happy"
    assert data["rule"] == "eligible"
    assert data["return_shipping_payer"] == "buyer"
    assert data["refund_estimate"] == 3333  # floor(10000 * 1 / 3)
    assert data["waiting_for"] is None
    assert data["message"]
    assert instant(data["decided_at"]) == T0
    envelope = approved.event
    assert envelope["source"] == "/aftersales/returns"
    assert envelope["causationid"] == requested["id"]
    assert envelope["correlationid"] == r  # SPEC 1: the case id

    clock.set(T0 + 2 * H)
    await svc.feed(return_shipped(o, r, at=T0 + 2 * H, fee=1200))
    assert len(await svc.outbox(o)) == 1  # shipping back decides nothing yet

    signed_at = T0 + 1 * D
    clock.set(signed_at + H / 12)  # five minutes after the warehouse signed
    signature = return_signed(o, r, at=signed_at)
    await svc.feed(signature)

    emitted = await svc.outbox(o)
    assert types(emitted) == ["return.approved", "refund.requested", "return.completed"]
    refund = emitted[1]
    assert refund.topic == topics.REFUND_REQUESTS and refund.key == o
    rid = expected_refund_id(r)
    assert refund.data["refund_id"] == rid == refund_id("return", r)
    assert refund.event_id == deterministic_id("refund.requested", rid)
    assert refund.data["requested_by"] == "returns"
    assert refund.event["correlationid"] == r
    assert refund.event["causationid"] == signature["id"]
    assert refund.data["order_id"] == o and refund.data["customer_id"] == "C-happy"
    assert refund.data["case"] == {"type": "return", "id": r}
    assert refund.data["amount"] == 3333
    assert refund.data["currency"] == "CNY"
    assert refund.data["breakdown"] == [{"kind": "goods", "amount": 3333}]
    assert "payments" not in refund.data  # the refund ledger splits over the payments
    assert refund.data["return_shipping_payer"] == "buyer"
    assert instant(refund.data["due_by"]) == signed_at + 24 * H
    assert instant(refund.data["requested_at"]) == clock.now()

    completed = emitted[2]
    assert completed.data["rule"] == "eligible" and completed.data["return_id"] == r

    state = await svc.return_state(r)
    assert state["status"] == "completed"
    assert state["refund"]["amount"] == 3333
    ledger = await svc.ledger(o)
    assert ledger["units_refunded"] == {"L1": 1}
    assert ledger["goods_refunded"] == 3333
    assert ledger["settled_returns"] == [r]
    assert ledger["reserved"] == {}
    assert await svc.live_timers(r) == {}


async def test_request_before_the_order_and_its_delivery_waits_then_is_approved(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(return_requested(o, r, at=T0))
    [pending] = await svc.outbox(o)
    assert pending.type == "return.pending"
    assert (pending.data["rule"], pending.data["waiting_for"]) == ("unknown_order", "order")
    assert pending.data["message"]
    assert await svc.live_timers(r) == {"signature_wait": T0 + 48 * H}

    await svc.at(T0 + 1 * H, order_paid(o, at=T0 - 3 * D))
    latest = (await svc.outbox(o))[-1]
    assert latest.type == "return.pending"
    assert (latest.data["rule"], latest.data["waiting_for"]) == ("not_delivered", "signature")
    assert await svc.live_timers(r) == {"signature_wait": T0 + 48 * H}  # the wait is not reset

    await svc.at(T0 + 2 * H, outbound_signed(o, at=T0 - 1 * D))
    assert await svc.decisions(o) == [
        ("return.pending", r, "unknown_order"),
        ("return.pending", r, "not_delivered"),
        ("return.approved", r, "eligible"),
    ]
    timers = await svc.timers(r)
    assert timers["signature_wait"]["cancelled_at"] is not None
    assert await svc.live_timers(r) == {}

    # The wait's end passes without effect: the request was decided.
    await svc.at(T0 + 49 * H)
    assert len(await svc.outbox(o)) == 3
    assert (await svc.return_state(r))["status"] == "approved"


async def test_return_leg_signature_before_the_request_refunds_on_the_request(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    back = T0 - 1 * H
    await svc.feed(order_paid(o, at=T0 - 4 * D, lines=[paid_line("L1", paid=8800)]))
    await svc.feed(outbound_signed(o, at=T0 - 2 * D))
    await svc.feed(return_signed(o, r, at=back))
    assert await svc.outbox(o) == []
    early = await svc.return_state(r)
    assert early["requested_at"] is None and early["return_signed_at"] is not None

    await svc.feed(return_requested(o, r, at=T0))
    emitted = await svc.outbox(o)
    refund = refunded(emitted)
    assert refund["amount"] == 8800
    assert instant(refund["due_by"]) == back + 24 * H
    assert instant(refund["requested_at"]) == T0


async def test_everything_before_order_paid_is_sorted_out_when_it_arrives(
    svc: ReturnsService, clock: ManualClock
):
    """Request, return leg and outbound signature all precede order.paid (three topics)."""
    o, r = unique("O"), unique("R")
    await svc.feed(return_requested(o, r, at=T0))
    await svc.at(T0 + 1 * H, return_signed(o, r, at=T0 + 1 * H))
    await svc.at(T0 + 2 * H, outbound_signed(o, at=T0 - 2 * D))
    assert await svc.decisions(o) == [("return.pending", r, "unknown_order")]

    await svc.at(T0 + 3 * H, order_paid(o, at=T0 - 4 * D, lines=[paid_line("L1", paid=4500)]))
    emitted = await svc.outbox(o)
    assert types(emitted) == [
        "return.pending",
        "return.approved",
        "refund.requested",
        "return.completed",
    ]
    assert emitted[2].data["amount"] == 4500
    assert instant(emitted[2].data["due_by"]) == T0 + 25 * H
    assert await svc.live_timers(r) == {}
    assert (await svc.return_state(r))["status"] == "completed"


async def test_refund_requested_after_its_deadline_leaves_the_breach_to_the_ledger(
    svc: ReturnsService, clock: ManualClock
):
    """The warehouse signed two days ago (an outage): the refund is requested now with its
    deadline; the refund ledger, which issues it late, sends sla.breached (SPEC 4.11)."""
    o, r = unique("O"), unique("R")
    signed_back = T0 - 2 * D
    await svc.feed(
        *delivered(o, paid_at=T0 - 6 * D, signed_at=T0 - 5 * D, lines=[paid_line("L1", paid=6600)]),
        return_requested(o, r, at=T0 - 4 * D),
        return_signed(o, r, at=signed_back),
    )
    emitted = await svc.outbox(o)
    refund = refunded(emitted)
    assert refund["amount"] == 6600
    assert instant(refund["due_by"]) == signed_back + 24 * H
    assert instant(refund["requested_at"]) == T0
    await svc.at(T0 + 3 * D)
    assert await svc.outbox(o, "sla.breached") == []


async def test_no_reason_exchange_requests_a_reshipment_and_refunds_nothing(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", quantity=2, paid=30000)]),
        return_requested(o, r, at=T0, kind="exchange", lines={"L1": 1}),
    )
    [approved] = await svc.outbox(o)
    assert approved.data["kind"] == "exchange"
    assert approved.data["return_shipping_payer"] == "buyer"  # no-reason exchange: buyer's leg
    signed_at = T0 + 1 * D
    await svc.at(
        signed_at, return_shipped(o, r, at=T0 + 1 * H, fee=1000), return_signed(o, r, at=signed_at)
    )
    emitted = await svc.outbox(o)
    assert types(emitted) == ["return.approved", "reshipment.requested", "return.completed"]
    reship = emitted[1]
    assert reship.topic == topics.FULFILMENT and reship.key == o
    assert reship.data["lines"] == [{"line_id": "L1", "quantity": 1}]
    assert reship.data["case"] == {"type": "return", "id": r}
    assert reship.event["correlationid"] == r
    assert instant(reship.data["due_by"]) == signed_at + 24 * H
    assert await svc.outbox(o, "refund.requested") == []
    assert (await svc.ledger(o))["goods_refunded"] == 0


async def test_seller_fault_exchange_reimburses_the_return_freight_up_to_the_cap(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", paid=30000)], shipping_fee_paid=0),
        return_requested(
            o, r, at=T0, kind="exchange", reason="wrong_item", evidence=["https://img/a.jpg"]
        ),
    )
    [approved] = await svc.outbox(o)
    assert approved.data["return_shipping_payer"] == "merchant"
    signed_at = T0 + 1 * D
    await svc.at(
        signed_at, return_shipped(o, r, at=T0 + 1 * H, fee=4500), return_signed(o, r, at=signed_at)
    )
    emitted = await svc.outbox(o)
    assert types(emitted) == [
        "return.approved",
        "reshipment.requested",
        "refund.requested",
        "return.completed",
    ]
    refund = emitted[2].data
    assert refund["refund_id"] == expected_refund_id(r)
    assert refund["amount"] == 3000  # 4500 paid, capped at return_shipping_cap
    assert refund["breakdown"] == [{"kind": "return_shipping", "amount": 3000}]
    assert refund["return_shipping_payer"] == "merchant"
    assert instant(emitted[1].data["due_by"]) == signed_at + 24 * H
    assert instant(refund["due_by"]) == signed_at + 24 * H


async def test_seller_fault_full_return_refunds_goods_outbound_and_return_freight(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(
            o,
            lines=[paid_line("L1", paid=5000)],
            shipping_fee_paid=800,
            payments=[("wechat", 5800)],
        ),
        return_requested(o, r, at=T0, reason="quality_issue", evidence=["https://img/b.jpg"]),
        return_shipped(o, r, at=T0 + 1 * H, fee=1500),
    )
    await svc.at(T0 + 1 * D, return_signed(o, r, at=T0 + 1 * D))
    [refund] = await svc.outbox(o, "refund.requested")
    assert refund.data["breakdown"] == [
        {"kind": "goods", "amount": 5000},
        {"kind": "outbound_shipping", "amount": 800},
        {"kind": "return_shipping", "amount": 1500},
    ]
    assert refund.data["amount"] == 7300
    assert refund.data["return_shipping_payer"] == "merchant"


async def test_partial_returns_never_refund_more_than_was_paid(
    svc: ReturnsService, clock: ManualClock
):
    """3 units paid 1000 together: one unit gives 333, the other two 667 (SPEC 4.7)."""
    o, r1, r2, r3 = unique("O"), unique("R1"), unique("R2"), unique("R3")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", quantity=3, paid=1000)]),
    )
    await svc.feed(return_requested(o, r1, at=T0, lines={"L1": 1}))
    await svc.at(T0 + 1 * D, return_signed(o, r1, at=T0 + 1 * D))
    await svc.at(T0 + 2 * D, return_requested(o, r2, at=T0 + 2 * D, lines={"L1": 2}))
    await svc.at(T0 + 3 * D, return_signed(o, r2, at=T0 + 3 * D))
    # Nothing is left to return: a third request is refused, never refunded.
    await svc.at(T0 + 3 * D + H, return_requested(o, r3, at=T0 + 3 * D + H, lines={"L1": 1}))

    refunds = {
        e.data["case"]["id"]: e.data["amount"] for e in await svc.outbox(o, "refund.requested")
    }
    assert refunds == {r1: 333, r2: 667}
    assert sum(refunds.values()) == 1000
    assert ("return.rejected", r3, "quantity_exceeds_purchased") in await svc.decisions(o)
    ledger = await svc.ledger(o)
    assert ledger["units_refunded"] == {"L1": 3}
    assert ledger["goods_refunded"] == 1000


async def test_partial_returns_signed_in_the_other_order_still_sum_to_what_was_paid(
    svc: ReturnsService, clock: ManualClock
):
    o, r1, r2, r3 = unique("O"), unique("R1"), unique("R2"), unique("R3")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", quantity=3, paid=1000)]),
        return_requested(o, r1, at=T0, lines={"L1": 1}),
        return_requested(o, r2, at=T0, lines={"L1": 2}),
        # Both approvals hold every unit: a third request exceeds what is left.
        return_requested(o, r3, at=T0, lines={"L1": 1}),
    )
    assert await svc.decisions(o) == [
        ("return.approved", r1, "eligible"),
        ("return.approved", r2, "eligible"),
        ("return.rejected", r3, "quantity_exceeds_purchased"),
    ]
    await svc.at(T0 + 1 * D, return_signed(o, r2, at=T0 + 1 * D))
    await svc.at(T0 + 2 * D, return_signed(o, r1, at=T0 + 2 * D))
    refunds = {
        e.data["case"]["id"]: e.data["amount"] for e in await svc.outbox(o, "refund.requested")
    }
    assert refunds == {r2: 666, r1: 334}
    assert (await svc.ledger(o))["goods_refunded"] == 1000


async def test_return_freight_known_only_after_the_refund_is_still_reimbursed(
    svc: ReturnsService, clock: ManualClock
):
    """return.shipped processed after the return leg was signed (another topic, e.g. a backlog
    after an outage): a seller-fault return reimburses the freight with a refund of its own."""
    o, r = unique("O"), unique("R")
    shipped = return_shipped(o, r, at=T0 - D + H, fee=1200)
    await svc.feed(
        order_paid(
            o,
            at=T0 - 4 * D,
            lines=[paid_line("L1", quantity=2, paid=20000)],
            payments=[("alipay", 15000), ("coupon", 5000)],
        ),
        outbound_signed(o, at=T0 - 2 * D),
        return_requested(o, r, at=T0 - D, reason="damaged_in_transit", evidence=["https://i/1"]),
        return_signed(o, r, at=T0 - H),  # signatures topic overtakes the returns topic
        shipped,
    )
    main, freight = await svc.outbox(o, "refund.requested")
    assert main.data["refund_id"] == expected_refund_id(r)
    assert [i["kind"] for i in main.data["breakdown"]] == ["goods"]
    assert freight.data["refund_id"] == expected_refund_id(f"{r}:return_shipping")
    assert freight.data["refund_id"] == refund_id("return", r, "return_shipping")
    assert freight.event_id == deterministic_id("refund.requested", freight.data["refund_id"])
    assert freight.event_id != main.event_id
    assert freight.data["case"] == {"type": "return", "id": r}
    assert freight.data["amount"] == 1200
    assert freight.data["breakdown"] == [{"kind": "return_shipping", "amount": 1200}]
    assert "payments" not in freight.data
    assert freight.data["return_shipping_payer"] == "merchant"
    assert instant(freight.data["due_by"]) == T0 - H + 24 * H  # the return's own deadline
    assert instant(freight.data["requested_at"]) == T0
    assert freight.event["causationid"] == shipped["id"] and freight.key == o

    # A re-sent return.shipped (another event id) or a later one: never a second reimbursement.
    clock.set(T0 + 2 * D)
    await svc.feed(return_shipped(o, r, at=T0 - D + H, fee=1200))
    await svc.feed(return_shipped(o, r, at=T0 - D + 2 * H, fee=2500))
    assert len(await svc.outbox(o, "refund.requested")) == 2
    ledger = await svc.ledger(o)
    assert ledger["goods_refunded"] == 10000  # freight is not goods
    assert ledger["return_shipping_refunded"] == 1200
    assert ledger["return_shipping_settled"] == [r]
    assert (await svc.return_state(r))["return_shipping_refund"]["amount"] == 1200
    assert await svc.outbox(o, "sla.breached") == []


async def test_late_return_freight_past_the_refund_deadline_gets_a_fresh_one(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", quantity=1, paid=9000)]),
        return_requested(o, r, at=T0 - D, reason="wrong_item", evidence=["https://i/1"]),
        return_signed(o, r, at=T0 - H),
    )
    clock.set(T0 + 3 * D)
    await svc.feed(return_shipped(o, r, at=T0 - D + H, fee=4500))
    main, freight = await svc.outbox(o, "refund.requested")
    assert main.data["refund_id"] == expected_refund_id(r)
    assert freight.data["amount"] == 3000  # return_shipping_cap
    assert instant(freight.data["due_by"]) == T0 + 3 * D + 24 * H
    assert await svc.outbox(o, "sla.breached") == []


async def test_late_return_freight_of_a_no_reason_return_stays_the_buyers(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", quantity=1, paid=9000)]),
        return_requested(o, r, at=T0 - D),
        return_signed(o, r, at=T0 - H),
        return_shipped(o, r, at=T0 - D + H, fee=1200),
    )
    [refund] = await svc.outbox(o, "refund.requested")
    assert refund.data["refund_id"] == expected_refund_id(r)
    assert (await svc.ledger(o))["return_shipping_refunded"] == 0
