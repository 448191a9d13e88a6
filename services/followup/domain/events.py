"""Domain events of a callback; the service layer turns them into Kafka messages and timer rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.followup.domain.rules import CaseKey


@dataclass(frozen=True)
class CallbackScheduled:
    """The callback's plan, new or changed (it absorbed a case, or waits out quiet hours)."""

    cases: tuple[CaseKey, ...]
    due_at: datetime
    deadline: datetime
    revision: int


@dataclass(frozen=True)
class TimerSet:
    """Fire the callback at `due_at` (one timer per callback; setting it again moves it)."""

    due_at: datetime


@dataclass(frozen=True)
class CallbackSent:
    """Time to ask the buyer: the survey invitation is requested from the notifier for `cases`
    (whether it reaches the buyer is CallbackDelivered or CallbackUndelivered, later)."""

    cases: tuple[CaseKey, ...]
    due_at: datetime
    deadline: datetime
    sent_at: datetime
    answer_by: datetime


@dataclass(frozen=True)
class CallbackDelivered:
    """The notifier delivered the survey invitation: `cases` had their callback in time."""

    cases: tuple[CaseKey, ...]
    delivered_at: datetime | None  # None when only the buyer's answer proves it


@dataclass(frozen=True)
class CallbackUndelivered:
    """The notifier gave the survey invitation up (`reason`, e.g. `expired`): it never reached
    the buyer; each of `cases` is a CaseMissed too."""

    cases: tuple[CaseKey, ...]
    reason: str


@dataclass(frozen=True)
class CaseMissed:
    """A case whose callback did not reach the buyer before its deadline (`sla.breached`): it
    could not go out in time, or (`undelivered`, the notifier's reason) it went out but the
    notifier could not deliver it."""

    case: CaseKey
    order_id: str
    deadline: datetime
    detected_at: datetime
    undelivered: str | None = None


@dataclass(frozen=True)
class SatisfactionRecorded:
    """The buyer's score; `low` when it is at or below the policy's low-score threshold."""

    cases: tuple[CaseKey, ...]
    score: int
    low: bool
    answered_at: datetime


DomainEvent = (
    CallbackScheduled
    | TimerSet
    | CallbackSent
    | CallbackDelivered
    | CallbackUndelivered
    | CaseMissed
    | SatisfactionRecorded
)
