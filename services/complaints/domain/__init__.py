"""The complaints domain: pure rules, money and the aggregates (no I/O, no clock).

Usage by the service layer, for every input event: load (or create with `new`) the Complaint,
the order's ShopOrder and, only to compensate or review, the buyer's CompensationBudget; call
one method with the policy and `now`; persist what changed and turn the returned events into
messages and timer rows, all in one transaction.

- `Complaint`: acknowledgement, first-response and resolution SLAs, escalation, compensation
  once per complaint (`compensate` once `awaits_compensation` and the order is known), coupon
  review, reopening after a low satisfaction score.
- `ShopOrder`: the order's facts (no personal data) and the once-per-order late-shipment
  penalty, from the ship-by timer, a late shipment or cancellation, or an upheld complaint.
- `CompensationBudget`: a buyer's coupons in the rolling window, capped by the budget.
- `priority_callback`: a low score about a return or late-shipment case, escalated for a
  person to call the buyer back.

docs/decisions-complaints.md records every choice made where the SPEC is silent.
"""

from services.complaints.domain.budget import CompensationBudget, Grant
from services.complaints.domain.callbacks import CALLBACK_CASES, priority_callback
from services.complaints.domain.compensating import Compensation
from services.complaints.domain.compensation import COMPENSATION, CompensationRule, coupon_for
from services.complaints.domain.events import (
    CallbackEscalated,
    CouponAwaitingApproval,
    CouponGranted,
    DomainEvent,
    Escalated,
    Notify,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.complaints.domain.model import Complaint, LowScore
from services.complaints.domain.orders import LatePenalty, OrderFacts, OrderLine, ShopOrder
from services.complaints.domain.rules import (
    FULFIL_WITHIN,
    CaseKey,
    CaseType,
    Category,
    ComplaintStatus,
    CouponStatus,
    Deadlines,
    EscalationReason,
    Outcome,
    Priority,
    Remedy,
    Resolution,
    Sla,
    Template,
    TimerKind,
    is_complex,
    late_shipment_amount,
    quality_issue_coupon,
    resolution_hours,
    sla_deadlines,
)

__all__ = [
    "CALLBACK_CASES",
    "COMPENSATION",
    "FULFIL_WITHIN",
    "CallbackEscalated",
    "CaseKey",
    "CaseType",
    "Category",
    "Compensation",
    "CompensationBudget",
    "CompensationRule",
    "Complaint",
    "ComplaintStatus",
    "CouponAwaitingApproval",
    "CouponGranted",
    "CouponStatus",
    "Deadlines",
    "DomainEvent",
    "Escalated",
    "EscalationReason",
    "Grant",
    "LatePenalty",
    "LowScore",
    "Notify",
    "OrderFacts",
    "OrderLine",
    "Outcome",
    "Priority",
    "RefundDue",
    "Remedy",
    "ReshipmentDue",
    "Resolution",
    "ShopOrder",
    "Sla",
    "SlaBreached",
    "Template",
    "TimerCancelled",
    "TimerKind",
    "TimerSet",
    "coupon_for",
    "is_complex",
    "late_shipment_amount",
    "priority_callback",
    "quality_issue_coupon",
    "resolution_hours",
    "sla_deadlines",
]
