"""Follow-up vocabulary: case keys, statuses, outcomes and what closes a case."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from shared.refusal import Refusal


class CaseType(StrEnum):
    RETURN = "return"
    COMPLAINT = "complaint"


class CaseKey(NamedTuple):
    """A case as the contract names it: `{type, id}`."""

    type: CaseType
    id: str


class CallbackStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its send time
    SENT = "sent"  # the survey invitation went out
    MISSED = "missed"  # could not go out before the deadline of any of its cases


class CaseOutcome(StrEnum):
    PENDING = "pending"  # its callback is scheduled
    SENT = "sent"  # named in a survey invitation requested before the case's deadline; whether
    # it reached the buyer is not known yet (the notifier's status is awaited)
    DELIVERED = "delivered"  # the invitation reached the buyer before the case's deadline
    UNDELIVERED = "undelivered"  # requested, but the notifier could not deliver it in time
    MISSED = "missed"  # no callback before its deadline (sla.breached)


class Delivery(StrEnum):
    """What the notifier reported of a sent callback's survey invitation."""

    AWAITING = "awaiting"  # requested; no notification.sent / .failed yet
    DELIVERED = "delivered"  # notification.sent (or the buyer answered it)
    FAILED = "failed"  # notification.failed: it never reached the buyer


# The outcomes of a case that fell due (the report's and the metrics' denominator), and the
# one that counts as on time: its callback reached the buyer before the case's deadline.
DUE_OUTCOMES = frozenset({CaseOutcome.DELIVERED, CaseOutcome.UNDELIVERED, CaseOutcome.MISSED})
ON_TIME_OUTCOMES = frozenset({CaseOutcome.DELIVERED})


# How long after sending an answer is still accepted (the policy file has no key for it).
SURVEY_VALIDITY = timedelta(days=7)

# Complaint outcomes that close a complaint with a service to rate; a withdrawn complaint
# was given up by the buyer, like a cancelled return, and gets no callback.
CALLBACK_COMPLAINT_OUTCOMES = frozenset({"upheld", "not_upheld"})


def supersedes(resolution: Mapping[str, Any], on_record: Mapping[str, Any] | None) -> bool:
    """Whether a complaint's resolution replaces the one on record: the latest `resolved_at`
    counts (an agent's correction), also when several arrive before the opening; an equal or
    older one is a redelivery or stale."""
    if on_record is None:
        return True
    resolved_at = datetime.fromisoformat(str(resolution["resolved_at"]))
    return resolved_at > datetime.fromisoformat(str(on_record["resolved_at"]))


# Return rules that end a return without a service to rate (return.completed of a cancellation).
NO_CALLBACK_RETURN_RULES = frozenset({"cancelled"})


class AnswerRejected(Refusal):
    """A survey answer that cannot be recorded; `reason` is a short code for the dead letter."""
