"""What the complaints service's domain events become: outbox rows (notification requests,
escalations, coupons, refund and reshipment requests, SLA breaches) and timer rows.

One translation per domain event class (`TRANSLATIONS`), applied by the shared loop of
`shared.messaging.effects`; the handlers (handlers.py) hand it the events and a `_Scope`. An
output's fields named as the domain event's are copied from it (`projected`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from services.complaints.domain.events import (
    CallbackEscalated,
    CouponAwaitingApproval,
    CouponGranted,
    Escalated,
    Notify,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.complaints.domain.model import Complaint
from services.complaints.domain.orders import ShopOrder
from services.complaints.domain.rules import CaseKey, TimerKind
from shared import metrics
from shared.contracts import (
    CaseEscalated,
    CaseRef,
    CompensationPending,
    ComplaintEscalated,
    NotificationRequested,
    ids,
)
from shared.contracts import CouponGranted as CouponGrantedData
from shared.messaging.effects import (
    Breach,
    CancelTimer,
    Effect,
    Emit,
    SetTimer,
    Translations,
    refund_request,
    reshipment,
)
from shared.projection import projected

SERVICE = "complaints"

_ORDER_TIMERS = frozenset({TimerKind.LATE_SHIPMENT})

M = TypeVar("M", bound=BaseModel)


class _Scope:
    """What a complaint's domain events are about: an order (and maybe one of its complaints),
    or a buyer's case whose order this service may not know (`customer_id`, maybe `order_id`)."""

    def __init__(
        self,
        order: ShopOrder | None,
        complaint: Complaint | None,
        *,
        customer_id: str = "",
        order_id: str | None = None,
    ):
        self.complaint_or_none = complaint
        self.order_id = order.order_id if order is not None else (order_id or "")
        if complaint is not None and complaint.customer_id:
            self.customer_id = complaint.customer_id
        elif order is not None and order.facts is not None:
            self.customer_id = order.facts.customer_id
        else:
            self.customer_id = customer_id

    @property
    def complaint(self) -> Complaint:
        if self.complaint_or_none is None:
            raise ValueError("a complaint event outside a complaint")
        return self.complaint_or_none

    def timer_ref(self, kind: TimerKind) -> str:
        return self.order_id if kind in _ORDER_TIMERS else self.complaint.complaint_id


def _timer_set(event: TimerSet, scope: _Scope, index: int) -> list[Effect]:
    return [
        SetTimer(
            event.kind.value,
            scope.timer_ref(event.kind),
            due_at=event.due_at,
            lock_key=scope.order_id,
            payload={"order_id": scope.order_id},
        )
    ]


def _timer_cancelled(event: TimerCancelled, scope: _Scope, index: int) -> list[Effect]:
    return [CancelTimer(event.kind.value, scope.timer_ref(event.kind))]


def _notify(event: Notify, scope: _Scope, index: int) -> list[Effect]:
    request_id = ids.notification_request_id(
        event.case.type.value, event.case.id, event.template.value, event.tag
    )
    data = NotificationRequested(
        request_id=request_id,
        customer_id=scope.customer_id,
        order_id=scope.order_id or None,
        template=event.template.value,
        params=dict(event.params),
        urgent=event.urgent,
        case=_case_ref(event.case),
    )
    return [
        Emit(
            "notification.requested",
            data,
            event_id=ids.event_id("notification.requested", request_id),
            correlation_id=event.case.id,
        )
    ]


def _breached(event: SlaBreached, scope: _Scope, index: int) -> list[Effect]:
    case = event.case
    return [
        Breach(
            case=_case_ref(case),
            sla=event.sla.value,
            due_at=event.due_at,
            detected_at=event.detected_at,
            order_id=scope.order_id,
            customer_id=scope.customer_id or None,
            event_id=ids.sla_breach_event_id(
                case.type.value, case.id, event.sla.value, str(event.round)
            ),
            correlation_id=case.id,
        )
    ]


