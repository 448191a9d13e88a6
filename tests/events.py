"""The one CloudEvent builder of the test suites: the envelope every test event has, unique ids,
the `source` a type needs on this system's own topics, and the topic each type travels on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.contracts.events import (
    OUTPUTS,
    PLATFORM_TOPIC_TYPES,
    SERVICE_TOPIC_TYPES,
    service_source,
)

# The topic of every type (SPEC section 1): the platform's inputs and this system's outputs.
TOPIC_OF: dict[str, str] = {
    **{type_: topic for topic, types in PLATFORM_TOPIC_TYPES.items() for type_ in types},
    **{type_: output.topic for type_, output in OUTPUTS.items()},
}


def topic_of(event: Mapping[str, Any]) -> str:
    return TOPIC_OF[str(event["type"])]


def encode(event: Mapping[str, Any]) -> bytes:
    """A record's value as a producer writes it: UTF-8 JSON."""
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def source_for(event_type: str, platform: str) -> str:
    """A publishing service's source for an internal type, else `platform` (the shop's): on
    this system's own topics only the services that publish a type may send it."""
    for published in SERVICE_TOPIC_TYPES.values():
        if event_type in published:
            return service_source(min(published[event_type]))
    return platform


def cloud_event(
    type_: str,
    data: dict[str, Any],
    at: datetime | str,
    *,
    id: str | None = None,
    source: str | None = None,
    platform: str = "/shop-platform/test",
    id_prefix: str = "evt",
) -> dict[str, Any]:
    """A structured-mode CloudEvent as the platform (or, for an internal type, the service that
    publishes it) sends it; `source` given as is, e.g. to test a wrong one."""
    return {
        "specversion": "1.0",
        "id": id or unique(f"{id_prefix}-{type_}"),
        "source": source if source is not None else source_for(type_, platform),
        "type": type_,
        "time": at if isinstance(at, str) else at.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def kettle_order(
    order_id: str,
    customer_id: str,
    customer: Mapping[str, Any],
    *,
    paid_at: str,
    amount: int = 10000,
    shop_id: str = "S1",
    line_id: str = "L1",
    sku: str = "SKU1",
    category: str = "appliances",
) -> dict[str, Any]:
    """The data of an order.paid of one kettle paid with Alipay, shipped free (standard fee
    10.00), for `customer` (name, phone, e-mail, preferred channel)."""
    return {
        "order_id": order_id,
        "shop_id": shop_id,
        "customer_id": customer_id,
        "paid_at": paid_at,
        "currency": "CNY",
        "lines": [
            {
                "line_id": line_id,
                "sku": sku,
                "title": "Kettle",
                "category": category,
                "quantity": 1,
                "paid_amount": amount,
            }
        ],
        "shipping_fee_paid": 0,
        "standard_shipping_fee": 1000,
        "free_shipping_threshold": None,
        "shipping_insurance": False,
        "presale_ship_by": None,
        "payments": [{"method": "alipay", "amount": amount}],
        "customer": dict(customer),
    }
