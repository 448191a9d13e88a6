"""Deadlines of the returns service on the real timer table, driven by a ManualClock: the
signature and evidence waits, the review SLA (working hours) and the inspection grace."""

from __future__ import annotations

from datetime import timedelta

from aftersales_dev.events import unique
from shared.catchup import CATCH_UP_GRACE
from shared.clock import ManualClock
from shared.contracts import topics

from .helpers import (
    T0,
    D,
    H,
    ReturnsService,
    delivered,
    evidence_submitted,
    instant,
    order_paid,
    outbound_signed,
    paid_line,
    refunded,
    return_inspected,
    return_requested,
    return_reviewed,
    return_shipped,
    return_signed,
    types,
)

SECOND = timedelta(seconds=1)


async def test_unknown_order_is_rejected_when_the_signature_wait_ends(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    requested_at = T0 - 6 * H  # the wait counts from the request, not from its processing
    await svc.feed(return_requested(o, r, at=requested_at))
    assert await svc.live_timers(r) == {"signature_wait": requested_at + 48 * H}

    await svc.at(requested_at + 48 * H - SECOND)
    assert await svc.decisions(o) == [("return.pending", r, "unknown_order")]

    await svc.at(requested_at + 48 * H)
    assert await svc.decisions(o) == [
        ("return.pending", r, "unknown_order"),
        ("return.rejected", r, "unknown_order"),
    ]
    rejected = (await svc.outbox(o))[-1]
    assert "48小时" in rejected.data["message"]  # the buyer is told why
    assert "48 hours" in rejected.data["message_en"]
    assert rejected.event["causationid"].startswith("timer:signature_wait:")
    row = (await svc.timers(r))["signature_wait"]
    assert row["fired_at"] == requested_at + 48 * H
    assert (await svc.return_state(r))["status"] == "rejected"

    # The order turning up afterwards changes nothing, and the timer never fires twice.
    await svc.at(requested_at + 50 * H, order_paid(o, at=T0 - 3 * D), outbound_signed(o, at=T0 - D))
    assert len(await svc.outbox(o)) == 2


async def test_undelivered_order_is_rejected_when_the_signature_wait_ends(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(order_paid(o, at=T0 - 2 * D), return_requested(o, r, at=T0))
    assert await svc.decisions(o) == [("return.pending", r, "not_delivered")]
    assert (await svc.outbox(o))[0].data["waiting_for"] == "signature"

    await svc.at(T0 + 48 * H)
    assert await svc.decisions(o) == [
        ("return.pending", r, "not_delivered"),
        ("return.rejected", r, "not_delivered"),
    ]
    assert await svc.outbox(o, "refund.requested") == []


async def test_seller_fault_without_evidence_waits_then_is_approved_on_evidence(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o, lines=[paid_line("L1", paid=12000)]),
        return_requested(o, r, at=T0, reason="quality_issue"),
    )
    [pending] = await svc.outbox(o)
    assert pending.type == "return.pending"
    assert (pending.data["rule"], pending.data["waiting_for"]) == ("evidence_missing", "evidence")
    assert await svc.live_timers(r) == {"evidence_wait": T0 + 72 * H}

    await svc.at(T0 + 5 * H, evidence_submitted(o, r, at=T0 + 5 * H))
    approved = (await svc.outbox(o))[-1]
    assert approved.type == "return.approved"
    assert approved.data["rule"] == "eligible"
    assert approved.data["return_shipping_payer"] == "merchant"
    assert approved.data["refund_estimate"] == 12000
    assert (await svc.timers(r))["evidence_wait"]["cancelled_at"] is not None

    await svc.at(T0 + 73 * H)  # the old deadline passes without effect
    assert len(await svc.outbox(o)) == 2


async def test_seller_fault_without_evidence_is_rejected_when_the_evidence_wait_ends(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o),
        return_requested(o, r, at=T0, reason="missing_parts"),
    )
    await svc.at(T0 + 72 * H - SECOND)
    assert len(await svc.outbox(o)) == 1
    await svc.at(T0 + 72 * H)
    assert await svc.decisions(o) == [
        ("return.pending", r, "evidence_missing"),
        ("return.rejected", r, "evidence_missing"),
    ]
    assert "72 hours" in (await svc.outbox(o))[-1].data["message_en"]
    # Photos after the rejection come too late.
    await svc.at(T0 + 80 * H, evidence_submitted(o, r, at=T0 + 80 * H))
    assert len(await svc.outbox(o)) == 2


