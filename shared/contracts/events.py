"""Every event type of the contract and its data model.

Adding an event type is one line in `EVENT_TYPES` (plus a constant for its name).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from . import topics
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
    CustomerErasureRequested,
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
CUSTOMER_ERASURE_REQUESTED = "customer.erasure_requested"  # the platform, on `customers`
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
    CUSTOMER_ERASURE_REQUESTED: CustomerErasureRequested,
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


@dataclass(frozen=True)
class Output:
    """Where one output type goes: its topic, the services that publish it, and its key.

    `keyed_by` is the data field that makes the Kafka key (SPEC 1): `order_id` (falling back to
    `customer_id` when an event names no order) or `customer_id` for events about a buyer.
    """

    topic: str
    publishers: frozenset[str]
    keyed_by: Literal["order_id", "customer_id"] = "order_id"


def _outputs(
    topic: str,
    types: tuple[str, ...],
    publishers: tuple[str, ...],
    keyed_by: Literal["order_id", "customer_id"] = "order_id",
) -> dict[str, Output]:
    return {t: Output(topic, frozenset(publishers), keyed_by) for t in types}


# Every output type of this system, declared once: topic, publishers and key (SPEC 1, 3).
OUTPUTS: dict[str, Output] = {
    # The refund ledger is the only writer of money out (SPEC 3, 4.11).
    **_outputs(topics.REFUNDS, (REFUND_ISSUED,), ("refunds",)),
    **_outputs(topics.COUPONS, (COUPON_GRANTED,), ("complaints",)),
    **_outputs(
        topics.RETURN_DECISIONS,
        (RETURN_APPROVED, RETURN_REJECTED, RETURN_PENDING, RETURN_COMPLETED),
        ("returns",),
    ),
    **_outputs(topics.FULFILMENT, (RESHIPMENT_REQUESTED,), ("returns", "complaints")),
    **_outputs(topics.SLA, (SLA_BREACHED,), ("returns", "complaints", "followup", "refunds")),
    **_outputs(
        topics.FOLLOWUPS,
        (CALLBACK_SCHEDULED, CALLBACK_SENT, SATISFACTION_RECORDED, SATISFACTION_LOW),
        ("followup",),
        keyed_by="customer_id",
    ),
    **_outputs(topics.NOTIFICATIONS, (NOTIFICATION_REQUESTED,), ("complaints", "followup")),
    **_outputs(topics.NOTIFICATION_STATUS, (NOTIFICATION_SENT, NOTIFICATION_FAILED), ("notifier",)),
    **_outputs(topics.ESCALATIONS, (COMPLAINT_ESCALATED, COMPENSATION_PENDING), ("complaints",)),
    **_outputs(topics.ESCALATIONS, (CASE_ESCALATED,), ("complaints",), keyed_by="customer_id"),
    # What returns and complaints ask the refund ledger to pay (SPEC 4.11).
    **_outputs(topics.REFUND_REQUESTS, (REFUND_REQUESTED,), ("returns", "complaints")),
}

# Events about a buyer rather than one order are keyed by customer_id (SPEC section 1).
CUSTOMER_KEYED_TYPES: frozenset[str] = frozenset(
    {SURVEY_ANSWERED, CUSTOMER_ERASURE_REQUESTED}
    | {t for t, out in OUTPUTS.items() if out.keyed_by == "customer_id"}
)

# What each topic carries (SPEC sections 1-3); any other type on it is `unexpected_type`, so a
# platform topic can never make a service act on an internal type. Topics not listed (tests'
# own) are not checked.
PLATFORM_TOPIC_TYPES: dict[str, frozenset[str]] = {
    topics.ORDERS: frozenset({ORDER_PAID, ORDER_SHIPPED, ORDER_CANCELLED}),
    topics.SIGNATURES: frozenset({PARCEL_SIGNED}),
    topics.RETURNS: frozenset(
        {
            RETURN_REQUESTED,
            RETURN_EVIDENCE_SUBMITTED,
            RETURN_SHIPPED,
            RETURN_INSPECTED,
            RETURN_REVIEWED,
            RETURN_CANCELLED,
        }
    ),
    # compensation.reviewed is a supervisor's tool answering `compensation.pending`.
    topics.COMPLAINTS: frozenset(
        {COMPLAINT_OPENED, COMPLAINT_RESPONDED, COMPLAINT_RESOLVED, COMPENSATION_REVIEWED}
    ),
    topics.SURVEYS: frozenset({SURVEY_ANSWERED}),
    topics.CUSTOMERS: frozenset({CUSTOMER_ERASURE_REQUESTED}),
    topics.PAYOUTS: frozenset({REFUND_SETTLED, REFUND_FAILED}),
}

# This system's topics: type -> the services that publish it there. An event on one of them
# must also come from one of those services (`source` = `service_source(name)`).
SERVICE_TOPIC_TYPES: dict[str, dict[str, frozenset[str]]] = {}
for _type, _output in OUTPUTS.items():
    SERVICE_TOPIC_TYPES.setdefault(_output.topic, {})[_type] = _output.publishers


def output_of(event_type: str) -> Output:
    """The declaration of an output type; a clear error for a type that is not one."""
    try:
        return OUTPUTS[event_type]
    except KeyError:
        raise ValueError(f"{event_type!r} is not an output event type") from None


def service_source(service: str) -> str:
    """The CloudEvents `source` of every event a service emits."""
    return f"/aftersales/{service}"


def unexpected_on_topic(topic: str, event_type: str, source: object) -> str | None:
    """Why `event_type` from `source` does not belong on `topic`, or None when it does."""
    platform = PLATFORM_TOPIC_TYPES.get(topic)
    if platform is not None:
        if event_type in platform:
            return None
        return f"type: {event_type!r} does not belong on the platform topic {topic!r}"
    published = SERVICE_TOPIC_TYPES.get(topic)
    if published is None:
        if topic.startswith(topics.DEAD_LETTER_PREFIX) and event_type != EVENT_DEADLETTERED:
            return f"type: {event_type!r} does not belong on a dead-letter topic"
        return None
    services = published.get(event_type)
    if services is None:
        return f"type: {event_type!r} does not belong on {topic!r}"
    # Any JSON value may arrive as the source: only text can be one of the publishers'.
    if not isinstance(source, str) or source not in _publisher_sources(topic, event_type):
        return f"source: {event_type} on {topic!r} comes only from {', '.join(sorted(services))}"
    return None


@cache
def _publisher_sources(topic: str, event_type: str) -> frozenset[str]:
    """The sources `event_type` may come from on the service topic `topic`."""
    return frozenset(service_source(s) for s in SERVICE_TOPIC_TYPES[topic][event_type])


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
    "CUSTOMER_ERASURE_REQUESTED",
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
    "OUTPUTS",
    "PARCEL_SIGNED",
    "PLATFORM_TOPIC_TYPES",
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
    "SERVICE_TOPIC_TYPES",
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
    "CustomerErasureRequested",
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
    "Output",
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
    "output_of",
    "service_source",
    "unexpected_on_topic",
]
