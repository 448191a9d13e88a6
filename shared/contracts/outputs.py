"""Data models of the events this system writes (SPEC section 3).

Personal data (customer name, phone, email) never appears here: buyers are `customer_id` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from .inputs import ComplaintCategory, Payment, ReturnKind, ReturnLine
from .primitives import (
    MAX_LINES,
    Currency,
    EventData,
    Id,
    Money,
    Name,
    Score,
    SignedMoney,
    Timestamp,
    field_error,
)

CaseType = Literal["return", "complaint", "late_shipment"]
BreakdownKind = Literal[
    "goods",
    "outbound_shipping",
    "return_shipping",
    "free_shipping_deduction",
    "gift_charge",
    "compensation",
    # Negative: what the order-level cap of SPEC 4.11 cut from a request (refund.issued only).
    "already_refunded",
]
ShippingPayer = Literal["buyer", "merchant", "insurer"]
RuleCode = Literal[
    "eligible",
    "window_expired",
    "excluded_category",
    "waived_at_purchase",
    "not_intact",
    "quality_window_expired",
    "evidence_missing",
    "not_delivered",
    "unknown_order",
    "quantity_exceeds_purchased",
    "inspection_failed",
    "reviewed_approve",
    "reviewed_reject",
    "cancelled",
]
WaitingFor = Literal["order", "signature", "evidence", "review"]
SlaKind = Literal[
    "return_review",
    "refund",
    "reshipment",
    "complaint_first_response",
    "complaint_resolution",
    "callback",
]


class CaseRef(EventData):
    type: CaseType
    id: Id


class BreakdownItem(EventData):
    kind: BreakdownKind
    amount: SignedMoney


def _sums_to_amount(
    event: EventData, field: str, parts: Sequence[BreakdownItem | Payment], amount: int
) -> None:
    """Refuse `parts` of a refund (`breakdown` or `payments`) that do not add up to it."""
    if sum(part.amount for part in parts) != amount:
        raise field_error(type(event).__name__, (field,), f"{field}_mismatch", "must sum to amount")


class RefundIssued(EventData):
    refund_id: Id
    order_id: Id
    customer_id: Id
    case: CaseRef
    amount: Money
    currency: Currency
    breakdown: Annotated[list[BreakdownItem], Field(min_length=1, max_length=MAX_LINES)]
    payments: Annotated[list[Payment], Field(max_length=MAX_LINES)]
    return_shipping_payer: ShippingPayer | None = None
    due_by: Timestamp
    issued_at: Timestamp

    @model_validator(mode="after")
    def _sums(self) -> RefundIssued:
        _sums_to_amount(self, "breakdown", self.breakdown, self.amount)
        _sums_to_amount(self, "payments", self.payments, self.amount)
        return self


RefundRequester = Literal["returns", "complaints"]


class RefundRequested(EventData):
    """An internal request to the refund ledger (SPEC 4.11), written by returns and complaints
    in the same transaction as the decision that owes the buyer money. The ledger caps it
    against the order, splits it over the payment methods and issues `refund.issued` under the
    same `refund_id` (see `shared.contracts.ids.refund_id`)."""

    refund_id: Id
    order_id: Id
    customer_id: Id
    case: CaseRef
    amount: Money
    currency: Currency
    # What the case owes, by kind, before the order-level cap (never `already_refunded`).
    breakdown: Annotated[list[BreakdownItem], Field(min_length=1)]
    return_shipping_payer: ShippingPayer | None = None
    due_by: Timestamp
    requested_at: Timestamp
    requested_by: RefundRequester

    @model_validator(mode="after")
    def _sums(self) -> RefundRequested:
        if any(item.kind == "already_refunded" for item in self.breakdown):
            raise field_error(
                "RefundRequested", ("breakdown",), "ledger_kind", "already_refunded is the ledger's"
            )
        _sums_to_amount(self, "breakdown", self.breakdown, self.amount)
        return self


class CouponGranted(EventData):
    coupon_id: Id
    customer_id: Id
    order_id: Id
    complaint_id: Id
    value: Money
    currency: Currency
    expires_at: Timestamp
    reason: Name
    granted_at: Timestamp


class ReturnDecision(EventData):
    """Data of return.approved, return.rejected, return.pending and return.completed."""

    return_id: Id
    order_id: Id
    customer_id: Id
    kind: ReturnKind
    rule: RuleCode
    message: Annotated[str, Field(min_length=1)]
    message_en: Annotated[str, Field(min_length=1)] | None = None
    return_shipping_payer: ShippingPayer | None = None
    refund_estimate: Money | None = None
    waiting_for: WaitingFor | None = None
    decided_at: Timestamp


class ReshipmentRequested(EventData):
    order_id: Id
    customer_id: Id
    case: CaseRef
    lines: Annotated[list[ReturnLine], Field(min_length=1, max_length=MAX_LINES)]
    due_by: Timestamp
    requested_at: Timestamp


class SlaBreached(EventData):
    case: CaseRef
    sla: SlaKind
    due_at: Timestamp
    detected_at: Timestamp
    order_id: Id | None = None
    customer_id: Id | None = None


class FollowupEvent(EventData):
    """Data of callback.scheduled, callback.sent, satisfaction.recorded and satisfaction.low."""

    callback_id: Id
    customer_id: Id
    cases: Annotated[list[CaseRef], Field(min_length=1, max_length=MAX_LINES)]
    due_at: Timestamp | None = None
    deadline: Timestamp | None = None
    score: Score | None = None


EscalationReason = Literal[
    "first_response_overdue",
    "resolution_overdue",
    "low_satisfaction",
    "compensation_currency",
    "customer_mismatch",
]
EscalationPriority = Literal["high", "urgent"]


class ComplaintEscalated(EventData):
    """A complaint a supervisor must take over: an SLA missed, or reopened after a low score.

    `due_at` is the missed deadline, or for `low_satisfaction` the reopened case's new
    resolution deadline.
    """

    escalation_id: Id
    complaint_id: Id
    order_id: Id
    customer_id: Id
    category: ComplaintCategory
    reason: EscalationReason
    priority: EscalationPriority
    due_at: Timestamp
    escalated_at: Timestamp
    score: Score | None = None
    callback_id: Id | None = None


class CaseEscalated(EventData):
    """A return or late-shipment case a person must call the buyer back about, with priority,
    after a low satisfaction score (complaints are reopened instead: `complaint.escalated`).

    Keyed by `customer_id`, like the `satisfaction.low` it answers; `due_at` is when the buyer
    should have been called back. `order_id` is given when the case names its order.
    """

    escalation_id: Id
    case: CaseRef
    customer_id: Id
    order_id: Id | None = None
    reason: Literal["low_satisfaction"]
    priority: EscalationPriority
    due_at: Timestamp
    escalated_at: Timestamp
    score: Score
    callback_id: Id


class CompensationPending(EventData):
    """A complaint's coupon over the buyer's rolling budget, waiting for a supervisor.

    Answered by `compensation.reviewed` on the `complaints` topic.
    """

    complaint_id: Id
    order_id: Id
    customer_id: Id
    coupon_id: Id
    value: Money
    currency: Currency
    used: Money
    budget: Money
    window_days: Annotated[int, Field(gt=0)]
    requested_at: Timestamp


class NotificationRequested(EventData):
    """An internal request to the notifier; it looks up the buyer's contact by customer_id."""

    request_id: Id
    customer_id: Id
    order_id: Id | None = None
    template: Name
    params: dict[str, str | int] = Field(default_factory=dict)
    urgent: bool = False
    case: CaseRef | None = None


