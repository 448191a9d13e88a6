"""Refund money (SPEC 4.7, 4.8, 4.10): partial returns, shipping, deductions, gifts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from services.returns.domain.events import RefundDue
from services.returns.domain.money import calculate_refund, calculate_return_shipping_refund
from services.returns.domain.order_returns import OrderLedger
from services.returns.domain.vocabulary import Payer, ReturnKind
from shared.policy import Policy

from . import SOON, Case, decided, line, only, order, policy


@dataclass
class Req:
    lines: dict[str, int]
    reason: str = "no_reason"
    kind: ReturnKind = ReturnKind.REFUND
    return_id: str = "r1"


def calc(the_order, req, *, ledger=None, fee=0, the_policy=None):
    return calculate_refund(
        the_order,
        ledger or OrderLedger("o1"),
        req,
        the_policy or policy(),
        return_shipping_fee_paid=fee,
    )


def breakdown(refund_due):
    return dict(refund_due.calculation.breakdown)


# --- goods ------------------------------------------------------------------------------------


def test_three_partial_returns_refund_333_333_334():
    case = Case(order(line(quantity=3, paid=1000)))
    amounts = [case.refund(f"r{i}", lines={"l1": 1}).calculation.amount for i in range(3)]
    assert amounts == [333, 333, 334]
    assert case.ledger.goods_refunded == 1000 and case.ledger.units_refunded == {"l1": 3}


def test_returning_every_unit_at_once_refunds_exactly_the_paid_amount():
    case = Case(order(line(quantity=3, paid=1000), line("l2", quantity=7, paid=999)))
    refund = case.refund(lines={"l1": 3, "l2": 7})
    assert refund.calculation.goods == 1999
    assert refund.calculation.goods_by_line == {"l1": 1000, "l2": 999}
    assert refund.calculation.full_return


def test_two_then_one():
    case = Case(order(line(quantity=3, paid=1000)))
    assert case.refund("a", lines={"l1": 2}).calculation.amount == 666
    assert case.refund("b", lines={"l1": 1}).calculation.amount == 334


def test_ledger_guard_never_gives_back_more_than_was_paid_for_goods():
    the_order = order(line(quantity=2, paid=1000))
    broken = OrderLedger("o1", goods_refunded=900)  # inconsistent on purpose
    result = calc(the_order, Req({"l1": 1}), ledger=broken)
    assert result.goods == 100 and result.goods_by_line == {"l1": 100}


def test_the_estimate_on_approval_matches_the_refund():
    case = Case(order(line(quantity=2, paid=1000)))
    estimate = decided(case.submit(lines={"l1": 1})).refund_estimate
    refund = case.sign(case.get().requested_on())
    assert estimate is not None
    assert [e.calculation for e in refund if hasattr(e, "calculation")] == [estimate]


# --- shipping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fee", "reimbursed"), [(0, 0), (1200, 1200), (3000, 3000), (5000, 3000)])
def test_seller_fault_return_freight_is_reimbursed_up_to_the_cap(fee, reimbursed):
    result = calc(order(line(quantity=2)), Req({"l1": 1}, reason="quality_issue"), fee=fee)
    assert result.return_shipping == reimbursed
    assert result.return_shipping_payer == Payer.MERCHANT
    assert result.amount == 500 + reimbursed


def test_return_shipping_cap_comes_from_the_policy():
    result = calc(
        order(),
        Req({"l1": 1}, reason="wrong_item"),
        fee=5000,
        the_policy=policy(return_shipping_cap=0),
    )
    assert result.breakdown == [("goods", 1000)]


@pytest.mark.parametrize(
    ("order_currency", "policy_currency", "reimbursed"),
    [
        ("CNY", "CNY", 3000),  # the cap, in the order's own currency
        ("JPY", "JPY", 3000),  # a policy written in yen caps yen orders
        ("JPY", "CNY", 5000),  # 3000 fen is no amount of yen: no cap, the freight as paid
        ("CNY", "KWD", 5000),
    ],
)
def test_the_freight_cap_applies_only_to_orders_in_the_policy_currency(
    order_currency, policy_currency, reimbursed
):
    the_policy = Policy(currency=policy_currency)
    the_order = order(line(quantity=2), currency=order_currency)
    request = Req({"l1": 1}, reason="quality_issue")
    result = calc(the_order, request, fee=5000, the_policy=the_policy)
    assert result.return_shipping == reimbursed
    late = calculate_return_shipping_refund(
        the_order, request, the_policy, return_shipping_fee_paid=5000
    )
    assert late.return_shipping == reimbursed


def test_the_approval_message_states_the_cap_only_in_the_orders_currency():
    for currency, says_cap in (("CNY", True), ("JPY", False)):
        case = Case(order(line(quantity=2), currency=currency))
        text = decided(
            case.submit(reason="quality_issue", evidence=["https://img/1.jpg"])
        ).message_en
        assert ("up to" in text) is says_cap, text
        assert "reimbursed after the warehouse signs for it" in text


def test_no_reason_return_freight_is_the_buyers():
    result = calc(order(line(quantity=2), shipping_fee_paid=600), Req({"l1": 2}), fee=1500)
    assert result.return_shipping_payer == Payer.BUYER
    assert result.breakdown == [("goods", 1000)]  # outbound not refunded either


@pytest.mark.parametrize(("fee", "reimbursed"), [(0, 0), (1200, 1200), (5000, 3000)])
def test_freight_learnt_after_the_refund_is_refunded_alone_up_to_the_cap(fee, reimbursed):
    the_order = order(
        line(quantity=2, paid=20000),
        shipping_fee_paid=600,
    )
    result = calculate_return_shipping_refund(
        the_order, Req({"l1": 2}, reason="quality_issue"), policy(), return_shipping_fee_paid=fee
    )
    assert result.amount == result.return_shipping == reimbursed
    assert result.breakdown == ([("return_shipping", reimbursed)] if reimbursed else [])
    assert result.return_shipping_payer == Payer.MERCHANT
    assert (result.goods, result.outbound_shipping, result.goods_units) == (0, 0, {})
    no_reason = calculate_return_shipping_refund(
        the_order, Req({"l1": 2}), policy(), return_shipping_fee_paid=fee
    )
    assert no_reason.amount == 0 and no_reason.return_shipping_payer == Payer.BUYER


def test_outbound_fee_is_refunded_when_a_seller_fault_return_completes_the_order():
    the_order = order(line(quantity=2), line("l2"), shipping_fee_paid=600)
    case = Case(the_order)
    first = case.refund("r1", lines={"l1": 1}, reason="quality_issue", evidence=["u"])
    assert "outbound_shipping" not in breakdown(first)
    second = case.refund("r2", lines={"l1": 1, "l2": 1}, reason="quality_issue", evidence=["u"])
    assert breakdown(second) == {"goods": 1500, "outbound_shipping": 600}
    assert case.ledger.outbound_shipping_refunded == 600


def test_outbound_fee_after_earlier_no_reason_returns_counts_them():
    case = Case(order(line(quantity=2), shipping_fee_paid=600))
    case.refund("r1", lines={"l1": 1})
    last = case.refund("r2", lines={"l1": 1}, reason="damaged_in_transit", evidence=["u"])
    assert breakdown(last) == {"goods": 500, "outbound_shipping": 600}


def test_outbound_fee_comes_whichever_return_completes_an_order_with_a_seller_fault_return():
    """A seller-fault return of one line and a no-reason return of the other: the order is
    returned in full with a fault of the merchant's among its returns, so its outbound fee is
    refunded once, whichever parcel the warehouse signs for last."""
    for fault_first in (True, False):
        case = Case(order(line("l1"), line("l2"), shipping_fee_paid=600))
        fault = dict(lines={"l1": 1}, reason="quality_issue", evidence=["u"])
        no_reason = dict(lines={"l2": 1})
        first, last = (fault, no_reason) if fault_first else (no_reason, fault)
        assert "outbound_shipping" not in breakdown(case.refund("r1", **first))
        assert breakdown(case.refund("r2", **last))["outbound_shipping"] == 600
        assert case.ledger.outbound_shipping_refunded == 600
    # Without a seller-fault return among them, a full return keeps the fee the buyer's.
    case = Case(order(line("l1"), line("l2"), shipping_fee_paid=600))
    case.refund("r1", lines={"l1": 1})
    assert "outbound_shipping" not in breakdown(case.refund("r2", lines={"l2": 1}))


def test_outbound_fee_only_once_and_never_more_than_paid():
    the_order = order(shipping_fee_paid=600)
    ledger = OrderLedger("o1", outbound_shipping_refunded=600)
    assert (
        calc(the_order, Req({"l1": 1}, reason="quality_issue"), ledger=ledger).outbound_shipping
        == 0
    )
    ledger = OrderLedger("o1", outbound_shipping_refunded=200)
    assert (
        calc(the_order, Req({"l1": 1}, reason="quality_issue"), ledger=ledger).outbound_shipping
        == 400
    )


def test_insurance_makes_the_insurer_pay_and_deducts_nothing():
    the_order = order(line("l1", paid=5000), line("l2", paid=5000), threshold=9900, insurance=True)
    result = calc(the_order, Req({"l1": 1}))
    assert result.return_shipping_payer == Payer.INSURER
    assert result.breakdown == [("goods", 5000)]
    assert (
        calc(the_order, Req({"l1": 1}, reason="quality_issue")).return_shipping_payer
        == Payer.MERCHANT
    )


# --- free-shipping deduction ------------------------------------------------------------------


def threshold_order(**kwargs):
    # 10000 of goods, threshold 9900: shipped free because of the threshold.
    return order(
        line("l1", paid=5000),
        line("l2", paid=4000),
        line("l3", paid=1000),
        threshold=9900,
        **kwargs,
    )


def test_threshold_broken_deducts_the_standard_fee_once():
    case = Case(threshold_order())
    first = case.refund("r1", lines={"l3": 1})  # keeps 9000 < 9900
    assert breakdown(first) == {"goods": 1000, "free_shipping_deduction": -800}
    assert first.calculation.amount == 200
    second = case.refund("r2", lines={"l2": 1})  # still below, already deducted
    assert breakdown(second) == {"goods": 4000}


def test_a_deduction_is_given_back_when_the_rest_of_the_order_comes_back_after_all():
    """The order returned in several parcels: the first left what was kept below the
    threshold and paid the deduction; the last leaves nothing kept, so the buyer kept no goods
    below the threshold after all and gets it back, as one return of everything would have
    deducted nothing. Once; a seller-fault last return alike."""
    for reason, evidence in (("no_reason", []), ("quality_issue", ["u"])):
        case = Case(threshold_order())
        first = case.refund("r1", lines={"l3": 1})  # keeps 9000 < 9900
        assert breakdown(first) == {"goods": 1000, "free_shipping_deduction": -800}
        second = case.refund("r2", lines={"l2": 1})
        assert breakdown(second) == {"goods": 4000}
        last = case.refund("r3", lines={"l1": 1}, reason=reason, evidence=evidence)
        assert breakdown(last) == {"goods": 5000, "free_shipping_deduction": 800}
        assert last.calculation.amount == 5800
        assert case.ledger.free_shipping_taken == 0
        assert case.ledger.goods_refunded == 10000


def test_an_always_deduction_stays_when_the_whole_order_comes_back():
    case = Case(order(line(quantity=2, paid=2000)), policy(free_shipping_deduction="always"))
    case.refund("r1", lines={"l1": 1})
    assert breakdown(case.refund("r2", lines={"l1": 1})) == {
        "goods": 1000,
        "free_shipping_deduction": -800,
    }


def test_threshold_still_met_or_everything_returned_deducts_nothing():
    the_order = order(
        line("l1", paid=5000), line("l2", paid=5000), line("l3", paid=1000), threshold=9900
    )
    assert calc(the_order, Req({"l3": 1})).free_shipping_deduction == 0  # keeps 10000
    assert calc(threshold_order(), Req({"l1": 1, "l2": 1, "l3": 1})).free_shipping_deduction == 0


def test_threshold_deduction_needs_free_shipping_by_the_threshold():
    paid_shipping = threshold_order(shipping_fee_paid=800)
    assert calc(paid_shipping, Req({"l3": 1})).free_shipping_deduction == 0
    no_threshold = order(line("l1", paid=5000), line("l2", paid=5000))
    assert calc(no_threshold, Req({"l1": 1})).free_shipping_deduction == 0
    below = order(line("l1", paid=5000), line("l2", paid=4000), threshold=9900)  # free anyway
    assert calc(below, Req({"l1": 1})).free_shipping_deduction == 0


def test_threshold_deduction_not_for_seller_fault():
    assert (
        calc(threshold_order(), Req({"l3": 1}, reason="quality_issue")).free_shipping_deduction == 0
    )


def test_always_deducts_on_every_no_reason_return_of_a_free_shipped_order():
    case = Case(order(line(quantity=2, paid=2000)), policy(free_shipping_deduction="always"))
    assert breakdown(case.refund("r1", lines={"l1": 1})) == {
        "goods": 1000,
        "free_shipping_deduction": -800,
    }
    assert breakdown(case.refund("r2", lines={"l1": 1})) == {
        "goods": 1000,
        "free_shipping_deduction": -800,
    }
    paid = order(line(quantity=2, paid=2000), shipping_fee_paid=500)
    assert (
        calc(
            paid, Req({"l1": 1}), the_policy=policy(free_shipping_deduction="always")
        ).free_shipping_deduction
        == 0
    )
    no_fee = order(line(quantity=2, paid=2000), standard_shipping_fee=0)
    always = policy(free_shipping_deduction="always")
    assert calc(no_fee, Req({"l1": 1}), the_policy=always).breakdown == [("goods", 1000)]


def test_never_deducts():
    never = policy(free_shipping_deduction="never")
    assert calc(threshold_order(), Req({"l3": 1}), the_policy=never).free_shipping_deduction == 0


def test_deduction_is_clipped_so_the_refund_is_never_negative():
    result = calc(order(line(paid=500), line("l2", paid=9500), threshold=9900), Req({"l1": 1}))
    assert result.breakdown == [("goods", 500), ("free_shipping_deduction", -500)]
    assert result.amount == 0


# --- gifts ------------------------------------------------------------------------------------


def gift_order(gift_quantity=1, stated_price=500, **kwargs):
    return order(
        line("l1", quantity=2, paid=2000),
        line("g", gift=True, quantity=gift_quantity, stated_price=stated_price),
        **kwargs,
    )


def test_unreturned_gift_is_charged_on_a_full_return():
    result = calc(gift_order(), Req({"l1": 2}))
    assert result.breakdown == [("goods", 2000), ("gift_charge", -500)]
    assert result.amount == 1500


def test_returned_gift_is_not_charged():
    result = calc(gift_order(), Req({"l1": 2, "g": 1}))
    assert result.breakdown == [("goods", 2000)]
    assert result.gift_units == {"g": 1}


def test_partly_returned_gift_is_charged_pro_rata():
    three = gift_order(gift_quantity=3, stated_price=1000)
    assert calc(three, Req({"l1": 2, "g": 1})).gift_charge == 667  # 1000 - floor(1000/3)
    assert calc(three, Req({"l1": 2, "g": 2})).gift_charge == 334  # 1000 - floor(2000/3)
    assert calc(gift_order(gift_quantity=2), Req({"l1": 2, "g": 1})).gift_charge == 250


def test_no_gift_charge_on_a_partial_return():
    assert calc(gift_order(), Req({"l1": 1})).gift_charge == 0


def test_gift_returned_earlier_on_its_own_is_not_charged_and_charge_is_once():
    case = Case(gift_order())
    assert case.refund("r1", lines={"g": 1}).calculation.amount == 0
    assert breakdown(case.refund("r2", lines={"l1": 2})) == {"goods": 2000}
    ledger = OrderLedger("o1", gift_charged=True)
    assert calc(gift_order(), Req({"l1": 2}), ledger=ledger).gift_charge == 0


def test_gift_charged_once_across_returns():
    case = Case(gift_order())
    case.refund("r1", lines={"l1": 1})
    last = case.refund("r2", lines={"l1": 1})
    assert breakdown(last) == {"goods": 1000, "gift_charge": -500}
    assert case.ledger.gift_charged


def test_a_gift_signed_for_after_the_full_return_that_charged_it_gets_the_charge_back():
    # The gift travels in a parcel of its own, signed for after the paid goods' parcel.
    case = Case(gift_order())
    case.submit("gift", lines={"g": 1})
    first = case.refund("paid", lines={"l1": 2})
    assert breakdown(first) == {"goods": 2000, "gift_charge": -500}
    late_gift = only(case.sign(SOON + timedelta(days=2), "gift"), RefundDue)
    assert [due.calculation.breakdown for due in late_gift] == [[("gift_charge", 500)]]
    assert late_gift[0].calculation.amount == 500
    assert case.ledger.gift_charge_taken == 0


def test_a_gift_returned_in_part_after_its_charge_gets_back_its_share_once():
    case = Case(gift_order(gift_quantity=3, stated_price=1000))
    assert case.refund("paid", lines={"l1": 2}).calculation.gift_charge == 1000
    one = case.refund("g1", lines={"g": 1})
    assert breakdown(one) == {"gift_charge": 333}  # 1000 - floor(1000/3) still kept
    rest = case.refund("g2", lines={"g": 2})
    assert breakdown(rest) == {"gift_charge": 667}
    assert case.ledger.gift_charge_taken == 0


def test_a_deduction_does_not_take_back_a_gift_charge_given_back():
    case = Case(gift_order(), policy(free_shipping_deduction="always"))
    assert breakdown(case.refund("paid", lines={"l1": 2})) == {
        "goods": 2000,
        "free_shipping_deduction": -800,
        "gift_charge": -500,
    }
    assert breakdown(case.refund("gift", lines={"g": 1})) == {"gift_charge": 500}


def test_a_gift_charge_clipped_gives_back_no_more_than_it_took():
    case = Case(gift_order(stated_price=5000))
    assert case.refund("paid", lines={"l1": 2}).calculation.gift_charge == 2000
    assert breakdown(case.refund("gift", lines={"g": 1})) == {"gift_charge": 2000}
    legacy = OrderLedger("o1", units_refunded={"l1": 2}, goods_refunded=2000, gift_charged=True)
    assert calc(gift_order(), Req({"g": 1}), ledger=legacy).amount == 0  # amount not recorded


def test_insurance_does_not_waive_the_gift_charge():
    assert calc(gift_order(insurance=True), Req({"l1": 2})).gift_charge == 500


def test_gift_charge_on_seller_fault_full_return_and_after_freight():
    result = calc(
        gift_order(shipping_fee_paid=300), Req({"l1": 2}, reason="quality_issue"), fee=1000
    )
    assert result.breakdown == [
        ("goods", 2000),
        ("outbound_shipping", 300),
        ("return_shipping", 1000),
        ("gift_charge", -500),
    ]
    assert result.amount == 2800


def test_gift_charge_is_clipped():
    result = calc(gift_order(stated_price=5000), Req({"l1": 2}))
    assert result.breakdown == [("goods", 2000), ("gift_charge", -2000)]
    assert result.amount == 0


def test_both_deductions_in_a_fixed_order_and_clipped():
    the_order = order(
        line("l1", paid=600),
        line("l2", paid=9400),
        line("g", gift=True, stated_price=900),
        threshold=9900,
        standard_shipping_fee=400,
    )
    ledger = OrderLedger("o1", units_refunded={"l2": 1}, goods_refunded=9400)
    # Everything returned: no threshold deduction (nothing kept), gift charged.
    result = calc(the_order, Req({"l1": 1}), ledger=ledger)
    assert result.breakdown == [("goods", 600), ("gift_charge", -600)]
    always = policy(free_shipping_deduction="always")
    result = calc(the_order, Req({"l1": 1}), ledger=ledger, the_policy=always)
    assert result.breakdown == [
        ("goods", 600),
        ("free_shipping_deduction", -400),
        ("gift_charge", -200),
    ]
    assert result.amount == 0


# --- exchanges --------------------------------------------------------------------------------


def test_exchange_refunds_no_goods():
    no_reason = calc(gift_order(), Req({"l1": 2}, kind=ReturnKind.EXCHANGE), fee=900)
    assert no_reason.breakdown == [] and no_reason.amount == 0 and no_reason.goods_units == {}
    seller = calc(
        gift_order(), Req({"l1": 2}, reason="wrong_item", kind=ReturnKind.EXCHANGE), fee=900
    )
    assert seller.breakdown == [("return_shipping", 900)]


def test_refund_carries_the_orders_currency():
    the_order = order(line(quantity=3, paid=1000), currency="JPY")
    assert calc(the_order, Req({"l1": 1})).currency == "JPY"


def test_calculation_rejects_a_negative_fee():
    with pytest.raises(ValueError):
        calc(order(), Req({"l1": 1}), fee=-1)
