"""The returns vocabulary (SPEC section 4): statuses, rule codes, reasons, condition flags,
the statutory exclusions, and aware instants. Every other returns module builds on this one."""

from __future__ import annotations

from enum import StrEnum

from shared.contracts.inputs import (
    CONDITION_FLAGS,
    INTACT_CONDITIONS,
    NO_REASON_REASONS,
    RETURN_REASONS,
    SELLER_FAULT_REASONS,
)


class ReturnStatus(StrEnum):
    PENDING = "pending"
    REVIEW = "review"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({ReturnStatus.REJECTED, ReturnStatus.COMPLETED, ReturnStatus.CANCELLED})


class Rule(StrEnum):
    """Rule codes of SPEC 4.6, carried as `rule` by every return.* event."""

    ELIGIBLE = "eligible"
    WINDOW_EXPIRED = "window_expired"
    EXCLUDED_CATEGORY = "excluded_category"
    WAIVED_AT_PURCHASE = "waived_at_purchase"
    NOT_INTACT = "not_intact"
    QUALITY_WINDOW_EXPIRED = "quality_window_expired"
    EVIDENCE_MISSING = "evidence_missing"
    NOT_DELIVERED = "not_delivered"
    UNKNOWN_ORDER = "unknown_order"
    QUANTITY_EXCEEDS_PURCHASED = "quantity_exceeds_purchased"
    INSPECTION_FAILED = "inspection_failed"
    REVIEWED_APPROVE = "reviewed_approve"
    REVIEWED_REJECT = "reviewed_reject"
    CANCELLED = "cancelled"


class WaitingFor(StrEnum):
    ORDER = "order"
    SIGNATURE = "signature"
    EVIDENCE = "evidence"
    REVIEW = "review"


class TimerKind(StrEnum):
    SIGNATURE_WAIT = "signature_wait"
    EVIDENCE_WAIT = "evidence_wait"
    REVIEW_SLA = "review_sla"
    INSPECTION_GRACE = "inspection_grace"
    REFUND_DEADLINE = "refund_deadline"


class Sla(StrEnum):
    RETURN_REVIEW = "return_review"
    REFUND = "refund"
    RESHIPMENT = "reshipment"


class ReturnKind(StrEnum):
    REFUND = "refund"
    EXCHANGE = "exchange"


class Payer(StrEnum):
    """Who bears the return freight."""

    BUYER = "buyer"
    MERCHANT = "merchant"
    INSURER = "insurer"


# The contract's reasons and condition flags (SPEC 4.3: only INTACT_CONDITIONS count as intact).
REASONS = RETURN_REASONS
NOT_INTACT_CONDITIONS = CONDITION_FLAGS - INTACT_CONDITIONS

# SPEC 4.2: the statutory list (Consumer Rights Protection Law art. 25). Deliberately not a
# policy key: "nothing else may be excluded".
EXCLUDED_CATEGORIES = frozenset(
    {"custom_made", "fresh_perishable", "digital_content", "periodical"}
)


def is_seller_fault(reason: str) -> bool:
    if reason in SELLER_FAULT_REASONS:
        return True
    if reason in NO_REASON_REASONS:
        return False
    raise ValueError(f"unknown return reason {reason!r}")
