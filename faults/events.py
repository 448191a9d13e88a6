"""The fault run's CloudEvents: the shared builders (aftersales_dev.events) with this run's
shop, buyer and source, encoded compactly the way a producer outside this project would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from aftersales_dev import events
from aftersales_dev.events import topic_of

__all__ = ["topic_of"]

SOURCE = "/shop-platform/faults"
BUYER = events.buyer("Han Meimei", "13700002222", "han.meimei@example.com")


def cloudevent(type_: str, data: dict[str, Any], at: datetime, *, id: str) -> dict[str, Any]:
    return events.cloud_event(type_, data, at, id=id, source=SOURCE)


def line(
    line_id: str, *, category: str, quantity: int, paid_amount: int, title: str = "Item"
) -> dict[str, Any]:
    sku = f"SKU-{category}-{line_id}"
    return events.order_line(
        line_id, sku=sku, title=title, category=category, quantity=quantity, paid_amount=paid_amount
    )


def payments(total: int) -> list[tuple[str, int]]:
    """Two methods, 3/4 and the rest, summing to `total` (what SPEC 2 requires)."""
    card = total * 3 // 4
    return [("alipay", card), ("coupon", total - card)]


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
    return events.order_paid(
        order_id,
        customer_id,
        at=at,
        lines=lines,
        customer=BUYER,
        shop_id="S-faults",
        payments=payments(goods + shipping_fee_paid),
        shipping_fee_paid=shipping_fee_paid,
        id=id,
        source=SOURCE,
    )


order_shipped = partial(events.order_shipped, source=SOURCE)
outbound_signed = partial(events.parcel_signed, source=SOURCE)
return_signed = partial(events.parcel_signed, source=SOURCE)
return_requested = partial(
    events.return_requested, condition=("opened_for_inspection",), source=SOURCE
)
return_shipped = partial(events.return_shipped, source=SOURCE)
return_inspected = partial(events.return_inspected, source=SOURCE)
complaint_opened = partial(
    events.complaint_opened, description="the parcel was late", source=SOURCE
)
complaint_responded = partial(events.complaint_responded, source=SOURCE)
complaint_resolved = partial(events.complaint_resolved, source=SOURCE)


def key_of(event: Mapping[str, Any]) -> str:
    return str(event["data"]["order_id"])


def encode(event: Mapping[str, Any]) -> bytes:
    return events.encode(event, compact=True)
