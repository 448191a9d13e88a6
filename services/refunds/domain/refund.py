"""A refund the ledger issued (`refund.issued`) and what became of it: the value the ledger
keeps per refund and the domain events carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PayoutFailure:
    method: str
    amount: int
    reason: str
    failed_at: datetime


@dataclass
class IssuedRefund:
    """One `refund.issued` and what became of it.

    `goods_given` / `outbound_given` are what it gave back of each capped group (after the
    cut), `method_shares` what went to each of the order's own methods (in the order's order)
    and `overflow` what went to the payout method; `payments` is the same money as one line
    per method, derived from them.
    """

    refund_id: str
    order_id: str
    customer_id: str
    case_type: str
    case_id: str
    currency: str
    amount: int
    breakdown: tuple[tuple[str, int], ...]
    method_shares: tuple[tuple[str, int], ...]
    overflow: int
    overflow_method: str
    requested: int
    cut: int
    goods_given: int
    outbound_given: int
    due_by: datetime
    issued_at: datetime
    requested_by: str
    fingerprint: str
    return_shipping_payer: str | None = None
    reissue_of: str | None = None
    settled_at: datetime | None = None
    failures: list[PayoutFailure] = field(default_factory=list)
    breaches: set[str] = field(default_factory=set)
    needs_person: bool = False

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("a refund is never negative")
        if sum(amount for _, amount in self.breakdown) != self.amount:
            raise ValueError("a refund's breakdown must sum to its amount")
        # The payments' sum, without building their lines: one share per method, and the overflow.
        if sum(dict(self.method_shares).values()) + self.overflow != self.amount:
            raise ValueError("a refund's payments must sum to its amount")

    @property
    def on_time(self) -> bool:
        return self.issued_at <= self.due_by

    @property
    def settled_on_time(self) -> bool | None:
        return None if self.settled_at is None else self.settled_at <= self.due_by

    @property
    def to_methods(self) -> dict[str, int]:
        """What went to the order's own methods, by method (methods given nothing left out)."""
        return {method: amount for method, amount in self.method_shares if amount}

    @property
    def payments(self) -> tuple[tuple[str, int], ...]:
        """One line per method, in the order's order, the payout method's share added to its
        own line when it is one of the order's methods (else last); zero lines left out. What
        `refund.issued` tells finance."""
        lines = dict(self.method_shares)
        lines[self.overflow_method] = lines.get(self.overflow_method, 0) + self.overflow
        return tuple((method, amount) for method, amount in lines.items() if amount)

    def paid_to(self, method: str) -> int:
        return sum(amount for m, amount in self.payments if m == method)

    def failed_on(self, method: str) -> bool:
        return any(failure.method == method for failure in self.failures)
