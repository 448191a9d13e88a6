"""Every event type of the contract and its data model.

Adding an event type is one line in `EVENT_TYPES` (plus a constant for its name).
"""

from __future__ import annotations

from .inputs import (
    COMPLAINT_CATEGORIES,
    CONDITION_FLAGS,
    INTACT_CONDITIONS,
    NO_REASON_REASONS,
    RETURN_REASONS,
    SELLER_FAULT_REASONS,
    Channel,
    CompensationDecision,
    CompensationReviewed,
    ComplaintCategory,
    ComplaintOpened,
    ComplaintOutcome,
    ComplaintRemedy,
    ComplaintResolved,
    ComplaintResponded,
    ConditionFlag,
    Customer,
    Leg,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderShipped,
    ParcelSigned,
    Payment,
    RefundFailed,
    RefundSettled,
    ReturnCancelled,
    ReturnEvidenceSubmitted,
    ReturnInspected,
    ReturnKind,
    ReturnLine,
    ReturnReason,
    ReturnRequested,
    ReturnReviewed,
    ReturnShipped,
    ReviewDecisionValue,
    SurveyAnswered,
)
from .outputs import (
    BreakdownItem,
    BreakdownKind,
    CaseEscalated,
    CaseRef,
    CaseType,
    CompensationPending,
    ComplaintEscalated,
    CouponGranted,
    DeadLettered,
    DeadLetterOrigin,
    EscalationPriority,
    EscalationReason,
    FollowupEvent,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    RefundIssued,
    RefundRequested,
    RefundRequester,
    ReshipmentRequested,
    ReturnDecision,
    RuleCode,
    ShippingPayer,
    SlaBreached,
    SlaKind,
    WaitingFor,
)
from .primitives import EventData

# Inputs (SPEC section 2).
ORDER_PAID = "order.paid"
ORDER_SHIPPED = "order.shipped"
ORDER_CANCELLED = "order.cancelled"
PARCEL_SIGNED = "parcel.signed"
RETURN_REQUESTED = "return.requested"
RETURN_EVIDENCE_SUBMITTED = "return.evidence_submitted"
RETURN_SHIPPED = "return.shipped"
RETURN_INSPECTED = "return.inspected"
RETURN_REVIEWED = "return.reviewed"
RETURN_CANCELLED = "return.cancelled"
COMPLAINT_OPENED = "complaint.opened"
COMPLAINT_RESPONDED = "complaint.responded"
COMPLAINT_RESOLVED = "complaint.resolved"
SURVEY_ANSWERED = "survey.answered"
COMPENSATION_REVIEWED = "compensation.reviewed"  # a supervisor's tool, on `complaints`
REFUND_SETTLED = "refund.settled"  # finance, on `payouts`
REFUND_FAILED = "refund.failed"  # finance, on `payouts`

# Outputs (SPEC section 3).
REFUND_ISSUED = "refund.issued"
COUPON_GRANTED = "coupon.granted"
RETURN_APPROVED = "return.approved"
RETURN_REJECTED = "return.rejected"
RETURN_PENDING = "return.pending"
RETURN_COMPLETED = "return.completed"
RESHIPMENT_REQUESTED = "reshipment.requested"
SLA_BREACHED = "sla.breached"
CALLBACK_SCHEDULED = "callback.scheduled"
CALLBACK_SENT = "callback.sent"
SATISFACTION_RECORDED = "satisfaction.recorded"
SATISFACTION_LOW = "satisfaction.low"
NOTIFICATION_REQUESTED = "notification.requested"
NOTIFICATION_SENT = "notification.sent"
NOTIFICATION_FAILED = "notification.failed"
EVENT_DEADLETTERED = "event.deadlettered"
COMPLAINT_ESCALATED = "complaint.escalated"
CASE_ESCALATED = "case.escalated"
COMPENSATION_PENDING = "compensation.pending"
REFUND_REQUESTED = "refund.requested"  # internal: returns and complaints ask the refund ledger

EVENT_TYPES: dict[str, type[EventData]] = {
    ORDER_PAID: OrderPaid,
    ORDER_SHIPPED: OrderShipped,
    ORDER_CANCELLED: OrderCancelled,
    PARCEL_SIGNED: ParcelSigned,
    RETURN_REQUESTED: ReturnRequested,
    RETURN_EVIDENCE_SUBMITTED: ReturnEvidenceSubmitted,
    RETURN_SHIPPED: ReturnShipped,
    RETURN_INSPECTED: ReturnInspected,
    RETURN_REVIEWED: ReturnReviewed,
    RETURN_CANCELLED: ReturnCancelled,
    COMPLAINT_OPENED: ComplaintOpened,
    COMPLAINT_RESPONDED: ComplaintResponded,
    COMPLAINT_RESOLVED: ComplaintResolved,
    SURVEY_ANSWERED: SurveyAnswered,
    COMPENSATION_REVIEWED: CompensationReviewed,
    REFUND_SETTLED: RefundSettled,
    REFUND_FAILED: RefundFailed,
    REFUND_ISSUED: RefundIssued,
    COUPON_GRANTED: CouponGranted,
    RETURN_APPROVED: ReturnDecision,
    RETURN_REJECTED: ReturnDecision,
    RETURN_PENDING: ReturnDecision,
    RETURN_COMPLETED: ReturnDecision,
    RESHIPMENT_REQUESTED: ReshipmentRequested,
    SLA_BREACHED: SlaBreached,
    CALLBACK_SCHEDULED: FollowupEvent,
    CALLBACK_SENT: FollowupEvent,
    SATISFACTION_RECORDED: FollowupEvent,
    SATISFACTION_LOW: FollowupEvent,
    NOTIFICATION_REQUESTED: NotificationRequested,
    NOTIFICATION_SENT: NotificationSent,
    NOTIFICATION_FAILED: NotificationFailed,
    EVENT_DEADLETTERED: DeadLettered,
    COMPLAINT_ESCALATED: ComplaintEscalated,
    CASE_ESCALATED: CaseEscalated,
    COMPENSATION_PENDING: CompensationPending,
    REFUND_REQUESTED: RefundRequested,
}

