"""The returns view of an order (`order_from_event`, `Order.with_outbound_signature`): a
signature changes nothing but the signature."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aftersales_dev import events
from services.returns.handlers import order_from_event
from shared.contracts import OrderPaid, parse_event

PAID = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
EAST8 = timezone(timedelta(hours=8))
BUYER = events.buyer("Li Lei", "13900001111", "li.lei@example.com")


def paid(**order: object) -> OrderPaid:
    lines = [
        {"line_id": "L1", "sku": "S1", "title": "Coat", "category": "apparel", "quantity": 2,
         "paid_amount": 19900},
        {"line_id": "L2", "sku": "S2", "title": "Cake", "category": "fresh_perishable",
         "quantity": 1, "paid_amount": 5000, "no_reason_return_waived": True},
        {"line_id": "G1", "sku": "S3", "title": "Gift", "category": "toys", "quantity": 1,
         "paid_amount": 0, "is_gift": True, "stated_price": 1500},
    ]  # fmt: skip
    event = events.order_paid(
        "O-1",
        "C-1",
        at=PAID,
        lines=lines,
        customer=BUYER,
        shop_id="S-1",
        **order,  # type: ignore[arg-type]
    )
    data = parse_event(json.dumps(event).encode()).data
    assert isinstance(data, OrderPaid)
    return data


def test_a_signature_changes_only_the_signature_and_the_first_counts() -> None:
    order = order_from_event(paid(shipping_fee_paid=800), None)
    at = (PAID + timedelta(days=1)).astimezone(EAST8)
    signed = order.with_outbound_signature(at)
    assert signed == replace(order, outbound_signed_at=at)
    assert signed.outbound_signed_at is at and order.outbound_signed_at is None
    assert signed.with_outbound_signature(at + timedelta(hours=1)) is signed
    with pytest.raises(ValueError):
        order.with_outbound_signature(datetime(2026, 3, 3))