async def test_an_evidence_wait_that_fires_long_after_its_deadline_waits_for_the_backlog(
    svc: ReturnsService, clock: ManualClock
):
    """The service was down across the deadline: on restart its scheduler fires the timer at
    once, before the consumer has read the photos sent in time. The timer is set again for
    the catch-up grace, and the photos behind it approve the return."""
    o, r = unique("O"), unique("R")
    await svc.feed(*delivered(o), return_requested(o, r, at=T0, reason="quality_issue"))
    due = T0 + 72 * H
    restarted = due + 2 * H
    await svc.at(restarted)
    assert await svc.live_timers(r) == {"evidence_wait": restarted + CATCH_UP_GRACE}
    assert await svc.decisions(o) == [("return.pending", r, "evidence_missing")]

    await svc.feed(evidence_submitted(o, r, at=due - H))  # from the backlog
    assert await svc.decisions(o) == [
        ("return.pending", r, "evidence_missing"),
        ("return.approved", r, "eligible"),
    ]
    await svc.at(restarted + CATCH_UP_GRACE)
    assert len(await svc.outbox(o)) == 2
    assert await svc.live_timers(r) == {}


async def test_an_inspection_grace_that_fires_long_after_its_end_waits_for_the_backlog(
    svc: ReturnsService, clock: ManualClock
):
    """A failed inspection dated within the grace, behind the timer in the backlog, rejects
    the return: no refund is asked for."""
    o, r = await _electronics_return_signed(svc)
    restarted = T0 + 22 * H
    await svc.at(restarted)
    assert await svc.outbox(o, "refund.requested") == []
    assert await svc.live_timers(r) == {"inspection_grace": restarted + CATCH_UP_GRACE}
    await svc.feed(return_inspected(o, r, at=T0 + 19 * H, passed=False, findings=["activated"]))
    assert await svc.decisions(o) == [
        ("return.approved", r, "eligible"),
        ("return.rejected", r, "inspection_failed"),
    ]
    await svc.at(restarted + CATCH_UP_GRACE)
    assert await svc.outbox(o, "refund.requested") == []


async def test_late_quality_claim_goes_to_review_with_a_working_hours_sla(
    svc: ReturnsService, clock: ManualClock
):
    """Past the 15 days: manual review, due 12 working hours (09:00-18:00 Shanghai) later."""
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(
            o,
            paid_at=T0 - 25 * D,
            signed_at=T0 - 20 * D,
            lines=[paid_line("L1", paid=5000)],
            shipping_fee_paid=800,
            payments=[("wechat", 5800)],
        ),
        return_requested(o, r, at=T0, reason="quality_issue", evidence=["https://img/zip.jpg"]),
    )
    [pending] = await svc.outbox(o)
    assert pending.type == "return.pending"
    assert (pending.data["rule"], pending.data["waiting_for"]) == (
        "quality_window_expired",
        "review",
    )
    # Monday 10:00 local + 12 working hours: 8 today (to 18:00), 4 on Tuesday (to 13:00).
    review_due = T0 + 27 * H
    assert await svc.live_timers(r) == {"review_sla": review_due}

    await svc.at(review_due - SECOND)
    assert await svc.outbox(o, "sla.breached") == []
    await svc.at(review_due)
    [breach] = await svc.outbox(o, "sla.breached")
    assert breach.topic == topics.SLA
    assert breach.data["sla"] == "return_review"
    assert breach.data["case"] == {"type": "return", "id": r}
    assert instant(breach.data["due_at"]) == review_due
    assert instant(breach.data["detected_at"]) == review_due
    await svc.at(review_due + 2 * D)
    assert len(await svc.outbox(o, "sla.breached")) == 1  # reported once

    reviewed_at = review_due + 2 * D + H
    await svc.at(reviewed_at, return_reviewed(o, r, at=reviewed_at, decision="approve"))
    approved = (await svc.outbox(o))[-1]
    assert approved.type == "return.approved"
    assert approved.data["rule"] == "reviewed_approve"
    assert approved.data["return_shipping_payer"] == "merchant"
    state = await svc.return_state(r)
    assert state["status"] == "approved" and state["reviewed_by"] == "agent-7"

    # Seller fault, full return: goods, the outbound fee and the buyer's return freight.
    signed_at = reviewed_at + 2 * D
    await svc.at(
        signed_at,
        return_shipped(o, r, at=reviewed_at + H, fee=1500),
        return_signed(o, r, at=signed_at),
    )
    [refund] = await svc.outbox(o, "refund.requested")
    assert refund.data["amount"] == 5000 + 800 + 1500
    assert refund.data["return_shipping_payer"] == "merchant"


