"""What the ledger decides; the service layer turns these into Kafka messages and timer rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.refunds.domain.refund import IssuedRefund


@dataclass(frozen=True)
class RefundIssued:
    """Publish `refund.issued` for `refund` (a request's refund, or a re-issue)."""

    refund: IssuedRefund


class BreachKind(StrEnum):
    LATE = "late"  # issued after its due_by (SPEC 4.9, 4.11)
    PAYOUT_FAILED_TWICE = "payout_failed_twice"  # the re-issue failed as well: for a person


@dataclass(frozen=True)
class RefundSlaBreached:
    """`sla.breached` (sla `refund`) for `refund`, once per kind."""

    refund: IssuedRefund
    kind: BreachKind
    detected_at: datetime


@dataclass(frozen=True)
class WaitForOrder:
    """A request for an order not paid yet waits; alert if it still waits at `alert_at`."""

    refund_id: str
    alert_at: datetime


@dataclass(frozen=True)
class StopWaiting:
    refund_id: str


class RefusalReason(StrEnum):
    CONFLICTING_REQUEST = "conflicting_request"  # another request under an issued refund_id
    CURRENCY_MISMATCH = "currency_mismatch"
    OTHER_ORDER = "other_order"  # its refund_id was issued for another order
    CUSTOMER_MISMATCH = "customer_mismatch"  # for a buyer other than the one who paid


@dataclass(frozen=True)
class RequestRefused:
    """A request the ledger will never pay (counted and logged; no message)."""

    refund_id: str
    reason: RefusalReason


@dataclass(frozen=True)
class RequestRepeated:
    """The same request again: already issued (or waiting), no second effect."""

    refund_id: str


@dataclass(frozen=True)
class RefundSettled:
    refund: IssuedRefund


@dataclass(frozen=True)
class PayoutFailed:
    """Finance reported a refused part; `reissued` says whether a re-issue follows."""

    refund: IssuedRefund
    method: str
    amount: int
    reissued: bool


DomainEvent = (
    RefundIssued
    | RefundSlaBreached
    | WaitForOrder
    | StopWaiting
    | RequestRefused
    | RequestRepeated
    | RefundSettled
    | PayoutFailed
)
