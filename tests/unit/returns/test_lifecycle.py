"""ReturnRequest lifecycle: waits and timers, review, return leg, inspection, SLA, exchanges,
cancellation, out-of-order events, idempotence and persistence."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from services.returns.domain import (
    Decided,
    Order,
    OrderLedger,
    Payer,
    RefundDue,
    ReshipmentDue,
    ReturnRequest,
    ReturnStatus,
    Rule,
    Sla,
    SlaBreached,
    TimerCancelled,
    TimerKind,
    TimerSet,
    WaitingFor,
    event_from_dict,
    event_to_dict,
)
from shared.catchup import CATCH_UP_GRACE

from . import SIGNED, SOON, Case, at, decided, line, only, order

T = at("2026-03-06T10:00:00+08:00")  # the warehouse signs for the returned parcel
H = timedelta(hours=1)


def kinds(events, cls):
    return [event.kind for event in only(events, cls)]


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


def electronics_case() -> Case:
    case = Case(order(line(category="electronics")))
    case.submit()
    return case


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
    events = case.fire("inspection_grace", now=T + 25 * H)
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


# --- return freight learnt after the refund --------------------------------------------------
# return.shipped and the return-leg parcel.signed are on different topics: after a backlog the
# signature can come first and the return completes without knowing the freight.


def test_seller_fault_freight_shipped_after_the_refund_is_reimbursed_on_its_own():
    case = Case(order(line(quantity=2, paid=20000)))
    case.submit(reason="damaged_in_transit", evidence=["u"], lines={"l1": 1})
    (main,) = only(case.sign(T, now=T + H), RefundDue)
    assert main.calculation.breakdown == [("goods", 10000)] and not main.supplementary

    events = case.ship(1200, now=T + 2 * H)
    assert len(events) == 1  # no second decision, no breach
    (extra,) = only(events, RefundDue)
    assert extra.supplementary
    assert (extra.due_by, extra.requested_at) == (T + 24 * H, T + 2 * H)  # the return's deadline
    calc = extra.calculation
    assert (calc.amount, calc.breakdown) == (1200, [("return_shipping", 1200)])
    assert calc.return_shipping_payer == Payer.MERCHANT
    assert (calc.goods, calc.goods_units, calc.outbound_shipping) == (0, {}, 0)
    assert event_from_dict(json.loads(json.dumps(event_to_dict(extra)))) == extra
    # The ledger counts freight, never goods.
    ledger = case.ledger
    assert (ledger.goods_refunded, ledger.units_refunded) == (10000, {"l1": 1})
    assert ledger.return_shipping_refunded == 1200
    assert case.get().return_shipping_refund == calc and case.get().refund == main.calculation
    # Once: a redelivery, or another freight figure, changes nothing.
    assert case.ship(1200, now=T + 3 * H) == []
    assert case.ship(2500, now=T + 3 * H) == []
    assert ledger.return_shipping_refunded == 1200


def test_late_freight_is_capped_and_due_afresh_once_the_refund_deadline_passed():
    case = Case(order(line(quantity=2)))
    case.submit(reason="quality_issue", evidence=["u"], lines={"l1": 1})
    case.sign(T)
    (extra,) = case.ship(4500, now=T + 30 * H)
    assert isinstance(extra, RefundDue)
    assert extra.calculation.breakdown == [("return_shipping", 3000)]  # return_shipping_cap
    assert (extra.due_by, extra.requested_at) == (T + 54 * H, T + 30 * H)


def test_late_freight_of_a_seller_fault_exchange_is_reimbursed():
    case = Case(order())
    case.submit(kind="exchange", reason="wrong_item", evidence=["u"])
    events = case.sign(T)
    assert only(events, ReshipmentDue) and only(events, RefundDue) == []
    (extra,) = only(case.ship(800, now=T + H), RefundDue)
    assert extra.supplementary and extra.calculation.breakdown == [("return_shipping", 800)]


def test_late_freight_is_not_reimbursed_when_the_buyer_bears_it_or_nothing_was_refunded():
    no_reason = Case(order())
    no_reason.refund()
    assert no_reason.ship(1200, now=T) == []
    rejected = Case(order())
    rejected.submit(reason="quality_issue", evidence=["u"], requested_at=SOON)
    rejected.inspect(False, SOON + H, findings=["soiled_or_damaged"])
    assert rejected.get().status == ReturnStatus.REJECTED
    assert rejected.ship(1200, now=T) == []
    cancelled = Case(order())
    cancelled.submit(reason="quality_issue", evidence=["u"])
    cancelled.cancel(SOON + H)
    assert cancelled.ship(1200, now=T) == []
    for case in (no_reason, rejected, cancelled):
        assert case.ledger.return_shipping_refunded == 0


def test_late_freight_of_zero_is_recorded_and_a_later_figure_ignored():
    case = Case(order())
    case.submit(reason="quality_issue", evidence=["u"])
    case.sign(T)
    assert case.ship(0, now=T + H) == []
    assert case.get().return_shipping_fee_paid == 0
    assert case.ship(1200, now=T + 2 * H) == []  # the first return.shipped counts
    assert case.ledger.return_shipping_refunded == 0


def test_freight_known_before_completion_is_paid_with_the_refund_not_again():
    case = Case(order())
    case.submit(reason="quality_issue", evidence=["u"])
    case.ship(1200)
    (main,) = only(case.sign(T), RefundDue)
    assert ("return_shipping", 1200) in main.calculation.breakdown
    assert case.ship(1200, now=T + H) == []
    assert case.ledger.return_shipping_refunded == 1200


def test_a_stale_aggregate_never_reimburses_late_freight_twice():
    case = Case(order())
    case.submit(reason="quality_issue", evidence=["u"])
    case.sign(T)
    stale = ReturnRequest.from_dict(case.get().to_dict())  # persisted before return.shipped
    assert only(case.ship(1200, now=T + H), RefundDue)
    events = stale.record_shipped(
        "SF", "SF1", SOON, 1200, returns=case.returns, policy=case.policy, now=T
    )
    assert events == []
    assert case.ledger.return_shipping_refunded == 1200
    round_trip(case.get())
    assert OrderLedger.from_dict(json.loads(json.dumps(case.ledger.to_dict()))) == case.ledger


# --- cancellation ---------------------------------------------------------------------------


def test_cancel_a_waiting_request():
    case = Case(order())
    case.submit(reason="quality_issue")
    events = case.cancel(SOON + H)
    event = decided(events)
    assert (event.status, event.rule, event.event_type) == (
        ReturnStatus.CANCELLED,
        Rule.CANCELLED,
        "return.completed",
    )
    assert kinds(events, TimerCancelled) == [TimerKind.EVIDENCE_WAIT]
    assert case.cancel(SOON + 2 * H) == []


def test_cancel_an_approved_request_releases_its_units():
    case = Case(order())
    case.submit()
    assert case.ledger.reserved == {"r1": {"l1": 1}}
    case.cancel(SOON + H)
    assert case.ledger.reserved == {}
    assert case.sign(T) == []
    assert decided(case.submit("r2")).rule == Rule.ELIGIBLE


def test_cancel_after_completion_or_rejection_has_no_effect():
    case = Case(order())
    case.refund()
    assert case.cancel(T) == []
    rejected = Case(order())
    rejected.submit(condition=["soiled_or_damaged"])
    assert rejected.cancel(T) == []
    assert rejected.get().status == ReturnStatus.REJECTED


# --- idempotence ----------------------------------------------------------------------------


def test_repeating_every_input_after_completion_never_refunds_twice():
    case = Case(order(line(category="electronics")))
    case.submit(reason="quality_issue", evidence=["u"])
    case.ship(800)
    case.sign(T)
    assert only(case.inspect(True, T + H), RefundDue)
    replays = [
        case.submit(reason="quality_issue", evidence=["u"]),
        case.reassess(now=T + 2 * H),
        case.evidence(["v"], now=T + 2 * H),
        case.ship(900),
        case.sign(T, now=T + 2 * H),
        case.inspect(True, T + H),
        case.inspect(False, T + H),
        case.review("approve", now=T + 2 * H),
        *(case.fire(kind.value, now=T + 30 * H) for kind in TimerKind),
        case.cancel(T + 3 * H),
    ]
    assert all(events == [] for events in replays)
    assert case.ledger.settled_returns == ["r1"] and case.ledger.units_refunded == {"l1": 1}


def test_a_settled_ledger_blocks_a_second_refund_even_from_a_stale_aggregate():
    case = Case(order())
    case.submit()
    stale = ReturnRequest.from_dict(case.get().to_dict())  # persisted before the signature
    assert only(case.sign(T), RefundDue)
    events = stale.record_return_signed(T, returns=case.returns, policy=case.policy, now=T)
    assert only(events, RefundDue) == []
    assert case.ledger.goods_refunded == 1000


# --- persistence ----------------------------------------------------------------------------


def round_trip(request: ReturnRequest) -> None:
    data = json.loads(json.dumps(request.to_dict()))
    assert ReturnRequest.from_dict(data) == request


def test_request_ledger_order_and_events_round_trip_through_json():
    case = Case(order(line(category="electronics"), line("g", gift=True, stated_price=300)))
    events = case.submit(reason="quality_issue", requested_at=SOON)
    round_trip(case.get())
    events += case.evidence(["a.jpg"], now=SOON + H)
    events += case.ship(1800)
    events += case.sign(T)
    round_trip(case.get())
    events += case.fire("inspection_grace", now=T + 30 * H)
    round_trip(case.get())
    assert case.get().refund is not None
    for event in events:
        assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event
    ledger = json.loads(json.dumps(case.ledger.to_dict()))
    assert OrderLedger.from_dict(ledger) == case.ledger
    assert case.order is not None
    assert Order.from_dict(json.loads(json.dumps(case.order.to_dict()))) == case.order
    assert case.get().to_dict()["requested_at"].endswith("+00:00")


def test_placeholder_round_trips():
    request = ReturnRequest.new("r9", "o1")
    round_trip(request)
    assert not request.is_requested


def test_naive_datetimes_are_refused():
    case = Case(order())
    naive = SOON.replace(tzinfo=None)
    with pytest.raises(ValueError):
        case.submit(requested_at=naive)
    with pytest.raises(ValueError):
        replace(order(), paid_at=naive)
    with pytest.raises(ValueError):
        ReturnRequest.from_dict(
            {**ReturnRequest.new("r", "o").to_dict(), "requested_at": "2026-03-01T10:00:00"}
        )


# --- catch-up: deadlines already past when the event is processed (shared.catchup) ----------


def test_a_request_processed_after_its_order_wait_waits_a_grace_for_the_order_behind_it():
    """A backlog: the request was made 50 hours ago and its order.paid is behind it. It is
    not rejected at once; the order arriving within the grace decides it."""
    case = Case(None)
    now = SOON + 50 * H
    events = case.submit(requested_at=SOON, now=now)
    assert decided(events).rule == Rule.UNKNOWN_ORDER
    assert only(events, TimerSet) == [TimerSet(TimerKind.SIGNATURE_WAIT, now + CATCH_UP_GRACE)]
    case.order = order()
    approved = decided(case.reassess(now=now + timedelta(seconds=3)))
    assert (approved.status, approved.rule) == (ReturnStatus.APPROVED, Rule.ELIGIBLE)


def test_a_late_processed_request_whose_order_never_comes_is_rejected_after_the_grace():
    case = Case(None)
    now = SOON + 50 * H
    case.submit(requested_at=SOON, now=now)
    fired = decided(case.fire("signature_wait", now=now + CATCH_UP_GRACE))
    assert (fired.status, fired.rule) == (ReturnStatus.REJECTED, Rule.UNKNOWN_ORDER)


def test_a_catch_up_wait_is_not_moved_by_the_events_that_follow():
    case = Case(None)
    now = SOON + 50 * H
    case.submit(requested_at=SOON, now=now)
    case.order = order(signed_at=None)  # the order came, its delivery not yet
    events = case.reassess(now=now + H)
    assert decided(events).rule == Rule.NOT_DELIVERED
    assert only(events, TimerSet) == []  # the wait keeps its catch-up instant
    assert case.get().timers == {TimerKind.SIGNATURE_WAIT: now + CATCH_UP_GRACE}


def test_a_signature_processed_after_the_inspection_grace_still_waits_for_the_inspection():
    """A failed inspection behind the signature in a backlog must still reject: no refund
    is issued before the grace after processing."""
    case = electronics_case()
    now = T + 30 * H
    assert case.sign(T, now=now) == [TimerSet(TimerKind.INSPECTION_GRACE, now + CATCH_UP_GRACE)]
    events = case.inspect(False, T + 3 * H, now=now + timedelta(seconds=2))
    assert decided(events).rule == Rule.INSPECTION_FAILED
    assert only(events, RefundDue) == []


def test_a_late_signature_without_its_inspection_is_refunded_after_the_grace():
    case = electronics_case()
    now = T + 30 * H
    case.sign(T, now=now)
    events = case.fire("inspection_grace", now=now + CATCH_UP_GRACE)
    assert [due.due_by for due in only(events, RefundDue)] == [T + 24 * H]
