"""Complaints rules (SPEC section 5): vocabulary, SLA deadlines and compensation amounts.

Pure functions only; money is integer minor units throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.clock import require_aware
from shared.money import percent_bp
from shared.policy import ComplaintsPolicy

# A refund or reshipment a complaint causes is due this long after the decision that caused it
# (the same 24 hours the returns rules give a refund; the policy file has no complaints key).
FULFIL_WITHIN = timedelta(hours=24)


class Category(StrEnum):
    LOGISTICS_DELAY = "logistics_delay"
    LATE_SHIPMENT = "late_shipment"
    QUALITY_ISSUE = "quality_issue"
    WRONG_ITEM = "wrong_item"
    MISSING_ITEM = "missing_item"
    NOT_RECEIVED = "not_received"
    FAKE_SHIPMENT = "fake_shipment"
    SERVICE_ATTITUDE = "service_attitude"
    OTHER = "other"


class Outcome(StrEnum):
    UPHELD = "upheld"
    NOT_UPHELD = "not_upheld"
    WITHDRAWN = "withdrawn"


class Remedy(StrEnum):
    RESHIP = "reship"
    REFUND = "refund"
    NONE = "none"


class ComplaintStatus(StrEnum):
    NEW = "new"  # known only from an event that came before complaint.opened
    OPEN = "open"  # opened, no response yet
    RESPONDED = "responded"
    RESOLVED = "resolved"
    REOPENED = "reopened"


class TimerKind(StrEnum):
    FIRST_RESPONSE = "complaint_first_response"
    RESOLUTION = "complaint_resolution"
    LATE_SHIPMENT = "late_shipment"


class Sla(StrEnum):
    FIRST_RESPONSE = "complaint_first_response"
    RESOLUTION = "complaint_resolution"
    RESHIPMENT = "reshipment"  # a late refund is the refund ledger's to report (SPEC 4.11)


class Priority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return (Priority.NORMAL, Priority.HIGH, Priority.URGENT).index(self)


class EscalationReason(StrEnum):
    FIRST_RESPONSE_OVERDUE = "first_response_overdue"
    RESOLUTION_OVERDUE = "resolution_overdue"
    LOW_SATISFACTION = "low_satisfaction"
    # An upheld complaint whose order is in another currency than the policy's coupon amounts.
    COMPENSATION_CURRENCY = "compensation_currency"
    # An upheld complaint whose complainant is not the buyer who paid its order (order.paid's
    # customer_id): nothing automatic is given, a supervisor decides (the refund ledger's word
    # for the same mismatch, SPEC 4.11).
    CUSTOMER_MISMATCH = "customer_mismatch"


class CouponStatus(StrEnum):
    NONE = "none"  # the compensation has no coupon
    GRANTED = "granted"  # within the buyer's budget: granted at once
    PENDING_APPROVAL = "pending_approval"  # over the budget: waits for a supervisor
    APPROVED = "approved"  # granted after a supervisor's approval
    DENIED = "denied"  # a supervisor refused it


class CaseType(StrEnum):
    COMPLAINT = "complaint"
    LATE_SHIPMENT = "late_shipment"
    RETURN = "return"  # the returns service's; here only for a low score's callback


@dataclass(frozen=True)
class CaseKey:
    """The case an output is about (`case {type, id}` on the wire)."""

    type: CaseType
    id: str


# Template names of the notification requests this service sends (docs/decisions-complaints.md
# lists each template's params).
class Template(StrEnum):
    ACKNOWLEDGED = "complaint.acknowledged"
    COMPENSATED = "complaint.compensated"
    COMPENSATION_APPROVED = "complaint.compensation_approved"
    COMPENSATION_DENIED = "complaint.compensation_denied"
    ESCALATED = "complaint.escalated"
    REOPENED = "complaint.reopened"
    APOLOGY_LATE_SHIPMENT = "complaint.apology_late_shipment"
    PRIORITY_CALLBACK = "case.priority_callback"


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    remedy: Remedy
    agent_id: str
    resolved_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.resolved_at, "resolved_at")


# --- SLA ----------------------------------------------------------------------------------------


def is_complex(category: Category, policy: ComplaintsPolicy) -> bool:
    return category.value in policy.complex_categories


def resolution_hours(category: Category, policy: ComplaintsPolicy) -> int:
    """2 hours, or 24 for the complex categories (quality_issue, not_received, fake_shipment)."""
    return (
        policy.complex_resolution_hours if is_complex(category, policy) else policy.resolution_hours
    )


@dataclass(frozen=True)
class Deadlines:
    first_response: datetime
    resolution: datetime


def sla_deadlines(category: Category, opened_at: datetime, policy: ComplaintsPolicy) -> Deadlines:
    """When the first response and the resolution are due, counted from `opened_at`."""
    require_aware(opened_at, "opened_at")
    return Deadlines(
        first_response=opened_at + timedelta(hours=policy.first_response_hours),
        resolution=opened_at + timedelta(hours=resolution_hours(category, policy)),
    )


# --- money --------------------------------------------------------------------------------------


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def quality_issue_coupon(goods_total: int, policy: ComplaintsPolicy) -> int:
    """5 % of the order's goods total, at least 500 and at most 5000 (defaults)."""
    return clamp(
        percent_bp(goods_total, policy.quality_issue_rate_bp),
        policy.quality_issue_min,
        policy.quality_issue_max,
    )


def amounts_apply(currency: str, policy: ComplaintsPolicy) -> bool:
    """The policy's amounts (caps, coupons, the budget) are in its own currency: only an order
    paid in that currency is ever compared with them."""
    return currency == policy.amounts_currency


def late_shipment_amount(goods_total: int, currency: str, policy: ComplaintsPolicy) -> int:
    """5 % of the order's goods total, at most 3000 (defaults); no minimum. The cap is in the
    policy's currency: an order in another one gets the rate alone."""
    amount = percent_bp(goods_total, policy.late_shipment_rate_bp)
    return min(amount, policy.late_shipment_cap) if amounts_apply(currency, policy) else amount
