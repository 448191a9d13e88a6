"""Domain events a ReturnRequest emits; the service layer turns them into Kafka messages
and timer rows. Each round-trips through a JSON-safe dict (`event_to_dict` / `event_from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from services.returns.domain.values import RefundCalculation
from services.returns.domain.vocabulary import Payer, ReturnStatus, Rule, Sla, TimerKind, WaitingFor
from shared.clock import instant_from_json, instant_to_json, require_aware

_EVENT_TYPES = {
    ReturnStatus.PENDING: "return.pending",
    ReturnStatus.REVIEW: "return.pending",
    ReturnStatus.APPROVED: "return.approved",
    ReturnStatus.REJECTED: "return.rejected",
    ReturnStatus.COMPLETED: "return.completed",
    ReturnStatus.CANCELLED: "return.completed",
}


def _instant(text: str) -> datetime:
    instant = instant_from_json(text)
    assert instant is not None
    return instant


@dataclass(frozen=True)
class Decided:
    """A decision the buyer is told about (return.pending/approved/rejected/completed)."""

    name: ClassVar[str] = "decided"

    status: ReturnStatus
    rule: Rule
    message: str
    message_en: str
    waiting_for: WaitingFor | None = None
    return_shipping_payer: Payer | None = None
    refund_estimate: RefundCalculation | None = None

    @property
    def event_type(self) -> str:
        """The CloudEvents type on aftersales.returns; REVIEW is a pending case, CANCELLED a
        completed one (rule `cancelled`)."""
        return _EVENT_TYPES[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "rule": self.rule.value,
            "message": self.message,
            "message_en": self.message_en,
            "waiting_for": None if self.waiting_for is None else self.waiting_for.value,
            "return_shipping_payer": (
                None if self.return_shipping_payer is None else self.return_shipping_payer.value
            ),
            "refund_estimate": (
                None if self.refund_estimate is None else self.refund_estimate.to_dict()
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decided:
        waiting_for = data.get("waiting_for")
        payer = data.get("return_shipping_payer")
        estimate = data.get("refund_estimate")
        return cls(
            status=ReturnStatus(data["status"]),
            rule=Rule(data["rule"]),
            message=data["message"],
            message_en=data["message_en"],
            waiting_for=None if waiting_for is None else WaitingFor(waiting_for),
            return_shipping_payer=None if payer is None else Payer(payer),
            refund_estimate=None if estimate is None else RefundCalculation.from_dict(estimate),
        )


@dataclass(frozen=True)
class TimerSet:
    name: ClassVar[str] = "timer_set"

    kind: TimerKind
    due_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.due_at, "due_at")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "due_at": instant_to_json(self.due_at)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimerSet:
        return cls(kind=TimerKind(data["kind"]), due_at=_instant(data["due_at"]))


@dataclass(frozen=True)
class TimerCancelled:
    name: ClassVar[str] = "timer_cancelled"

    kind: TimerKind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimerCancelled:
        return cls(kind=TimerKind(data["kind"]))


@dataclass(frozen=True)
class RefundDue:
    """Ask the refund ledger for this refund now (refund.requested); `requested_at` is the
    decision instant.

    `supplementary`: the return freight alone, learnt after the return's main refund; a refund
    of its own (its own refund id), never a second main refund.
    """

    name: ClassVar[str] = "refund_due"

    calculation: RefundCalculation
    due_by: datetime
    requested_at: datetime
    supplementary: bool = False

    def __post_init__(self) -> None:
        require_aware(self.due_by, "due_by")
        require_aware(self.requested_at, "requested_at")

    def to_dict(self) -> dict[str, Any]:
        return {
            "calculation": self.calculation.to_dict(),
            "due_by": instant_to_json(self.due_by),
            "requested_at": instant_to_json(self.requested_at),
            "supplementary": self.supplementary,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RefundDue:
        return cls(
            calculation=RefundCalculation.from_dict(data["calculation"]),
            due_by=_instant(data["due_by"]),
            requested_at=_instant(data["requested_at"]),
            supplementary=bool(data.get("supplementary", False)),
        )


@dataclass(frozen=True)
class ReshipmentDue:
    """Ship the replacement of an exchange (reshipment.requested)."""

    name: ClassVar[str] = "reshipment_due"

    lines: dict[str, int]
    due_by: datetime
    requested_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.due_by, "due_by")
        require_aware(self.requested_at, "requested_at")

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": dict(self.lines),
            "due_by": instant_to_json(self.due_by),
            "requested_at": instant_to_json(self.requested_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReshipmentDue:
        return cls(
            lines={k: int(v) for k, v in data["lines"].items()},
            due_by=_instant(data["due_by"]),
            requested_at=_instant(data["requested_at"]),
        )


@dataclass(frozen=True)
class SlaBreached:
    name: ClassVar[str] = "sla_breached"

    sla: Sla
    due_at: datetime
    detected_at: datetime

    def __post_init__(self) -> None:
        require_aware(self.due_at, "due_at")
        require_aware(self.detected_at, "detected_at")

    def to_dict(self) -> dict[str, Any]:
        return {
            "sla": self.sla.value,
            "due_at": instant_to_json(self.due_at),
            "detected_at": instant_to_json(self.detected_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlaBreached:
        return cls(
            sla=Sla(data["sla"]),
            due_at=_instant(data["due_at"]),
            detected_at=_instant(data["detected_at"]),
        )


@dataclass(frozen=True)
class ParcelOfClosedCase:
    """The warehouse signed for the returned parcel of a case that closed without a refund
    (cancelled, or rejected): the merchant holds goods no rule refunds or sends back, so a
    person must (the buyer shipped before cancelling, or despite a rejection)."""

    name: ClassVar[str] = "parcel_of_closed_case"

    status: ReturnStatus

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParcelOfClosedCase:
        return cls(status=ReturnStatus(data["status"]))


DomainEvent = (
    Decided
    | TimerSet
    | TimerCancelled
    | RefundDue
    | ReshipmentDue
    | SlaBreached
    | ParcelOfClosedCase
)

_BY_NAME: dict[str, type[DomainEvent]] = {
    cls.name: cls
    for cls in (
        Decided,
        TimerSet,
        TimerCancelled,
        RefundDue,
        ReshipmentDue,
        SlaBreached,
        ParcelOfClosedCase,
    )
}


def event_to_dict(event: DomainEvent) -> dict[str, Any]:
    """A JSON-safe dict tagged with the event's name, e.g. for an outbox row."""
    return {"event": event.name, **event.to_dict()}


def event_from_dict(data: Mapping[str, Any]) -> DomainEvent:
    try:
        cls = _BY_NAME[data["event"]]
    except KeyError as exc:
        raise ValueError(f"unknown domain event {data.get('event')!r}") from exc
    return cls.from_dict(data)
