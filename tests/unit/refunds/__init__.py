"""The refund ledger's test builders: an order's facts and a refund request, at T0 (10:00 in
Shanghai), due a day later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.refunds.domain.model import OrderFacts, RefundRequest
from shared.contracts import ids

T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
DUE = T0 + timedelta(hours=24)


def facts(
    lines: list[tuple[str, int, int]],
    shipping: int,
    payments: list[tuple[str, int]],
    order_id: str = "o-1",
    customer_id: str = "c-1",
) -> OrderFacts:
    """An order paid three days before T0: `lines` (id, quantity, paid), `shipping` paid."""
    return OrderFacts.of(
        order_id=order_id,
        customer_id=customer_id,
        currency="CNY",
        paid_at=T0 - timedelta(days=3),
        shipping_fee_paid=shipping,
        payments=payments,
        lines=lines,
    )


def request(
    case_id: str,
    breakdown: list[tuple[str, int]],
    *,
    case_type: str = "return",
    order_id: str = "o-1",
    customer_id: str = "c-1",
    due_by: datetime = DUE,
    currency: str = "CNY",
    part: str | None = None,
) -> RefundRequest:
    """A case's refund request at T0, as its service asks it (a return's: the merchant pays
    the return shipping)."""
    return RefundRequest(
        refund_id=ids.refund_id(case_type, case_id, part),
        order_id=order_id,
        customer_id=customer_id,
        case_type=case_type,
        case_id=case_id,
        amount=sum(amount for _, amount in breakdown),
        currency=currency,
        breakdown=tuple(breakdown),
        due_by=due_by,
        requested_at=T0,
        requested_by="complaints" if case_type != "return" else "returns",
        return_shipping_payer="merchant" if case_type == "return" else None,
    )
