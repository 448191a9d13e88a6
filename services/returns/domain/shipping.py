"""Shipping costs of a return (SPEC 4.8, 4.10): who bears the return freight, what of it is
reimbursed, the free-shipping deduction and the charge for unreturned gifts."""

from __future__ import annotations

from collections.abc import Mapping

from services.returns.domain.order_returns import OrderLedger
from services.returns.domain.values import Order
from services.returns.domain.vocabulary import Payer, is_seller_fault
from shared.policy import FreeShippingDeduction, ReturnsPolicy


def return_shipping_cap(rules: ReturnsPolicy, currency: str) -> int | None:
    """The cap on reimbursed return freight for an order paid in `currency`: the policy's cap
    is an amount of the policy's currency, so an order in another one has none (never a
    comparison of two currencies)."""
    return rules.return_shipping_cap if currency == rules.amounts_currency else None


def return_shipping_payer(reason: str, order: Order) -> Payer:
    """SPEC 4.8 / 4.10: the merchant bears both legs on seller fault, else buyer or insurer."""
    if is_seller_fault(reason):
        return Payer.MERCHANT
    return Payer.INSURER if order.shipping_insurance else Payer.BUYER


def reimbursed_return_shipping(
    reason: str, rules: ReturnsPolicy, fee_paid: int, currency: str
) -> int:
    """Seller fault: the buyer's freight, up to the cap per return, on top of goods + outbound
    (SPEC 4.7, 4.8); otherwise the buyer's (or the insurer's) own.

    The cap is an amount of the policy's currency: an order paid in another one is never
    compared with it, its freight is reimbursed as paid (docs/decisions.md)."""
    if fee_paid < 0:
        raise ValueError("return shipping fee must not be negative")
    if not is_seller_fault(reason):
        return 0
    cap = return_shipping_cap(rules, currency)
    return fee_paid if cap is None else min(fee_paid, cap)


def free_shipping_deduction(
    order: Order, ledger: OrderLedger, rules: ReturnsPolicy, goods: int
) -> int:
    """SPEC 4.8, no-reason refunds only: the standard fee the buyer saved by shipping free."""
    mode = rules.free_shipping_deduction
    if mode == FreeShippingDeduction.NEVER or order.shipping_fee_paid != 0:
        return 0
    if mode == FreeShippingDeduction.ALWAYS:
        return order.standard_shipping_fee
    threshold = order.free_shipping_threshold
    if ledger.free_shipping_deducted or threshold is None or order.goods_total < threshold:
        return 0
    kept = order.goods_total - ledger.goods_refunded - goods
    return order.standard_shipping_fee if 0 < kept < threshold else 0


def free_shipping_given_back(ledger: OrderLedger, rules: ReturnsPolicy) -> int:
    """What an earlier `when_threshold_broken` deduction took, given back by the return that
    leaves no paid goods kept: the deduction is for goods kept below the threshold, and in the
    end none were (SPEC 4.8). An `always` deduction is the shop's price of every no-reason
    return: it stays."""
    if rules.free_shipping_deduction != FreeShippingDeduction.WHEN_THRESHOLD_BROKEN:
        return 0
    return max(ledger.free_shipping_taken, 0)


def gift_charge(order: Order, ledger: OrderLedger, gift_units: Mapping[str, int]) -> int:
    """Unreturned gift units, at the gift line's stated_price (for the whole line)."""
    charge = 0
    for line in order.lines:
        if not line.is_gift:
            continue
        returned = ledger.gift_units_returned.get(line.line_id, 0) + gift_units.get(line.line_id, 0)
        returned = min(returned, line.quantity)
        charge += line.stated_price - line.stated_price * returned // line.quantity
    return charge
