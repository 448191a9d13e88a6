"""Follow-up documents: what earlier code stored still loads; every callback round-trips.

tests/fixtures/documents/followup.json holds callbacks exactly as the hand-written serialiser
wrote them (version 1, no `document_version`, each case's id under `id`): they are the
compatibility contract.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import strategies as st

from services.followup.domain.model import CALLBACK_DOCUMENT, Callback, Case
from services.followup.domain.rules import CallbackStatus, CaseOutcome, CaseType, Delivery
from shared.documents import VERSION_KEY, DocumentError
from tests.unit.stored_documents import fixture_documents, ids, instants_in, round_trip_tests

FIXTURES = fixture_documents("followup")


def test_stored_callbacks_load_and_keep_every_fact():
    assert len(FIXTURES) >= 6
    for stored in FIXTURES.values():
        again = Callback.from_dict(stored).to_dict()
        assert again.pop(VERSION_KEY) == CALLBACK_DOCUMENT.version == 3
        expected = dict(stored)
        expected["cases"] = [
            {("case_id" if key == "id" else key): value for key, value in case.items()}
            for case in stored["cases"]
        ]
        # Version 3: a callback sent before awaits the notifier's status of its invitation.
        expected["delivery"] = "awaiting" if stored["status"] == "sent" else None
        expected["delivered_at"] = expected["delivery_failure"] = None
        assert again == expected


def test_a_stored_answered_callback_keeps_its_cases_and_answer():
    callback = Callback.from_dict(FIXTURES["callback_answered"])
    assert callback.status == CallbackStatus.SENT
    assert [(case.type, case.case_id, case.outcome) for case in callback.cases] == [
        (CaseType.RETURN, "r1", CaseOutcome.SENT),
        (CaseType.COMPLAINT, "k1", CaseOutcome.SENT),
    ]
    assert (callback.score, callback.comment, callback.revision) == (2, "slow courier", 1)
    assert callback.delivery == Delivery.AWAITING  # stored before the notifier's status was read
    assert callback.answered_at is not None and callback.answered_at.utcoffset() is not None


def test_a_naive_instant_in_a_stored_callback_is_refused_by_name():
    stored = json.loads(json.dumps(FIXTURES["callback_scheduled"]))
    stored["cases"][0]["deadline"] = "2024-05-04T02:00:00"
    with pytest.raises(DocumentError, match=r"followup\.callback document: .*timezone-aware"):
        Callback.from_dict(stored)


instants = instants_in(UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5)))
cases = st.builds(
    Case,
    type=st.sampled_from(list(CaseType)),
    case_id=ids,
    order_id=ids,
    customer_id=ids,
    closed_at=instants,
    closed_by=st.sampled_from(["refund.issued", "complaint.resolved"]),
    deadline=instants,
    outcome=st.sampled_from(list(CaseOutcome)),
)
callbacks = st.builds(
    Callback,
    callback_id=ids,
    customer_id=ids,
    cases=st.lists(cases, min_size=1, max_size=3),
    status=st.sampled_from(list(CallbackStatus)),
    due_at=instants,
    deadline=instants,
    revision=st.integers(min_value=0, max_value=50),
    sent_at=st.none() | instants,
    answer_by=st.none() | instants,
    answered_at=st.none() | instants,
    score=st.none() | st.integers(min_value=1, max_value=5),
    comment=st.none() | st.text(max_size=20),
    delivery=st.none() | st.sampled_from(list(Delivery)),
    delivered_at=st.none() | instants,
    delivery_failure=st.none() | st.sampled_from(["expired", "no_contact"]),
)


test_a_document_round_trips, test_the_json_text_is_the_document_and_loads_back = round_trip_tests(
    {"callback": callbacks}
)
