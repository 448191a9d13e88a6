"""Refund money for returns (SPEC 4.7). Integer minor units only.

What a return owes the buyer, by kind: goods by the per-unit formula, the outbound fee and the
return freight where the merchant bears them, less the deductions of SPEC 4.8 (`shipping`).
The refund ledger (SPEC 4.11) caps it against the order's refunds from every service and
splits it over the payment methods.
"""

from __future__ import annotations

from typing import Protocol

from services.returns.domain.order_returns import OrderLedger
from services.returns.domain.shipping import (
    free_shipping_deduction,
    free_shipping_given_back,
    gift_charge,
    reimbursed_return_shipping,
    return_shipping_payer,
)
from services.returns.domain.values import Order, RefundCalculation, RequestedReturn
from services.returns.domain.vocabulary import ReturnKind, is_seller_fault
from shared.money import per_unit_share
from shared.policy import Policy, ReturnsPolicy

# Breakdown kinds (SPEC section 3), in the order they are applied.
GOODS = "goods"
OUTBOUND_SHIPPING = "outbound_shipping"
RETURN_SHIPPING = "return_shipping"
FREE_SHIPPING_DEDUCTION = "free_shipping_deduction"
GIFT_CHARGE = "gift_charge"


class RefundableRequest(RequestedReturn, Protocol):
    """What the calculation needs from a return request."""

    @property
    def kind(self) -> ReturnKind: ...


def _guard(goods_by_line: dict[str, int], refundable: int) -> int:
    """Goods refunded never exceed what is left of the goods paid; trims lines from the last."""
    excess = sum(goods_by_line.values()) - refundable
    for line_id in reversed(list(goods_by_line)):
        if excess <= 0:
            break
        cut = min(excess, goods_by_line[line_id])
        goods_by_line[line_id] -= cut
        excess -= cut
    return sum(goods_by_line.values())


def _clip(deduction: int, running: int) -> int:
    """A deduction never takes the refund below zero."""
    return max(0, min(deduction, running))


def calculate_refund(
    order: Order,
    ledger: OrderLedger,
    request: RefundableRequest,
    policy: Policy | ReturnsPolicy,
    *,
    return_shipping_fee_paid: int,
) -> RefundCalculation:
    """What completing `request` refunds, given what the order's earlier refunds gave back.

    Pure: the ledger is read, not changed (`OrderLedger.settle` records the result).
    Exchanges refund no goods; only a seller-fault exchange reimburses the return freight.
    """
    rules = policy.returns if isinstance(policy, Policy) else policy
    seller_fault = is_seller_fault(request.reason)
    payer = return_shipping_payer(request.reason, order)
    return_shipping = reimbursed_return_shipping(
        request.reason, rules, return_shipping_fee_paid, order.currency
    )

    goods_units: dict[str, int] = {}
    gift_units: dict[str, int] = {}
    goods_by_line: dict[str, int] = {}
    goods = outbound = free_shipping = free_shipping_back = charge = charge_back = 0
    full_return = False

    if request.kind == ReturnKind.REFUND:
        for line_id, quantity in request.lines.items():
            line = order.line(line_id)
            if line.is_gift:
                gift_units[line_id] = quantity
                continue
            before = ledger.units_refunded.get(line_id, 0)
            goods_units[line_id] = quantity
            goods_by_line[line_id] = per_unit_share(
                line.paid_amount, before, before + quantity, line.quantity
            )
        # per_unit_share telescopes to paid_amount per line; the ledger guard is belt and braces.
        goods = _guard(goods_by_line, max(0, order.goods_total - ledger.goods_refunded))
        full_return = all(
            ledger.units_refunded.get(line.line_id, 0) + goods_units.get(line.line_id, 0)
            >= line.quantity
            for line in order.lines
            if not line.is_gift
        )
        # The merchant bears the outbound leg of an order returned in full for its fault: the
        # fee comes with whichever return completes it, this one or a seller-fault one before.
        if full_return and (seller_fault or ledger.seller_fault_refunded):
            outbound = max(0, order.shipping_fee_paid - ledger.outbound_shipping_refunded)
        if not seller_fault and not order.shipping_insurance:
            free_shipping = free_shipping_deduction(order, ledger, rules, goods)
        if full_return:
            # Nothing is kept after all (the order came back in several returns, an earlier one
            # leaving what was kept below the threshold): the deduction that took is given back.
            free_shipping_back = free_shipping_given_back(ledger, rules)
        if full_return and not ledger.gift_charged:
            charge = gift_charge(order, ledger, gift_units)
        elif ledger.gift_charged and gift_units:
            # Gifts charged as kept by an earlier full return and returned since (in a parcel
            # of their own, or signed for after it): what was taken for them comes back.
            charge_back = max(0, ledger.gift_charge_taken - gift_charge(order, ledger, gift_units))

    running = goods + outbound + return_shipping
    free_shipping = _clip(free_shipping, running)
    running -= free_shipping
    charge = _clip(charge, running)
    running -= charge
    running += charge_back + free_shipping_back  # given back whole, never taken by a deduction

    items = [
        (GOODS, goods),
        (OUTBOUND_SHIPPING, outbound),
        (RETURN_SHIPPING, return_shipping),
        (FREE_SHIPPING_DEDUCTION, free_shipping_back - free_shipping),
        (GIFT_CHARGE, charge_back - charge),
    ]
    return RefundCalculation(
        return_id=request.return_id,
        order_id=order.order_id,
        currency=order.currency,
        amount=running,
        breakdown=[(kind, amount) for kind, amount in items if amount],
        return_shipping_payer=payer,
        goods=goods,
        goods_units=goods_units,
        gift_units=gift_units,
        goods_by_line=goods_by_line,
        outbound_shipping=outbound,
        return_shipping=return_shipping,
        # Signed, both: negative when they give back what an earlier refund took.
        free_shipping_deduction=free_shipping - free_shipping_back,
        gift_charge=charge - charge_back,
        full_return=full_return,
    )


def calculate_return_shipping_refund(
    order: Order,
    request: RefundableRequest,
    policy: Policy | ReturnsPolicy,
    *,
    return_shipping_fee_paid: int,
) -> RefundCalculation:
    """The return freight alone, for a completed return that learnt it after its refund.

    Pure. Only the freight (SPEC 4.8, capped): goods, outbound fee and deductions were settled
    by the return's main refund. Zero for a return whose freight is the buyer's.
    """
    rules = policy.returns if isinstance(policy, Policy) else policy
    amount = reimbursed_return_shipping(
        request.reason, rules, return_shipping_fee_paid, order.currency
    )
    return RefundCalculation(
        return_id=request.return_id,
        order_id=order.order_id,
        currency=order.currency,
        amount=amount,
        breakdown=[(RETURN_SHIPPING, amount)] if amount else [],
        return_shipping_payer=return_shipping_payer(request.reason, order),
        return_shipping=amount,
    )
