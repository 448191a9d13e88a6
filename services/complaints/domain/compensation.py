"""Compensation by category (SPEC 5): one row per category, read by `Complaint.compensate`.

Each row says which coupon the category earns, what is refunded and whether the order is
reshipped, and whether the order's late-shipment penalty is the compensation. `remedy` is read
only where the row says so (the buyer chose to have it reshipped or refunded).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.complaints.domain.orders import OrderFacts
from services.complaints.domain.rules import Category, Remedy, quality_issue_coupon
from shared.policy import ComplaintsPolicy

GOODS = "goods"
OUTBOUND_SHIPPING = "outbound_shipping"

Coupon = Callable[[int, ComplaintsPolicy], int]  # (the order's goods total, policy) -> value


class Refund(StrEnum):
    NONE = "none"
    SHIPPING_FEE = "shipping_fee"  # the outbound fee the buyer paid, if any
    BY_REMEDY = "by_remedy"  # the whole order (goods and fee) when remedy is `refund`


class Reshipment(StrEnum):
    NEVER = "never"
    ALWAYS = "always"
    BY_REMEDY = "by_remedy"  # when remedy is `reship`


@dataclass(frozen=True)
class CompensationRule:
    coupon: Coupon
    refund: Refund = Refund.NONE
    reshipment: Reshipment = Reshipment.NEVER
    late_shipment_refund: bool = False  # the order's late-shipment penalty, once per order

    def refund_breakdown(self, remedy: Remedy, facts: OrderFacts) -> list[tuple[str, int]]:
        """What is asked of the refund ledger, by kind; parts of zero are left out."""
        parts: list[tuple[str, int]] = []
        if self.refund == Refund.SHIPPING_FEE:
            parts = [(OUTBOUND_SHIPPING, facts.shipping_fee_paid)]
        elif self.refund == Refund.BY_REMEDY and remedy == Remedy.REFUND:
            parts = [(GOODS, facts.goods_total), (OUTBOUND_SHIPPING, facts.shipping_fee_paid)]
        return [(kind, amount) for kind, amount in parts if amount > 0]

    def reships(self, remedy: Remedy) -> bool:
        return self.reshipment == Reshipment.ALWAYS or (
            self.reshipment == Reshipment.BY_REMEDY and remedy == Remedy.RESHIP
        )


def _fixed(key: str) -> Coupon:
    """A coupon of a fixed amount, the policy's `key`."""

    def coupon(goods_total: int, policy: ComplaintsPolicy) -> int:
        value: int = getattr(policy, key)
        return value

    return coupon


def _no_coupon(goods_total: int, policy: ComplaintsPolicy) -> int:
    return 0


COMPENSATION: Mapping[Category, CompensationRule] = {
    Category.QUALITY_ISSUE: CompensationRule(quality_issue_coupon),
    Category.LOGISTICS_DELAY: CompensationRule(
        _fixed("logistics_delay_coupon"), refund=Refund.SHIPPING_FEE
    ),
    Category.MISSING_ITEM: CompensationRule(
        _fixed("missing_item_coupon"), reshipment=Reshipment.ALWAYS
    ),
    Category.WRONG_ITEM: CompensationRule(_fixed("wrong_item_coupon")),
    Category.NOT_RECEIVED: CompensationRule(
        _fixed("not_received_coupon"), refund=Refund.BY_REMEDY, reshipment=Reshipment.BY_REMEDY
    ),
    Category.SERVICE_ATTITUDE: CompensationRule(_fixed("service_attitude_coupon")),
    Category.LATE_SHIPMENT: CompensationRule(_no_coupon, late_shipment_refund=True),
    # A fake shipment is a late one that was also not received: the penalty plus the remedy.
    Category.FAKE_SHIPMENT: CompensationRule(
        _no_coupon,
        refund=Refund.BY_REMEDY,
        reshipment=Reshipment.BY_REMEDY,
        late_shipment_refund=True,
    ),
    Category.OTHER: CompensationRule(_no_coupon),
}


def coupon_for(category: Category, goods_total: int, policy: ComplaintsPolicy) -> int:
    """The coupon an upheld complaint of `category` earns (0: none)."""
    return COMPENSATION[category].coupon(goods_total, policy)
