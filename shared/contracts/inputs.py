"""Data models of the events the e-commerce platform writes (SPEC section 2)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from .primitives import (
    MAX_LINES,
    Currency,
    EventData,
    Id,
    Money,
    Name,
    Quantity,
    Score,
    Timestamp,
    Url,
    field_error,
)

Channel = Literal["sms", "im", "email", "webhook"]
Leg = Literal["outbound", "return"]
ReturnKind = Literal["refund", "exchange"]
ReturnReason = Literal[
    "no_reason",
    "dislike",
    "size_fit",
    "changed_mind",
    "quality_issue",
    "damaged_in_transit",
    "wrong_item",
    "missing_parts",
    "not_as_described",
]
ConditionFlag = Literal[
    "opened_for_inspection",
    "trial_use",
    "seal_broken",
    "tags_removed",
    "soiled_or_damaged",
    "activated",
    "repaired_or_modified",
    "serial_tampered",
    "accessories_missing",
]
ReviewDecisionValue = Literal["approve", "reject"]
ComplaintCategory = Literal[
    "logistics_delay",
    "late_shipment",
    "quality_issue",
    "wrong_item",
    "missing_item",
    "not_received",
    "fake_shipment",
    "service_attitude",
    "other",
]
ComplaintOutcome = Literal["upheld", "not_upheld", "withdrawn"]
ComplaintRemedy = Literal["reship", "refund", "none"]
CompensationDecision = Literal["approve", "deny"]

RETURN_REASONS: frozenset[str] = frozenset(get_args(ReturnReason))
NO_REASON_REASONS: frozenset[str] = frozenset({"no_reason", "dislike", "size_fit", "changed_mind"})
SELLER_FAULT_REASONS: frozenset[str] = RETURN_REASONS - NO_REASON_REASONS
CONDITION_FLAGS: frozenset[str] = frozenset(get_args(ConditionFlag))
INTACT_CONDITIONS: frozenset[str] = frozenset({"opened_for_inspection", "trial_use"})
COMPLAINT_CATEGORIES: frozenset[str] = frozenset(get_args(ComplaintCategory))

Contact = Annotated[str, Field(max_length=320)]


def _language_tag(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value.strip()) <= 35:
        return value.strip()
    return None


# --- orders ---------------------------------------------------------------------------------


class OrderLine(EventData):
    line_id: Id
    sku: Id
    title: str
    category: Name
    quantity: Quantity
    paid_amount: Money
    is_gift: bool = False
    stated_price: Money = 0
    no_reason_return_waived: bool = False

    @model_validator(mode="after")
    def _gift_is_free(self) -> OrderLine:
        if self.is_gift and self.paid_amount != 0:
            raise field_error(
                "OrderLine", ("paid_amount",), "gift_not_free", "must be 0 on a gift line"
            )
        return self


class Payment(EventData):
    method: Name
    amount: Money


class Customer(EventData):
    """Personal data (SPEC section 7): only the notifier keeps it, encrypted."""

    name: Contact | None = None
    phone: Contact | None = None
    email: Contact | None = None
    preferred_channel: Channel
    # Optional extension (not in SPEC section 2): the buyer's language as a BCP 47 tag, for the
    # notifier's templates (zh-CN when absent). Lenient: an unusable value counts as absent and
    # never rejects the order.
    language: Annotated[str | None, BeforeValidator(_language_tag)] = None

    @model_validator(mode="after")
    def _reachable(self) -> Customer:
        if not (self.phone or "").strip() and not (self.email or "").strip():
            raise field_error(
                "Customer", ("phone",), "no_contact", "a phone or an email is required"
            )
        return self


class OrderPaid(EventData):
    order_id: Id
    shop_id: Id
    customer_id: Id
    paid_at: Timestamp
    currency: Currency
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]
    shipping_fee_paid: Money
    standard_shipping_fee: Money
    free_shipping_threshold: Money | None = None
    shipping_insurance: bool
    presale_ship_by: Timestamp | None = None
    payments: Annotated[list[Payment], Field(max_length=MAX_LINES)]
    customer: Customer

    @field_validator("lines")
    @classmethod
    def _unique_lines(cls, lines: list[OrderLine]) -> list[OrderLine]:
        if len({line.line_id for line in lines}) != len(lines):
            raise ValueError("line_id values must be unique within the order")
        return lines

    # A field validator (not a model one) so the error names `data.payments`; lines and
    # shipping_fee_paid are declared earlier, so they are in info.data when they were valid.
    @field_validator("payments")
    @classmethod
    def _payments_cover_order(cls, payments: list[Payment], info: ValidationInfo) -> list[Payment]:
        lines = info.data.get("lines")
        shipping = info.data.get("shipping_fee_paid")
        if lines is None or shipping is None:
            return payments
        due = sum(line.paid_amount for line in lines) + shipping
        paid = sum(payment.amount for payment in payments)
        if paid != due:
            raise field_error(
                "OrderPaid",
                (),
                "payments_mismatch",
                f"payments sum to {paid} but lines plus shipping_fee_paid come to {due}",
            )
        return payments

    @property
    def goods_total(self) -> int:
        return sum(line.paid_amount for line in self.lines)

    def line(self, line_id: str) -> OrderLine | None:
        return next((line for line in self.lines if line.line_id == line_id), None)


class OrderShipped(EventData):
    order_id: Id
    shipped_at: Timestamp
    carrier: Name
    tracking_no: Id


class OrderCancelled(EventData):
    order_id: Id
    cancelled_at: Timestamp


# --- signatures -----------------------------------------------------------------------------


class ParcelSigned(EventData):
    order_id: Id
    leg: Leg
    return_id: Id | None = None
    tracking_no: Id
    signed_at: Timestamp

    @model_validator(mode="after")
    def _return_leg_names_return(self) -> ParcelSigned:
        if self.leg == "return" and self.return_id is None:
            raise field_error(
                "ParcelSigned", ("return_id",), "missing", "is required when leg is 'return'"
            )
        return self


# --- returns --------------------------------------------------------------------------------


class ReturnLine(EventData):
    line_id: Id
    quantity: Quantity


def _unique_return_lines(lines: list[ReturnLine]) -> list[ReturnLine]:
    if len({line.line_id for line in lines}) != len(lines):
        raise ValueError("line_id values must be unique within the request")
    return lines


class ReturnRequested(EventData):
    return_id: Id
    order_id: Id
    customer_id: Id
    kind: ReturnKind
    reason: ReturnReason
    lines: Annotated[list[ReturnLine], Field(min_length=1, max_length=MAX_LINES)]
    condition: list[ConditionFlag] = Field(default_factory=list, max_length=MAX_LINES)
    evidence_urls: list[Url] = Field(default_factory=list, max_length=MAX_LINES)
    requested_at: Timestamp

    _unique_lines = field_validator("lines")(_unique_return_lines)

    @property
    def is_no_reason(self) -> bool:
        return self.reason in NO_REASON_REASONS

    @property
    def is_seller_fault(self) -> bool:
        return self.reason in SELLER_FAULT_REASONS


class ReturnEvidenceSubmitted(EventData):
    return_id: Id
    order_id: Id
    evidence_urls: Annotated[list[Url], Field(min_length=1, max_length=MAX_LINES)]
    submitted_at: Timestamp


class ReturnShipped(EventData):
    return_id: Id
    order_id: Id
    carrier: Name
    tracking_no: Id
    shipped_at: Timestamp
    shipping_fee_paid: Money


class ReturnInspected(EventData):
    return_id: Id
    order_id: Id
    passed: bool
    findings: list[ConditionFlag] = Field(default_factory=list, max_length=MAX_LINES)
    inspected_at: Timestamp


class ReturnReviewed(EventData):
    return_id: Id
    order_id: Id
    decision: ReviewDecisionValue
    agent_id: Id
    note: str = ""
    reviewed_at: Timestamp


class ReturnCancelled(EventData):
    return_id: Id
    order_id: Id
    cancelled_at: Timestamp


# --- complaints -----------------------------------------------------------------------------


class ComplaintOpened(EventData):
    complaint_id: Id
    order_id: Id
    customer_id: Id
    category: ComplaintCategory
    description: str = ""
    opened_at: Timestamp


class ComplaintResponded(EventData):
    complaint_id: Id
    order_id: Id
    agent_id: Id
    responded_at: Timestamp


class ComplaintResolved(EventData):
    complaint_id: Id
    order_id: Id
    outcome: ComplaintOutcome
    remedy: ComplaintRemedy
    agent_id: Id
    resolved_at: Timestamp


class CompensationReviewed(EventData):
    """A supervisor's decision on a complaint's coupon held over the buyer's budget."""

    complaint_id: Id
    order_id: Id
    decision: CompensationDecision
    agent_id: Id
    note: str = ""
    reviewed_at: Timestamp


# --- surveys --------------------------------------------------------------------------------


class SurveyAnswered(EventData):
    callback_id: Id
    customer_id: Id
    score: Score
    comment: str = ""
    answered_at: Timestamp


# --- customers: requests about a buyer rather than one order --------------------------------


class CustomerErasureRequested(EventData):
    """The buyer asked to be forgotten: the notifier erases their contact data at once and
    stores none from orders paid up to `requested_at`."""

    customer_id: Id
    requested_at: Timestamp


# --- payouts: finance reports what the payment provider did with a refund (SPEC 2, 4.11) -----


class RefundSettled(EventData):
    refund_id: Id
    order_id: Id
    settled_at: Timestamp


class RefundFailed(EventData):
    """One part of a refund that the provider refused (e.g. a closed card)."""

    refund_id: Id
    order_id: Id
    method: Name
    amount: Money
    reason: Name
    failed_at: Timestamp
