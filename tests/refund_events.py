"""CloudEvents the refund ledger reads (order.paid, refund.requested, refund.settled,
refund.failed), for its integration, end-to-end and fault tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aftersales_dev import events
from aftersales_dev.events import cloud_event
from shared.contracts import ids
from shared.contracts.events import service_source

SOURCE = "/test/refunds"


def envelope(
    type_: str,
    data: dict[str, Any],
    at: datetime,
    *,
    id: str | None = None,
    source: str = SOURCE,
) -> dict:
    return cloud_event(type_, data, at, id=id, source=source)


def order_paid(
    order_id: str,
    at: datetime,
    *,
    lines: Sequence[tuple[int, int]] = ((1, 25000),),
    shipping_fee_paid: int = 0,
    payments: Sequence[tuple[str, int]] | None = None,
    customer_id: str = "c-refunds",
    currency: str = "CNY",
) -> dict:
    goods = sum(paid for _, paid in lines)
    kettles = [
        events.order_line(
            f"l{i}",
            sku=f"sku-{i}",
            title="Kettle",
            category="appliances",
            quantity=quantity,
            paid_amount=paid,
        )
        for i, (quantity, paid) in enumerate(lines, start=1)
    ]
    return events.order_paid(
        order_id,
        customer_id,
        at=at,
        lines=kettles,
        customer=events.buyer("Li Lei", "13812345678"),
        shop_id="S-refunds",
        payments=payments if payments is not None else [("card", goods + shipping_fee_paid)],
        shipping_fee_paid=shipping_fee_paid,
        currency=currency,
        source=SOURCE,
    )


def refund_requested(
    order_id: str,
    case_type: str,
    case_id: str,
    breakdown: Sequence[tuple[str, int]],
    at: datetime,
    due_by: datetime,
    *,
    part: str | None = None,
    customer_id: str = "c-refunds",
    currency: str = "CNY",
    id: str | None = None,
) -> dict:
    requester = "returns" if case_type == "return" else "complaints"
    return envelope(
        "refund.requested",
        {
            "refund_id": ids.refund_id(case_type, case_id, part),
            "order_id": order_id,
            "customer_id": customer_id,
            "case": {"type": case_type, "id": case_id},
            "amount": sum(amount for _, amount in breakdown),
            "currency": currency,
            "breakdown": [{"kind": k, "amount": a} for k, a in breakdown],
            "return_shipping_payer": "merchant" if case_type == "return" else None,
            "due_by": due_by.isoformat(),
            "requested_at": at.isoformat(),
            "requested_by": requester,
        },
        at,
        id=id,
        # Only returns and complaints may ask the ledger (the topic's binding, SPEC section 1).
        source=service_source(requester),
    )


def refund_settled(order_id: str, refund_id: str, at: datetime) -> dict:
    return envelope(
        "refund.settled",
        {"refund_id": refund_id, "order_id": order_id, "settled_at": at.isoformat()},
        at,
    )


def refund_failed(order_id: str, refund_id: str, method: str, amount: int, at: datetime) -> dict:
    return envelope(
        "refund.failed",
        {
            "refund_id": refund_id,
            "order_id": order_id,
            "method": method,
            "amount": amount,
            "reason": "card_closed",
            "failed_at": at.isoformat(),
        },
        at,
    )


# --- the platform's events around a refund (for the tests with returns and complaints) ------


def order_shipped(order_id: str, at: datetime) -> dict:
    return events.order_shipped(order_id, at=at, source=SOURCE)


def parcel_signed(order_id: str, at: datetime, *, return_id: str | None = None) -> dict:
    tracking_no = f"T-{return_id or order_id}"
    return events.parcel_signed(
        order_id, at=at, return_id=return_id, tracking_no=tracking_no, source=SOURCE
    )


def return_requested(
    order_id: str,
    return_id: str,
    at: datetime,
    *,
    units: int = 1,
    reason: str = "dislike",
    customer_id: str = "c-refunds",
) -> dict:
    seller_fault = reason not in ("no_reason", "dislike", "size_fit", "changed_mind")
    return events.return_requested(
        order_id,
        return_id,
        customer_id,
        at=at,
        lines={"l1": units},
        reason=reason,
        evidence_urls=["https://img.example.com/e1.jpg"] if seller_fault else [],
        source=SOURCE,
    )


def complaint_opened(
    order_id: str, complaint_id: str, category: str, at: datetime, customer_id: str = "c-refunds"
) -> dict:
    return events.complaint_opened(
        complaint_id,
        order_id,
        customer_id,
        at=at,
        category=category,
        description="where is it",
        source=SOURCE,
    )


def complaint_resolved(order_id: str, complaint_id: str, at: datetime, remedy: str) -> dict:
    return events.complaint_resolved(complaint_id, order_id, at=at, remedy=remedy, source=SOURCE)
