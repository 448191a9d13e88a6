"""Complaints documents: what earlier code stored still loads; every document round-trips.

tests/fixtures/documents/complaints.json holds documents exactly as the hand-written
serialisers wrote them (version 1, no `document_version`).
"""

from __future__ import annotations

from hypothesis import strategies as st

from services.complaints.domain.budget import CompensationBudget, Grant
from services.complaints.domain.compensating import Compensation
from services.complaints.domain.model import COMPLAINT_DOCUMENT, Complaint, LowScore
from services.complaints.domain.orders import LatePenalty, OrderFacts, OrderLine, ShopOrder
from services.complaints.domain.rules import (
    Category,
    ComplaintStatus,
    CouponStatus,
    Outcome,
    Priority,
    Remedy,
    Resolution,
    TimerKind,
)
from shared.documents import VERSION_KEY
from tests.unit.stored_documents import (
    amounts,
    fixture_documents,
    ids,
    instants_in,
    round_trip_tests,
)

FIXTURES = fixture_documents("complaints")
LOADERS = {
    "complaint_": Complaint.from_dict,
    "shop_order_": ShopOrder.from_dict,
    "budget_": CompensationBudget.from_dict,
}


def test_stored_documents_load_and_keep_every_fact():
    seen = 0
    for name, stored in FIXTURES.items():
        (load,) = [load for prefix, load in LOADERS.items() if name.startswith(prefix)]
        again = load(stored).to_dict()
        expected = dict(stored)
        if name.startswith("complaint_"):
            assert again.pop(VERSION_KEY) == COMPLAINT_DOCUMENT.version == 3
            expected = _buyer_paid(_told_refund(expected))
        else:
            assert again.pop(VERSION_KEY) == 1
        assert again == expected, name
        seen += 1
    assert seen == len(FIXTURES) >= 6


def _told_refund(stored: dict) -> dict:
    """Version 2 adds what the ledger issued; a version-1 compensation had told its refund."""
    comp = stored.get("compensation")
    if comp is None:
        return stored
    issued = comp["refund_amount"] or None
    return {
        **stored,
        "compensation": {**comp, "refund_issued": issued, "refund_already_refunded": False},
    }


def _buyer_paid(stored: dict) -> dict:
    """Version 3 records a compensation withheld from a complainant who did not pay the order;
    every earlier one was decided for the buyer."""
    comp = stored.get("compensation")
    if comp is None:
        return stored
    return {**stored, "compensation": {**comp, "not_buyer": False}}


def test_a_version_2_compensation_was_decided_for_the_buyer():
    """A version-2 document (refund_issued known, no not_buyer) loads as compensated."""
    reshipped = _told_refund(FIXTURES["complaint_reshipped"])
    complaint = Complaint.from_dict({**reshipped, VERSION_KEY: 2})
    assert complaint.compensation is not None and not complaint.compensation.not_buyer
    assert complaint.to_dict()["compensation"]["not_buyer"] is False


def test_a_stored_compensation_with_a_refund_waits_for_no_refund_notice():
    """Version 1 told a refund at once (the notice said one was coming): loaded, it sends no
    second compensation notice when the ledger's refund.issued arrives."""
    reshipped = FIXTURES["complaint_reshipped"]
    stored = {**reshipped, "compensation": {**reshipped["compensation"], "refund_amount": 600}}
    complaint = Complaint.from_dict(stored)
    assert complaint.compensation is not None and not complaint.compensation.awaits_refund
    assert complaint.record_refund_issued(600, False) == []


def test_a_stored_compensation_keeps_its_coupon_and_reshipment():
    reshipped = Complaint.from_dict(FIXTURES["complaint_reshipped"])
    assert reshipped.compensation is not None and reshipped.compensation.reshipment
    pending = Complaint.from_dict(FIXTURES["complaint_coupon_pending"])
    assert pending.compensation is not None
    assert pending.compensation.coupon_status == CouponStatus.PENDING_APPROVAL


# --- round trips --------------------------------------------------------------------------------

instants = instants_in()
maybe = st.none() | instants
facts = st.builds(
    OrderFacts,
    order_id=ids,
    customer_id=ids,
    paid_at=instants,
    currency=st.sampled_from(["CNY", "JPY"]),
    lines=st.lists(
        st.builds(OrderLine, ids, st.integers(1, 9), amounts, st.booleans()), max_size=3
    ).map(tuple),
    shipping_fee_paid=amounts,
    presale_ship_by=maybe,
)
orders = st.builds(
    ShopOrder,
    order_id=ids,
    facts=st.none() | facts,
    ship_by=maybe,
    shipped_at=maybe,
    cancelled_at=maybe,
    late_penalty=st.none()
    | st.builds(LatePenalty, amounts, st.just("CNY"), instants, instants, instants, ids),
    timers=st.dictionaries(st.sampled_from(list(TimerKind)), instants, max_size=2),
)
budgets = st.builds(
    CompensationBudget,
    customer_id=ids,
    grants=st.lists(st.builds(Grant, ids, amounts, st.just("CNY"), instants), max_size=3),
)
compensations = st.builds(
    Compensation,
    decided_at=instants,
    currency=st.just("CNY"),
    coupon_value=amounts,
    coupon_status=st.sampled_from(list(CouponStatus)),
    coupon_granted_at=maybe,
    coupon_expires_at=maybe,
    refund_amount=amounts,
    reshipment=st.booleans(),
    late_shipment_refund=amounts,
    late_shipment_refund_earlier=st.booleans(),
    coupon_by_supervisor=st.booleans(),
    not_buyer=st.booleans(),
    reviewed_by=st.none() | ids,
    reviewed_at=maybe,
)
complaints = st.builds(
    Complaint,
    complaint_id=ids,
    order_id=ids,
    customer_id=ids,
    category=st.none() | st.sampled_from(list(Category)),
    opened_at=maybe,
    status=st.sampled_from(list(ComplaintStatus)),
    round=st.integers(0, 5),
    first_response_due=maybe,
    resolution_due=maybe,
    responded_at=maybe,
    responded_by=st.none() | ids,
    resolution=st.none()
    | st.builds(
        Resolution, st.sampled_from(list(Outcome)), st.sampled_from(list(Remedy)), ids, instants
    ),
    reopened_at=maybe,
    priority=st.sampled_from(list(Priority)),
    acknowledged_at=maybe,
    compensation=st.none() | compensations,
    timers=st.dictionaries(st.sampled_from(list(TimerKind)), instants, max_size=2),
    breaches=st.sets(ids, max_size=3),
    escalations=st.sets(ids, max_size=3),
    buyer_told_escalated=st.sets(st.integers(0, 5), max_size=3),
    low_scores=st.lists(ids, max_size=2),
    pending_low_score=st.none() | st.builds(LowScore, ids, st.integers(1, 5)),
)


test_a_document_round_trips, test_the_json_text_is_the_document_and_loads_back = round_trip_tests(
    {"complaint": complaints, "shop order": orders, "budget": budgets}
)
