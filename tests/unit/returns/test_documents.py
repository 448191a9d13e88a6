"""Returns documents: what earlier code stored still loads; every document round-trips.

tests/fixtures/documents/returns.json holds documents exactly as the hand-written serialisers
wrote them (version 1, no `document_version`): they are the compatibility contract.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

from hypothesis import strategies as st

from services.returns.domain import vocabulary
from services.returns.domain.model import RETURN_REQUEST_DOCUMENT, ReturnRequest
from services.returns.domain.order_returns import ORDER_LEDGER_DOCUMENT, OrderLedger
from services.returns.domain.values import (
    ORDER_DOCUMENT,
    Inspection,
    Order,
    OrderLine,
    RefundCalculation,
    breakdown_as_pairs,
)
from shared.documents import VERSION_KEY
from tests.unit.stored_documents import (
    amounts,
    fixture_documents,
    ids,
    instants_in,
    round_trip_tests,
)

FIXTURES = fixture_documents("returns")


def _documents(prefix: str) -> list[dict]:
    found = [doc for name, doc in sorted(FIXTURES.items()) if name.startswith(prefix)]
    assert found, prefix
    return found


def test_stored_return_requests_load_and_keep_every_fact():
    for stored in _documents("return_request_"):
        request = ReturnRequest.from_dict(stored)
        again = request.to_dict()
        assert again.pop(VERSION_KEY) == RETURN_REQUEST_DOCUMENT.version == 3
        # Version 3 keeps the timers set again by the catch-up rule: none before.
        expected = {**stored, "timers_caught_up": []}
        for key in ("refund", "return_shipping_refund"):
            if expected[key] is not None:
                expected[key] = breakdown_as_pairs(expected[key])
        assert again == expected


def test_a_version_2_request_loads_with_no_timer_set_again():
    for stored in _documents("return_request_"):
        request = ReturnRequest.from_dict(stored)
        version_2 = request.to_dict()
        del version_2["timers_caught_up"]
        version_2[VERSION_KEY] = 2
        assert ReturnRequest.from_dict(version_2) == request
        assert request.timers_caught_up == set()


def test_a_stored_refund_keeps_its_breakdown_and_amount():
    stored = FIXTURES["return_request_late_freight"]
    request = ReturnRequest.from_dict(stored)
    assert request.refund is not None and request.return_shipping_refund is not None
    assert request.refund.breakdown == [("goods", 500)]
    assert request.return_shipping_refund.breakdown == [("return_shipping", 1200)]
    assert request.return_shipping_payer == vocabulary.Payer.MERCHANT
    assert request.inspection == Inspection(True, ("opened_for_inspection",), request.inspection.at)


def test_stored_orders_and_ledgers_load_unchanged():
    for stored in _documents("order_signed") + _documents("order_unsigned"):
        again = Order.from_dict(stored).to_dict()
        assert again.pop(VERSION_KEY) == ORDER_DOCUMENT.version == 1
        assert again == stored
    for stored in _documents("order_ledger_"):
        ledger = OrderLedger.from_dict(stored)
        again = ledger.to_dict()
        assert again.pop(VERSION_KEY) == ORDER_LEDGER_DOCUMENT.version == 3
        # Version 1 did not keep what the gift charge took: nothing of it is given back; nor
        # (before version 3) whether a seller-fault return refunded goods, nor what
        # free-shipping deductions took.
        assert again == {
            **stored,
            "gift_charge_taken": 0,
            "seller_fault_refunded": False,
            "free_shipping_taken": 0,
        }
    reserved = OrderLedger.from_dict(FIXTURES["order_ledger_reserved"])
    assert reserved.reserved == {"r5": {"l1": 2}}


# --- round trips --------------------------------------------------------------------------------

instants = instants_in(UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5)))
maybe_instants = st.none() | instants
units = st.dictionaries(ids, st.integers(min_value=1, max_value=50), max_size=3)


@st.composite
def calculations(draw):
    parts = draw(st.lists(st.tuples(ids, st.integers(-(10**6), 10**6)), max_size=4))
    total = sum(amount for _, amount in parts)
    if total < 0:
        parts.append(("goods", -total))
        total = 0
    return RefundCalculation(
        return_id=draw(ids),
        order_id=draw(ids),
        currency=draw(st.sampled_from(["CNY", "JPY", "KWD"])),
        amount=total,
        breakdown=parts,
        return_shipping_payer=draw(st.sampled_from(list(vocabulary.Payer))),
        goods=draw(amounts),
        goods_units=draw(units),
        gift_units=draw(units),
        goods_by_line=draw(units),
        outbound_shipping=draw(amounts),
        return_shipping=draw(amounts),
        free_shipping_deduction=draw(amounts),
        gift_charge=draw(amounts),
        full_return=draw(st.booleans()),
    )


lines = st.builds(
    OrderLine,
    line_id=ids,
    sku=ids,
    title=st.text(max_size=20),
    category=ids,
    quantity=st.integers(min_value=1, max_value=20),
    paid_amount=amounts,
    is_gift=st.booleans(),
    stated_price=amounts,
    no_reason_return_waived=st.booleans(),
)
orders = st.builds(
    Order,
    order_id=ids,
    shop_id=ids,
    customer_id=ids,
    paid_at=instants,
    currency=st.sampled_from(["CNY", "JPY"]),
    lines=st.lists(lines, max_size=4, unique_by=lambda line: line.line_id).map(tuple),
    shipping_fee_paid=amounts,
    standard_shipping_fee=amounts,
    free_shipping_threshold=st.none() | amounts,
    shipping_insurance=st.booleans(),
    presale_ship_by=maybe_instants,
    outbound_signed_at=maybe_instants,
    cancelled_at=maybe_instants,
)
ledgers = st.builds(
    OrderLedger,
    order_id=ids,
    units_refunded=units,
    gift_units_returned=units,
    goods_refunded=amounts,
    outbound_shipping_refunded=amounts,
    return_shipping_refunded=amounts,
    free_shipping_deducted=st.booleans(),
    gift_charged=st.booleans(),
    reserved=st.dictionaries(ids, units, max_size=3),
    settled_returns=st.lists(ids, max_size=3),
    return_shipping_settled=st.lists(ids, max_size=3),
)
requests = st.builds(
    ReturnRequest,
    return_id=ids,
    order_id=ids,
    customer_id=ids,
    kind=st.sampled_from(list(vocabulary.ReturnKind)),
    reason=st.sampled_from(["no_reason", "quality_issue"]),
    lines=units,
    condition=st.lists(st.sampled_from(["trial_use", "seal_broken"]), max_size=2),
    evidence_urls=st.lists(st.text(max_size=12), max_size=2),
    requested_at=maybe_instants,
    status=st.sampled_from(list(vocabulary.ReturnStatus)),
    waiting_for=st.none() | st.sampled_from(list(vocabulary.WaitingFor)),
    rule=st.none() | st.sampled_from(list(vocabulary.Rule)),
    decided_at=maybe_instants,
    return_shipping_payer=st.none() | st.sampled_from(list(vocabulary.Payer)),
    carrier=st.none() | ids,
    tracking_no=st.none() | ids,
    return_shipping_fee_paid=st.none() | amounts,
    shipped_at=maybe_instants,
    return_signed_at=maybe_instants,
    refund_due_by=maybe_instants,
    inspection=st.none()
    | st.builds(Inspection, st.booleans(), st.lists(ids, max_size=2).map(tuple), instants),
    reviewed_by=st.none() | ids,
    review_note=st.none() | st.text(max_size=20),
    reviewed_at=maybe_instants,
    refund=st.none() | calculations(),
    return_shipping_refund=st.none() | calculations(),
    completed_at=maybe_instants,
    cancelled_at=maybe_instants,
    timers=st.dictionaries(st.sampled_from(list(vocabulary.TimerKind)), instants, max_size=3),
    breaches_reported=st.sets(st.sampled_from(list(vocabulary.Sla))),
    timers_caught_up=st.sets(st.sampled_from(list(vocabulary.TimerKind))),
)


test_a_document_round_trips, test_the_json_text_is_the_document_and_loads_back = round_trip_tests(
    {"return request": requests, "order": orders, "ledger": ledgers, "calculation": calculations()}
)
