"""Valid events of every input type of the contract and the helpers that break them, for the
contract tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aftersales_dev.events import cloud_event, encode
from shared.contracts import (
    InvalidEvent,
    parse_event,
)

T0 = "2024-05-01T10:00:00+08:00"
NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)


def envelope(event_type: str, data: Any, **attrs: Any) -> dict[str, Any]:
    """An event of the platform's test source at T0, `attrs` set over its attributes."""
    event = cloud_event(event_type, data, T0, id=f"evt-{event_type}", source="urn:platform:test")
    return {**event, **attrs}


def order_paid_data() -> dict[str, Any]:
    return {
        "order_id": "O1",
        "shop_id": "S1",
        "customer_id": "C1",
        "paid_at": T0,
        "currency": "CNY",
        "lines": [
            {
                "line_id": "L1",
                "sku": "SKU-1",
                "title": "T-shirt",
                "category": "apparel",
                "quantity": 2,
                "paid_amount": 9000,
            },
            {
                "line_id": "L2",
                "sku": "SKU-G",
                "title": "Sticker",
                "category": "gift",
                "quantity": 1,
                "paid_amount": 0,
                "is_gift": True,
                "stated_price": 500,
            },
        ],
        "shipping_fee_paid": 1000,
        "standard_shipping_fee": 1000,
        "free_shipping_threshold": None,
        "shipping_insurance": True,
        "presale_ship_by": None,
        "payments": [{"method": "alipay", "amount": 6000}, {"method": "points", "amount": 4000}],
        "customer": {
            "name": "张三",
            "phone": "13812345678",
            "email": "alice@example.com",
            "preferred_channel": "sms",
        },
    }


VALID_INPUTS: dict[str, dict[str, Any]] = {
    "order.paid": order_paid_data(),
    "order.shipped": {
        "order_id": "O1",
        "shipped_at": T0,
        "carrier": "SF",
        "tracking_no": "SF123",
    },
    "order.cancelled": {"order_id": "O1", "cancelled_at": T0},
    "parcel.signed": {
        "order_id": "O1",
        "leg": "outbound",
        "tracking_no": "SF123",
        "signed_at": T0,
    },
    "return.requested": {
        "return_id": "R1",
        "order_id": "O1",
        "customer_id": "C1",
        "kind": "refund",
        "reason": "size_fit",
        "lines": [{"line_id": "L1", "quantity": 1}],
        "condition": ["opened_for_inspection"],
        "evidence_urls": [],
        "requested_at": T0,
    },
    "return.evidence_submitted": {
        "return_id": "R1",
        "order_id": "O1",
        "evidence_urls": ["https://img.example.com/1.jpg"],
        "submitted_at": T0,
    },
    "return.shipped": {
        "return_id": "R1",
        "order_id": "O1",
        "carrier": "YTO",
        "tracking_no": "YT9",
        "shipped_at": T0,
        "shipping_fee_paid": 1200,
    },
    "return.inspected": {
        "return_id": "R1",
        "order_id": "O1",
        "passed": True,
        "findings": [],
        "inspected_at": T0,
    },
    "return.reviewed": {
        "return_id": "R1",
        "order_id": "O1",
        "decision": "approve",
        "agent_id": "A7",
        "note": "photos show a torn seam",
        "reviewed_at": T0,
    },
    "return.cancelled": {"return_id": "R1", "order_id": "O1", "cancelled_at": T0},
    "complaint.opened": {
        "complaint_id": "K1",
        "order_id": "O1",
        "customer_id": "C1",
        "category": "logistics_delay",
        "description": "parcel stuck for 5 days",
        "opened_at": T0,
    },
    "complaint.responded": {
        "complaint_id": "K1",
        "order_id": "O1",
        "agent_id": "A7",
        "responded_at": T0,
    },
    "complaint.resolved": {
        "complaint_id": "K1",
        "order_id": "O1",
        "outcome": "upheld",
        "remedy": "none",
        "agent_id": "A7",
        "resolved_at": T0,
    },
    "survey.answered": {
        "callback_id": "CB1",
        "customer_id": "C1",
        "score": 4,
        "comment": "ok",
        "answered_at": T0,
    },
    "customer.erasure_requested": {"customer_id": "C1", "requested_at": T0},
    "compensation.reviewed": {
        "complaint_id": "K1",
        "order_id": "O1",
        "decision": "approve",
        "agent_id": "S1",
        "note": "",
        "reviewed_at": T0,
    },
    "refund.settled": {"refund_id": "rf-1", "order_id": "O1", "settled_at": T0},
    "refund.failed": {
        "refund_id": "rf-1",
        "order_id": "O1",
        "method": "card",
        "amount": 4500,
        "reason": "card_closed",
        "failed_at": T0,
    },
}


def cancelled(stamp: Any = T0, **attrs: Any) -> dict[str, Any]:
    return envelope("order.cancelled", {"order_id": "O1", "cancelled_at": stamp}, **attrs)


def reject(obj: Any) -> InvalidEvent:
    raw = obj if isinstance(obj, bytes) else encode(obj)
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    return info.value


def order_with(mutate: Any) -> dict[str, Any]:
    data = order_paid_data()
    mutate(data)
    return envelope("order.paid", data)