async def test_review_reject_closes_the_case_without_refund(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o, paid_at=T0 - 25 * D, signed_at=T0 - 20 * D),
        return_requested(o, r, at=T0, reason="not_as_described", evidence=["https://img/x.jpg"]),
    )
    await svc.at(T0 + 2 * H, return_reviewed(o, r, at=T0 + 2 * H, decision="reject"))
    assert await svc.decisions(o) == [
        ("return.pending", r, "quality_window_expired"),
        ("return.rejected", r, "reviewed_reject"),
    ]
    assert (await svc.timers(r))["review_sla"]["cancelled_at"] is not None
    await svc.at(T0 + 3 * D, return_signed(o, r, at=T0 + 3 * D))
    assert await svc.outbox(o, "refund.requested") == []
    assert await svc.outbox(o, "sla.breached") == []


async def _electronics_return_signed(svc: ReturnsService) -> tuple[str, str]:
    o, r = unique("O"), unique("R")
    await svc.feed(
        order_paid(
            o,
            at=T0 - 4 * D,
            lines=[paid_line("E1", paid=199900, category="electronics")],
            payments=[("card", 150000), ("alipay", 49900)],
        ),
        outbound_signed(o, at=T0 - 2 * D),
        return_requested(o, r, at=T0 - 1 * D, lines={"E1": 1}, reason="changed_mind"),
        return_signed(o, r, at=T0),
    )
    assert await svc.decisions(o) == [("return.approved", r, "eligible")]
    assert await svc.outbox(o, "refund.requested") == []  # waits for the inspection
    assert await svc.live_timers(r) == {"inspection_grace": T0 + 20 * H}
    return o, r


async def test_electronics_refund_waits_for_a_passed_inspection(
    svc: ReturnsService, clock: ManualClock
):
    o, r = await _electronics_return_signed(svc)
    await svc.at(T0 + 3 * H, return_inspected(o, r, at=T0 + 3 * H, passed=True))
    emitted = await svc.outbox(o)
    refund = refunded(emitted)
    assert refund["amount"] == 199900
    assert refund["breakdown"] == [{"kind": "goods", "amount": 199900}]
    assert "payments" not in refund  # the refund ledger splits over card and alipay
    assert instant(refund["due_by"]) == T0 + 24 * H
    assert instant(refund["requested_at"]) == T0 + 3 * H
    assert (await svc.timers(r))["inspection_grace"]["cancelled_at"] is not None
    await svc.at(T0 + 2 * D)
    assert len(await svc.outbox(o)) == 3