# Optional fields of a shared model that one event type must carry (SPEC section 3).
REQUIRED_FOR_TYPE: dict[str, tuple[str, ...]] = {
    RETURN_APPROVED: ("return_shipping_payer", "refund_estimate"),
    RETURN_PENDING: ("waiting_for",),
    CALLBACK_SCHEDULED: ("due_at", "deadline"),
    SATISFACTION_RECORDED: ("score",),
    SATISFACTION_LOW: ("score",),
}

# Events about a buyer rather than one order are keyed by customer_id (SPEC section 1).
CUSTOMER_KEYED_TYPES: frozenset[str] = frozenset(
    {
        SURVEY_ANSWERED,
        CALLBACK_SCHEDULED,
        CALLBACK_SENT,
        SATISFACTION_RECORDED,
        SATISFACTION_LOW,
        CASE_ESCALATED,
    }
)

__all__ = [
    "CALLBACK_SCHEDULED",
    "CALLBACK_SENT",
    "CASE_ESCALATED",
    "COMPENSATION_PENDING",
    "COMPENSATION_REVIEWED",
    "COMPLAINT_CATEGORIES",
    "COMPLAINT_ESCALATED",
    "COMPLAINT_OPENED",
    "COMPLAINT_RESOLVED",
    "COMPLAINT_RESPONDED",
    "CONDITION_FLAGS",
    "COUPON_GRANTED",
    "CUSTOMER_KEYED_TYPES",
    "EVENT_DEADLETTERED",
    "EVENT_TYPES",
    "INTACT_CONDITIONS",
    "NOTIFICATION_FAILED",
    "NOTIFICATION_REQUESTED",
    "NOTIFICATION_SENT",
    "NO_REASON_REASONS",
    "ORDER_CANCELLED",
    "ORDER_PAID",
    "ORDER_SHIPPED",
    "PARCEL_SIGNED",
    "REFUND_FAILED",
    "REFUND_ISSUED",
    "REFUND_REQUESTED",
    "REFUND_SETTLED",
    "REQUIRED_FOR_TYPE",
    "RESHIPMENT_REQUESTED",
    "RETURN_APPROVED",
    "RETURN_CANCELLED",
    "RETURN_COMPLETED",
    "RETURN_EVIDENCE_SUBMITTED",
    "RETURN_INSPECTED",
    "RETURN_PENDING",
    "RETURN_REASONS",
    "RETURN_REJECTED",
    "RETURN_REQUESTED",
    "RETURN_REVIEWED",
    "RETURN_SHIPPED",
    "SATISFACTION_LOW",
    "SATISFACTION_RECORDED",
    "SELLER_FAULT_REASONS",
    "SLA_BREACHED",
    "SURVEY_ANSWERED",
    "BreakdownItem",
    "BreakdownKind",
    "CaseEscalated",
    "CaseRef",
    "CaseType",
    "Channel",
    "CompensationDecision",
    "CompensationPending",
    "CompensationReviewed",
    "ComplaintCategory",
    "ComplaintEscalated",
    "ComplaintOpened",
    "ComplaintOutcome",
    "ComplaintRemedy",
    "ComplaintResolved",
    "ComplaintResponded",
    "ConditionFlag",
    "CouponGranted",
    "Customer",
    "DeadLetterOrigin",
    "DeadLettered",
    "EscalationPriority",
    "EscalationReason",
    "EventData",
    "FollowupEvent",
    "Leg",
    "NotificationFailed",
    "NotificationRequested",
    "NotificationSent",
    "OrderCancelled",
    "OrderLine",
    "OrderPaid",
    "OrderShipped",
    "ParcelSigned",
    "Payment",
    "RefundFailed",
    "RefundIssued",
    "RefundRequested",
    "RefundRequester",
    "RefundSettled",
    "ReshipmentRequested",
    "ReturnCancelled",
    "ReturnDecision",
    "ReturnEvidenceSubmitted",
    "ReturnInspected",
    "ReturnKind",
    "ReturnLine",
    "ReturnReason",
    "ReturnRequested",
    "ReturnReviewed",
    "ReturnShipped",
    "ReviewDecisionValue",
    "RuleCode",
    "ShippingPayer",
    "SlaBreached",
    "SlaKind",
    "SurveyAnswered",
    "WaitingFor",
]
