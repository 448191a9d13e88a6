"""A low satisfaction score about a return or a late-shipment case: a priority escalation for a
person to call the buyer back, and the buyer is told to expect the call (SPEC 5)."""

from __future__ import annotations

import pytest

from services.complaints.domain.callbacks import priority_callback
from services.complaints.domain.events import CallbackEscalated, Notify
from services.complaints.domain.model import LowScore
from services.complaints.domain.rules import CaseKey, CaseType, Priority, Template

from . import POLICY, T0, H, one, policy


@pytest.mark.parametrize("case_type", [CaseType.RETURN, CaseType.LATE_SHIPMENT])
def test_a_low_score_escalates_the_case_for_a_call_back(case_type: CaseType) -> None:
    case = CaseKey(case_type, "R1")
    events = priority_callback(case, "c1", LowScore("cb1", 2), POLICY, T0)
    escalation = one(events, CallbackEscalated)
    assert escalation == CallbackEscalated(
        case=case,
        customer_id="c1",
        priority=Priority.URGENT,
        due_at=T0 + 2 * H,
        escalated_at=T0,
        score=2,
        callback_id="cb1",
    )
    notice = one(events, Notify)
    assert (notice.template, notice.case, notice.tag) == (
        Template.PRIORITY_CALLBACK,
        case,
        "cb1",
    )
    assert notice.params == {
        "case_type": case_type.value,
        "case_id": "R1",
        "call_back_within_hours": 2,
        "call_back_by": (T0 + 2 * H).isoformat(),
    }


def test_the_call_back_is_due_within_the_first_response_hours() -> None:
    events = priority_callback(
        CaseKey(CaseType.RETURN, "R1"), "c1", LowScore("cb1", 1), policy(first_response_hours=4), T0
    )
    assert one(events, CallbackEscalated).due_at == T0 + 4 * H


def test_a_complaint_is_reopened_not_called_back() -> None:
    with pytest.raises(ValueError, match="reopened"):
        priority_callback(CaseKey(CaseType.COMPLAINT, "K1"), "c1", LowScore("cb1", 1), POLICY, T0)
