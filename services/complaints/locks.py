"""The advisory lock keys of the complaints service's events (see handlers.py's module doc)."""

from __future__ import annotations

from collections.abc import Iterable

from services.complaints.domain.rules import CaseType
from shared.contracts import CloudEvent, FollowupEvent, RefundIssued, event_key

COMPLAINT_LOCK_PREFIX = "complaint:"


def complaint_lock(complaint_id: str) -> str:
    return f"{COMPLAINT_LOCK_PREFIX}{complaint_id}"


def lock_keys(event: CloudEvent) -> Iterable[str]:
    """What each handler touches, locked before the batch is applied (see handlers.py)."""
    data = event.data
    if isinstance(data, FollowupEvent):
        return [
            data.customer_id,
            *(complaint_lock(case.id) for case in data.cases if case.type == "complaint"),
        ]
    keys = [event_key(event)]
    complaint_id = getattr(data, "complaint_id", None)
    if isinstance(data, RefundIssued) and data.case.type == CaseType.COMPLAINT.value:
        complaint_id = data.case.id
    if isinstance(complaint_id, str):
        keys.append(complaint_lock(complaint_id))
    return keys
