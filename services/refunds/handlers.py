"""The refund ledger's service layer: thin handlers that load an order's ledger, call the
domain, store it and emit what it decided, in the consumer's transaction.

Every input is keyed by its order (order.paid, refund.requested, refund.settled and
refund.failed all carry `order_id`), so the consumer's advisory lock on the order id
serialises an order's ledger; the wait timer is locked by the order id too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import Counter

from services.refunds import metrics as ledger_metrics
from services.refunds.domain.events import (
    BreachKind,
    DomainEvent,
    PayoutFailed,
    RefundIssued,
    RefundSettled,
    RefundSlaBreached,
    RequestRefused,
    RequestRepeated,
    StopWaiting,
    WaitForOrder,
)
from services.refunds.domain.model import OrderFacts, OrderLedger, RefundRequest
from services.refunds.domain.refund import IssuedRefund
from services.refunds.repository import RefundsRepository
from shared import metrics
from shared.contracts import (
    CaseRef,
    CloudEvent,
    OrderPaid,
    RefundFailed,
    RefundRequested,
    ids,
)
from shared.contracts import RefundIssued as RefundIssuedData
from shared.contracts import (
    RefundSettled as RefundSettledData,
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
)
from shared.messaging.errors import Rejected
from shared.messaging.store import Timer
from shared.projection import projected
from shared.refusal import Refusal

SERVICE = "refunds"
ORDER_WAIT = "order_wait"
log = logging.getLogger("aftersales.refunds")


def facts_from_event(data: OrderPaid) -> OrderFacts:
    """The ledger's view of an order: amounts and ids, never the buyer's contact (SPEC 7)."""
    return OrderFacts.of(
        order_id=data.order_id,
        customer_id=data.customer_id,
        currency=data.currency,
        paid_at=data.paid_at,
        shipping_fee_paid=data.shipping_fee_paid,
        payments=[(p.method, p.amount) for p in data.payments],
        lines=[(line.line_id, line.quantity, line.paid_amount) for line in data.lines],
    )


def request_from_event(data: RefundRequested) -> RefundRequest:
    return RefundRequest(
        refund_id=data.refund_id,
        order_id=data.order_id,
        customer_id=data.customer_id,
        case_type=data.case.type,
        case_id=data.case.id,
        amount=data.amount,
        currency=data.currency,
        breakdown=tuple((item.kind, item.amount) for item in data.breakdown),
        due_by=data.due_by,
        requested_at=data.requested_at,
        requested_by=data.requested_by,
        return_shipping_payer=data.return_shipping_payer,
    )


class RefundsHandlers(RepositoryHandlers[RefundsRepository]):
    stored = RefundsRepository

    @property
    def overflow_method(self) -> str:
        return self.policy.refunds.overflow_method

    def events(self) -> Mapping[str, EventHandler]:
        return {
            "order.paid": self.order_paid,
            "refund.requested": self.refund_requested,
            "refund.settled": self.refund_settled,
            "refund.failed": self.refund_failed,
        }

    def timers(self) -> Mapping[str, TimerHandler]:
        return {ORDER_WAIT: self.order_wait}

    async def order_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(OrderPaid)
        repo, ledger = await self._load(ctx, data.order_id)
        # A waiting refund_id may have been issued for another order since it came: its
        # refund.issued would share that one's event id and never reach finance.
        elsewhere: set[str] = set()
        if ledger.facts is None:
            for refund_id in ledger.waiting:
                owner = await repo.order_of_refund(refund_id)
                if owner is not None and owner != data.order_id:
                    elsewhere.add(refund_id)
        events = ledger.record_paid(
            facts_from_event(data), self.overflow_method, ctx.now, issued_elsewhere=elsewhere
        )
        await self._finish(ctx, repo, ledger, events)

    async def refund_requested(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(RefundRequested)
        repo, ledger = await self._load(ctx, data.order_id)
        owner = await repo.order_of_refund(data.refund_id)
        events = ledger.request(
            request_from_event(data),
            self.overflow_method,
            ctx.now,
            issued_for_other_order=owner is not None and owner != data.order_id,
        )
        await self._finish(ctx, repo, ledger, events)

    async def refund_settled(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(RefundSettledData)
        repo, ledger = await self._load(ctx, data.order_id)
        try:
            events = ledger.settle(data.refund_id, data.settled_at)
        except Refusal as exc:  # an unknown refund
            raise Rejected(exc.reason, exc.detail) from exc
        await self._finish(ctx, repo, ledger, events)

    async def refund_failed(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(RefundFailed)
        repo, ledger = await self._load(ctx, data.order_id)
        try:
            events = ledger.fail(
                data.refund_id,
                data.method,
                data.amount,
                data.reason,
                data.failed_at,
                self.overflow_method,
                ctx.now,
            )
        except Refusal as exc:  # an unknown refund, or a part it did not pay
            raise Rejected(exc.reason, exc.detail) from exc
        await self._finish(ctx, repo, ledger, events)

    async def order_wait(self, timer: Timer, ctx: HandlerContext) -> None:
        """A request still waiting for its order.paid when the alert fell due."""
        ledger = await self.repository(ctx).ledger(str(timer.payload["order_id"]))
        if ledger is None or timer.ref not in ledger.waiting:
            return
        ctx.count(metrics.labelled(ledger_metrics.WAITING_TOO_LONG, SERVICE))
        log.warning(
            "refund request still waits for its order.paid",
            extra={"service": SERVICE, "refund_id": timer.ref, "order_id": ledger.order_id},
        )

    # --- plumbing ---------------------------------------------------------------------------

    async def _load(
        self, ctx: HandlerContext, order_id: str
    ) -> tuple[RefundsRepository, OrderLedger]:
        repo = self.repository(ctx)
        return repo, await repo.ledger(order_id) or OrderLedger(order_id)

    async def _finish(
        self,
        ctx: HandlerContext,
        repo: RefundsRepository,
        ledger: OrderLedger,
        events: list[DomainEvent],
    ) -> None:
        await repo.save(ledger, ctx.now)
        await TRANSLATIONS.apply(ctx, ledger, events)


def _issued(event: RefundIssued, ledger: OrderLedger, index: int) -> list[Effect]:
    refund = event.refund
    data = projected(
        RefundIssuedData,
        refund,
        # Plain values, as its lines: the event's model validates the case once.
        case={"type": refund.case_type, "id": refund.case_id},
        breakdown=[{"kind": k, "amount": a} for k, a in refund.breakdown],
        payments=[{"method": m, "amount": a} for m, a in refund.payments],
    )
    currency = refund.currency
    counts: list[tuple[Counter, float]] = [
        (metrics.labelled(metrics.REFUNDS, SERVICE, refund.case_type), 1),
        (metrics.labelled(metrics.REFUND_AMOUNT, SERVICE, currency), refund.amount),
        (metrics.labelled(ledger_metrics.CUT, SERVICE, currency), refund.cut),
        (metrics.labelled(ledger_metrics.OVERFLOW, SERVICE, currency), refund.overflow),
    ]
    if refund.on_time:
        counts.append((metrics.labelled(ledger_metrics.ON_TIME, SERVICE, currency, "issue"), 1))
    return [
        Emit(
            "refund.issued",
            data,
            # The request's refund_id makes the event: a replay or a repeat yields the same one.
            event_id=ids.event_id("refund.issued", refund.refund_id),
            correlation_id=refund.case_id,
            # Labelling made each series; adding 0 (no cut, no overflow) would change none.
            counts=tuple((counter, amount) for counter, amount in counts if amount),
        )
    ]


def _breached(event: RefundSlaBreached, ledger: OrderLedger, index: int) -> list[Effect]:
    refund = event.refund
    # The late refund of a case and a re-issue that failed again are reported once each.
    cause = (
        refund.refund_id if event.kind == BreachKind.LATE else f"{refund.refund_id}:{event.kind}"
    )
    return [
        Breach(
            case=_case(refund),
            sla="refund",
            due_at=refund.due_by,
            detected_at=event.detected_at,
            order_id=refund.order_id,
            customer_id=refund.customer_id,
            event_id=ids.refund_breach_event_id(cause),
            correlation_id=refund.case_id,
        )
    ]


def _wait(event: WaitForOrder, ledger: OrderLedger, index: int) -> list[Effect]:
    order_id = ledger.order_id
    return [
        SetTimer(
            ORDER_WAIT,
            event.refund_id,
            due_at=event.alert_at,
            lock_key=order_id,
            payload={"order_id": order_id},
        )
    ]


def _stop_waiting(event: StopWaiting, ledger: OrderLedger, index: int) -> list[Effect]:
    return [CancelTimer(ORDER_WAIT, event.refund_id)]


def _refused(event: RequestRefused, ledger: OrderLedger, index: int) -> list[Effect]:
    log.warning(
        "refund request refused, never paid",
        extra={
            "service": SERVICE,
            "refund_id": event.refund_id,
            "order_id": ledger.order_id,
            "reason": event.reason.value,
        },
    )
    return [Count(metrics.labelled(ledger_metrics.REFUSED, SERVICE, event.reason.value))]


def _repeated(event: RequestRepeated, ledger: OrderLedger, index: int) -> list[Effect]:
    return [Count(metrics.labelled(ledger_metrics.REPEATED, SERVICE))]


def _settled(event: RefundSettled, ledger: OrderLedger, index: int) -> list[Effect]:
    refund = event.refund
    effects: list[Effect] = [
        Count(metrics.labelled(ledger_metrics.SETTLED, SERVICE, refund.currency))
    ]
    if refund.settled_on_time:
        effects.append(
            Count(metrics.labelled(ledger_metrics.ON_TIME, SERVICE, refund.currency, "settlement"))
        )
    return effects


def _payout_failed(event: PayoutFailed, ledger: OrderLedger, index: int) -> list[Effect]:
    refund = event.refund
    reissued = "true" if event.reissued else "false"
    effects: list[Effect] = [
        Count(metrics.labelled(ledger_metrics.PAYOUT_FAILURES, SERVICE, refund.currency, reissued))
    ]
    if refund.needs_person:
        effects.append(
            Count(metrics.labelled(ledger_metrics.NEEDS_PERSON, SERVICE, refund.currency))
        )
    log.warning(
        "refund payout failed",
        extra={
            "service": SERVICE,
            "refund_id": refund.refund_id,
            "order_id": ledger.order_id,
            "method": event.method,
            "reissued": event.reissued,
        },
    )
    return effects


TRANSLATIONS: Translations[OrderLedger] = Translations(
    {
        RefundIssued: _issued,
        RefundSlaBreached: _breached,
        WaitForOrder: _wait,
        StopWaiting: _stop_waiting,
        RequestRefused: _refused,
        RequestRepeated: _repeated,
        RefundSettled: _settled,
        PayoutFailed: _payout_failed,
    }
)


def _case(refund: IssuedRefund) -> CaseRef:
    return CaseRef.model_validate({"type": refund.case_type, "id": refund.case_id})
