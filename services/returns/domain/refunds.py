"""Refund money for returns (SPEC 4.7, 4.8, 4.10). Integer minor units only.

What a return owes the buyer, by kind. The refund ledger (SPEC 4.11) caps it against the
order's refunds from every service and splits it over the payment methods.

The model imports this module, so model types are imported for typing only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from services.returns.domain.rules import (
    Payer,
    ReturnKind,
    is_seller_fault,
    return_shipping_cap,
    return_shipping_payer,
)
from shared.money import per_unit_share
from shared.policy import FreeShippingDeduction, Policy, ReturnsPolicy

if TYPE_CHECKING:
    from services.returns.domain.model import Order, OrderLedger

# Breakdown kinds (SPEC section 3), in the order they are applied.
GOODS = "goods"
OUTBOUND_SHIPPING = "outbound_shipping"
RETURN_SHIPPING = "return_shipping"
FREE_SHIPPING_DEDUCTION = "free_shipping_deduction"
GIFT_CHARGE = "gift_charge"


class RefundableRequest(Protocol):
    """What the calculation needs from a return request."""

    @property
    def return_id(self) -> str: ...
    @property
    def kind(self) -> ReturnKind: ...
    @property
    def reason(self) -> str: ...
    @property
    def lines(self) -> Mapping[str, int]: ...


@dataclass(frozen=True)
class RefundCalculation:
    """One refund: the signed breakdown, which always sums exactly to `amount` (never negative).

    `goods_units` / `gift_units` are what this refund takes back per line and `goods_by_line`
    what it pays for them; the ledger records them on completion. The deduction fields hold
    the positive amount actually deducted.
    """

    return_id: str
    order_id: str
    currency: str
    amount: int
    breakdown: list[tuple[str, int]]
    return_shipping_payer: Payer
    goods: int = 0
    goods_units: dict[str, int] = field(default_factory=dict)
    gift_units: dict[str, int] = field(default_factory=dict)
    goods_by_line: dict[str, int] = field(default_factory=dict)
    outbound_shipping: int = 0
    return_shipping: int = 0
    free_shipping_deduction: int = 0
    gift_charge: int = 0
    full_return: bool = False

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("a refund is never negative")
        if sum(amount for _, amount in self.breakdown) != self.amount:
            raise ValueError("the breakdown must sum to the amount")

    def to_dict(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "order_id": self.order_id,
            "currency": self.currency,
            "amount": self.amount,
            "breakdown": [{"kind": kind, "amount": amount} for kind, amount in self.breakdown],
            "return_shipping_payer": self.return_shipping_payer.value,
            "goods": self.goods,
            "goods_units": dict(self.goods_units),
            "gift_units": dict(self.gift_units),
            "goods_by_line": dict(self.goods_by_line),
            "outbound_shipping": self.outbound_shipping,
            "return_shipping": self.return_shipping,
            "free_shipping_deduction": self.free_shipping_deduction,
            "gift_charge": self.gift_charge,
            "full_return": self.full_return,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RefundCalculation:
        return cls(
            return_id=data["return_id"],
            order_id=data["order_id"],
            currency=data["currency"],
            amount=int(data["amount"]),
            breakdown=[(item["kind"], int(item["amount"])) for item in data["breakdown"]],
            return_shipping_payer=Payer(data["return_shipping_payer"]),
            goods=int(data.get("goods", 0)),
            goods_units={k: int(v) for k, v in data.get("goods_units", {}).items()},
            gift_units={k: int(v) for k, v in data.get("gift_units", {}).items()},
            goods_by_line={k: int(v) for k, v in data.get("goods_by_line", {}).items()},
            outbound_shipping=int(data.get("outbound_shipping", 0)),
            return_shipping=int(data.get("return_shipping", 0)),
            free_shipping_deduction=int(data.get("free_shipping_deduction", 0)),
            gift_charge=int(data.get("gift_charge", 0)),
            full_return=bool(data.get("full_return", False)),
        )


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
    return_shipping = _reimbursed_return_shipping(
        request.reason, rules, return_shipping_fee_paid, order.currency
    )

    goods_units: dict[str, int] = {}
    gift_units: dict[str, int] = {}
    goods_by_line: dict[str, int] = {}
    goods = outbound = free_shipping = gift_charge = 0
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
        if seller_fault and full_return:
            outbound = max(0, order.shipping_fee_paid - ledger.outbound_shipping_refunded)
        if not seller_fault and not order.shipping_insurance:
            free_shipping = _free_shipping_deduction(order, ledger, rules, goods)
        if full_return and not ledger.gift_charged:
            gift_charge = _gift_charge(order, ledger, gift_units)

    running = goods + outbound + return_shipping
    free_shipping = _clip(free_shipping, running)
    running -= free_shipping
    gift_charge = _clip(gift_charge, running)
    running -= gift_charge

    items = [
        (GOODS, goods),
        (OUTBOUND_SHIPPING, outbound),
        (RETURN_SHIPPING, return_shipping),
        (FREE_SHIPPING_DEDUCTION, -free_shipping),
        (GIFT_CHARGE, -gift_charge),
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
        free_shipping_deduction=free_shipping,
        gift_charge=gift_charge,
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
    amount = _reimbursed_return_shipping(
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


def _reimbursed_return_shipping(
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


def _free_shipping_deduction(
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


def _gift_charge(order: Order, ledger: OrderLedger, gift_units: Mapping[str, int]) -> int:
    """Unreturned gift units, at the gift line's stated_price (for the whole line)."""
    charge = 0
    for line in order.lines:
        if not line.is_gift:
            continue
        returned = ledger.gift_units_returned.get(line.line_id, 0) + gift_units.get(line.line_id, 0)
        returned = min(returned, line.quantity)
        charge += line.stated_price - line.stated_price * returned // line.quantity
    return charge
