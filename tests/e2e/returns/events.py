"""CloudEvents as the shop platform publishes them (SPEC section 2), for the broker tests."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from aftersales_dev import events

ENVELOPE: dict[str, Any] = {"source": "/shop-platform/e2e", "id_prefix": "e2e"}
BUYER = events.buyer("Han Meimei", "13700002222", "han.meimei@example.com")


def order_paid(
    order_id: str, *, at: datetime, quantity: int = 2, paid: int = 19900, customer_id: str = "C-e2e"
) -> dict[str, Any]:
    sweater = events.order_line(
        "L1",
        sku="SWEATER-M",
        title="Wool sweater",
        category="apparel",
        quantity=quantity,
        paid_amount=paid,
    )
    return events.order_paid(
        order_id,
        customer_id,
        at=at,
        lines=[sweater],
        customer=BUYER,
        shop_id="S-e2e",
        payments=[("alipay", paid - paid // 4), ("coupon", paid // 4)],
        **ENVELOPE,
    )


outbound_signed = partial(events.parcel_signed, **ENVELOPE)
return_signed = partial(events.parcel_signed, **ENVELOPE)


def return_requested(
    order_id: str, return_id: str, *, at: datetime, units: int = 1, customer_id: str = "C-e2e"
) -> dict[str, Any]:
    return events.return_requested(
        order_id,
        return_id,
        customer_id,
        at=at,
        lines={"L1": units},
        condition=["opened_for_inspection"],
        **ENVELOPE,
    )


def quality_claim(
    order_id: str, return_id: str, *, at: datetime, customer_id: str = "C-e2e"
) -> dict[str, Any]:
    """A seller-fault request with a photo: past the quality window it goes to manual review."""
    event = return_requested(order_id, return_id, at=at, customer_id=customer_id)
    event["data"].update(reason="quality_issue", evidence_urls=["https://img.example/1.jpg"])
    return event


return_reviewed = partial(
    events.return_reviewed, agent_id="agent-e2e", note="photos checked", **ENVELOPE
)
return_shipped = partial(events.return_shipped, fee=1200, **ENVELOPE)
