"""The event contract's outputs: round trips, what a refund must add up to, no personal data;
Kafka keys, deterministic ids and topics."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from aftersales_dev.events import refund_issued
from shared.contracts import (
    CUSTOMER_KEYED_TYPES,
    BreakdownItem,
    CaseRef,
    CloudEvent,
    CouponGranted,
    DeadLettered,
    DeadLetterOrigin,
    FollowupEvent,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    Payment,
    RefundIssued,
    ReshipmentRequested,
    ReturnDecision,
    ReturnLine,
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
from tests.unit.contract_examples import (
    NOW,
    T0,
    VALID_INPUTS,
    cancelled,
    encode,
    envelope,
    reject,
)

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


@pytest.mark.parametrize(
    ("breakdown", "payments"),
    [([("goods", 1200)], [("alipay", 1200)]), ([("goods", 1200), ("already_refunded", -1200)], [])],
    ids=["paid back", "cut to nothing"],
)
def test_the_test_builders_refund_issued_is_one_the_ledger_may_publish(
    breakdown: list[tuple[str, int]], payments: list[tuple[str, int]]
) -> None:
    built = refund_issued("rf-1", "O1", "C1", ("complaint", "K1"), at=NOW, breakdown=breakdown)
    event = parse_event(encode(built))
    assert event.source == "/aftersales/refunds"
    assert isinstance(event.data, RefundIssued)
    assert event.data.amount == sum(part for _, part in breakdown)
    assert [(p.method, p.amount) for p in event.data.payments] == payments
    assert event.data.due_by == event.data.issued_at == NOW


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
