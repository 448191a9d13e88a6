"""The follow-up service layer: thin handlers that load callbacks, call the domain, store, emit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.followup import metrics as followup_metrics
from services.followup.domain.events import (
    CallbackDelivered,
    CallbackScheduled,
    CallbackSent,
    CallbackUndelivered,
    CaseMissed,
    DomainEvent,
    SatisfactionRecorded,
    TimerSet,
)
from services.followup.domain.model import Callback, Case, close_case
from services.followup.domain.rules import (
    CALLBACK_COMPLAINT_OUTCOMES,
    NO_CALLBACK_RETURN_RULES,
    AnswerRejected,
    CaseKey,
    CaseType,
    supersedes,
)
from services.followup.repository import FollowupRepository
from shared.contracts import (
    CaseRef,
    CloudEvent,
    ComplaintOpened,
    ComplaintResolved,
    FollowupEvent,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    OrderPaid,
    RefundIssued,
    ReshipmentRequested,
    ReturnDecision,
    SurveyAnswered,
    event_key,
    ids,
)
from shared.messaging.context import EventHandler, HandlerContext, RepositoryHandlers, TimerHandler
from shared.messaging.effects import (
    Breach,
    Count,
    Counter,
    Counts,
    Effect,
    Emit,
    SetTimer,
    Translations,
)
from shared.messaging.errors import Rejected
from shared.messaging.store import Timer

SERVICE = "followup"
CALLBACK_DUE = "callback_due"  # timer kind; ref = callback_id, lock key = customer_id
SURVEY_TEMPLATE = "survey.invitation"
log = logging.getLogger("aftersales.followup")


def lock_keys(event: CloudEvent) -> list[str]:
    """Follow-up state is per buyer: lock the customer_id. complaint.resolved does not name the
    buyer; it locks its order, and the handler locks the buyer once the complaint tells it."""
    customer_id = getattr(event.data, "customer_id", None)
    if isinstance(customer_id, str):
        return [customer_id]
    return [event_key(event)]


def _refs(keys: tuple[CaseKey, ...]) -> list[CaseRef]:
    return [CaseRef(type=str(key.type), id=key.id) for key in keys]  # type: ignore[arg-type]


class FollowupHandlers(RepositoryHandlers[FollowupRepository]):
    stored = FollowupRepository

    def events(self) -> Mapping[str, EventHandler]:
        return {
            "order.paid": self.order_paid,
            "refund.issued": self.refund_issued,
            "reshipment.requested": self.reshipment_requested,
            "return.completed": self.return_completed,
            "complaint.opened": self.complaint_opened,
            "complaint.resolved": self.complaint_resolved,
            "survey.answered": self.survey_answered,
            "notification.sent": self.notification_sent,
            "notification.failed": self.notification_failed,
        }

    def timers(self) -> Mapping[str, TimerHandler]:
        return {CALLBACK_DUE: self.callback_due}

    # --- the order -> shop projection -------------------------------------------------------

    async def order_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(OrderPaid)
        # Only what the report needs: never the buyer's personal data (SPEC 7).
        await self.repository(ctx).record_order(
            data.order_id, data.shop_id, data.customer_id, data.paid_at
        )

    # --- cases that close -------------------------------------------------------------------

    async def refund_issued(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(RefundIssued)
        if data.case.type != CaseType.RETURN:
            # A complaint closes with complaint.resolved; a late-shipment penalty is not a case
            # the buyer opened: neither gets a callback from its refund.
            return
        await self._close_return(ctx, event, data, data.case.id, data.issued_at)

    async def reshipment_requested(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReshipmentRequested)
        if data.case.type != CaseType.RETURN:
            return  # a complaint's reshipment: the complaint closes with complaint.resolved
        await self._close_return(ctx, event, data, data.case.id, data.requested_at)

    async def return_completed(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnDecision)
        if data.rule in NO_CALLBACK_RETURN_RULES:
            return  # a cancelled return: the buyer gave up, there is no service to rate
        await self._close_return(ctx, event, data, data.return_id, data.decided_at)

    async def complaint_opened(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ComplaintOpened)
        repo = self.repository(ctx)
        await repo.record_complaint_opened(
            data.complaint_id, data.order_id, data.customer_id, data.opened_at, ctx.now
        )
        complaint = await repo.complaint(data.complaint_id)
        if complaint is not None and complaint.resolution is not None:
            # Its resolution came first (kept until the buyer was known): close it now.
            await self._close_complaint(
                ctx,
                data.complaint_id,
                complaint.order_id,
                data.customer_id,
                complaint.resolution,
            )

    async def complaint_resolved(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ComplaintResolved)
        repo = self.repository(ctx)
        resolution = {
            "outcome": data.outcome,
            "remedy": data.remedy,
            "resolved_at": data.resolved_at.isoformat(),
            "event_type": event.type,
        }
        complaint = await repo.complaint(data.complaint_id)
        on_record = None if complaint is None else complaint.resolution
        if supersedes(resolution, on_record):
            await repo.record_resolution(data.complaint_id, data.order_id, resolution, ctx.now)
            on_record = resolution
        if complaint is None or complaint.customer_id is None:
            log.info(
                "complaint resolved before it was seen opened; waiting for complaint.opened",
                extra={"complaint_id": data.complaint_id},
            )
            return
        assert on_record is not None
        await ctx.uow.lock([complaint.customer_id])
        await self._close_complaint(
            ctx, data.complaint_id, complaint.order_id, complaint.customer_id, on_record
        )

    async def _close_return(
        self,
        ctx: HandlerContext,
        event: CloudEvent,
        data: RefundIssued | ReshipmentRequested | ReturnDecision,
        return_id: str,
        closed_at: datetime,
    ) -> None:
        """`event` closes the return's case (its type is recorded as what closed it)."""
        await self._close(
            ctx, CaseType.RETURN, return_id, data.order_id, data.customer_id, closed_at, event.type
        )

    async def _close_complaint(
        self,
        ctx: HandlerContext,
        complaint_id: str,
        order_id: str,
        customer_id: str,
        resolution: Mapping[str, object],
    ) -> None:
        if resolution.get("outcome") not in CALLBACK_COMPLAINT_OUTCOMES:
            return  # withdrawn by the buyer: no callback
        resolved_at = datetime.fromisoformat(str(resolution["resolved_at"]))
        await self._close(
            ctx,
            CaseType.COMPLAINT,
            complaint_id,
            order_id,
            customer_id,
            resolved_at,
            str(resolution.get("event_type", "complaint.resolved")),
        )

    async def _close(
        self,
        ctx: HandlerContext,
        case_type: CaseType,
        case_id: str,
        order_id: str,
        customer_id: str,
        closed_at: datetime,
        closed_by: str,
    ) -> None:
        repo = self.repository(ctx)
        case = Case.closed(
            case_type,
            case_id,
            order_id=order_id,
            customer_id=customer_id,
            closed_at=closed_at,
            closed_by=closed_by,
            policy=self.policy,
        )
        if await repo.case_known(case.key):
            return  # closed before (refund.issued and return.completed of one return): one case
        callback, events = close_case(
            case,
            await repo.scheduled_callbacks(customer_id),
            new_callback_id=ids.callback_id(str(case.key.type), case.key.id),
            policy=self.policy,
            now=ctx.now,
        )
        await self._store(repo, ctx, callback, events)

    # --- the callback's timer ---------------------------------------------------------------

    async def callback_due(self, timer: Timer, ctx: HandlerContext) -> None:
        repo = self.repository(ctx)
        callback = await repo.callback(timer.ref)
        if callback is None:
            log.warning("timer for an unknown callback", extra={"callback_id": timer.ref})
            return
        await self._store(repo, ctx, callback, callback.on_due(self.policy, ctx.now))

    # --- the buyer's answer -----------------------------------------------------------------

    async def survey_answered(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(SurveyAnswered)
        repo = self.repository(ctx)
        callback = await repo.callback(data.callback_id)
        if callback is None:
            raise Rejected("unknown_callback", f"callback {data.callback_id} is not known")
        try:
            events = callback.answer(
                customer_id=data.customer_id,
                score=data.score,
                comment=data.comment,
                answered_at=data.answered_at,
                policy=self.policy,
            )
        except AnswerRejected as exc:
            raise Rejected(exc.reason, exc.detail) from None
        await self._store(repo, ctx, callback, events)

    # --- what the notifier did with a survey invitation --------------------------------------

    async def notification_sent(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(NotificationSent)
        repo = self.repository(ctx)
        callback = await self._surveyed(repo, data)
        if callback is not None:
            await self._store(repo, ctx, callback, callback.on_delivered(data.sent_at, ctx.now))

    async def notification_failed(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(NotificationFailed)
        repo = self.repository(ctx)
        callback = await self._surveyed(repo, data)
        if callback is not None:
            await self._store(repo, ctx, callback, callback.on_undelivered(data.reason, ctx.now))

    async def _surveyed(
        self, repo: FollowupRepository, data: NotificationSent | NotificationFailed
    ) -> Callback | None:
        """The callback whose survey invitation the status is about; None for every other
        notification (not ours: ignored) and for a survey this service does not know or that
        names another buyer (logged and ignored: the status topic is the notifier's, and a
        stray status must never stop the partition)."""
        callback_id = survey_callback_id(data.request_id)
        if data.template != SURVEY_TEMPLATE or callback_id is None:
            return None
        callback = await repo.callback(callback_id)
        if callback is None or callback.customer_id != data.customer_id:
            log.warning(
                "status of a survey invitation this service did not send; ignored",
                extra={"request_id": data.request_id, "customer_id": data.customer_id},
            )
            return None
        return callback

    # --- plumbing ---------------------------------------------------------------------------

    async def _store(
        self,
        repo: FollowupRepository,
        ctx: HandlerContext,
        callback: Callback,
        events: list[DomainEvent],
    ) -> None:
        """Store the callback and turn its domain events into outbox messages and timer rows."""
        await repo.save_callback(callback, ctx.now)
        # The shops of the callback's orders label the report's counters (SPEC 6).
        orders = {case.order_id for case in callback.cases}
        orders |= {event.order_id for event in events if isinstance(event, CaseMissed)}
        shops = await repo.shops(orders) if any(map(_counted_per_shop, events)) else {}
        await TRANSLATIONS.apply(ctx, _Scope(callback, shops), events)


def survey_callback_id(request_id: str) -> str | None:
    """The callback whose survey invitation has `request_id` (`survey-<callback_id>`)."""
    callback_id = request_id.removeprefix("survey-")
    if not callback_id or ids.survey_request_id(callback_id) != request_id:
        return None
    return callback_id


def _counted_per_shop(event: DomainEvent) -> bool:
    return isinstance(
        event,
        CallbackSent | CallbackDelivered | CallbackUndelivered | CaseMissed | SatisfactionRecorded,
    )


@dataclass(frozen=True)
class _Scope:
    callback: Callback
    shops: Mapping[str, str]

    @property
    def correlation(self) -> str:
        return self.callback.cases[0].case_id  # the case that opened the callback


def _followup(
    callback: Callback,
    cases: tuple[CaseKey, ...],
    due_at: datetime,
    deadline: datetime,
    score: int | None = None,
) -> FollowupEvent:
    """What callback.scheduled, callback.sent and satisfaction.recorded (or .low) say."""
    return FollowupEvent(
        callback_id=callback.callback_id,
        customer_id=callback.customer_id,
        cases=_refs(cases),
        due_at=due_at,
        deadline=deadline,
        score=score,
    )


def _scheduled(event: CallbackScheduled, scope: _Scope, index: int) -> list[Effect]:
    cid = scope.callback.callback_id
    return [
        Emit(
            "callback.scheduled",
            _followup(scope.callback, event.cases, event.due_at, event.deadline),
            event_id=ids.event_id("callback.scheduled", cid, str(event.revision)),
            correlation_id=scope.correlation,
        )
    ]


def _timer_set(event: TimerSet, scope: _Scope, index: int) -> list[Effect]:
    customer_id = scope.callback.customer_id
    return [
        SetTimer(
            CALLBACK_DUE,
            scope.callback.callback_id,
            due_at=event.due_at,
            lock_key=customer_id,
            payload={"customer_id": customer_id},
        )
    ]


def _missed(event: CaseMissed, scope: _Scope, index: int) -> list[Effect]:
    case, cid = event.case, scope.callback.callback_id
    where = {"callback_id": cid, "case_type": str(case.type), "case_id": case.id}
    if event.undelivered is None:
        log.warning("callback missed its deadline; not sent late", extra=where)
    else:
        log.warning(
            "callback not delivered to the buyer before its deadline",
            extra={**where, "reason": event.undelivered},
        )
    return [
        Breach(
            case=CaseRef(type=str(case.type), id=case.id),  # type: ignore[arg-type]
            sla="callback",
            due_at=event.deadline,
            detected_at=event.detected_at,
            order_id=event.order_id,
            customer_id=scope.callback.customer_id,
            event_id=ids.sla_breach_event_id(str(case.type), case.id, "callback"),
            correlation_id=case.id,
            counts=((followup_metrics.CASES_DUE.labels(scope.shops[event.order_id]), 1),),
        )
    ]


def _answered(event: SatisfactionRecorded, scope: _Scope, index: int) -> list[Effect]:
    callback = scope.callback
    cid = callback.callback_id
    # Counted with satisfaction.recorded: a replay finds it in the outbox.
    shops = sorted({scope.shops[case.order_id] for case in callback.cases})
    answers: Counts = tuple(
        (followup_metrics.ANSWERS.labels(shop, str(event.score)), 1) for shop in shops
    )
    types = (
        ("satisfaction.recorded", "satisfaction.low") if event.low else ("satisfaction.recorded",)
    )
    return [
        Emit(
            event_type,
            _followup(callback, event.cases, callback.due_at, callback.deadline, event.score),
            event_id=ids.event_id(event_type, cid),
            correlation_id=scope.correlation,
            counts=answers if event_type == "satisfaction.recorded" else (),
        )
        for event_type in types
    ]


def _sent(event: CallbackSent, scope: _Scope, index: int) -> list[Effect]:
    callback = scope.callback
    cid, customer_id = callback.callback_id, callback.customer_id
    named = [case for case in callback.cases if case.key in event.cases]
    orders = {case.order_id for case in named}
    survey = NotificationRequested(
        request_id=ids.survey_request_id(cid),
        customer_id=customer_id,
        order_id=next(iter(orders)) if len(orders) == 1 else None,
        template=SURVEY_TEMPLATE,
        params={
            "callback_id": cid,
            "cases": ",".join(f"{key.type}:{key.id}" for key in event.cases),
            "case_count": len(event.cases),
            "deadline": event.deadline.isoformat(),
            "answer_by": event.answer_by.isoformat(),
        },
        urgent=False,
        case=(_refs(event.cases)[0] if len(event.cases) == 1 else None),
    )
    # Requested, not yet delivered: the cases fall due with the notifier's status.
    counts: list[tuple[Counter, float]] = [
        (followup_metrics.CALLBACKS_SENT.labels(shop), 1)
        for shop in sorted({scope.shops[order_id] for order_id in orders})
    ]
    return [
        Emit(
            "notification.requested",
            survey,
            # A survey is about the buyer even when it names one order: keyed like callbacks.
            key=customer_id,
            event_id=ids.event_id("notification.requested", SURVEY_TEMPLATE, cid),
            correlation_id=scope.correlation,
        ),
        Emit(
            "callback.sent",
            _followup(callback, event.cases, event.due_at, event.deadline),
            event_id=ids.event_id("callback.sent", cid),
            correlation_id=scope.correlation,
            counts=tuple(counts),
        ),
    ]


def _delivered(event: CallbackDelivered, scope: _Scope, index: int) -> list[Effect]:
    # Counted when the status is applied: a repeated status changes nothing and counts nothing.
    named = [case for case in scope.callback.cases if case.key in event.cases]
    effects: list[Effect] = [
        Count(followup_metrics.CALLBACKS_DELIVERED.labels(shop))
        for shop in sorted({scope.shops[case.order_id] for case in named})
    ]
    for case in named:
        effects.append(Count(followup_metrics.CASES_DUE.labels(scope.shops[case.order_id])))
        effects.append(Count(followup_metrics.CASES_ON_TIME.labels(scope.shops[case.order_id])))
    return effects


def _undelivered(event: CallbackUndelivered, scope: _Scope, index: int) -> list[Effect]:
    named = [case for case in scope.callback.cases if case.key in event.cases]
    return [
        Count(followup_metrics.CALLBACKS_UNDELIVERED.labels(shop, event.reason))
        for shop in sorted({scope.shops[case.order_id] for case in named})
    ]


TRANSLATIONS: Translations[_Scope] = Translations(
    {
        CallbackScheduled: _scheduled,
        TimerSet: _timer_set,
        CallbackSent: _sent,
        CallbackDelivered: _delivered,
        CallbackUndelivered: _undelivered,
        CaseMissed: _missed,
        SatisfactionRecorded: _answered,
    }
)
