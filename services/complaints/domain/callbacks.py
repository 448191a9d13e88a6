"""A low satisfaction score about a case that is not a complaint (SPEC 5): a return or a
late-shipment case is not reopened here, it gets a priority escalation for a person to call the
buyer back, and the buyer is told to expect the call. Complaints reopen (`Complaint`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.complaints.domain.events import CallbackEscalated, DomainEvent, Notify
from services.complaints.domain.model import LowScore
from services.complaints.domain.rules import CaseKey, CaseType, Priority, Template
from shared.clock import instant_to_json, require_aware
from shared.policy import ComplaintsPolicy

CALLBACK_CASES = frozenset({CaseType.RETURN, CaseType.LATE_SHIPMENT})


def priority_callback(
    case: CaseKey, customer_id: str, score: LowScore, policy: ComplaintsPolicy, now: datetime
) -> list[DomainEvent]:
    """The escalation and the buyer's notice; the same callback gives the same events (the
    service layer's ids are deterministic per case and callback), so a replay changes nothing.

    The call is due within `first_response_hours`: the buyer waits for a person as a new
    complainant waits for a first answer.
    """
    if case.type not in CALLBACK_CASES:
        raise ValueError(f"a {case.type.value} case is not called back, it is reopened")
    require_aware(now, "now")
    hours = policy.first_response_hours
    due_at = now + timedelta(hours=hours)
    return [
        CallbackEscalated(
            case=case,
            customer_id=customer_id,
            priority=Priority.URGENT,
            due_at=due_at,
            escalated_at=now,
            score=score.score,
            callback_id=score.callback_id,
        ),
        Notify(
            template=Template.PRIORITY_CALLBACK,
            case=case,
            params={
                "case_type": case.type.value,
                "case_id": case.id,
                "call_back_within_hours": hours,
                "call_back_by": instant_to_json(due_at) or "",
            },
            tag=score.callback_id,
        ),
    ]
