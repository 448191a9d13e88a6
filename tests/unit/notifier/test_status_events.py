"""The notifier's events on the wire: masked recipients only; the optional buyer language."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from aftersales_dev import events
from shared.contracts import (
    NotificationFailed,
    NotificationSent,
    dump_event,
    event_key,
    new_event,
    parse_event,
    topics,
)

NOW = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


def sent(**kw: object) -> NotificationSent:
    args: dict[str, object] = {
        "request_id": "N1",
        "customer_id": "C1",
        "template": "survey.invitation",
        "urgent": False,
        "channel": "email",
        "recipient": "z***@example.com",
        "language": "zh-CN",
        "attempts": 1,
        "sent_at": NOW,
    }
    args.update(kw)
    return NotificationSent(**args)  # type: ignore[arg-type]


def test_a_recipient_in_clear_is_refused() -> None:
    for clear in ("13812345678", "zhang@example.com"):
        with pytest.raises(ValidationError, match="masked recipient"):
            sent(recipient=clear)
    with pytest.raises(ValidationError):
        NotificationFailed(
            request_id="N1",
            customer_id="C1",
            template="t",
            urgent=False,
            reason="rejected",
            detail="x",
            recipient="13812345678",
            attempts=1,
            failed_at=NOW,
        )


def test_round_trip_and_key() -> None:
    without_order = new_event("notification.sent", sent(), id="e1", source="s", time=NOW)
    assert event_key(without_order) == "C1"  # about a buyer: keyed by customer_id
    with_order = new_event("notification.sent", sent(order_id="O1"), id="e2", source="s", time=NOW)
    assert event_key(with_order) == "O1"
    assert parse_event(dump_event(with_order)) == with_order
    assert topics.NOTIFICATION_STATUS in topics.OUTPUT_TOPICS


def order_paid(customer: dict[str, object]) -> bytes:
    line = events.order_line("L1", sku="S", title="T", category="c", paid_amount=100)
    at = datetime.fromisoformat("2024-05-01T10:00:00+08:00")
    paid = events.order_paid(
        "O1", "C1", at=at, lines=[line], customer=customer, shop_id="S1", standard_shipping_fee=0
    )
    return events.encode({**paid, "id": "e", "source": "s"})


@pytest.mark.parametrize(
    ("given", "kept"),
    [("en-GB", "en-GB"), (" zh-CN ", "zh-CN"), (42, None), ("", None), ("x" * 40, None)],
)
def test_the_buyer_language_is_optional_and_never_rejects_an_order(
    given: object, kept: str | None
) -> None:
    event = parse_event(
        order_paid({"phone": "13812345678", "preferred_channel": "sms", "language": given})
    )
    assert event.data.customer.language == kept  # type: ignore[attr-defined]
    absent = parse_event(order_paid({"phone": "13812345678", "preferred_channel": "sms"}))
    assert absent.data.customer.language is None  # type: ignore[attr-defined]
