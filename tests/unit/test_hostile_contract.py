"""Hostile content the contract refuses before any of it reaches the database: U+0000 and
unpaired surrogates in any text, timestamps (and the deadlines derived from them) outside what
Python and PostgreSQL store, types on a topic they do not belong to, bad keys, absurd sizes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersales.registry import SERVICES, definition
from shared.clock import SystemClock
from shared.contracts import InvalidEvent, parse_event, topics
from shared.contracts.envelope import DEAD_LETTER_REASONS, MAX_KEY_CHARS
from shared.contracts.events import (
    PLATFORM_TOPIC_TYPES,
    SERVICE_TOPIC_TYPES,
    service_source,
)
from shared.contracts.primitives import MAX_TIMESTAMP, MIN_TIMESTAMP
from shared.policy import ComplaintsPolicy, FollowupPolicy, NotifierPolicy, Policy, ReturnsPolicy
from shared.settings import Settings

from .contract_examples import T0, VALID_INPUTS, envelope, order_paid_data


def raw(obj: Any) -> bytes:
    # ensure_ascii=True: NUL and lone surrogates go over the wire as JSON escapes, the form a
    # producer can actually send (a raw lone surrogate is not UTF-8).
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


def reason_of(value: bytes, **kw: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_event(value, **kw)
    return info.value.reason


def order(**data: Any) -> dict[str, Any]:
    return envelope("order.paid", order_paid_data() | data)


# --- text PostgreSQL cannot store ---------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(envelope("order.paid", order_paid_data(), id="evt\x00-1"), id="nul-in-id"),
        pytest.param(order(shop_id="S\x001"), id="nul-in-data"),
        pytest.param(order(lines=[order_paid_data()["lines"][0] | {"title": "a\x00"}]), id="deep"),
        pytest.param(envelope("order.paid", order_paid_data(), source="/x\ud800"), id="surrogate"),
        pytest.param(order(customer=order_paid_data()["customer"] | {"name": "\udfff"}), id="low"),
        pytest.param(order(extra={"\x00": 1}), id="nul-in-an-ignored-key"),
    ],
)
def test_nul_and_lone_surrogates_anywhere_are_invalid_text(event: dict[str, Any]) -> None:
    assert reason_of(raw(event)) == "invalid_text"


def test_the_detail_names_the_field_not_the_value() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw(order(shop_id="secret\x00")))
    assert info.value.detail.startswith("data.shop_id:") and "secret" not in info.value.detail


def test_escapes_that_are_text_are_accepted() -> None:
    # A paired surrogate escape is one character (an emoji); an escaped backslash before
    # "u0000" is the six characters \u0000, not U+0000.
    event = parse_event(raw(order(shop_id="S-\U0001f600-\\u0000")))
    assert event.data.shop_id == "S-\U0001f600-\\u0000"  # type: ignore[attr-defined]


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40))
def test_any_storable_text_passes(text: str) -> None:
    event = parse_event(raw(order(shop_id=text or "S")))
    assert event.data.shop_id == (text or "S")  # type: ignore[attr-defined]


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",  # cannot even be turned into UTC
        "1969-12-31T23:59:59Z",
        "1970-01-01T05:00:00+08:00",  # 1969 in UTC
        "9000-01-01T00:00:00Z",
        "9999-12-31T20:00:00-12:00",  # 10000 in UTC: beyond Python's datetime
        "9999-12-31T23:59:59Z",
    ],
)
def test_timestamps_outside_the_window_are_out_of_range(stamp: str) -> None:
    in_data = envelope("order.cancelled", {"order_id": "O", "cancelled_at": stamp})
    assert reason_of(raw(in_data)) == "timestamp_out_of_range"
    in_envelope = envelope("order.cancelled", {"order_id": "O", "cancelled_at": T0}, time=stamp)
    assert reason_of(raw(in_envelope)) == "timestamp_out_of_range"


def test_the_window_edges_are_accepted() -> None:
    for stamp in ("1970-01-01T00:00:00Z", "8999-12-31T23:59:59.999999Z"):
        data = {"order_id": "O", "cancelled_at": stamp}
        assert parse_event(raw(envelope("order.cancelled", data))).data.cancelled_at == (  # type: ignore[attr-defined]
            datetime.fromisoformat(stamp)
        )


def longest_policy_duration() -> timedelta:
    """The largest value the policy allows for any of its durations (`*_days`, `*_hours`)."""
    longest = timedelta()
    for section in (ReturnsPolicy, ComplaintsPolicy, FollowupPolicy, NotifierPolicy):
        for name, field in section.model_fields.items():
            highs = [m.le for m in field.metadata if getattr(m, "le", None) is not None]
            if not highs:
                continue
            if name.endswith("_days"):
                longest = max(longest, timedelta(days=highs[0]))
            elif name.endswith("_hours"):
                longest = max(longest, timedelta(hours=highs[0]))
    return longest


def test_every_deadline_the_policy_allows_fits_in_python_and_postgresql() -> None:
    # A working-hours deadline stretches its hours over nights and weekends (9 of 24 hours,
    # 5 of 7 days): under four times its length; five leaves room for holidays.
    longest = longest_policy_duration() * 5
    assert longest >= timedelta(days=30)  # the durations were found
    latest = MAX_TIMESTAMP - timedelta(microseconds=1)
    assert (latest + longest).astimezone(timezone(timedelta(hours=-23, minutes=-59))).year < 9999
    assert (MIN_TIMESTAMP - longest).astimezone(timezone(timedelta(hours=23))).year > 1


def test_a_datetime_built_in_code_is_checked_too() -> None:
    from shared.contracts import OrderCancelled

    far = datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-12)))
    with pytest.raises(ValueError, match="1970-01-01 and 9000-01-01"):
        OrderCancelled(order_id="O", cancelled_at=far)


# --- types bound to topics ------------------------------------------------------------------


def internal(event_type: str, data: dict[str, Any], source: str) -> bytes:
    return raw(envelope(event_type, data, source=source))


REFUND = {
    "refund_id": "rf-1",
    "order_id": "O1",
    "customer_id": "C1",
    "case": {"type": "return", "id": "R1"},
    "amount": 1000,
    "currency": "CNY",
    "breakdown": [{"kind": "goods", "amount": 1000}],
    "payments": [{"method": "alipay", "amount": 1000}],
    "return_shipping_payer": "buyer",
    "due_by": "2024-05-02T10:00:00+08:00",
    "issued_at": "2024-05-01T10:00:00+08:00",
}
NOTIFICATION = {
    "request_id": "n-1",
    "customer_id": "C1",
    "order_id": "O1",
    "template": "complaint.escalated",
    "urgent": True,
}


@pytest.mark.parametrize(
    ("event_type", "data"),
    [("refund.issued", REFUND), ("notification.requested", NOTIFICATION)],
)
@pytest.mark.parametrize("topic", topics.INPUT_TOPICS)
def test_an_internal_type_on_a_platform_topic_is_unexpected(
    topic: str, event_type: str, data: dict[str, Any]
) -> None:
    value = internal(event_type, data, service_source("returns"))
    assert reason_of(value, topic=topic) == "unexpected_type"
    parse_event(value)  # the event itself is valid


def test_a_platform_type_on_another_platform_topic_is_unexpected() -> None:
    value = raw(envelope("order.paid", order_paid_data()))
    parse_event(value, topic=topics.ORDERS)
    assert reason_of(value, topic=topics.RETURNS) == "unexpected_type"


def test_internal_topics_take_their_types_from_their_publishers_only() -> None:
    on_refunds = internal("refund.issued", REFUND, service_source("refunds"))
    parse_event(on_refunds, topic=topics.REFUNDS)
    # Returns and complaints ask the ledger; they never pay out themselves (SPEC 4.11).
    from_returns = internal("refund.issued", REFUND, service_source("returns"))
    assert reason_of(from_returns, topic=topics.REFUNDS) == "unexpected_type"
    forged = internal("refund.issued", REFUND, "/shop-platform/anyone")
    assert reason_of(forged, topic=topics.REFUNDS) == "unexpected_type"
    wrong_publisher = internal("refund.issued", REFUND, service_source("notifier"))
    assert reason_of(wrong_publisher, topic=topics.REFUNDS) == "unexpected_type"
    misplaced = internal("notification.requested", NOTIFICATION, service_source("complaints"))
    assert reason_of(misplaced, topic=topics.REFUNDS) == "unexpected_type"
    parse_event(misplaced, topic=topics.NOTIFICATIONS)


def test_the_binding_matches_what_the_services_publish_and_read() -> None:
    declared: set[tuple[str, str, str]] = set()  # (topic, type, service)
    for name in SERVICES:
        d = definition(name, Policy(), SystemClock(), Settings(aftersales_dev_mode=True))
        declared |= {(topic, t, name) for topic, types in d.publishes.items() for t in types}
        for topic in d.topics:  # every topic a service reads is bound
            assert topic in PLATFORM_TOPIC_TYPES or topic in SERVICE_TOPIC_TYPES, topic
    bound = {
        (topic, event_type, service)
        for topic, types in SERVICE_TOPIC_TYPES.items()
        for event_type, services in types.items()
        for service in services
    }
    assert declared <= bound
    assert {s for (topic, _, s) in bound if topic == topics.REFUNDS} == {"refunds"}
    # Bound ahead of its publishers: the requests to the refund ledger (SPEC 4.11).
    ahead = {(topic, event_type) for topic, event_type, _ in bound - declared}
    assert ahead <= {(topics.REFUND_REQUESTS, "refund.requested")}
    assert set(PLATFORM_TOPIC_TYPES) == set(topics.INPUT_TOPICS)


def test_every_valid_input_belongs_on_one_platform_topic() -> None:
    for event_type, data in VALID_INPUTS.items():
        [home] = [t for t, types in PLATFORM_TOPIC_TYPES.items() if event_type in types]
        parse_event(raw(envelope(event_type, data)), topic=home)


# --- keys and sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (b"O1\x00", "invalid_text"),
        (b"\xff\xfeO1", "invalid_key"),
        (b"O" * (MAX_KEY_CHARS + 1), "invalid_key"),
    ],
)
def test_bad_keys(key: bytes, reason: str) -> None:
    value = raw(envelope("order.paid", order_paid_data()))
    assert reason_of(value, key=key) == reason
    parse_event(value, key=b"O1")


def test_absurd_quantities_and_line_counts_are_invalid_data() -> None:
    line = order_paid_data()["lines"][0]
    assert reason_of(raw(order(lines=[line | {"quantity": 10**9}]))) == "invalid_data"
    many = [line | {"line_id": f"L{i}", "paid_amount": 0} for i in range(1001)]
    assert (
        reason_of(raw(order(lines=many, payments=[{"method": "a", "amount": 1000}])))
        == "invalid_data"
    )


def test_the_new_reasons_are_listed() -> None:
    for reason in (
        "invalid_text",
        "invalid_key",
        "timestamp_out_of_range",
        "unexpected_type",
        "storage_refused",
        "batch_refused",
    ):
        assert reason in DEAD_LETTER_REASONS


@pytest.mark.parametrize("source", [["/aftersales/refunds"], {"a": 1}, 7, True])
def test_a_source_that_is_not_text_on_an_internal_topic_is_unexpected(source: Any) -> None:
    # Not a crash of the parse (which would fail the whole batch again and again): a letter.
    value = raw(envelope("refund.issued", REFUND, source=source))
    assert reason_of(value, topic=topics.REFUNDS) == "unexpected_type"
