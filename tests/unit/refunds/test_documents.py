"""Refund-ledger documents: what earlier code stored still loads, and what finance receives in
`refund.issued` does not change.

tests/fixtures/documents/refunds.json holds ledgers exactly as the hand-written serialiser
wrote them (version 1: no `document_version`, each refund with `payments` beside `to_methods`
and `overflow`); refund_issued.json the `refund.issued` data that code emitted for each of their
refunds. Both are the compatibility contract.
"""

from __future__ import annotations

import json

from services.refunds.domain.events import RefundIssued
from services.refunds.domain.model import (
    ORDER_LEDGER_DOCUMENT,
    OrderLedger,
)
from services.refunds.handlers import _issued
from shared.contracts import ids
from shared.documents import VERSION_KEY
from tests.unit.stored_documents import fixture_documents

from . import T0, facts, request

LEDGERS = fixture_documents("refunds")
ISSUED = fixture_documents("refund_issued")


def finance_data(ledger: OrderLedger, refund_id: str) -> dict:
    """The `refund.issued` data the service layer emits for one of the ledger's refunds."""
    (effect,) = _issued(RefundIssued(ledger.refunds[refund_id]), ledger, 0)
    return effect.data.model_dump(mode="json")


def test_stored_ledgers_load_and_keep_every_fact():
    assert len(LEDGERS) >= 20
    for stored in LEDGERS.values():
        ledger = OrderLedger.from_dict(stored)
        assert [r["refund_id"] for r in stored["refunds"]] == list(ledger.refunds)
        assert [r["refund_id"] for r in stored["waiting"]] == list(ledger.waiting)
        for old in stored["refunds"]:
            refund = ledger.refunds[old["refund_id"]]
            assert [list(line) for line in refund.payments] == old["payments"]
            assert refund.to_methods == old["to_methods"]
            assert refund.overflow == old["overflow"]
        again = ledger.to_dict()
        assert again.pop(VERSION_KEY) == ORDER_LEDGER_DOCUMENT.version == 2
        for old, new in zip(stored["refunds"], again["refunds"], strict=True):
            assert "payments" not in new and "to_methods" not in new
            kept = {k: v for k, v in old.items() if k not in ("payments", "to_methods")}
            assert {k: v for k, v in new.items() if k != "method_shares"} == kept
        assert {k: v for k, v in again.items() if k != "refunds"} == {
            k: v for k, v in stored.items() if k != "refunds"
        }
        assert OrderLedger.from_dict(json.loads(json.dumps(ledger.to_dict()))) == ledger


def test_finance_receives_from_a_stored_refund_what_it_received_when_it_was_issued():
    checked = 0
    for stored in LEDGERS.values():
        ledger = OrderLedger.from_dict(stored)
        for refund_id in ledger.refunds:
            assert finance_data(ledger, refund_id) == ISSUED[refund_id]
            checked += 1
    assert checked == len(ISSUED)


def test_finance_receives_the_same_payments_when_the_payout_method_was_full_already():
    """The order paid with the payout method too; it got its whole charge back by the first
    refund, so the second one overflows to it: its line keeps its place in the order's order."""
    order = "o-balance-full"
    ledger = OrderLedger(order)
    paid = facts([("l1", 1, 4500)], 500, [("balance", 500), ("card", 4500)], order, "c-" + order)
    ledger.record_paid(paid, "balance", T0)
    stories = [
        ("bf-1", [("goods", 4496), ("outbound_shipping", 500)]),
        ("bf-2", [("return_shipping", 500), ("compensation", 700)]),
    ]
    for case_id, breakdown in stories:
        asked = request(
            case_id, breakdown, case_type="complaint", order_id=order, customer_id="c-" + order
        )
        ledger.request(asked, "balance", T0)
        assert finance_data(ledger, asked.refund_id) == ISSUED[asked.refund_id]
    second = ledger.refunds[ids.refund_id("complaint", "bf-2")]
    assert second.payments == (("balance", 1196), ("card", 4))


def test_the_json_text_is_the_document_and_loads_back():
    for stored in LEDGERS.values():
        ledger = OrderLedger.from_dict(stored)
        text = ledger.to_json()
        assert json.loads(text) == ledger.to_dict()
        assert OrderLedger.from_json(text) == ledger
