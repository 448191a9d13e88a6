"""Returns rules (SPEC section 4): vocabulary, windows, working hours and the eligibility check.

Pure functions only. The model imports this module, so model types are imported for typing only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from shared.policy import LocalHours, Policy, ReturnsPolicy

if TYPE_CHECKING:
    from services.returns.domain.model import Order, OrderLedger, ReturnRequest


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


NO_REASON_REASONS = frozenset({"no_reason", "dislike", "size_fit", "changed_mind"})
SELLER_FAULT_REASONS = frozenset(
    {"quality_issue", "damaged_in_transit", "wrong_item", "missing_parts", "not_as_described"}
)
REASONS = NO_REASON_REASONS | SELLER_FAULT_REASONS

# SPEC 4.3: these two still count as intact; every other flag does not.
INTACT_CONDITIONS = frozenset({"opened_for_inspection", "trial_use"})
NOT_INTACT_CONDITIONS = frozenset(
    {
        "seal_broken",
        "tags_removed",
        "soiled_or_damaged",
        "activated",
        "repaired_or_modified",
        "serial_tampered",
        "accessories_missing",
    }
)
CONDITION_FLAGS = INTACT_CONDITIONS | NOT_INTACT_CONDITIONS

# SPEC 4.2: the statutory list (Consumer Rights Protection Law art. 25). Deliberately not a
# policy key: "nothing else may be excluded".
EXCLUDED_CATEGORIES = frozenset(
    {"custom_made", "fresh_perishable", "digital_content", "periodical"}
)


def return_shipping_cap(rules: ReturnsPolicy, currency: str) -> int | None:
    """The cap on reimbursed return freight for an order paid in `currency`: the policy's cap
    is an amount of the policy's currency, so an order in another one has none (never a
    comparison of two currencies)."""
    return rules.return_shipping_cap if currency == rules.amounts_currency else None


def is_seller_fault(reason: str) -> bool:
    if reason in SELLER_FAULT_REASONS:
        return True
    if reason in NO_REASON_REASONS:
        return False
    raise ValueError(f"unknown return reason {reason!r}")


def return_shipping_payer(reason: str, order: Order) -> Payer:
    """SPEC 4.8 / 4.10: the merchant bears both legs on seller fault, else buyer or insurer."""
    if is_seller_fault(reason):
        return Payer.MERCHANT
    return Payer.INSURER if order.shipping_insurance else Payer.BUYER


# --- instants -------------------------------------------------------------------------------


def require_aware(instant: datetime, name: str = "datetime") -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return instant


def instant_to_json(instant: datetime | None) -> str | None:
    return None if instant is None else require_aware(instant).isoformat()


def instant_from_json(text: str | None) -> datetime | None:
    if text is None:
        return None
    return require_aware(datetime.fromisoformat(text), text)


def no_reason_deadline(signed_at: datetime, zone: ZoneInfo, days: int) -> datetime:
    """First instant that is too late: local midnight starting D + days + 1 (SPEC 4.1).

    D is the local date of the signature; counting starts the next day, so 7 days from a
    signature on 03-02 ends with 03-09 and a request at 03-10 00:00 local is late. The same
    counting serves `quality_claim_days` (SPEC 4.4).
    """
    require_aware(signed_at, "signed_at")
    if days < 0:
        raise ValueError("days must not be negative")
    signed_date = signed_at.astimezone(zone).date()
    # A midnight skipped by a DST jump resolves (fold=0) to the instant the day really starts.
    return datetime.combine(signed_date + timedelta(days=days + 1), time(0), tzinfo=zone)


def add_working_hours(
    start: datetime, hours: int, zone: ZoneInfo, working_hours: LocalHours
) -> datetime:
    """`start` plus `hours` of working time, counted only inside the daily working hours.

    Working hours apply every day of the week, in local wall-clock time: weekends and public
    holidays are not modelled (the policy file has no key for them). An end that lands exactly
    on closing time stays on that day.
    """
    require_aware(start, "start")
    if hours < 0:
        raise ValueError("hours must not be negative")
    remaining = timedelta(hours=hours)
    cursor = start.astimezone(zone)
    if not remaining:
        return cursor
    day = cursor.date()
    while True:
        opens = datetime.combine(day, working_hours.start, tzinfo=zone)
        closes = datetime.combine(day, working_hours.end, tzinfo=zone)
        begin = max(cursor, opens)
        if begin < closes:
            # Same tzinfo on both sides: Python does wall-clock arithmetic, as intended here.
            available = closes - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day += timedelta(days=1)
        cursor = datetime.combine(day, working_hours.start, tzinfo=zone)


# --- eligibility ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """The outcome of the eligibility rules, with what the buyer's message needs to explain it."""

    status: ReturnStatus
    rule: Rule
    waiting_for: WaitingFor | None = None
    lines: tuple[str, ...] = ()  # line ids the decision is about
    categories: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    deadline: datetime | None = None  # the window that was missed
    quality_deadline: datetime | None = None  # where a quality claim is still possible


