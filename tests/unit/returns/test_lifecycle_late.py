"""ReturnRequest lifecycle, what comes late or again: the return freight learnt after the refund,
cancellation, inputs repeated, persistence, and catch-up (deadlines already past when an event
is processed)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from services.returns.domain.events import (
    Decided,
    ParcelOfClosedCase,
    RefundDue,
    ReshipmentDue,
    TimerCancelled,
    TimerSet,
    event_from_dict,
    event_to_dict,
)
from services.returns.domain.model import ReturnRequest
from services.returns.domain.order_returns import OrderLedger
from services.returns.domain.values import Order
from services.returns.domain.vocabulary import Payer, ReturnStatus, Rule, TimerKind
from shared.catchup import CATCH_UP_GRACE

from . import SOON, Case, H, T, decided, electronics_case, kinds, line, only, order, round_trip

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
    assert case.sign(T) == [ParcelOfClosedCase(ReturnStatus.CANCELLED)]
    assert decided(case.submit("r2")).rule == Rule.ELIGIBLE


def test_a_parcel_signed_for_after_its_case_closed_without_a_refund_is_reported():
    """The buyer shipped before cancelling, or despite a rejection: the merchant holds goods
    no rule refunds or sends back; a person must. Once, and nothing else happens."""
    cancelled = Case(order())
    cancelled.submit()
    cancelled.cancel(SOON + H)
    events = cancelled.sign(T)
    assert events == [ParcelOfClosedCase(ReturnStatus.CANCELLED)]
    assert event_from_dict(json.loads(json.dumps(event_to_dict(events[0])))) == events[0]
    assert cancelled.sign(T + H) == []
    rejected = Case(order())
    rejected.submit(condition=["soiled_or_damaged"])
    assert rejected.sign(T) == [ParcelOfClosedCase(ReturnStatus.REJECTED)]
    assert rejected.get().status == ReturnStatus.REJECTED
    completed = Case(order())
    completed.refund()
    assert completed.sign(T + 2 * H) == []


def test_cancel_after_completion_or_rejection_has_no_effect():
    case = Case(order())
    case.refund()
    assert case.cancel(T) == []
    rejected = Case(order())
    rejected.submit(condition=["soiled_or_damaged"])
    assert rejected.cancel(T) == []
    assert rejected.get().status == ReturnStatus.REJECTED


def test_a_cancellation_after_the_return_leg_was_signed_leaves_the_refund_to_come():
    """The warehouse has the goods: the buyer's cancellation cannot take them back, so the
    case goes on to its inspection and refund."""
    case = electronics_case()
    case.sign(T)
    assert case.cancel(T + H, now=T + H) == []
    assert case.get().status == ReturnStatus.APPROVED and case.get().cancelled_at is None
    assert case.ledger.reserved == {"r1": {"l1": 1}}
    (refund,) = only(case.inspect(True, T + 2 * H), RefundDue)
    assert (refund.calculation.amount, refund.due_by) == (1000, T + 24 * H)
    assert case.fire("inspection_grace", now=T + 20 * H) == []  # no second refund


def test_a_cancellation_after_the_return_leg_was_signed_waits_out_the_inspection_grace():
    case = electronics_case()
    case.sign(T)
    assert case.cancel(T + H) == []
    assert only(case.fire("inspection_grace", now=T + 20 * H), RefundDue)
    failed = electronics_case()
    failed.sign(T)
    assert failed.cancel(T + H) == []
    assert decided(failed.inspect(False, T + 2 * H)).rule == Rule.INSPECTION_FAILED


def test_an_exchange_cancelled_after_its_return_leg_was_signed_is_still_reshipped():
    case = Case(order(line(category="electronics")))
    case.submit(kind="exchange")
    case.sign(T)
    assert case.cancel(T + H) == []
    events = case.fire("inspection_grace", now=T + 20 * H)
    assert only(events, ReshipmentDue) == [ReshipmentDue({"l1": 1}, T + 24 * H, T + 20 * H)]
    assert decided(events).status == ReturnStatus.COMPLETED


def test_an_undecided_case_cancelled_after_its_parcel_came_back_is_still_decided():
    waiting = Case(order())
    waiting.submit(reason="quality_issue", requested_at=SOON)  # waits for photos
    waiting.sign(T)
    assert waiting.cancel(T + H) == []
    assert only(waiting.evidence(["u.jpg"], now=T + 2 * H), RefundDue)
    in_review = Case(order())
    late_claim = T + 20 * 24 * H  # past the quality window: a person decides
    in_review.submit(reason="quality_issue", requested_at=late_claim)
    in_review.sign(late_claim + H)
    deadline = in_review.get().timers[TimerKind.REVIEW_SLA]
    # dated after the review deadline: no breach from it either, the case is not closed by it
    assert in_review.cancel(deadline + H, now=deadline + H) == []
    assert in_review.get().status == ReturnStatus.REVIEW
    assert only(in_review.review("approve", now=late_claim + 2 * H), RefundDue)


def test_a_cancellation_between_the_return_leg_and_the_request_is_no_cancellation():
    case = Case(order())
    case.sign(T)
    assert case.cancel(T + H) == []
    events = case.submit(requested_at=SOON, now=T + 2 * H)
    assert only(events, RefundDue)
    assert [event.status for event in only(events, Decided)][-1] == ReturnStatus.COMPLETED


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


def test_request_ledger_order_and_events_round_trip_through_json():
    case = Case(order(line(category="electronics"), line("g", gift=True, stated_price=300)))
    events = case.submit(reason="quality_issue", requested_at=SOON)
    round_trip(case.get())
    events += case.evidence(["a.jpg"], now=SOON + H)
    events += case.ship(1800)
    events += case.sign(T)
    round_trip(case.get())
    events += case.fire("inspection_grace", now=T + 30 * H)  # late: set again
    round_trip(case.get())
    events += case.fire("inspection_grace", now=T + 31 * H)
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


# --- catch-up: timers that fire long after their due time (an outage, a scheduler behind) ---
# On a restart the scheduler fires what fell due meanwhile at once, before the consumer has
# read the records of the outage: a timer more than the grace late is set again for a grace
# from now and judged then, once.

LATE = 2 * H  # how long after its due time the timer fires


def test_an_evidence_wait_timer_fired_late_waits_a_grace_for_the_photos_behind_it():
    case = Case(order())
    case.submit(reason="quality_issue", requested_at=SOON)
    now = SOON + 72 * H + LATE
    assert case.fire("evidence_wait", now=now) == [
        TimerSet(TimerKind.EVIDENCE_WAIT, now + CATCH_UP_GRACE)
    ]
    assert case.get().status == ReturnStatus.PENDING
    # the photos sent in time, processed after the timer fired
    events = case.evidence(["u.jpg"], now=now + timedelta(seconds=3))
    assert decided(events).status == ReturnStatus.APPROVED
    assert kinds(events, TimerCancelled) == [TimerKind.EVIDENCE_WAIT]
    assert case.get().timers == {}


def test_an_evidence_wait_set_again_is_judged_when_it_fires_however_late():
    case = Case(order())
    case.submit(reason="quality_issue", requested_at=SOON)
    now = SOON + 72 * H + LATE
    case.fire("evidence_wait", now=now)
    event = decided(case.fire("evidence_wait", now=now + CATCH_UP_GRACE + LATE))  # once only
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.EVIDENCE_MISSING)
    assert "72" in event.message


def test_an_order_wait_timer_fired_late_waits_a_grace_for_the_order_behind_it():
    case = Case(None)
    case.submit(requested_at=SOON)
    now = SOON + 48 * H + LATE
    assert case.fire("signature_wait", now=now) == [
        TimerSet(TimerKind.SIGNATURE_WAIT, now + CATCH_UP_GRACE)
    ]
    case.order = order()  # the order.paid in the backlog
    approved = decided(case.reassess(now=now + timedelta(seconds=3)))
    assert (approved.status, approved.rule) == (ReturnStatus.APPROVED, Rule.ELIGIBLE)
    never = Case(None)
    never.submit(requested_at=SOON)
    never.fire("signature_wait", now=now)
    fired = decided(never.fire("signature_wait", now=now + CATCH_UP_GRACE))
    assert (fired.status, fired.rule) == (ReturnStatus.REJECTED, Rule.UNKNOWN_ORDER)


def test_a_delivery_wait_timer_fired_late_waits_a_grace_for_the_signature_behind_it():
    unsigned = order(signed_at=None)
    case = Case(unsigned)
    case.submit(requested_at=SOON)
    now = SOON + 48 * H + LATE
    assert case.fire("signature_wait", now=now) == [
        TimerSet(TimerKind.SIGNATURE_WAIT, now + CATCH_UP_GRACE)
    ]
    case.order = unsigned.with_outbound_signature(SOON - H)
    assert decided(case.reassess(now=now + timedelta(seconds=3))).rule == Rule.ELIGIBLE


def test_an_inspection_grace_timer_fired_late_waits_for_the_failed_inspection_behind_it():
    case = electronics_case()
    case.sign(T)
    now = T + 20 * H + LATE
    assert case.fire("inspection_grace", now=now) == [
        TimerSet(TimerKind.INSPECTION_GRACE, now + CATCH_UP_GRACE)
    ]
    events = case.inspect(False, T + 19 * H, now=now + timedelta(seconds=2))
    assert decided(events).rule == Rule.INSPECTION_FAILED
    assert only(events, RefundDue) == [] and case.ledger.settled_returns == []


def test_an_inspection_grace_set_again_refunds_once_when_it_fires():
    case = electronics_case()
    case.sign(T)
    now = T + 20 * H + LATE
    case.fire("inspection_grace", now=now)
    later = now + CATCH_UP_GRACE + LATE
    (refund,) = only(case.fire("inspection_grace", now=later), RefundDue)
    assert (refund.due_by, refund.requested_at) == (T + 24 * H, later)
    assert case.get().status == ReturnStatus.COMPLETED


def test_a_timer_that_fires_within_the_grace_after_its_due_time_judges_at_once():
    case = Case(order())
    case.submit(reason="quality_issue", requested_at=SOON)
    now = SOON + 72 * H + CATCH_UP_GRACE  # a scheduler a little behind
    assert decided(case.fire("evidence_wait", now=now)).rule == Rule.EVIDENCE_MISSING
    grace = electronics_case()
    grace.sign(T)
    assert only(grace.fire("inspection_grace", now=T + 20 * H + CATCH_UP_GRACE), RefundDue)


def test_a_late_timer_set_again_round_trips_and_a_decision_forgets_it():
    case = Case(None)
    case.submit(requested_at=SOON)
    now = SOON + 48 * H + LATE
    case.fire("signature_wait", now=now)
    round_trip(case.get())
    case.order = order()
    case.reassess(now=now + timedelta(seconds=3))
    assert case.get().timers == {} and case.get().timers_caught_up == set()