DeliveryChannel = Literal["sms", "im", "email", "webhook", "log"]
NotificationFailReason = Literal[
    "retries_exhausted",
    "rejected",
    "no_contact",
    "no_channel",
    "expired",
    "daily_cap",
    "template_error",
    "contact_unreadable",
]


def _masked(value: str | None) -> str | None:
    # A recipient in an event is always masked (138****5678, a***@example.com): never in clear.
    if value is not None and "*" not in value:
        raise ValueError("must be a masked recipient (e.g. 138****5678), never a clear address")
    return value


MaskedRecipient = Annotated[str, Field(min_length=1, max_length=320), AfterValidator(_masked)]


class NotificationSent(EventData):
    """The notifier delivered a notification to a channel's gateway (`notification.sent`)."""

    request_id: Id
    customer_id: Id
    order_id: Id | None = None
    template: Name
    case: CaseRef | None = None
    urgent: bool
    channel: DeliveryChannel
    recipient: MaskedRecipient | None = None
    language: Annotated[str, Field(min_length=2, max_length=35)]
    attempts: Annotated[int, Field(ge=1)]
    sent_at: Timestamp


class NotificationFailed(EventData):
    """The notifier gave a notification up; a dead-letter record holds it (`notification.failed`).

    `detail` names the cause (gateway status, missing parameter), never an address.
    """

    request_id: Id
    customer_id: Id
    order_id: Id | None = None
    template: Name
    case: CaseRef | None = None
    urgent: bool
    reason: NotificationFailReason
    detail: Annotated[str, Field(max_length=2000)]
    channel: DeliveryChannel | None = None
    recipient: MaskedRecipient | None = None
    attempts: Annotated[int, Field(ge=0)]
    failed_at: Timestamp


# Every reason a consumer dead-letters with, besides a service's own business refusals (its
# `Rejected` codes). Listed in docs/decisions.md and the AsyncAPI documents.
DEAD_LETTER_REASONS: tuple[str, ...] = (
    "empty",
    "oversized",
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "invalid_text",
    "invalid_key",
    "missing_attribute",
    "unsupported_specversion",
    "unknown_type",
    "unexpected_type",
    "invalid_attribute",
    "invalid_data",
    "naive_timestamp",
    "timestamp_out_of_range",
    "negative_amount",
    "absurd_amount",
    "payments_mismatch",
    "handler_error",
    "storage_refused",
    "batch_refused",
)


# The largest dead-letter record (value, key and headers), the broker's default record limit:
# a copy that would make it larger is cut (`value_truncated`). Readers of a dead-letter topic
# parse with this limit, not the 256 KiB of an input.
MAX_DEAD_LETTER_BYTES = 1024 * 1024


class DeadLetterOrigin(EventData):
    topic: Name
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]


class DeadLettered(EventData):
    service: Name
    reason: Annotated[
        Name,
        Field(
            description=(
                "Why the record was dead-lettered: one of "
                + ", ".join(DEAD_LETTER_REASONS)
                + ", or a service's own business refusal (e.g. unknown_callback)."
            )
        ),
    ]
    detail: str
    origin: DeadLetterOrigin
    key: str | None = None
    value: str
    value_encoding: Literal["utf-8", "base64"]
    value_truncated: bool
    received_at: Timestamp
