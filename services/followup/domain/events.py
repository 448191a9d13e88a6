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
    """Time to ask the buyer: the survey invitation goes out for `cases`."""

    cases: tuple[CaseKey, ...]
    due_at: datetime
    deadline: datetime
    sent_at: datetime
    answer_by: datetime


@dataclass(frozen=True)
class CaseMissed:
    """A case whose callback can no longer go out before its deadline (`sla.breached`)."""

    case: CaseKey
    order_id: str
    deadline: datetime
    detected_at: datetime


@dataclass(frozen=True)
class SatisfactionRecorded:
    """The buyer's score; `low` when it is at or below the policy's low-score threshold."""

    cases: tuple[CaseKey, ...]
    score: int
    low: bool
    answered_at: datetime


DomainEvent = CallbackScheduled | TimerSet | CallbackSent | CaseMissed | SatisfactionRecorded
