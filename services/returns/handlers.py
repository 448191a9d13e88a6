"""The returns service layer: thin handlers that load aggregates, call the domain, store, emit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.returns.domain.events import (
    Decided,
    DomainEvent,
    ParcelOfClosedCase,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.returns.domain.model import ReturnRequest
from services.returns.domain.order_returns import OrderReturns
from services.returns.domain.values import Order, OrderLine
from services.returns.repository import ReturnsRepository
from shared import metrics
from shared.contracts import (
    CaseRef,
    CloudEvent,
    OrderPaid,
    ParcelSigned,
    ReturnCancelled,
    ReturnDecision,
    ReturnEvidenceSubmitted,
    ReturnInspected,
    ReturnRequested,
    ReturnReviewed,
    ReturnShipped,
    ids,
)
from shared.messaging.context import EventHandler, HandlerContext, RepositoryHandlers, TimerHandler
from shared.messaging.effects import (
    Breach,
    CancelTimer,
    Count,
    Effect,
    Emit,
    SetTimer,
    Translations,
    refund_request,
    reshipment,
)
from shared.messaging.store import Timer
from shared.projection import projected

SERVICE = "returns"
log = logging.getLogger("aftersales.returns")


def order_from_event(data: OrderPaid, outbound_signed_at: datetime | None) -> Order:
    """The returns view of an order: what Order names, so never the buyer's personal data
    (SPEC 7)."""
    lines = tuple(projected(OrderLine, line) for line in data.lines)
    return projected(
        Order, data, lines=lines, outbound_signed_at=outbound_signed_at, cancelled_at=None
    )


class _Case:
    """Everything one handler works on for one return, stored together at the end."""

    def __init__(
        self, repo: ReturnsRepository, request: ReturnRequest, returns: OrderReturns
    ) -> None:
        self.repo = repo
        self.request = request
        self.returns = returns


class ReturnsHandlers(RepositoryHandlers[ReturnsRepository]):
    stored = ReturnsRepository

    def events(self) -> Mapping[str, EventHandler]:
        return {
            "order.paid": self.order_paid,
            "parcel.signed": self.parcel_signed,
            "return.requested": self.return_requested,
            "return.evidence_submitted": self.evidence_submitted,
            "return.shipped": self.return_shipped,
            "return.inspected": self.return_inspected,
            "return.reviewed": self.return_reviewed,
            "return.cancelled": self.return_cancelled,
        }

    def timers(self) -> Mapping[str, TimerHandler]:
        kinds = (
            "signature_wait",
            "evidence_wait",
            "review_sla",
            "inspection_grace",
            "refund_deadline",
        )
        return {kind: self.timer_fired for kind in kinds}

    # --- orders and signatures --------------------------------------------------------------

    async def order_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(OrderPaid)
        repo = self.repository(ctx)
        existing = await repo.order(data.order_id)
        if existing is not None:
            return  # an order is paid once; a re-sent order.paid changes nothing
        order = order_from_event(data, await repo.outbound_signature(data.order_id))
        await repo.save_order(order, ctx.now)
        await self._reassess_waiting(repo, order, ctx)

    async def parcel_signed(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ParcelSigned)
        repo = self.repository(ctx)
        if data.leg == "outbound":
            await repo.record_outbound_signature(data.order_id, data.signed_at)
            order = await repo.order(data.order_id)
            if order is None:
                return  # kept until order.paid arrives
            signed = order.with_outbound_signature(data.signed_at)
            if signed is not order:
                await repo.save_order(signed, ctx.now)
            await self._reassess_waiting(repo, signed, ctx)
            return
        assert data.return_id is not None
        case = await self._case(repo, data.return_id, data.order_id)
        await self._run(
            case,
            ctx,
            case.request.record_return_signed(
                data.signed_at,
                returns=case.returns,
                policy=self.policy,
                now=ctx.now,
            ),
        )

    async def _reassess_waiting(
        self, repo: ReturnsRepository, order: Order, ctx: HandlerContext
    ) -> None:
        requests = await repo.returns_of_order(order.order_id)
        if not requests:
            return
        returns = OrderReturns(order, await repo.ledger(order.order_id))
        for request in requests:
            case = _Case(repo, request, returns)
            await self._run(
                case, ctx, request.reassess(returns=returns, policy=self.policy, now=ctx.now)
            )

    # --- returns ----------------------------------------------------------------------------

    async def return_requested(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnRequested)
        repo = self.repository(ctx)
        case = await self._case(repo, data.return_id, data.order_id)
        events = case.request.submit(
            customer_id=data.customer_id,
            kind=data.kind,
            reason=data.reason,
            lines={line.line_id: line.quantity for line in data.lines},
            condition=data.condition,
            evidence_urls=data.evidence_urls,
            requested_at=data.requested_at,
            returns=case.returns,
            policy=self.policy,
            now=ctx.now,
        )
        await self._run(case, ctx, events)

    async def evidence_submitted(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnEvidenceSubmitted)
        case = await self._case(self.repository(ctx), data.return_id, data.order_id)
        await self._run(
            case,
            ctx,
            case.request.add_evidence(
                data.evidence_urls,
                returns=case.returns,
                policy=self.policy,
                now=ctx.now,
            ),
        )

    async def return_shipped(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnShipped)
        case = await self._case(self.repository(ctx), data.return_id, data.order_id)
        await self._run(
            case,
            ctx,
            case.request.record_shipped(
                data.carrier,
                data.tracking_no,
                data.shipped_at,
                data.shipping_fee_paid,
                returns=case.returns,
                policy=self.policy,
                now=ctx.now,
            ),
        )

    async def return_inspected(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnInspected)
        case = await self._case(self.repository(ctx), data.return_id, data.order_id)
        await self._run(
            case,
            ctx,
            case.request.record_inspection(
                data.passed,
                data.findings,
                data.inspected_at,
                returns=case.returns,
                policy=self.policy,
                now=ctx.now,
            ),
        )

    async def return_reviewed(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnReviewed)
        case = await self._case(self.repository(ctx), data.return_id, data.order_id)
        await self._run(
            case,
            ctx,
            case.request.review(
                data.decision,
                data.agent_id,
                data.note,
                data.reviewed_at,
                returns=case.returns,
                policy=self.policy,
                now=ctx.now,
            ),
        )

    async def return_cancelled(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnCancelled)
        case = await self._case(self.repository(ctx), data.return_id, data.order_id)
        request = case.request
        events = request.cancel(data.cancelled_at, returns=case.returns, now=ctx.now)
        if request.parcel_received and not request.is_final:
            # The warehouse has the goods: the case goes on to its refund (docs/decisions.md).
            log.info(
                "return cancelled after its parcel was signed for; the case goes on",
                extra={"return_id": request.return_id, "order_id": request.order_id},
            )
        await self._run(case, ctx, events)

    async def timer_fired(self, timer: Timer, ctx: HandlerContext) -> None:
        repo = self.repository(ctx)
        request = await repo.return_request(timer.ref)
        if request is None:
            log.warning("timer for an unknown return", extra={"kind": timer.kind})
            return
        case = await self._case(repo, request.return_id, request.order_id, request)
        await self._run(
            case,
            ctx,
            request.on_timer(
                timer.kind,
                returns=case.returns,
                policy=self.policy,
                now=ctx.now,
                due_at=timer.due_at,
            ),
        )

    # --- plumbing -------------------------------------------------------------------------

    async def _case(
        self,
        repo: ReturnsRepository,
        return_id: str,
        order_id: str,
        request: ReturnRequest | None = None,
    ) -> _Case:
        if request is None:
            request = await repo.return_request(return_id)
        if request is None:
            request = ReturnRequest.new(return_id, order_id)
        elif request.order_id != order_id:
            raise ValueError(
                f"return {return_id} belongs to order {request.order_id}, not {order_id}"
            )
        returns = OrderReturns(await repo.order(order_id), await repo.ledger(order_id))
        return _Case(repo, request, returns)

    async def _run(self, case: _Case, ctx: HandlerContext, events: list[DomainEvent]) -> None:
        """Store the case and turn its domain events into outbox messages and timer rows."""
        await case.repo.save_return(case.request, ctx.now)
        await case.repo.save_ledger(case.returns.ledger, ctx.now)
        await TRANSLATIONS.apply(ctx, _Scope(case, ctx.now), events)


@dataclass(frozen=True)
class _Scope:
    case: _Case
    now: datetime

    @property
    def request(self) -> ReturnRequest:
        return self.case.request

    @property
    def ref(self) -> CaseRef:
        return CaseRef(type="return", id=self.request.return_id)


def _decided(event: Decided, scope: _Scope, index: int) -> list[Effect]:
    request, order = scope.request, scope.case.returns.order
    # A cancellation can come before return.requested: the buyer is then the order's.
    customer_id = request.customer_id or (order.customer_id if order is not None else "")
    if not customer_id:
        log.warning(
            "decision on a return of no known buyer not sent", extra={"rule": str(event.rule)}
        )
        return []
    data = ReturnDecision.model_validate(
        dict(
            return_id=request.return_id,
            order_id=request.order_id,
            customer_id=customer_id,
            kind=str(request.kind),
            rule=str(event.rule),
            message=event.message,
            message_en=event.message_en,
            return_shipping_payer=_text(event.return_shipping_payer),
            refund_estimate=(
                event.refund_estimate.amount if event.refund_estimate is not None else None
            ),
            waiting_for=_text(event.waiting_for),
            decided_at=scope.now,
        )
    )
    counter = metrics.labelled(metrics.DECISIONS, SERVICE, event.event_type, str(event.rule))
    return [
        Emit(
            event.event_type,
            data,
            discriminator=f"{request.return_id}:{index}",
            correlation_id=request.return_id,
            counts=((counter, 1),),
        )
    ]


def _timer_set(event: TimerSet, scope: _Scope, index: int) -> list[Effect]:
    order_id = scope.request.order_id
    return [
        SetTimer(
            str(event.kind),
            scope.request.return_id,
            due_at=event.due_at,
            lock_key=order_id,
            payload={"order_id": order_id},
        )
    ]


def _timer_cancelled(event: TimerCancelled, scope: _Scope, index: int) -> list[Effect]:
    return [CancelTimer(str(event.kind), scope.request.return_id)]


def _refund(event: RefundDue, scope: _Scope, index: int) -> list[Effect]:
    calc, request = event.calculation, scope.request
    # The freight learnt late is a refund of its own: its own id, stable across replays.
    part = "return_shipping" if event.supplementary else None
    return [
        refund_request(
            SERVICE,
            scope.ref,
            refund_id=ids.refund_id("return", request.return_id, part),
            order_id=request.order_id,
            customer_id=request.customer_id,
            amount=calc.amount,
            currency=calc.currency,
            # A refund of 0 (a gift returned alone, a line bought for 0) has no non-zero part;
            # the contract wants one item, so it says "goods: 0".
            breakdown=calc.breakdown or [("goods", 0)],
            due_by=event.due_by,
            requested_at=event.requested_at,
            return_shipping_payer=str(calc.return_shipping_payer),
        )
    ]


def _reshipment(event: ReshipmentDue, scope: _Scope, index: int) -> list[Effect]:
    request = scope.request
    return [
        reshipment(
            scope.ref,
            order_id=request.order_id,
            customer_id=request.customer_id,
            lines=event.lines,
            due_by=event.due_by,
            requested_at=event.requested_at,
        )
    ]


def _breached(event: SlaBreached, scope: _Scope, index: int) -> list[Effect]:
    request = scope.request
    return [
        Breach(
            case=scope.ref,
            sla=str(event.sla),
            due_at=event.due_at,
            detected_at=event.detected_at,
            order_id=request.order_id,
            customer_id=request.customer_id or None,
            event_id=ids.sla_breach_event_id("return", request.return_id, str(event.sla)),
            correlation_id=request.return_id,
        )
    ]


def _parcel_of_closed_case(event: ParcelOfClosedCase, scope: _Scope, index: int) -> list[Effect]:
    log.warning(
        "returned parcel signed for after its case closed; the merchant holds the goods",
        extra={
            "return_id": scope.request.return_id,
            "order_id": scope.request.order_id,
            "status": str(event.status),
        },
    )
    counter = metrics.labelled(metrics.PARCELS_OF_CLOSED_RETURNS, SERVICE, str(event.status))
    return [Count(counter)]


TRANSLATIONS: Translations[_Scope] = Translations(
    {
        Decided: _decided,
        ParcelOfClosedCase: _parcel_of_closed_case,
        TimerSet: _timer_set,
        TimerCancelled: _timer_cancelled,
        RefundDue: _refund,
        ReshipmentDue: _reshipment,
        SlaBreached: _breached,
    }
)


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)
