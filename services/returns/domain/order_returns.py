"""The order and what its returns took back of it (SPEC 4.7, 4.8: "once per order").

`OrderReturns` is the aggregate a return request decides against: the order (None until
order.paid arrives) and its `OrderLedger`, the running record of refunded units, money and
once-per-order deductions, plus the units that approved returns reserve. The service layer loads
and stores both together with the request, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.returns.domain.values import Order, RefundCalculation
from services.returns.domain.vocabulary import Payer
from shared.documents import DocumentType, Stored

__all__ = ["ORDER_LEDGER_DOCUMENT", "OrderLedger", "OrderReturns"]


@dataclass
class OrderLedger(Stored):
    """What an order's returns have taken back so far, and which units open returns claim.

    Changed only by ReturnRequest methods: `reserve` on approval, `settle` on completion,
    `release` on rejection or cancellation, `settle_return_shipping` for freight learnt after
    completion. Both settle methods are idempotent per return.
    """

    order_id: str
    units_refunded: dict[str, int] = field(default_factory=dict)  # paid lines
    gift_units_returned: dict[str, int] = field(default_factory=dict)  # gift lines
    goods_refunded: int = 0
    outbound_shipping_refunded: int = 0
    return_shipping_refunded: int = 0  # on top of goods + outbound (SPEC 4.7)
    free_shipping_deducted: bool = False
    # What free-shipping deductions took, less what was given back (0 in ledgers stored
    # before it was kept: nothing is then given back).
    free_shipping_taken: int = 0
    gift_charged: bool = False
    # What the gift charge took, less what returned gifts got back (0 in ledgers stored before
    # it was kept: nothing is then given back).
    gift_charge_taken: int = 0
    # A seller-fault return refunded goods of this order: once every paid unit is returned, the
    # outbound fee is refunded, whichever return completes it (SPEC 4.8).
    seller_fault_refunded: bool = False
    reserved: dict[str, dict[str, int]] = field(default_factory=dict)  # return_id -> units
    settled_returns: list[str] = field(default_factory=list)
    # Returns whose freight came after their refund and was reimbursed by a refund of its own.
    return_shipping_settled: list[str] = field(default_factory=list)

    def reserved_units(self, line_id: str, *, excluding: str | None = None) -> int:
        return sum(
            units.get(line_id, 0)
            for return_id, units in self.reserved.items()
            if return_id != excluding
        )

    def reserve(self, return_id: str, lines: Mapping[str, int]) -> None:
        self.reserved[return_id] = dict(lines)

    def release(self, return_id: str) -> None:
        self.reserved.pop(return_id, None)

    def is_settled(self, return_id: str) -> bool:
        return return_id in self.settled_returns

    def settle(self, return_id: str, calculation: RefundCalculation) -> bool:
        """Record a completed return; False (and no change) if it was recorded before."""
        self.release(return_id)
        if self.is_settled(return_id):
            return False
        for line_id, units in calculation.goods_units.items():
            self.units_refunded[line_id] = self.units_refunded.get(line_id, 0) + units
        for line_id, units in calculation.gift_units.items():
            self.gift_units_returned[line_id] = self.gift_units_returned.get(line_id, 0) + units
        self.goods_refunded += calculation.goods
        self.outbound_shipping_refunded += calculation.outbound_shipping
        self.return_shipping_refunded += calculation.return_shipping
        self.free_shipping_deducted = (
            self.free_shipping_deducted or calculation.free_shipping_deduction > 0
        )
        self.gift_charged = self.gift_charged or calculation.gift_charge > 0
        self.gift_charge_taken += calculation.gift_charge
        self.free_shipping_taken += calculation.free_shipping_deduction
        self.seller_fault_refunded = self.seller_fault_refunded or (
            calculation.return_shipping_payer == Payer.MERCHANT and bool(calculation.goods_units)
        )
        self.settled_returns.append(return_id)
        return True

    def settle_return_shipping(self, return_id: str, amount: int) -> bool:
        """Record freight reimbursed after the return was settled: freight only, never goods.
        False (and no change) if it was recorded before."""
        if amount < 0:
            raise ValueError("a reimbursement is never negative")
        if return_id in self.return_shipping_settled:
            return False
        self.return_shipping_refunded += amount
        self.return_shipping_settled.append(return_id)
        return True


@dataclass
class OrderReturns:
    """One order and what its returns took back of it (its ledger): the aggregate a return
    request reads and changes. The request changes the ledger only through it."""

    order: Order | None
    ledger: OrderLedger

    # --- what a return request changes ----------------------------------------------------

    def reserve(self, return_id: str, lines: Mapping[str, int]) -> None:
        """An approved return claims its units until it completes or ends."""
        self.ledger.reserve(return_id, lines)

    def release(self, return_id: str) -> None:
        self.ledger.release(return_id)

    def is_settled(self, return_id: str) -> bool:
        return self.ledger.is_settled(return_id)

    def settle(self, return_id: str, calculation: RefundCalculation) -> bool:
        return self.ledger.settle(return_id, calculation)

    def settle_return_shipping(self, return_id: str, amount: int) -> bool:
        return self.ledger.settle_return_shipping(return_id, amount)

    # --- what it reads ----------------------------------------------------------------------

    def require_order(self, doing: str) -> Order:
        if self.order is None:
            raise ValueError(f"{doing} needs its order")
        return self.order

    @property
    def currency(self) -> str | None:
        return None if self.order is None else self.order.currency

    def titles(self, line_ids: Iterable[str]) -> tuple[str, ...]:
        """The buyer-facing names of lines; an id the order does not know stays an id."""
        order = self.order
        return tuple(
            order.line(line_id).title if order is not None and order.has_line(line_id) else line_id
            for line_id in line_ids
        )

    def returned_units(self, line_id: str) -> int:
        """Units of a line an earlier refund already took back (paid units or gift units)."""
        ledger = self.ledger
        return ledger.units_refunded.get(line_id, 0) + ledger.gift_units_returned.get(line_id, 0)

    def available_units(self, order: Order, line_id: str, return_id: str) -> int:
        """Units of a line the buyer may still return in `return_id`."""
        return self._free_units(order.line(line_id).quantity, line_id, return_id)

    def _free_units(self, bought: int, line_id: str, return_id: str) -> int:
        reserved = self.ledger.reserved_units(line_id, excluding=return_id)
        return max(0, bought - self.returned_units(line_id) - reserved)

    def exceeding_lines(
        self, order: Order, lines: Mapping[str, int], return_id: str
    ) -> tuple[str, ...]:
        """Requested lines the order lacks, or asked for more units than are still free."""
        # The order's lines looked at once, not searched again for every requested line.
        bought = {line.line_id: line.quantity for line in order.lines}
        return tuple(
            line_id
            for line_id, quantity in lines.items()
            if line_id not in bought
            or quantity > self._free_units(bought[line_id], line_id, return_id)
        )


def _v1_gift_charge_taken(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 recorded that gifts were charged, not how much: nothing to give back."""
    return {"gift_charge_taken": 0, **data}


def _v2_seller_fault_refunded(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 records whether a seller-fault return refunded goods and what free-shipping
    deductions took; a ledger stored before knows neither: its outbound fee follows the
    completing return's own reason, and no deduction is given back, as before."""
    return {"seller_fault_refunded": False, "free_shipping_taken": 0, **data}


ORDER_LEDGER_DOCUMENT = DocumentType(
    "returns.order_ledger",
    OrderLedger,
    version=3,
    upcasters={1: _v1_gift_charge_taken, 2: _v2_seller_fault_refunded},
)
