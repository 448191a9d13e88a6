"""The event contract's inputs: what parses, what is rejected and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import (
    EVENT_TYPES,
    INTACT_CONDITIONS,
    NO_REASON_REASONS,
    SELLER_FAULT_REASONS,
    InvalidEvent,
    OrderCancelled,
    OrderPaid,
    ParcelSigned,
    ReturnRequested,
    parse_event,
)
from tests.unit.contract_examples import (
    T0,
    VALID_INPUTS,
    cancelled,
    encode,
    envelope,
    order_paid_data,
    order_with,
    reject,
)

# --- inputs that parse ----------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(VALID_INPUTS))
def test_valid_input_parses_into_its_model(event_type: str) -> None:
    event = parse_event(encode(envelope(event_type, VALID_INPUTS[event_type])))
    assert event.type == event_type
    assert type(event.data) is EVENT_TYPES[event_type]
    assert event.time == datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


def test_order_paid_fields_and_defaults() -> None:
    data = parse_event(encode(envelope("order.paid", order_paid_data()))).data
    assert isinstance(data, OrderPaid)
    assert data.goods_total == 9000
    assert data.lines[0].is_gift is False and data.lines[0].stated_price == 0
    assert data.lines[1].is_gift is True and data.lines[1].stated_price == 500
    assert data.paid_at.utcoffset() == timedelta(hours=8)
    line = data.line("L2")
    assert line is not None and line.title == "Sticker"


def test_every_input_and_output_type_is_registered() -> None:
    outputs = {
        "refund.issued",
        "coupon.granted",
        "return.approved",
        "return.rejected",
        "return.pending",
        "return.completed",
        "reshipment.requested",
        "sla.breached",
        "callback.scheduled",
        "callback.sent",
        "satisfaction.recorded",
        "satisfaction.low",
        "notification.requested",
        "event.deadlettered",
        "notification.sent",
        "notification.failed",
        "complaint.escalated",
        "case.escalated",
        "compensation.pending",
        "refund.requested",
    }
    assert set(VALID_INPUTS) | outputs == set(EVENT_TYPES)


def test_unknown_fields_are_ignored_everywhere() -> None:
    data = order_paid_data()
    data["coupon_code"] = "SPRING"
    data["lines"][0]["color"] = "red"
    data["customer"]["wechat"] = "zs"
    obj = envelope("order.paid", data, traceparent="00-abc", partitionkey="x")
    event = parse_event(encode(obj))
    assert isinstance(event.data, OrderPaid)


def test_return_leg_signature_with_return_id_parses() -> None:
    data = dict(VALID_INPUTS["parcel.signed"], leg="return", return_id="R1")
    signed = parse_event(encode(envelope("parcel.signed", data))).data
    assert isinstance(signed, ParcelSigned) and signed.return_id == "R1"


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-05-01T02:00:00Z",
        "2024-05-01t02:00:00z",
        "2024-05-01 10:00:00+08:00",
        "2024-05-01T02:00:00.123456789Z",
        "2024-04-30T21:00:00-05:00",
    ],
)
def test_rfc3339_forms_parse(stamp: str) -> None:
    data = parse_event(encode(cancelled(stamp))).data
    assert isinstance(data, OrderCancelled)
    assert data.cancelled_at.replace(microsecond=0) == datetime(2024, 5, 1, 2, tzinfo=UTC)


def test_helper_sets() -> None:
    assert {"no_reason", "dislike", "size_fit", "changed_mind"} == NO_REASON_REASONS
    assert {
        "quality_issue",
        "damaged_in_transit",
        "wrong_item",
        "missing_parts",
        "not_as_described",
    } == SELLER_FAULT_REASONS
    assert {"opened_for_inspection", "trial_use"} == INTACT_CONDITIONS
    request = parse_event(encode(envelope("return.requested", VALID_INPUTS["return.requested"])))
    assert isinstance(request.data, ReturnRequested) and request.data.is_no_reason


# --- rejections -----------------------------------------------------------------------------


def test_empty_value_is_rejected() -> None:
    with pytest.raises(InvalidEvent) as none:
        parse_event(None)
    assert none.value.reason == "empty"
    assert reject(b"").reason == "empty"


def test_oversized_is_rejected_before_parsing() -> None:
    big = b"{" + b" " * (256 * 1024) + b"}"
    err = reject(big)
    assert err.reason == "oversized"
    assert "262144" in err.detail


def test_size_limit_is_inclusive() -> None:
    raw = encode(cancelled())
    assert parse_event(raw, max_bytes=len(raw)).id == "evt-order.cancelled"
    with pytest.raises(InvalidEvent, match="oversized"):
        parse_event(raw, max_bytes=len(raw) - 1)


def test_invalid_utf8() -> None:
    assert reject(b'{"id": "\xff\xfe"}').reason == "invalid_utf8"


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"a": 1,}', b'{"a": NaN}', b'{"id": "a", "id": "b"}', b"[" * 100_000],
)
def test_malformed_json(raw: bytes) -> None:
    assert reject(raw).reason == "malformed_json"


@pytest.mark.parametrize("raw", [b"[]", b'"order.paid"', b"42", b"null"])
def test_not_an_object(raw: bytes) -> None:
    assert reject(raw).reason == "not_an_object"


@pytest.mark.parametrize("attr", ["specversion", "id", "source", "type", "time", "data"])
def test_missing_attribute(attr: str) -> None:
    obj = cancelled()
    del obj[attr]
    err = reject(obj)
    assert err.reason == "missing_attribute"
    assert attr in err.detail


def test_unsupported_specversion() -> None:
    obj = cancelled(specversion="0.3")
    assert reject(obj).reason == "unsupported_specversion"


def test_unknown_type() -> None:
    err = reject(envelope("order.teleported", {"order_id": "O1"}))
    assert err.reason == "unknown_type"
    assert err.event_type == "order.teleported"
    assert err.event_id == "evt-order.teleported"


def test_naive_timestamp_in_data() -> None:
    err = reject(order_with(lambda d: d.update(paid_at="2024-05-01T10:00:00")))
    assert err.reason == "naive_timestamp"
    assert err.detail.startswith("data.paid_at:")


def test_naive_timestamp_in_envelope() -> None:
    obj = cancelled(T0, time="2024-05-01T10:00:00")
    err = reject(obj)
    assert err.reason == "naive_timestamp"
    assert err.detail.startswith("time:")


@pytest.mark.parametrize("stamp", ["2024-05-01", "1714528800", "2024-13-01T00:00:00Z", "soon"])
def test_malformed_timestamp_is_invalid_data(stamp: str) -> None:
    err = reject(cancelled(stamp))
    assert err.reason == "invalid_data"
    assert err.detail.startswith("data.cancelled_at:")


def test_timestamp_as_number_is_invalid_data() -> None:
    err = reject(cancelled(1714528800))
    assert err.reason == "invalid_data"


def test_negative_amount_names_the_field() -> None:
    err = reject(order_with(lambda d: d["lines"][0].update(paid_amount=-1)))
    assert err.reason == "negative_amount"
    assert err.detail == "data.lines[0].paid_amount: must not be negative"
    assert str(err) == "negative_amount: data.lines[0].paid_amount: must not be negative"


@given(amount=st.integers(max_value=-1))
def test_any_negative_amount_is_rejected(amount: int) -> None:
    data = dict(VALID_INPUTS["return.shipped"], shipping_fee_paid=amount)
    assert reject(envelope("return.shipped", data)).reason == "negative_amount"


@given(amount=st.integers(min_value=0, max_value=10**12 - 1000))
def test_any_sane_amount_is_accepted(amount: int) -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["lines"][0]["paid_amount"] = amount
        d["payments"] = [{"method": "alipay", "amount": amount + d["shipping_fee_paid"]}]

    assert isinstance(parse_event(encode(order_with(mutate))).data, OrderPaid)


def test_absurd_amount() -> None:
    err = reject(order_with(lambda d: d.update(standard_shipping_fee=10**12 + 1)))
    assert err.reason == "absurd_amount"


def test_float_amount_is_rejected_even_when_whole() -> None:
    err = reject(order_with(lambda d: d["lines"][0].update(paid_amount=9000.0)))
    assert err.reason == "invalid_data"
    assert "data.lines[0].paid_amount" in err.detail and "decimal" in err.detail


def test_string_amount_is_not_coerced() -> None:
    err = reject(order_with(lambda d: d["lines"][0].update(paid_amount="9000")))
    assert err.reason == "invalid_data"
    assert "data.lines[0].paid_amount: must be a JSON integer, not a string" in err.detail


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d.update(shipping_insurance=1), "data.shipping_insurance"),
        (lambda d: d["lines"][0].update(quantity="2"), "data.lines[0].quantity"),
        (lambda d: d["lines"][0].update(quantity=0), "data.lines[0].quantity"),
        (lambda d: d["lines"][0].update(line_id=7), "data.lines[0].line_id"),
        (lambda d: d.update(currency="cny"), "data.currency"),
        (lambda d: d.update(currency="CNYX"), "data.currency"),
        (lambda d: d.update(lines=[]), "data.lines"),
        (lambda d: d["customer"].update(preferred_channel="pigeon"), "preferred_channel"),
        (lambda d: d["lines"][1].update(paid_amount=100), "data.lines[1].paid_amount"),
        (lambda d: d["lines"][1].update(line_id="L1"), "data.lines"),
    ],
)
def test_strict_types_and_constraints(mutate: Any, path: str) -> None:
    err = reject(order_with(mutate))
    assert err.reason == "invalid_data"
    assert path in err.detail


def test_missing_data_field() -> None:
    err = reject(order_with(lambda d: d.pop("currency")))
    assert err.reason == "invalid_data"
    assert err.detail == "data.currency: is required"


def test_data_must_be_an_object() -> None:
    err = reject(envelope("order.cancelled", ["O1"]))
    assert err.reason == "invalid_data"
    assert err.detail == "data: must be a JSON object"


def test_payments_mismatch() -> None:
    err = reject(order_with(lambda d: d["payments"].pop()))
    assert err.reason == "payments_mismatch"
    assert err.detail.startswith("data.payments:")


def test_customer_needs_a_contact() -> None:
    err = reject(order_with(lambda d: d["customer"].update(phone=None, email="  ")))
    assert err.reason == "invalid_data"
    assert "data.customer" in err.detail


def test_customer_name_and_email_may_be_absent() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["customer"] = {"phone": "13812345678", "preferred_channel": "im"}

    data = parse_event(encode(order_with(mutate))).data
    assert isinstance(data, OrderPaid) and data.customer.name is None


def test_return_leg_without_return_id() -> None:
    data = dict(VALID_INPUTS["parcel.signed"], leg="return")
    err = reject(envelope("parcel.signed", data))
    assert err.reason == "invalid_data"
    assert err.detail == "data.return_id: is required when leg is 'return'"


def test_score_out_of_range() -> None:
    err = reject(envelope("survey.answered", dict(VALID_INPUTS["survey.answered"], score=6)))
    assert err.reason == "invalid_data"
    assert err.detail.startswith("data.score:")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reason", "bored"),
        ("kind", "swap"),
        ("condition", ["scratched"]),
        ("lines", []),
        ("lines", [{"line_id": "L1", "quantity": 0}]),
        ("evidence_urls", "https://x"),
        ("order_id", None),
    ],
)
def test_return_request_constraints(field: str, value: Any) -> None:
    data = dict(VALID_INPUTS["return.requested"], **{field: value})
    err = reject(envelope("return.requested", data))
    assert err.reason == "invalid_data"
    assert f"data.{field}" in err.detail


def test_complaint_category_is_checked() -> None:
    data = dict(VALID_INPUTS["complaint.opened"], category="rude_parcel")
    assert reject(envelope("complaint.opened", data)).reason == "invalid_data"


@pytest.mark.parametrize(
    ("attrs", "path"),
    [
        ({"id": "x" * 129}, "id"),
        ({"source": ""}, "source"),
        ({"datacontenttype": "text/xml"}, "datacontenttype"),
        ({"correlationid": 5}, "correlationid"),
    ],
)
def test_bad_envelope_attribute(attrs: dict[str, Any], path: str) -> None:
    obj = cancelled(**attrs)
    err = reject(obj)
    assert err.reason == "invalid_attribute"
    assert err.detail.startswith(f"{path}:")


def test_detail_never_echoes_personal_data() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["customer"] = {
            "name": ["张三"],
            "phone": 13812345678,
            "email": {"a": "alice@example.com"},
            "preferred_channel": "13812345678",
        }

    err = reject(order_with(mutate))
    for secret in ("13812345678", "张三", "alice"):
        assert secret not in str(err)
    assert "data.customer.phone" in err.detail


def test_detail_lists_several_problems() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d.pop("shop_id")
        d["lines"][0]["quantity"] = -2

    err = reject(order_with(mutate))
    assert "data.shop_id" in err.detail and "data.lines[0].quantity" in err.detail
