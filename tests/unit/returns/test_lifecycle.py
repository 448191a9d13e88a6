"""ReturnRequest lifecycle: waits and timers, evidence, review, return leg, inspection, SLA,
out-of-order events, exchanges (the return freight learnt late, cancellation, idempotence,
persistence and catch-up are in test_lifecycle_late.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.returns.domain.events import (
    Decided,
    ParcelOfClosedCase,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.returns.domain.vocabulary import Payer, ReturnStatus, Rule, Sla, TimerKind, WaitingFor

from . import SIGNED, SOON, Case, H, T, at, decided, electronics_case, kinds, line, only, order

# --- waiting for the order or the delivery ---------------------------------------------------


def test_unknown_order_waits_then_is_rejected_when_the_wait_ends():
    case = Case(None)
    events = case.submit(requested_at=SOON)
    event = decided(events)
    assert (event.status, event.rule, event.waiting_for) == (
        ReturnStatus.PENDING,
        Rule.UNKNOWN_ORDER,
        WaitingFor.ORDER,
    )
    assert only(events, TimerSet) == [TimerSet(TimerKind.SIGNATURE_WAIT, SOON + 48 * H)]
    fired = case.fire("signature_wait", now=SOON + 48 * H)
    event = decided(fired)
    assert (event.status, event.rule, event.event_type) == (
        ReturnStatus.REJECTED,
        Rule.UNKNOWN_ORDER,
        "return.rejected",
    )
    assert "48" in event.message
    assert case.fire("signature_wait", now=SOON + 49 * H) == []  # replayed timer


def test_a_request_for_another_buyers_order_is_rejected_as_an_unknown_order():
    """The order is known but was paid by another buyer: for this buyer there is no such
    order. Rejected at once, with a way on, never approved (the refund ledger would refuse
    its refund after the buyer was told one is coming)."""
    case = Case(order())  # paid by c1
    events = case.submit(customer_id="c2")
    event = decided(events)
    assert (event.status, event.rule, event.waiting_for) == (
        ReturnStatus.REJECTED,
        Rule.UNKNOWN_ORDER,
        None,
    )
    assert "账户" in event.message and "account" in event.message_en
    assert "48" not in event.message + event.message_en  # no wait was involved
    assert only(events, TimerSet) == [] and case.ledger.reserved == {}
    assert case.sign(T) == [ParcelOfClosedCase(ReturnStatus.REJECTED)]
    assert case.ledger.settled_returns == []
    assert decided(case.submit("r2")).status == ReturnStatus.APPROVED  # the buyer's own


def test_a_request_waiting_for_an_order_another_buyer_paid_is_rejected_when_it_comes():
    case = Case(None)
    assert decided(case.submit(customer_id="c2")).waiting_for == WaitingFor.ORDER
    case.order = order()  # order.paid arrives: the buyer is c1
    events = case.reassess(now=SOON + H)
    event = decided(events)
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.UNKNOWN_ORDER)
    assert "account" in event.message_en and "48" not in event.message_en
    assert kinds(events, TimerCancelled) == [TimerKind.SIGNATURE_WAIT]
    assert case.ledger.reserved == {}
    # A timer that fires on the order (its reassessment missed) decides the same.
    missed = Case(None)
    missed.submit(customer_id="c2")
    missed.order = order()
    fired = decided(missed.fire("signature_wait", now=SOON + 48 * H))
    assert (fired.status, fired.rule) == (ReturnStatus.REJECTED, Rule.UNKNOWN_ORDER)


def test_order_arriving_during_the_wait_decides_the_request():
    case = Case(None)
    case.submit(requested_at=SOON)
    case.order = order()
    events = case.reassess(now=SOON + 2 * H)
    assert decided(events).status == ReturnStatus.APPROVED
    assert kinds(events, TimerCancelled) == [TimerKind.SIGNATURE_WAIT]
    assert case.fire("signature_wait", now=SOON + 48 * H) == []  # the timer is stale
    assert case.reassess(now=SOON + 3 * H) == []


def test_order_without_signature_moves_the_wait_to_the_signature_keeping_the_timer():
    case = Case(None)
    case.submit(requested_at=SOON)
    case.order = order(signed_at=None)
    events = case.reassess(now=SOON + H)
    event = decided(events)
    assert (event.rule, event.waiting_for) == (Rule.NOT_DELIVERED, WaitingFor.SIGNATURE)
    assert only(events, TimerSet) == [] and only(events, TimerCancelled) == []
    fired = decided(case.fire("signature_wait", now=SOON + 48 * H))
    assert (fired.status, fired.rule) == (ReturnStatus.REJECTED, Rule.NOT_DELIVERED)


def test_outbound_signature_arriving_later_lets_the_request_go_on():
    unsigned = order(signed_at=None)
    case = Case(unsigned)
    requested = at("2026-03-01T20:00:00+08:00")
    assert decided(case.submit(requested_at=requested)).rule == Rule.NOT_DELIVERED
    case.order = unsigned.with_outbound_signature(SIGNED)
    events = case.reassess(now=requested + H)
    assert decided(events).rule == Rule.ELIGIBLE
    assert kinds(events, TimerCancelled) == [TimerKind.SIGNATURE_WAIT]


def test_a_firing_wait_timer_decides_on_the_facts_it_is_given():
    case = Case(None)
    case.submit(requested_at=SOON)
    case.order = order()  # the service layer missed the reassessment
    assert decided(case.fire("signature_wait", now=SOON + 48 * H)).rule == Rule.ELIGIBLE


# --- evidence -------------------------------------------------------------------------------


def test_evidence_arriving_approves_a_seller_fault_request():
    case = Case(order())
    case.submit(reason="quality_issue", requested_at=SOON)
    assert case.evidence([], now=SOON + H) == []
    events = case.evidence(["https://img/1.jpg"], now=SOON + H)
    event = decided(events)
    assert (event.status, event.rule, event.return_shipping_payer) == (
        ReturnStatus.APPROVED,
        Rule.ELIGIBLE,
        Payer.MERCHANT,
    )
    assert kinds(events, TimerCancelled) == [TimerKind.EVIDENCE_WAIT]
    assert case.evidence(["https://img/1.jpg"], now=SOON + 2 * H) == []
    assert case.get().evidence_urls == ["https://img/1.jpg"]


def test_no_evidence_before_the_wait_ends_rejects():
    case = Case(order())
    case.submit(reason="quality_issue", requested_at=SOON)
    event = decided(case.fire("evidence_wait", now=SOON + 72 * H))
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.EVIDENCE_MISSING)
    assert "72" in event.message
    assert case.evidence(["late.jpg"], now=SOON + 73 * H) == []
    assert case.get().status == ReturnStatus.REJECTED


def test_evidence_wait_timer_due_at_must_match():
    case = Case(order())
    case.submit(reason="quality_issue", requested_at=SOON)
    request = case.get()
    ctx = {"returns": case.returns, "policy": case.policy}
    assert request.on_timer("evidence_wait", now=SOON, due_at=SOON + H, **ctx) == []
    assert (
        decided(
            request.on_timer("evidence_wait", now=SOON + 72 * H, due_at=SOON + 72 * H, **ctx)
        ).rule
        == Rule.EVIDENCE_MISSING
    )


# --- manual review --------------------------------------------------------------------------

LATE_QUALITY = at("2026-03-20T10:00:00+08:00")
REVIEW_DUE = at("2026-03-21T13:00:00+08:00")


def review_case() -> Case:
    case = Case(order(line(quantity=2)))
    case.submit(reason="quality_issue", requested_at=LATE_QUALITY)
    return case


def test_review_approve():
    case = review_case()
    events = case.review("approve", now=LATE_QUALITY + 2 * H)
    event = decided(events)
    assert (event.status, event.rule, event.return_shipping_payer) == (
        ReturnStatus.APPROVED,
        Rule.REVIEWED_APPROVE,
        Payer.MERCHANT,
    )
    assert event.refund_estimate is not None and event.refund_estimate.goods == 500
    assert kinds(events, TimerCancelled) == [TimerKind.REVIEW_SLA]
    assert case.ledger.reserved == {"r1": {"l1": 1}}
    assert case.review("approve", now=LATE_QUALITY + 3 * H) == []
    assert case.get().reviewed_by == "agent7"


def test_review_reject():
    case = review_case()
    events = case.review("reject", now=LATE_QUALITY + 2 * H)
    event = decided(events)
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.REVIEWED_REJECT)
    assert "looked at photos" not in event.message + event.message_en  # agent notes stay internal
    assert kinds(events, TimerCancelled) == [TimerKind.REVIEW_SLA]


def test_review_sla_breach_is_reported_once_and_the_case_stays_in_review():
    case = review_case()
    events = case.fire("review_sla", now=REVIEW_DUE + timedelta(seconds=5))
    assert events == [SlaBreached(Sla.RETURN_REVIEW, REVIEW_DUE, REVIEW_DUE + timedelta(seconds=5))]
    assert case.get().status == ReturnStatus.REVIEW
    assert case.fire("review_sla", now=REVIEW_DUE + H) == []
    events = case.review("approve", now=REVIEW_DUE + 2 * H)
    assert decided(events).status == ReturnStatus.APPROVED
    assert only(events, TimerCancelled) == [] and only(events, SlaBreached) == []


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_review_dated_after_its_deadline_breaches_once_though_it_beat_the_timer(decision):
    case = review_case()
    late = REVIEW_DUE + timedelta(minutes=1)
    events = case.review(decision, now=late + H, reviewed_at=late)
    assert decided(events).rule == (
        Rule.REVIEWED_APPROVE if decision == "approve" else Rule.REVIEWED_REJECT
    )
    assert only(events, SlaBreached) == [SlaBreached(Sla.RETURN_REVIEW, REVIEW_DUE, late + H)]
    assert case.fire("review_sla", now=REVIEW_DUE + 2 * H) == []  # cancelled, and stale anyway
    assert case.review(decision, now=late + 3 * H, reviewed_at=late) == []


def test_a_late_review_of_units_taken_meanwhile_is_rejected_and_still_breaches():
    case = review_case()
    case.submit("r2", lines={"l1": 2}, requested_at=SOON)
    late = REVIEW_DUE + H
    events = case.review("approve", now=late, reviewed_at=late)
    assert decided(events).rule == Rule.QUANTITY_EXCEEDS_PURCHASED
    assert only(events, SlaBreached) == [SlaBreached(Sla.RETURN_REVIEW, REVIEW_DUE, late)]


def test_a_review_dated_in_time_but_processed_after_the_deadline_is_no_breach():
    case = review_case()
    events = case.review("approve", now=REVIEW_DUE + 3 * H, reviewed_at=REVIEW_DUE)
    assert decided(events).status == ReturnStatus.APPROVED
    assert only(events, SlaBreached) == []


def test_a_case_cancelled_in_review_after_its_deadline_breaches_once_though_it_beat_the_timer():
    case = review_case()
    late = REVIEW_DUE + timedelta(minutes=1)
    events = case.cancel(late, now=late + H)
    assert decided(events).rule == Rule.CANCELLED
    assert only(events, SlaBreached) == [SlaBreached(Sla.RETURN_REVIEW, REVIEW_DUE, late + H)]
    assert case.fire("review_sla", now=REVIEW_DUE + 2 * H) == []
    in_time = review_case()
    events = in_time.cancel(REVIEW_DUE, now=REVIEW_DUE + H)  # dated in time, processed late
    assert only(events, SlaBreached) == []


def test_review_approval_checks_that_the_units_are_still_free():
    case = review_case()
    case.submit("r2", lines={"l1": 2}, requested_at=SOON)  # no-reason, takes both units
    event = decided(case.review("approve", now=LATE_QUALITY + H))
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.QUANTITY_EXCEEDS_PURCHASED)


def test_review_of_a_case_not_in_review_has_no_effect():
    case = Case(order())
    case.submit()
    assert case.review("reject", now=SOON + H) == []
    with pytest.raises(ValueError):
        case.review("maybe", now=SOON + H)


# --- the return leg, inspection, refund deadline -------------------------------------------


def test_signed_return_is_refunded_at_once():
    case = Case(order())
    case.submit()
    events = case.sign(T, now=T + H)
    refund = only(events, RefundDue)
    assert len(refund) == 1
    assert (refund[0].due_by, refund[0].requested_at) == (T + 24 * H, T + H)
    assert refund[0].calculation.amount == 1000
    event = decided(events)
    assert (event.status, event.rule, event.event_type) == (
        ReturnStatus.COMPLETED,
        Rule.ELIGIBLE,
        "return.completed",
    )
    assert only(events, SlaBreached) == []
    assert case.ledger.units_refunded == {"l1": 1} and case.ledger.reserved == {}
    assert case.sign(T, now=T + 2 * H) == []


def test_inspection_required_category_waits_for_the_inspection():
    case = electronics_case()
    assert case.sign(T) == [TimerSet(TimerKind.INSPECTION_GRACE, T + 20 * H)]
    events = case.inspect(True, T + 3 * H)
    assert only(events, RefundDue)[0].calculation.amount == 1000
    assert kinds(events, TimerCancelled) == [TimerKind.INSPECTION_GRACE]
    assert case.fire("inspection_grace", now=T + 20 * H) == []


def test_failed_inspection_rejects_without_refund():
    case = electronics_case()
    case.sign(T)
    events = case.inspect(False, T + 3 * H, findings=["activated", "serial_tampered"])
    event = decided(events)
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.INSPECTION_FAILED)
    assert "序列号" in event.message and "serial number" in event.message_en
    assert only(events, RefundDue) == []
    assert case.ledger.reserved == {} and case.ledger.units_refunded == {}


def test_grace_period_ends_and_the_refund_is_issued_anyway():
    case = electronics_case()
    case.sign(T)
    events = case.fire("inspection_grace", now=T + 20 * H)
    assert only(events, RefundDue)[0].due_by == T + 24 * H
    assert only(events, SlaBreached) == []
    assert case.inspect(False, T + 21 * H) == []  # too late: no effect
    assert case.get().status == ReturnStatus.COMPLETED


def test_inspection_required_only_when_a_line_is_in_such_a_category():
    case = Case(order(line("l1"), line("l2", category="electronics")))
    case.submit(lines={"l1": 1})
    assert only(case.sign(T), RefundDue)


def test_a_late_refund_is_still_requested_and_its_breach_left_to_the_ledger():
    case = Case(order())
    case.submit()
    events = case.sign(T, now=T + 30 * H)  # after an outage
    (refund,) = only(events, RefundDue)
    assert (refund.due_by, refund.requested_at) == (T + 24 * H, T + 30 * H)
    # the refund ledger reports a refund issued after due_by (SPEC 4.11), whoever asked
    assert only(events, SlaBreached) == []


def test_a_late_grace_timer_requests_the_refund_with_its_deadline():
    case = electronics_case()
    case.sign(T)
    # fired 5 hours late: set again for the catch-up grace first (test_lifecycle_late.py)
    assert kinds(case.fire("inspection_grace", now=T + 25 * H), TimerSet) == [
        TimerKind.INSPECTION_GRACE
    ]
    events = case.fire("inspection_grace", now=T + 26 * H)
    assert [due.due_by for due in only(events, RefundDue)] == [T + 24 * H]
    assert only(events, SlaBreached) == []  # issued late: the ledger's breach


def test_an_approval_after_the_refund_deadline_asks_for_the_refund_with_its_deadline():
    """Back at T while in review: nothing is owed until the approval, which comes two hours
    after the refund deadline. The request keeps the deadline; the ledger, which issues the
    refund after it, reports the breach (SPEC 4.11), so returns reports no refund breach."""
    case = review_case()
    assert case.sign(T) == []  # no refund is owed yet: no refund timer
    events = case.review("approve", now=T + 26 * H, reviewed_at=T + 26 * H)
    assert only(events, RefundDue)[0].due_by == T + 24 * H
    refund_breaches = [e for e in only(events, SlaBreached) if e.sla == Sla.REFUND]
    assert refund_breaches == []
    assert [e.status for e in only(events, Decided)] == [
        ReturnStatus.APPROVED,
        ReturnStatus.COMPLETED,
    ]


def test_approval_in_time_after_the_signature_refunds_without_a_breach():
    case = review_case()
    case.sign(T)
    events = case.review("approve", now=T + 2 * H)
    assert only(events, RefundDue) and only(events, SlaBreached) == []
    assert case.get().timers == {}


def test_evidence_after_the_signature_approves_and_refunds_at_once():
    case = Case(order())
    case.submit(reason="wrong_item", requested_at=SOON)
    assert case.sign(T) == []
    events = case.evidence(["x.jpg"], now=T + H)
    assert only(events, RefundDue)[0].calculation.amount == 1000
    assert set(kinds(events, TimerCancelled)) == {TimerKind.EVIDENCE_WAIT}


def test_no_refund_breach_for_a_return_rejected_after_its_parcel_came_back():
    """Seller fault, no photos: the parcel is back, the refund deadline passes, then the
    evidence wait ends and rejects. No refund was ever owed, so none was late."""
    case = Case(order())
    case.submit(reason="wrong_item", requested_at=SOON)
    case.sign(SOON + 24 * H)  # refund deadline SOON + 48 h, evidence wait ends SOON + 72 h
    events = []
    while case.get().timers:  # every timer fires when it is due, in order
        kind, due = min(case.get().timers.items(), key=lambda item: item[1])
        events += case.fire(kind.value, now=due)
    assert decided(events).rule == Rule.EVIDENCE_MISSING
    assert only(events, SlaBreached) == []
    assert case.get().breaches_reported == set()


def test_a_refund_deadline_timer_stored_for_an_undecided_request_reports_nothing():
    """A timer row left by an earlier version, for a request that is not approved."""
    case = Case(order())
    case.submit(reason="wrong_item", requested_at=SOON)
    case.sign(T)
    request = case.get()
    request.timers[TimerKind.REFUND_DEADLINE] = T + 24 * H
    assert case.fire("refund_deadline", now=T + 24 * H) == []


# --- out of order ---------------------------------------------------------------------------


def test_return_leg_signed_before_the_request_arrives():
    case = Case(order())
    assert case.sign(T) == []
    case.ship(1500)
    events = case.submit(requested_at=SOON, now=T + H)
    assert [e.status for e in only(events, Decided)] == [
        ReturnStatus.APPROVED,
        ReturnStatus.COMPLETED,
    ]
    assert only(events, RefundDue)[0].due_by == T + 24 * H


def test_inspection_before_the_request_arrives():
    case = Case(order(line(category="electronics")))
    case.sign(T)
    case.inspect(False, T + H)
    events = case.submit(requested_at=SOON, now=T + 2 * H)
    event = decided(events)
    assert event.rule == Rule.INSPECTION_FAILED
    assert case.ledger.reserved == {}


def test_evidence_before_the_request_arrives_is_kept():
    case = Case(order())
    case.evidence(["early.jpg"], now=SOON - H)
    assert decided(case.submit(reason="quality_issue")).rule == Rule.ELIGIBLE


def test_cancelled_before_the_request_arrives():
    case = Case(order())
    assert decided(case.cancel(SOON - H)).status == ReturnStatus.CANCELLED
    assert case.submit() == []
    assert case.ledger.reserved == {}


# --- exchanges ------------------------------------------------------------------------------


def test_no_reason_exchange_reships_and_refunds_nothing():
    case = Case(order(line(quantity=2)))
    case.submit(kind="exchange", lines={"l1": 1})
    case.ship(1200)
    events = case.sign(T)
    assert only(events, ReshipmentDue) == [ReshipmentDue({"l1": 1}, T + 24 * H, T)]
    assert only(events, RefundDue) == []
    assert decided(events).status == ReturnStatus.COMPLETED
    assert case.ledger.units_refunded == {} and case.ledger.reserved == {}


def test_seller_fault_exchange_reimburses_the_return_freight():
    case = Case(order())
    approved = decided(case.submit(kind="exchange", reason="wrong_item", evidence=["u"]))
    assert approved.return_shipping_payer == Payer.MERCHANT
    case.ship(4500)
    events = case.sign(T)
    assert len(only(events, ReshipmentDue)) == 1
    (refund,) = only(events, RefundDue)
    assert refund.calculation.breakdown == [("return_shipping", 3000)]
    assert refund.calculation.goods == 0


def test_late_exchange_reports_the_reshipment_sla():
    case = Case(order())
    case.submit(kind="exchange")
    events = case.sign(T, now=T + 25 * H)
    assert only(events, SlaBreached) == [SlaBreached(Sla.RESHIPMENT, T + 24 * H, T + 25 * H)]
