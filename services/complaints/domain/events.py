"""Domain events the complaints aggregates return; the service layer turns them into outbox
messages (notification requests, coupons, refunds, reshipments, SLA breaches, escalations) and
timer rows. Ids are the service layer's: every event here is deterministic per case and round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.complaints.domain.rules import (
    CaseKey,
    EscalationReason,
    Priority,
    Sla,
    Template,
    TimerKind,
)
from shared.clock import require_aware


@dataclass(frozen=True)
class Notify:
    """Ask the notifier to tell the buyer something (`notification.requested`).

    `tag` tells apart two requests of the same template for one case (e.g. the round).
    """

    template: Template
    case: CaseKey
    params: dict[str, str | int]
    urgent: bool = False
    tag: str = ""


@dataclass(frozen=True)
class TimerSet:
    kind: TimerKind
    due_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.due_at, "due_at")


@dataclass(frozen=True)
class TimerCancelled:
    kind: TimerKind


@dataclass(frozen=True)
class SlaBreached:
    case: CaseKey
    sla: Sla
    due_at: datetime
    detected_at: datetime
    round: int = 0


@dataclass(frozen=True)
class Escalated:
    """A complaint a supervisor must take over (`complaint.escalated`)."""

    reason: EscalationReason
    priority: Priority
    due_at: datetime  # the missed deadline, or for a reopened case its new resolution deadline
    escalated_at: datetime
    round: int
    score: int | None = None
    callback_id: str | None = None


@dataclass(frozen=True)
class CallbackEscalated:
    """A return or late-shipment case a person must call the buyer back about, with priority,
    after a low satisfaction score (`case.escalated`)."""

    case: CaseKey
    customer_id: str
    priority: Priority
    due_at: datetime  # call the buyer back by then
    escalated_at: datetime
    score: int
    callback_id: str

    def __post_init__(self) -> None:
        require_aware(self.due_at, "due_at")


@dataclass(frozen=True)
class CouponGranted:
    value: int
    currency: str
    granted_at: datetime
    expires_at: datetime
    reason: str


@dataclass(frozen=True)
class CouponAwaitingApproval:
    """A coupon over the buyer's rolling budget: a supervisor approves or denies it."""

    value: int
    currency: str
    used: int  # compensation granted to the buyer within the window, before this one
    budget: int
    window_days: int
    requested_at: datetime


@dataclass(frozen=True)
class RefundDue:
    """Ask the refund ledger for this refund (`refund.requested`); it caps it against the
    order, splits it over the payment methods and reports it if issued after `due_by`."""

    case: CaseKey
    amount: int
    currency: str
    breakdown: tuple[tuple[str, int], ...]
    due_by: datetime
    requested_at: datetime

    def __post_init__(self) -> None:
        if sum(amount for _, amount in self.breakdown) != self.amount:
            raise ValueError("a refund's breakdown must sum to its amount")


@dataclass(frozen=True)
class ReshipmentDue:
    case: CaseKey
    lines: dict[str, int]
    due_by: datetime
    requested_at: datetime

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("a reshipment names at least one line")


DomainEvent = (
    Notify
    | TimerSet
    | TimerCancelled
    | SlaBreached
    | Escalated
    | CallbackEscalated
    | CouponGranted
    | CouponAwaitingApproval
    | RefundDue
    | ReshipmentDue
)