def returned_units(ledger: OrderLedger, line_id: str) -> int:
    """Units of a line an earlier refund already took back (paid units or gift units)."""
    return ledger.units_refunded.get(line_id, 0) + ledger.gift_units_returned.get(line_id, 0)


def available_units(order: Order, ledger: OrderLedger, line_id: str, return_id: str) -> int:
    """Units of a line the buyer may still return in `return_id`."""
    line = order.line(line_id)
    reserved = ledger.reserved_units(line_id, excluding=return_id)
    return max(0, line.quantity - returned_units(ledger, line_id) - reserved)


def exceeding_lines(
    order: Order, ledger: OrderLedger, lines: Mapping[str, int], return_id: str
) -> tuple[str, ...]:
    return tuple(
        line_id
        for line_id, quantity in lines.items()
        if not order.has_line(line_id)
        or quantity > available_units(order, ledger, line_id, return_id)
    )


def needs_inspection(order: Order, lines: Mapping[str, int], policy: Policy) -> bool:
    required = policy.returns.inspection_required_categories
    return any(
        order.line(line_id).category in required for line_id in lines if order.has_line(line_id)
    )


def assess(
    request: ReturnRequest, order: Order | None, ledger: OrderLedger, policy: Policy
) -> Assessment:
    """SPEC 4.1-4.6 in their order: order, delivery, quantity, then the reason group's rules."""
    if order is None:
        return Assessment(ReturnStatus.PENDING, Rule.UNKNOWN_ORDER, WaitingFor.ORDER)
    signed_at = order.outbound_signed_at
    if signed_at is None:
        return Assessment(ReturnStatus.PENDING, Rule.NOT_DELIVERED, WaitingFor.SIGNATURE)
    exceeding = exceeding_lines(order, ledger, request.lines, request.return_id)
    if exceeding:
        return Assessment(ReturnStatus.REJECTED, Rule.QUANTITY_EXCEEDS_PURCHASED, lines=exceeding)

    requested_at = request.requested_on()
    rules = policy.returns
    zone = policy.zone
    quality_deadline = no_reason_deadline(signed_at, zone, rules.quality_claim_days)
    requested = [order.line(line_id) for line_id in request.lines]

    if not is_seller_fault(request.reason):
        excluded = [line for line in requested if line.category in EXCLUDED_CATEGORIES]
        if excluded:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.EXCLUDED_CATEGORY,
                lines=tuple(line.line_id for line in excluded),
                categories=tuple(dict.fromkeys(line.category for line in excluded)),
                quality_deadline=quality_deadline,
            )
        waived = [line for line in requested if line.no_reason_return_waived]
        if waived:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.WAIVED_AT_PURCHASE,
                lines=tuple(line.line_id for line in waived),
                quality_deadline=quality_deadline,
            )
        deadline = no_reason_deadline(signed_at, zone, rules.no_reason_days)
        if requested_at >= deadline:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.WINDOW_EXPIRED,
                deadline=deadline,
                quality_deadline=quality_deadline,
            )
        not_intact = tuple(
            dict.fromkeys(flag for flag in request.condition if flag not in INTACT_CONDITIONS)
        )
        if not_intact:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.NOT_INTACT,
                conditions=not_intact,
                quality_deadline=quality_deadline,
            )
        return Assessment(ReturnStatus.APPROVED, Rule.ELIGIBLE)

    # Seller fault: no 7-day limit, condition flags do not matter, never rejected for lateness.
    if requested_at >= quality_deadline:
        return Assessment(
            ReturnStatus.REVIEW,
            Rule.QUALITY_WINDOW_EXPIRED,
            WaitingFor.REVIEW,
            deadline=quality_deadline,
        )
    if not request.evidence_urls:
        return Assessment(ReturnStatus.PENDING, Rule.EVIDENCE_MISSING, WaitingFor.EVIDENCE)
    return Assessment(ReturnStatus.APPROVED, Rule.ELIGIBLE)