async def test_electronics_failed_inspection_rejects_the_return(
    svc: ReturnsService, clock: ManualClock
):
    o, r = await _electronics_return_signed(svc)
    await svc.at(
        T0 + 3 * H, return_inspected(o, r, at=T0 + 3 * H, passed=False, findings=["activated"])
    )
    assert await svc.decisions(o) == [
        ("return.approved", r, "eligible"),
        ("return.rejected", r, "inspection_failed"),
    ]
    assert (await svc.outbox(o))[-1].data["message"]
    assert await svc.outbox(o, "refund.requested") == []
    ledger = await svc.ledger(o)
    assert ledger["reserved"] == {} and ledger["goods_refunded"] == 0
    await svc.at(T0 + 2 * D)  # the grace end and the refund deadline pass without effect
    assert len(await svc.outbox(o)) == 2


async def test_electronics_refund_is_issued_when_the_inspection_grace_ends(
    svc: ReturnsService, clock: ManualClock
):
    o, r = await _electronics_return_signed(svc)
    await svc.at(T0 + 20 * H - SECOND)
    assert await svc.outbox(o, "refund.requested") == []
    await svc.at(T0 + 20 * H)
    [refund] = await svc.outbox(o, "refund.requested")
    assert refund.data["amount"] == 199900
    assert instant(refund.data["requested_at"]) == T0 + 20 * H
    assert instant(refund.data["due_by"]) == T0 + 24 * H
    assert await svc.outbox(o, "sla.breached") == []  # in time
    assert (await svc.return_state(r))["status"] == "completed"

    # An inspection that comes after the refund changes nothing.
    await svc.at(
        T0 + 22 * H, return_inspected(o, r, at=T0 + 22 * H, passed=False, findings=["activated"])
    )
    assert types(await svc.outbox(o)) == ["return.approved", "refund.requested", "return.completed"]


async def test_refund_deadline_passing_during_review_is_reported_with_the_late_refund(
    svc: ReturnsService, clock: ManualClock
):
    """The parcel is back while an agent still has the case: no refund is owed until the
    approval, so the deadline passing reports nothing; the late review is reported by its own
    timer, and the refund, issued after its due time, reports the refund breach once."""
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(
            o, paid_at=T0 - 25 * D, signed_at=T0 - 20 * D, lines=[paid_line("L1", paid=9000)]
        ),
        return_requested(o, r, at=T0, reason="quality_issue", evidence=["https://img/q.jpg"]),
    )
    await svc.at(T0 + H, return_signed(o, r, at=T0 + H))
    assert await svc.live_timers(r) == {"review_sla": T0 + 27 * H}
    await svc.at(T0 + 25 * H)
    assert await svc.outbox(o, "sla.breached") == []
    await svc.at(T0 + 27 * H)
    assert [e.data["sla"] for e in await svc.outbox(o, "sla.breached")] == ["return_review"]

    await svc.at(T0 + 30 * H, return_reviewed(o, r, at=T0 + 30 * H))
    emitted = await svc.outbox(o)
    assert types(emitted)[-3:] == ["return.approved", "refund.requested", "return.completed"]
    [refund] = await svc.outbox(o, "refund.requested")
    assert refund.data["amount"] == 9000
    assert instant(refund.data["due_by"]) == T0 + 25 * H
    assert instant(refund.data["requested_at"]) == T0 + 30 * H
    # The refund breach is the ledger's, when it issues after due_by (SPEC 4.11): returns
    # reports only the late review.
    breaches = await svc.outbox(o, "sla.breached")
    assert [e.data["sla"] for e in breaches] == ["return_review"]
    assert await svc.live_timers(r) == {}


async def test_a_return_rejected_for_missing_evidence_after_its_parcel_came_back_owes_nothing(
    svc: ReturnsService, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    await svc.feed(
        *delivered(o, paid_at=T0 - 5 * D, lines=[paid_line("L1", paid=9000)]),
        return_requested(o, r, at=T0, reason="quality_issue"),
    )
    await svc.at(T0 + H, return_signed(o, r, at=T0 + H))  # refund deadline T0 + 25 h
    await svc.at(T0 + 72 * H)  # the evidence wait ends
    assert types(await svc.outbox(o))[-1] == "return.rejected"
    assert await svc.outbox(o, "sla.breached") == []
    assert await svc.outbox(o, "refund.issued") == []
