"""ReturnRequest lifecycle: the return freight learnt after the refund."""

from __future__ import annotations

import json
from datetime import timedelta

from services.returns.domain import (
    OrderLedger,
    Payer,
    RefundDue,
    ReshipmentDue,
    ReturnRequest,
    ReturnStatus,
    event_from_dict,
    event_to_dict,
)

from . import SOON, Case, at, line, only, order, round_trip

T = at("2026-03-06T10:00:00+08:00")  # the warehouse signs for the returned parcel
H = timedelta(hours=1)


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
