"""The event contract: what parses, what is rejected and why, and output round trips."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.contracts import (
    CUSTOMER_KEYED_TYPES,
    EVENT_TYPES,
    INTACT_CONDITIONS,
    NO_REASON_REASONS,
    SELLER_FAULT_REASONS,
    BreakdownItem,
    CaseRef,
    CloudEvent,
    CouponGranted,
    DeadLettered,
    DeadLetterOrigin,
    FollowupEvent,
    InvalidEvent,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    OrderCancelled,
    OrderPaid,
    ParcelSigned,
    Payment,
    RefundIssued,
    ReshipmentRequested,
    ReturnDecision,
    ReturnLine,
    ReturnRequested,
    SlaBreached,
    dead_letter_topic,
    deterministic_id,
    dump_event,
    event_key,
    ids,
    new_event,
    parse_event,
    topics,
)

T0 = "2024-05-01T10:00:00+08:00"
NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)


def envelope(event_type: str, data: Any, **attrs: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{event_type}",
        "source": "urn:platform:test",
        "type": event_type,
        "time": T0,
        "datacontenttype": "application/json",
        "data": data,
        **attrs,
    }


def order_paid_data() -> dict[str, Any]:
    return {
        "order_id": "O1",
        "shop_id": "S1",
        "customer_id": "C1",
        "paid_at": T0,
        "currency": "CNY",
        "lines": [
            {
                "line_id": "L1",
                "sku": "SKU-1",
                "title": "T-shirt",
                "category": "apparel",
                "quantity": 2,
                "paid_amount": 9000,
            },
            {
                "line_id": "L2",
                "sku": "SKU-G",
                "title": "Sticker",
                "category": "gift",
                "quantity": 1,
                "paid_amount": 0,
                "is_gift": True,
                "stated_price": 500,
            },
        ],
        "shipping_fee_paid": 1000,
        "standard_shipping_fee": 1000,
        "free_shipping_threshold": None,
        "shipping_insurance": True,
        "presale_ship_by": None,
        "payments": [{"method": "alipay", "amount": 6000}, {"method": "points", "amount": 4000}],
        "customer": {
            "name": "张三",
            "phone": "13812345678",
            "email": "alice@example.com",
            "preferred_channel": "sms",
        },
    }


VALID_INPUTS: dict[str, dict[str, Any]] = {
    "order.paid": order_paid_data(),
    "order.shipped": {
        "order_id": "O1",
        "shipped_at": T0,
        "carrier": "SF",
        "tracking_no": "SF123",
    },
    "order.cancelled": {"order_id": "O1", "cancelled_at": T0},
    "parcel.signed": {
        "order_id": "O1",
        "leg": "outbound",
        "tracking_no": "SF123",
        "signed_at": T0,
    },
    "return.requested": {
        "return_id": "R1",
        "order_id": "O1",
        "customer_id": "C1",
        "kind": "refund",
        "reason": "size_fit",
        "lines": [{"line_id": "L1", "quantity": 1}],
        "condition": ["opened_for_inspection"],
        "evidence_urls": [],
        "requested_at": T0,
    },
    "return.evidence_submitted": {
        "return_id": "R1",
        "order_id": "O1",
        "evidence_urls": ["https://img.example.com/1.jpg"],
        "submitted_at": T0,
    },
    "return.shipped": {
        "return_id": "R1",
        "order_id": "O1",
        "carrier": "YTO",
        "tracking_no": "YT9",
        "shipped_at": T0,
        "shipping_fee_paid": 1200,
    },
    "return.inspected": {
        "return_id": "R1",
        "order_id": "O1",
        "passed": True,
        "findings": [],
        "inspected_at": T0,
    },
    "return.reviewed": {
        "return_id": "R1",
        "order_id": "O1",
        "decision": "approve",
        "agent_id": "A7",
        "note": "photos show a torn seam",
        "reviewed_at": T0,
    },
    "return.cancelled": {"return_id": "R1", "order_id": "O1", "cancelled_at": T0},
    "complaint.opened": {
        "complaint_id": "K1",
        "order_id": "O1",
        "customer_id": "C1",
        "category": "logistics_delay",
        "description": "parcel stuck for 5 days",
        "opened_at": T0,
    },
    "complaint.responded": {
        "complaint_id": "K1",
        "order_id": "O1",
        "agent_id": "A7",
        "responded_at": T0,
    },
    "complaint.resolved": {
        "complaint_id": "K1",
        "order_id": "O1",
        "outcome": "upheld",
        "remedy": "none",
        "agent_id": "A7",
        "resolved_at": T0,
    },
    "survey.answered": {
        "callback_id": "CB1",
        "customer_id": "C1",
        "score": 4,
        "comment": "ok",
        "answered_at": T0,
    },
    "customer.erasure_requested": {"customer_id": "C1", "requested_at": T0},
    "compensation.reviewed": {
        "complaint_id": "K1",
        "order_id": "O1",
        "decision": "approve",
        "agent_id": "S1",
        "note": "",
        "reviewed_at": T0,
    },
    "refund.settled": {"refund_id": "rf-1", "order_id": "O1", "settled_at": T0},
    "refund.failed": {
        "refund_id": "rf-1",
        "order_id": "O1",
        "method": "card",
        "amount": 4500,
        "reason": "card_closed",
        "failed_at": T0,
    },
}


def cancelled(stamp: Any = T0, **attrs: Any) -> dict[str, Any]:
    return envelope("order.cancelled", {"order_id": "O1", "cancelled_at": stamp}, **attrs)


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def reject(obj: Any) -> InvalidEvent:
    raw = obj if isinstance(obj, bytes) else encode(obj)
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    return info.value


def order_with(mutate: Any) -> dict[str, Any]:
    data = order_paid_data()
    mutate(data)
    return envelope("order.paid", data)


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


# --- outputs --------------------------------------------------------------------------------

RETURN_CASE = CaseRef(type="return", id="R1")


def output_examples() -> list[tuple[str, BaseModel]]:
    refund = RefundIssued(
        refund_id=deterministic_id("refund", "return", "R1"),
        order_id="O1",
        customer_id="C1",
        case=RETURN_CASE,
        amount=9500,
        currency="CNY",
        breakdown=[
            BreakdownItem(kind="goods", amount=9000),
            BreakdownItem(kind="return_shipping", amount=1000),
            BreakdownItem(kind="free_shipping_deduction", amount=-500),
        ],
        payments=[Payment(method="alipay", amount=5700), Payment(method="points", amount=3800)],
        return_shipping_payer="merchant",
        due_by=NOW + timedelta(hours=24),
        issued_at=NOW,
    )
    decision = ReturnDecision(
        return_id="R1",
        order_id="O1",
        customer_id="C1",
        kind="refund",
        rule="eligible",
        message="您的退货申请已通过。",
        message_en="Your return is approved.",
        return_shipping_payer="buyer",
        refund_estimate=9000,
        decided_at=NOW,
    )
    pending = decision.model_copy(
        update={"rule": "evidence_missing", "waiting_for": "evidence", "refund_estimate": None}
    )
    followup = FollowupEvent(
        callback_id="CB1",
        customer_id="C1",
        cases=[RETURN_CASE, CaseRef(type="complaint", id="K1")],
        due_at=NOW + timedelta(hours=24),
        deadline=NOW + timedelta(hours=72),
        score=2,
    )
    return [
        ("refund.issued", refund),
        (
            "coupon.granted",
            CouponGranted(
                coupon_id="CP1",
                customer_id="C1",
                order_id="O1",
                complaint_id="K1",
                value=500,
                currency="CNY",
                expires_at=NOW + timedelta(days=30),
                reason="logistics_delay",
                granted_at=NOW,
            ),
        ),
        ("return.approved", decision),
        ("return.pending", pending),
        ("return.rejected", decision.model_copy(update={"rule": "window_expired"})),
        ("return.completed", decision),
        (
            "reshipment.requested",
            ReshipmentRequested(
                order_id="O1",
                customer_id="C1",
                case=RETURN_CASE,
                lines=[ReturnLine(line_id="L1", quantity=1)],
                due_by=NOW,
                requested_at=NOW,
            ),
        ),
        (
            "sla.breached",
            SlaBreached(
                case=CaseRef(type="complaint", id="K1"),
                sla="complaint_first_response",
                due_at=NOW,
                detected_at=NOW + timedelta(minutes=1),
                order_id="O1",
            ),
        ),
        ("callback.scheduled", followup),
        ("callback.sent", followup),
        ("satisfaction.recorded", followup),
        ("satisfaction.low", followup),
        (
            "notification.requested",
            NotificationRequested(
                request_id="N1",
                customer_id="C1",
                order_id="O1",
                template="return.approved",
                params={"amount": 9000, "order_id": "O1"},
                urgent=True,
                case=RETURN_CASE,
            ),
        ),
        (
            "notification.sent",
            NotificationSent(
                request_id="N1",
                customer_id="C1",
                order_id="O1",
                template="return.approved",
                case=RETURN_CASE,
                urgent=False,
                channel="sms",
                recipient="138****5678",
                language="zh-CN",
                attempts=1,
                sent_at=NOW,
            ),
        ),
        (
            "notification.failed",
            NotificationFailed(
                request_id="N1",
                customer_id="C1",
                order_id="O1",
                template="return.approved",
                urgent=False,
                reason="retries_exhausted",
                detail="sms gateway: HTTP 503",
                channel="sms",
                recipient="138****5678",
                attempts=5,
                failed_at=NOW,
            ),
        ),
        (
            "event.deadlettered",
            DeadLettered(
                service="returns",
                reason="malformed_json",
                detail="not valid JSON",
                origin=DeadLetterOrigin(topic="returns", partition=3, offset=42),
                key="O1",
                value="e30=",
                value_encoding="base64",
                value_truncated=False,
                received_at=NOW,
            ),
        ),
    ]


@pytest.mark.parametrize(("event_type", "data"), output_examples(), ids=lambda v: str(v)[:24])
def test_output_round_trip(event_type: str, data: BaseModel) -> None:
    event = new_event(
        event_type,
        data,
        id=deterministic_id(event_type, "R1"),
        source="aftersales/returns",
        time=NOW,
        correlationid="R1",
        causationid="evt-1",
    )
    raw = dump_event(event)
    assert parse_event(raw) == event
    body = json.loads(raw)
    assert body["correlationid"] == "R1" and body["causationid"] == "evt-1"
    assert body["time"] == "2024-05-03T12:00:00Z"


def test_dump_omits_unset_optional_attributes() -> None:
    data = parse_event(encode(cancelled())).data
    event = new_event("order.cancelled", data, id="e1", source="s", time=NOW)
    body = json.loads(dump_event(event))
    assert "correlationid" not in body and "causationid" not in body
    assert body["data"]["cancelled_at"] == T0


def test_dump_keeps_the_offset_of_local_times() -> None:
    shanghai = timezone(timedelta(hours=8))
    event = new_event(
        "sla.breached",
        SlaBreached(
            case=RETURN_CASE,
            sla="refund",
            due_at=datetime(2024, 5, 1, 10, 0, 0, 500_000, shanghai),
            detected_at=NOW,
        ),
        id="e1",
        source="s",
        time=NOW,
    )
    assert json.loads(dump_event(event))["data"]["due_at"] == "2024-05-01T10:00:00.500000+08:00"


@pytest.mark.parametrize(
    ("amount", "breakdown", "payments", "refused"),
    [
        pytest.param(100, [("goods", 90)], [("alipay", 100)], "breakdown", id="breakdown-sums"),
        pytest.param(
            100, [("goods", 100)], [("alipay", 99)], "payments_mismatch", id="payments-sum"
        ),
        pytest.param(-100, [("gift_charge", -100)], [], "negative_amount", id="never-negative"),
    ],
)
def test_a_refund_adds_up_and_is_never_negative(
    amount: int,
    breakdown: list[tuple[str, int]],
    payments: list[tuple[str, int]],
    refused: str,
) -> None:
    """The breakdown may hold negative items (a gift's charge) but sums to the amount, as do
    the payments; the amount itself is never negative."""
    with pytest.raises(ValidationError, match=refused):
        RefundIssued(
            refund_id="F1",
            order_id="O1",
            customer_id="C1",
            case=RETURN_CASE,
            amount=amount,
            currency="CNY",
            breakdown=[BreakdownItem(kind=kind, amount=value) for kind, value in breakdown],
            payments=[Payment(method=method, amount=value) for method, value in payments],
            due_by=NOW,
            issued_at=NOW,
        )


def test_type_specific_fields_are_required() -> None:
    decision = output_examples()[2][1]
    with pytest.raises(ValidationError, match="waiting_for"):
        new_event("return.pending", decision, id="e1", source="s", time=NOW)
    bare = FollowupEvent(callback_id="CB1", customer_id="C1", cases=[RETURN_CASE])
    new_event("callback.sent", bare, id="e1", source="s", time=NOW)
    with pytest.raises(ValidationError, match="score"):
        new_event("satisfaction.low", bare, id="e1", source="s", time=NOW)
    with pytest.raises(ValidationError, match="due_at"):
        new_event("callback.scheduled", bare, id="e1", source="s", time=NOW)


def test_new_event_checks_the_model_and_the_clock() -> None:
    followup = output_examples()[8][1]
    with pytest.raises(ValueError, match="ReturnDecision"):
        new_event("return.approved", followup, id="e1", source="s", time=NOW)
    with pytest.raises(ValueError, match="unknown event type"):
        new_event("refund.maybe", followup, id="e1", source="s", time=NOW)
    with pytest.raises(ValidationError, match="naive_timestamp"):
        new_event("callback.sent", followup, id="e1", source="s", time=datetime(2024, 5, 1))


def test_models_are_strict_in_code_too() -> None:
    with pytest.raises(ValidationError):
        Payment(method="alipay", amount=10.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        CaseRef(type="order", id="O1")  # type: ignore[arg-type]


def test_output_events_carry_no_personal_data_fields() -> None:
    personal = {"name", "phone", "email", "customer"}
    for _, data in output_examples():
        assert personal.isdisjoint(type(data).model_fields)


# --- keys and ids ---------------------------------------------------------------------------


def test_event_key_is_the_order_for_order_events() -> None:
    for event_type, data in VALID_INPUTS.items():
        if event_type in CUSTOMER_KEYED_TYPES:
            continue
        assert event_key(parse_event(encode(envelope(event_type, data)))) == "O1"


def test_event_key_is_the_customer_for_buyer_events() -> None:
    for event_type in ("survey.answered", "customer.erasure_requested"):
        event = parse_event(encode(envelope(event_type, VALID_INPUTS[event_type])))
        assert event_key(event) == "C1"
    for event_type, data in output_examples():
        event = new_event(event_type, data, id="e1", source="s", time=NOW)
        if event_type.startswith(("callback.", "satisfaction.")):
            assert event_key(event) == "C1"
        else:
            assert event_key(event) == "O1"


def test_event_key_fallbacks() -> None:
    callback_sla = SlaBreached(
        case=CaseRef(type="return", id="R1"),
        sla="callback",
        due_at=NOW,
        detected_at=NOW,
        customer_id="C1",
    )
    assert event_key(new_event("sla.breached", callback_sla, id="e", source="s", time=NOW)) == "C1"
    orphan = callback_sla.model_copy(update={"customer_id": None})
    with pytest.raises(ValueError, match="neither"):
        event_key(new_event("sla.breached", orphan, id="e", source="s", time=NOW))
    dead = DeadLettered(
        service="returns",
        reason="oversized",
        detail="too big",
        origin=DeadLetterOrigin(topic="returns", partition=3, offset=42),
        value="",
        value_encoding="utf-8",
        value_truncated=True,
        received_at=NOW,
    )
    assert event_key(new_event("event.deadlettered", dead, id="e", source="s", time=NOW)) == (
        "returns:3"
    )


def test_deterministic_id_is_stable() -> None:
    first = deterministic_id("refund", "return", "R1")
    assert first == deterministic_id("refund", "return", "R1")
    # Pinned: a change here would give replays new ids (duplicate refunds downstream).
    assert first == "0ed4ad9a-2c9b-52c9-8a42-23c1daec2389"
    assert deterministic_id("a:b", "c") != deterministic_id("a", "b:c")
    assert len(first) <= 128


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_deterministic_id_is_uuid5_of_the_parts_as_json(parts: list[str]) -> None:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales:ids:v1")
    name = json.dumps(parts, ensure_ascii=False)
    try:
        expected = str(uuid.uuid5(namespace, name))
    except UnicodeEncodeError:  # a lone surrogate: no id, either way
        with pytest.raises(UnicodeEncodeError):
            deterministic_id(*parts)
        return
    assert deterministic_id(*parts) == expected


@given(st.lists(st.text(max_size=20), min_size=1, max_size=4))
def test_deterministic_id_depends_only_on_parts(parts: list[str]) -> None:
    assert deterministic_id(*parts) == deterministic_id(*list(parts))
    assert deterministic_id(*parts) != deterministic_id(*parts, "x")


def test_topics() -> None:
    assert topics.INPUT_TOPICS == (
        "orders",
        "signatures",
        "returns",
        "complaints",
        "surveys",
        "customers",
        "payouts",
    )
    assert topics.REFUND_REQUESTS in topics.OUTPUT_TOPICS
    assert "aftersales.refunds" in topics.OUTPUT_TOPICS
    assert topics.NOTIFICATIONS == "aftersales.notifications"
    assert dead_letter_topic("returns") == "aftersales.deadletter.returns"
    with pytest.raises(ValueError):
        dead_letter_topic("")


def test_cloud_event_is_immutable() -> None:
    event = parse_event(encode(cancelled()))
    with pytest.raises(ValidationError):
        event.id = "other"  # type: ignore[misc]


def test_parse_accepts_a_dict_through_the_model() -> None:
    obj = copy.deepcopy(cancelled())
    assert CloudEvent.model_validate(obj) == parse_event(encode(obj))


def test_refund_ids_are_the_ones_cases_always_had() -> None:
    # finance deduplicates on refund_id: the formula must not move.
    case_id = "R1"
    assert ids.refund_id("return", case_id) == f"rf-{deterministic_id('refund', 'return', 'R1')}"
    assert ids.refund_id("return", case_id, "return_shipping") == (
        f"rf-{deterministic_id('refund', 'return', 'R1:return_shipping')}"
    )
    first = ids.reissue_refund_id(ids.refund_id("return", case_id), "card")
    assert first == ids.reissue_refund_id(ids.refund_id("return", case_id), "card")
    assert first != ids.reissue_refund_id(ids.refund_id("return", case_id), "balance")


def test_refund_request_breakdown_must_sum_and_never_claims_the_ledgers_kind() -> None:
    base = {
        "refund_id": "rf-1",
        "order_id": "O1",
        "customer_id": "C1",
        "case": {"type": "return", "id": "R1"},
        "amount": 900,
        "currency": "CNY",
        "breakdown": [{"kind": "goods", "amount": 900}],
        "due_by": T0,
        "requested_at": T0,
        "requested_by": "returns",
    }
    assert parse_event(encode(envelope("refund.requested", base))).data.amount == 900
    wrong_sum = {**base, "amount": 901}
    assert reject(envelope("refund.requested", wrong_sum)).reason
    ledger_kind = {
        **base,
        "amount": 800,
        "breakdown": [
            {"kind": "goods", "amount": 900},
            {"kind": "already_refunded", "amount": -100},
        ],
    }
    assert reject(envelope("refund.requested", ledger_kind)).reason
