"""The notifier suite's buyers (their personal data must never appear in clear), ids and the
events it feeds the service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aftersales_dev import events
from aftersales_dev.events import cloud_event, kettle_order
from shared.crypto import generate_key

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)  # 2024-05-01 10:00 in Shanghai
KEY = generate_key()

# Personal data of the test buyers: must never appear in an event or a log line.
PHONE = "13812345678"
EMAIL = "zhang.sanfeng@example.com"
NAME = "张三丰"
PHONE_2 = "+8613987654321"
EMAIL_2 = "li.si@example.org"
NAME_2 = "Li Si"
PERSONAL = (PHONE, EMAIL, NAME, PHONE_2, EMAIL_2, NAME_2, "13987654321")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def envelope(type_: str, data: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return cloud_event(type_, data, T0, id=event_id or uid("evt"), platform="/test")


def order_paid(
    customer_id: str,
    *,
    order_id: str | None = None,
    phone: str | None = PHONE,
    email: str | None = EMAIL,
    name: str | None = NAME,
    preferred: str = "sms",
    language: str | None = None,
    paid_at: str = "2024-05-01T09:00:00+08:00",
    event_id: str | None = None,
) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "name": name,
        "phone": phone,
        "email": email,
        "preferred_channel": preferred,
    }
    if language is not None:
        customer["language"] = language
    return envelope(
        "order.paid",
        kettle_order(order_id or uid("O"), customer_id, customer, paid_at=paid_at),
        event_id=event_id,
    )


ACK = {"complaint_id": "K1", "answer_within_hours": 2, "answer_by": "2024-05-01T12:00:00+08:00"}


def requested(
    customer_id: str,
    template: str = "complaint.acknowledged",
    params: dict[str, Any] | None = None,
    *,
    request_id: str | None = None,
    urgent: bool = False,
    order_id: str | None = "O1",
    event_id: str | None = None,
    case_id: str = "K1",
) -> dict[str, Any]:
    return envelope(
        "notification.requested",
        {
            "request_id": request_id or uid("req"),
            "customer_id": customer_id,
            "order_id": order_id,
            "template": template,
            "params": ACK if params is None else params,
            "urgent": urgent,
            "case": {"type": "complaint", "id": case_id},
        },
        event_id=event_id,
    )


def decision(
    type_: str,
    customer_id: str,
    *,
    return_id: str = "R1",
    rule: str = "window_expired",
    waiting_for: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "return_id": return_id,
        "order_id": "O1",
        "customer_id": customer_id,
        "kind": "refund",
        "rule": rule,
        "message": "您好，很抱歉，7天无理由退货期限已结束。您仍可以以质量问题为由申请售后。",
        "message_en": (
            "Hello, we are sorry: the 7-day period ended. You can still report a quality issue."
        ),
        "decided_at": T0.isoformat(),
    }
    if type_ == "return.approved":
        data.update(rule="eligible", return_shipping_payer="buyer", refund_estimate=9000)
    if waiting_for is not None:
        data["waiting_for"] = waiting_for
    return envelope(type_, data)


def refund(
    customer_id: str,
    case_type: str,
    case_id: str,
    amount: int,
    breakdown: list[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """A refund.issued of `amount`: a compensation, or `breakdown` (which sums to it); due a
    day after T0."""
    return events.refund_issued(
        uid("rf"),
        "O1",
        customer_id,
        (case_type, case_id),
        at=T0,
        breakdown=breakdown or [("compensation", amount)],
        due_by=T0 + timedelta(days=1),
        id=uid("evt"),
        platform="/test",
    )


def coupon(customer_id: str, complaint_id: str = "K1", value: int = 500) -> dict[str, Any]:
    return envelope(
        "coupon.granted",
        {
            "coupon_id": uid("CP"),
            "customer_id": customer_id,
            "order_id": "O1",
            "complaint_id": complaint_id,
            "value": value,
            "currency": "CNY",
            "expires_at": "2024-05-31T10:00:00+08:00",
            "reason": "logistics_delay",
            "granted_at": T0.isoformat(),
        },
    )
