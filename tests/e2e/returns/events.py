"""CloudEvents as the shop platform publishes them (SPEC section 2), for the broker tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.events import cloud_event


def _event(type_: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return cloud_event(type_, data, at, source="/shop-platform/e2e", id_prefix="e2e")


def order_paid(
    order_id: str, *, at: datetime, quantity: int = 2, paid: int = 19900, customer_id: str = "C-e2e"
) -> dict[str, Any]:
    return _event(
        "order.paid",
        {
            "order_id": order_id,
            "shop_id": "S-e2e",
            "customer_id": customer_id,
            "paid_at": at.isoformat(),
            "currency": "CNY",
            "lines": [
                {
                    "line_id": "L1",
                    "sku": "SWEATER-M",
                    "title": "Wool sweater",
                    "category": "apparel",
                    "quantity": quantity,
                    "paid_amount": paid,
                }
            ],
            "shipping_fee_paid": 0,
            "standard_shipping_fee": 1000,
            "free_shipping_threshold": None,
            "shipping_insurance": False,
            "presale_ship_by": None,
            "payments": [
                {"method": "alipay", "amount": paid - paid // 4},
                {"method": "coupon", "amount": paid // 4},
            ],
            "customer": {
                "name": "Han Meimei",
                "phone": "13700002222",
                "email": "han.meimei@example.com",
                "preferred_channel": "sms",
            },
        },
        at,
    )


def outbound_signed(order_id: str, *, at: datetime) -> dict[str, Any]:
    return _event(
        "parcel.signed",
        {
            "order_id": order_id,
            "leg": "outbound",
            "tracking_no": f"SF-{order_id}",
            "signed_at": at.isoformat(),
        },
        at,
    )


def return_signed(order_id: str, return_id: str, *, at: datetime) -> dict[str, Any]:
    return _event(
        "parcel.signed",
        {
            "order_id": order_id,
            "leg": "return",
            "return_id": return_id,
            "tracking_no": f"YT-{return_id}",
            "signed_at": at.isoformat(),
        },
        at,
    )


def return_requested(
    order_id: str, return_id: str, *, at: datetime, units: int = 1, customer_id: str = "C-e2e"
) -> dict[str, Any]:
    return _event(
        "return.requested",
        {
            "return_id": return_id,
            "order_id": order_id,
            "customer_id": customer_id,
            "kind": "refund",
            "reason": "size_fit",
            "lines": [{"line_id": "L1", "quantity": units}],
            "condition": ["opened_for_inspection"],
            "evidence_urls": [],
            "requested_at": at.isoformat(),
        },
        at,
    )


def quality_claim(
    order_id: str, return_id: str, *, at: datetime, customer_id: str = "C-e2e"
) -> dict[str, Any]:
    """A seller-fault request with a photo: past the quality window it goes to manual review."""
    event = return_requested(order_id, return_id, at=at, customer_id=customer_id)
    event["data"].update(reason="quality_issue", evidence_urls=["https://img.example/1.jpg"])
    return event


def return_reviewed(
    order_id: str, return_id: str, *, at: datetime, decision: str = "approve"
) -> dict[str, Any]:
    return _event(
        "return.reviewed",
        {
            "return_id": return_id,
            "order_id": order_id,
            "decision": decision,
            "agent_id": "agent-e2e",
            "note": "photos checked",
            "reviewed_at": at.isoformat(),
        },
        at,
    )


def return_shipped(order_id: str, return_id: str, *, at: datetime) -> dict[str, Any]:
    return _event(
        "return.shipped",
        {
            "return_id": return_id,
            "order_id": order_id,
            "carrier": "YTO",
            "tracking_no": f"YT-{return_id}",
            "shipped_at": at.isoformat(),
            "shipping_fee_paid": 1200,
        },
        at,
    )
