"""CloudEvents as the shop platform publishes them (SPEC section 2), for the fault run and the
benchmark. Plain dicts, encoded the way a producer outside this project would."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.contracts import topics

SOURCE = "/shop-platform/faults"


def cloudevent(type_: str, data: dict[str, Any], at: datetime, *, id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": id,
        "source": SOURCE,
        "type": type_,
        "time": at.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def line(
    line_id: str, *, category: str, quantity: int, paid_amount: int, title: str = "Item"
) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "sku": f"SKU-{category}-{line_id}",
        "title": title,
        "category": category,
        "quantity": quantity,
        "paid_amount": paid_amount,
    }


def payments(total: int) -> list[dict[str, Any]]:
    """Two methods, 3/4 and the rest, summing to `total` (what SPEC 2 requires)."""
    card = total * 3 // 4
    return [{"method": "alipay", "amount": card}, {"method": "coupon", "amount": total - card}]


def order_paid(
    order_id: str,
    customer_id: str,
    *,
    id: str,
    at: datetime,
    lines: Sequence[Mapping[str, Any]],
    shipping_fee_paid: int = 0,
) -> dict[str, Any]:
    goods = sum(int(item["paid_amount"]) for item in lines)
    return cloudevent(
        "order.paid",
        {
            "order_id": order_id,
            "shop_id": "S-faults",
            "customer_id": customer_id,
            "paid_at": at.isoformat(),
            "currency": "CNY",
            "lines": [dict(item) for item in lines],
            "shipping_fee_paid": shipping_fee_paid,
            "standard_shipping_fee": 1000,
            "free_shipping_threshold": None,
            "shipping_insurance": False,
            "presale_ship_by": None,
            "payments": payments(goods + shipping_fee_paid),
            "customer": {
                "name": "Han Meimei",
                "phone": "13700002222",
                "email": "han.meimei@example.com",
                "preferred_channel": "sms",
            },
        },
        at,
        id=id,
    )


def order_shipped(order_id: str, *, id: str, at: datetime) -> dict[str, Any]:
    data = {"order_id": order_id, "shipped_at": at.isoformat(), "carrier": "SF"}
    return cloudevent("order.shipped", {**data, "tracking_no": f"SF-{order_id}"}, at, id=id)


def outbound_signed(order_id: str, *, id: str, at: datetime) -> dict[str, Any]:
    data = {"order_id": order_id, "leg": "outbound", "tracking_no": f"SF-{order_id}"}
    return cloudevent("parcel.signed", {**data, "signed_at": at.isoformat()}, at, id=id)


def return_signed(order_id: str, return_id: str, *, id: str, at: datetime) -> dict[str, Any]:
    data = {
        "order_id": order_id,
        "leg": "return",
        "return_id": return_id,
        "tracking_no": f"YT-{return_id}",
        "signed_at": at.isoformat(),
    }
    return cloudevent("parcel.signed", data, at, id=id)


def return_requested(
    order_id: str,
    return_id: str,
    customer_id: str,
    *,
    id: str,
    at: datetime,
    lines: Mapping[str, int],
    reason: str = "size_fit",
    condition: Iterable[str] = ("opened_for_inspection",),
    evidence_urls: Iterable[str] = (),
) -> dict[str, Any]:
    return cloudevent(
        "return.requested",
        {
            "return_id": return_id,
            "order_id": order_id,
            "customer_id": customer_id,
            "kind": "refund",
            "reason": reason,
            "lines": [{"line_id": k, "quantity": q} for k, q in lines.items()],
            "condition": list(condition),
            "evidence_urls": list(evidence_urls),
            "requested_at": at.isoformat(),
        },
        at,
        id=id,
    )


def return_shipped(
    order_id: str, return_id: str, *, id: str, at: datetime, fee: int
) -> dict[str, Any]:
    data = {
        "return_id": return_id,
        "order_id": order_id,
        "carrier": "YTO",
        "tracking_no": f"YT-{return_id}",
        "shipped_at": at.isoformat(),
        "shipping_fee_paid": fee,
    }
    return cloudevent("return.shipped", data, at, id=id)


def return_inspected(
    order_id: str,
    return_id: str,
    *,
    id: str,
    at: datetime,
    passed: bool,
    findings: Iterable[str] = (),
) -> dict[str, Any]:
    data = {
        "return_id": return_id,
        "order_id": order_id,
        "passed": passed,
        "findings": list(findings),
        "inspected_at": at.isoformat(),
    }
    return cloudevent("return.inspected", data, at, id=id)


def complaint_opened(
    complaint_id: str, order_id: str, customer_id: str, category: str, *, id: str, at: datetime
) -> dict[str, Any]:
    data = {
        "complaint_id": complaint_id,
        "order_id": order_id,
        "customer_id": customer_id,
        "category": category,
        "description": "the parcel was late",
        "opened_at": at.isoformat(),
    }
    return cloudevent("complaint.opened", data, at, id=id)


def complaint_responded(
    complaint_id: str, order_id: str, *, id: str, at: datetime
) -> dict[str, Any]:
    data = {"complaint_id": complaint_id, "order_id": order_id, "agent_id": "agent-7"}
    return cloudevent("complaint.responded", {**data, "responded_at": at.isoformat()}, at, id=id)


def complaint_resolved(
    complaint_id: str,
    order_id: str,
    *,
    id: str,
    at: datetime,
    outcome: str = "upheld",
    remedy: str = "none",
) -> dict[str, Any]:
    data = {
        "complaint_id": complaint_id,
        "order_id": order_id,
        "outcome": outcome,
        "remedy": remedy,
        "agent_id": "agent-7",
        "resolved_at": at.isoformat(),
    }
    return cloudevent("complaint.resolved", data, at, id=id)


_TOPIC_OF = {
    "order": topics.ORDERS,
    "parcel": topics.SIGNATURES,
    "return": topics.RETURNS,
    "complaint": topics.COMPLAINTS,
}


def topic_of(event: Mapping[str, Any]) -> str:
    return _TOPIC_OF[str(event["type"]).split(".")[0]]


def key_of(event: Mapping[str, Any]) -> str:
    return str(event["data"]["order_id"])


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
