"""Returns value objects: the order as the returns service sees it, an inspection, and one
refund's calculation. Immutable; stored and sent as versioned documents (shared.documents).
Also what every rule reads of a return request (`RequestedReturn`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from services.returns.domain.vocabulary import Payer
from shared.clock import require_aware
from shared.documents import DocumentType, Stored

__all__ = [
    "ORDER_DOCUMENT",
    "REFUND_CALCULATION_DOCUMENT",
    "Inspection",
    "Order",
    "OrderLine",
    "RefundCalculation",
    "RequestedReturn",
    "breakdown_as_pairs",
]


class RequestedReturn(Protocol):
    """What every rule reads of a return request: its id, the reason given and the lines."""

    @property
    def return_id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def lines(self) -> Mapping[str, int]: ...


def _optional_aware(moment: datetime | None, name: str) -> None:
    if moment is not None:
        require_aware(moment, name)


@dataclass(frozen=True)
class OrderLine:
    line_id: str
    sku: str
    title: str
    category: str
    quantity: int
    paid_amount: int  # for the whole line, after discounts
    is_gift: bool = False
    stated_price: int = 0  # a gift's value, for the whole line
    no_reason_return_waived: bool = False

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"line {self.line_id}: quantity must be positive")
        if self.paid_amount < 0 or self.stated_price < 0:
            raise ValueError(f"line {self.line_id}: amounts must not be negative")


@dataclass(frozen=True)
class Order(Stored):
    """An order from order.paid, plus the outbound signature and cancellation seen since."""

    order_id: str
    shop_id: str
    customer_id: str
    paid_at: datetime
    currency: str
    lines: tuple[OrderLine, ...]
    shipping_fee_paid: int
    standard_shipping_fee: int
    free_shipping_threshold: int | None
    shipping_insurance: bool
    presale_ship_by: datetime | None
    outbound_signed_at: datetime | None = None
    cancelled_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        require_aware(self.paid_at, "paid_at")
        _optional_aware(self.presale_ship_by, "presale_ship_by")
        _optional_aware(self.outbound_signed_at, "outbound_signed_at")
        _optional_aware(self.cancelled_at, "cancelled_at")
        if not self.currency:
            raise ValueError("an order carries its currency")
        if self.shipping_fee_paid < 0 or self.standard_shipping_fee < 0:
            raise ValueError("shipping fees must not be negative")
        if self.free_shipping_threshold is not None and self.free_shipping_threshold < 0:
            raise ValueError("free_shipping_threshold must not be negative")
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line ids must be unique within an order")

    @property
    def goods_total(self) -> int:
        return sum(line.paid_amount for line in self.lines)

    def has_line(self, line_id: str) -> bool:
        return any(line.line_id == line_id for line in self.lines)

    def line(self, line_id: str) -> OrderLine:
        for line in self.lines:
            if line.line_id == line_id:
                return line
        raise KeyError(f"order {self.order_id} has no line {line_id!r}")

    def with_outbound_signature(self, signed_at: datetime) -> Order:
        """The order once the buyer signed for it; the first signature counts."""
        require_aware(signed_at, "signed_at")
        if self.outbound_signed_at is not None:
            return self
        # A copy with the signature: the other fields were checked when this order was made,
        # so not again field by field (`dataclasses.replace`), once per order and signature.
        signed = object.__new__(type(self))
        signed.__dict__.update(self.__dict__, outbound_signed_at=signed_at)
        return signed


@dataclass(frozen=True)
class Inspection:
    passed: bool
    findings: tuple[str, ...]
    at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(self.findings))
        require_aware(self.at, "inspected_at")


@dataclass(frozen=True)
class RefundCalculation(Stored):
    """One refund: the signed breakdown, which always sums exactly to `amount` (never negative).

    `goods_units` / `gift_units` are what this refund takes back per line and `goods_by_line`
    what it pays for them; the ledger records them on completion. The deduction fields hold
    the positive amount actually deducted; `gift_charge` is negative when the refund gives
    back what an earlier gift charge took for gifts returned since, `free_shipping_deduction`
    when it gives back an earlier deduction (nothing was kept in the end).
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


# --- documents --------------------------------------------------------------------------------


def breakdown_as_pairs(calculation: dict[str, Any]) -> dict[str, Any]:
    """Version 1 wrote a breakdown as [{"kind", "amount"}]; version 2 as [kind, amount] pairs,
    the calculation's own shape."""
    breakdown = [
        [item["kind"], item["amount"]] if isinstance(item, Mapping) else item
        for item in calculation.get("breakdown", [])
    ]
    return {**calculation, "breakdown": breakdown}


ORDER_DOCUMENT = DocumentType("returns.order", Order)
REFUND_CALCULATION_DOCUMENT = DocumentType(
    "returns.refund_calculation", RefundCalculation, version=2, upcasters={1: breakdown_as_pairs}
)