def _decision(
    event_type: str, data: BaseModel, key: str, correlation_id: str, label: str
) -> list[Effect]:
    """One output event, its id derived from `key`, counted as a decision under `label`."""
    counter = metrics.DECISIONS.labels(SERVICE, event_type, label)
    return [
        Emit(
            event_type,
            data,
            event_id=ids.event_id(event_type, key),
            correlation_id=correlation_id,
            counts=((counter, 1),),
        )
    ]


def _of_complaint(model: type[M], event: object, scope: _Scope, **given: Any) -> M:
    """An output about the scope's complaint: its ids, `given`, and the rest from `event`."""
    complaint = scope.complaint
    return projected(
        model,
        event,
        complaint_id=complaint.complaint_id,
        order_id=scope.order_id,
        customer_id=complaint.customer_id,
        **given,
    )


def _escalated(event: Escalated, scope: _Scope, index: int) -> list[Effect]:
    complaint = scope.complaint
    assert complaint.category is not None
    eid = ids.escalation_id(complaint.complaint_id, event.reason.value, event.round)
    data = _of_complaint(
        ComplaintEscalated,
        event,
        scope,
        escalation_id=eid,
        category=complaint.category.value,
        reason=event.reason.value,
        priority=event.priority.value,
    )
    return _decision("complaint.escalated", data, eid, complaint.complaint_id, event.reason.value)


def _callback_escalated(event: CallbackEscalated, scope: _Scope, index: int) -> list[Effect]:
    eid = ids.case_escalation_id(event.case.type.value, event.case.id, event.callback_id)
    data = projected(
        CaseEscalated,
        event,
        escalation_id=eid,
        case=_case_ref(event.case),
        order_id=scope.order_id or None,
        reason="low_satisfaction",
        priority=event.priority.value,
    )
    return _decision("case.escalated", data, eid, event.case.id, event.case.type.value)


def _coupon(event: CouponGranted, scope: _Scope, index: int) -> list[Effect]:
    complaint = scope.complaint
    cid = ids.coupon_id(complaint.complaint_id)
    data = _of_complaint(CouponGrantedData, event, scope, coupon_id=cid)
    return _decision("coupon.granted", data, cid, complaint.complaint_id, event.reason)


def _coupon_pending(event: CouponAwaitingApproval, scope: _Scope, index: int) -> list[Effect]:
    complaint = scope.complaint
    cid = ids.coupon_id(complaint.complaint_id)
    data = _of_complaint(CompensationPending, event, scope, coupon_id=cid)
    category = complaint.category.value if complaint.category else "unknown"
    return _decision("compensation.pending", data, cid, complaint.complaint_id, category)


def _refund(event: RefundDue, scope: _Scope, index: int) -> list[Effect]:
    return [
        refund_request(
            SERVICE,
            _case_ref(event.case),
            refund_id=ids.refund_id(event.case.type.value, event.case.id),
            order_id=scope.order_id,
            customer_id=scope.customer_id,
            amount=event.amount,
            currency=event.currency,
            breakdown=event.breakdown,
            due_by=event.due_by,
            requested_at=event.requested_at,
        )
    ]


def _reshipment(event: ReshipmentDue, scope: _Scope, index: int) -> list[Effect]:
    return [
        reshipment(
            _case_ref(event.case),
            order_id=scope.order_id,
            customer_id=scope.customer_id,
            lines=event.lines,
            due_by=event.due_by,
            requested_at=event.requested_at,
        )
    ]


def _case_ref(case: CaseKey) -> CaseRef:
    return CaseRef(type=case.type.value, id=case.id)


# Every domain event of the complaints service and what it becomes.
TRANSLATIONS: Translations[_Scope] = Translations(
    {
        TimerSet: _timer_set,
        TimerCancelled: _timer_cancelled,
        Notify: _notify,
        SlaBreached: _breached,
        Escalated: _escalated,
        CallbackEscalated: _callback_escalated,
        CouponGranted: _coupon,
        CouponAwaitingApproval: _coupon_pending,
        RefundDue: _refund,
        ReshipmentDue: _reshipment,
    }
)
