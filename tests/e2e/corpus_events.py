"""The valid events of the bad-input corpus (`bad_inputs.py`), built by the shared builders
with the corpus's shop, buyer, source and ids: each hostile case changes one of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from aftersales_dev import events
from aftersales_dev.events import encode

__all__ = ["encode"]

PLATFORM = "/shop-platform/bad-input-corpus"
D = timedelta(days=1)


def event(type_: str, data: dict[str, Any], at: datetime, *, id: str) -> dict[str, Any]:
    return events.cloud_event(type_, data, at, id=id, platform=PLATFORM)


def escaped(value: dict[str, Any]) -> bytes:
    """JSON with every non-ASCII character escaped: how U+0000 and lone surrogates (`\\ud800`)
    travel, since a raw lone surrogate is not UTF-8."""
    return json.dumps(value, ensure_ascii=True).encode("ascii")


def order_paid(
    order_id: str,
    customer_id: str,
    *,
    at: datetime,
    titles: Sequence[str] = ("毛衣",),
    category: str = "apparel",
    paid: int = 5000,
    name: str = "李雷",
    channel: str = "webhook",
) -> dict[str, Any]:
    lines = [
        events.order_line(f"L{i}", sku=f"SKU-{i}", title=title, category=category, paid_amount=paid)
        for i, title in enumerate(titles, start=1)
    ]
    buyer = events.buyer(name, "13900001111", "corpus.buyer@example.com", channel)
    return events.order_paid(
        order_id,
        customer_id,
        at=at,
        lines=lines,
        customer=buyer,
        shop_id="S-corpus",
        id=f"{order_id}-paid",
        platform=PLATFORM,
    )


def order_shipped(order_id: str, *, at: datetime) -> dict[str, Any]:
    return events.order_shipped(
        order_id, at=at, tracking_no="SF1", id=f"{order_id}-shipped", platform=PLATFORM
    )


def parcel_signed(
    order_id: str, *, at: datetime, return_id: str | None = None, id: str | None = None
) -> dict[str, Any]:
    leg = "return" if return_id else "outbound"
    return events.parcel_signed(
        order_id,
        at=at,
        return_id=return_id or None,
        tracking_no="YT1" if return_id else "SF1",
        id=id or f"{order_id}-{leg}-signed",
        platform=PLATFORM,
    )


def return_requested(
    order_id: str,
    return_id: str,
    customer_id: str,
    *,
    at: datetime,
    reason: str = "no_reason",
    evidence: Sequence[str] = (),
) -> dict[str, Any]:
    return events.return_requested(
        order_id,
        return_id,
        customer_id,
        at=at,
        lines={"L1": 1},
        reason=reason,
        evidence_urls=evidence,
        id=f"{return_id}-requested",
        platform=PLATFORM,
    )


def return_reviewed(order_id: str, return_id: str, *, at: datetime, note: str) -> dict[str, Any]:
    return events.return_reviewed(
        order_id,
        return_id,
        at=at,
        agent_id="agent-corpus",
        note=note,
        id=f"{return_id}-reviewed",
        platform=PLATFORM,
    )


def return_shipped(order_id: str, return_id: str, *, at: datetime, fee: int) -> dict[str, Any]:
    return events.return_shipped(
        order_id,
        return_id,
        at=at,
        fee=fee,
        tracking_no="YT1",
        id=f"{return_id}-shipped",
        platform=PLATFORM,
    )


def complaint_opened(
    order_id: str, complaint_id: str, customer_id: str, *, at: datetime, description: str
) -> dict[str, Any]:
    return events.complaint_opened(
        complaint_id,
        order_id,
        customer_id,
        at=at,
        category="service_attitude",
        description=description,
        id=f"{order_id}-complaint-opened",
        platform=PLATFORM,
    )


def complaint_resolved(order_id: str, complaint_id: str, *, at: datetime) -> dict[str, Any]:
    return events.complaint_resolved(
        complaint_id,
        order_id,
        at=at,
        agent_id="agent-corpus",
        id=f"{order_id}-complaint-resolved",
        platform=PLATFORM,
    )


def survey_answered(
    callback_id: str, customer_id: str, *, at: datetime, comment: str
) -> dict[str, Any]:
    return events.survey_answered(
        callback_id,
        customer_id,
        at=at,
        score=4,
        comment=comment,
        id=f"{callback_id}-answered",
        platform=PLATFORM,
    )


def notification_requested(
    request_id: str, customer_id: str, order_id: str, *, at: datetime, template: str, params: Any
) -> dict[str, Any]:
    return event(
        "notification.requested",
        {
            "request_id": request_id,
            "customer_id": customer_id,
            "order_id": order_id,
            "template": template,
            "params": params,
            "urgent": True,  # at any hour, outside any daily cap
        },
        at,
        id=f"{request_id}-requested",
    )


def refund_issued(k: str, at: datetime) -> dict[str, Any]:
    """A well-formed refund.issued (from a service's source), as if forged onto another topic."""
    return events.refund_issued(
        f"{k}-rf",
        k,
        k,
        ("return", f"{k}-r"),
        at=at,
        breakdown=[("goods", 500000)],
        due_by=at + D,
        return_shipping_payer="buyer",
        id=f"{k}-evt",
        platform=PLATFORM,
    )
