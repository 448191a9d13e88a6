"""Eligibility (SPEC 4.1-4.4, decided in the order of 4.6): the windows, the statutory
exclusions, intact goods, and the seller-fault route with its evidence and quality window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from typing import Protocol
from zoneinfo import ZoneInfo

from services.returns.domain.order_returns import OrderReturns
from services.returns.domain.values import RequestedReturn
from services.returns.domain.vocabulary import (
    EXCLUDED_CATEGORIES,
    INTACT_CONDITIONS,
    ReturnStatus,
    Rule,
    WaitingFor,
    is_seller_fault,
)
from shared.clock import require_aware
from shared.policy import Policy


class AssessedRequest(RequestedReturn, Protocol):
    """What the eligibility rules read of a return request."""

    @property
    def customer_id(self) -> str: ...
    @property
    def condition(self) -> Sequence[str]: ...
    @property
    def evidence_urls(self) -> Sequence[str]: ...
    def requested_on(self) -> datetime: ...


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
    other_buyer: bool = False  # unknown_order: the order is another buyer's


# The approval carries no details: one value serves every eligible request.
_ELIGIBLE = Assessment(ReturnStatus.APPROVED, Rule.ELIGIBLE)
_OTHER_BUYERS_ORDER = Assessment(ReturnStatus.REJECTED, Rule.UNKNOWN_ORDER, other_buyer=True)


def assess(request: AssessedRequest, returns: OrderReturns, policy: Policy) -> Assessment:
    """SPEC 4.1-4.6 in their order: order, delivery, quantity, then the reason group's rules.

    An order another buyer paid is no order of the requesting buyer's: `unknown_order` at once
    (the refund ledger would refuse to pay it to them, `customer_mismatch`).
    """
    order = returns.order
    if order is None:
        return Assessment(ReturnStatus.PENDING, Rule.UNKNOWN_ORDER, WaitingFor.ORDER)
    if request.customer_id != order.customer_id:
        return _OTHER_BUYERS_ORDER
    signed_at = order.outbound_signed_at
    if signed_at is None:
        return Assessment(ReturnStatus.PENDING, Rule.NOT_DELIVERED, WaitingFor.SIGNATURE)
    exceeding = returns.exceeding_lines(order, request.lines, request.return_id)
    if exceeding:
        return Assessment(ReturnStatus.REJECTED, Rule.QUANTITY_EXCEEDS_PURCHASED, lines=exceeding)

    requested_at = request.requested_on()
    rules = policy.returns
    zone = policy.zone
    # Where a quality claim is still possible: said by a refusal, and the seller-fault route's
    # window; an approval never needs it.
    quality_deadline = partial(no_reason_deadline, signed_at, zone, rules.quality_claim_days)
    requested = [order.line(line_id) for line_id in request.lines]

    if not is_seller_fault(request.reason):
        excluded = [line for line in requested if line.category in EXCLUDED_CATEGORIES]
        if excluded:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.EXCLUDED_CATEGORY,
                lines=tuple(line.line_id for line in excluded),
                categories=tuple(dict.fromkeys(line.category for line in excluded)),
                quality_deadline=quality_deadline(),
            )
        waived = [line for line in requested if line.no_reason_return_waived]
        if waived:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.WAIVED_AT_PURCHASE,
                lines=tuple(line.line_id for line in waived),
                quality_deadline=quality_deadline(),
            )
        deadline = no_reason_deadline(signed_at, zone, rules.no_reason_days)
        if requested_at >= deadline:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.WINDOW_EXPIRED,
                deadline=deadline,
                quality_deadline=quality_deadline(),
            )
        not_intact = tuple(
            dict.fromkeys(flag for flag in request.condition if flag not in INTACT_CONDITIONS)
        )
        if not_intact:
            return Assessment(
                ReturnStatus.REJECTED,
                Rule.NOT_INTACT,
                conditions=not_intact,
                quality_deadline=quality_deadline(),
            )
        return _ELIGIBLE

    # Seller fault: no 7-day limit, condition flags do not matter, never rejected for lateness.
    quality_window_end = quality_deadline()
    if requested_at >= quality_window_end:
        return Assessment(
            ReturnStatus.REVIEW,
            Rule.QUALITY_WINDOW_EXPIRED,
            WaitingFor.REVIEW,
            deadline=quality_window_end,
        )
    if not request.evidence_urls:
        return Assessment(ReturnStatus.PENDING, Rule.EVIDENCE_MISSING, WaitingFor.EVIDENCE)
    return _ELIGIBLE
