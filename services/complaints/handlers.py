"""The complaints service layer: thin handlers that load aggregates, call the domain, store, emit.

Locking. Every complaint event is keyed by its order (SPEC 1), so the consumer's advisory lock
on the order id serialises a complaint with its order, its timers (locked by the order id too)
and the order's other complaints. Two more keys are taken where an event cannot name the order:
- `complaint:<id>` for every complaint event, a complaint's `refund.issued`, and
  `satisfaction.low` (keyed by the buyer),
  so parking a low score of a complaint not seen yet and creating that complaint never race;
- a known complaint's order id, taken by the `satisfaction.low` handler itself once it has
  read it (a complaint never changes order), before it loads the complaint;
- the buyer's customer id, taken before the compensation budget is read (a buyer's complaints
  may be about orders on other partitions).
A lock taken inside a handler can meet another transaction's in the opposite order; PostgreSQL
then aborts one of them (deadlock, SQLSTATE 40P01), which the runtime treats as a passing fault:
the batch is rolled back and fetched again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.callbacks import priority_callback
from services.complaints.domain.events import DomainEvent
from services.complaints.domain.model import Complaint, LowScore
from services.complaints.domain.orders import OrderFacts, OrderLine, ShopOrder
from services.complaints.domain.rules import CaseKey, CaseType, TimerKind
from services.complaints.locks import complaint_lock, lock_keys
from services.complaints.outputs import SERVICE, TRANSLATIONS, _Scope
from services.complaints.repository import ComplaintsRepository
from shared.contracts import (
    CaseRef,
    CloudEvent,
    CompensationReviewed,
    ComplaintOpened,
    ComplaintResolved,
    ComplaintResponded,
    FollowupEvent,
    OrderCancelled,
    OrderPaid,
    OrderShipped,
    RefundIssued,
    ids,
)
from shared.messaging.context import EventHandler, HandlerContext, RepositoryHandlers, TimerHandler
from shared.messaging.store import Timer
from shared.policy import ComplaintsPolicy
from shared.projection import projected

__all__ = [
    "SERVICE",
    "TRANSLATIONS",
    "ComplaintsHandlers",
    "_Scope",
    "complaint_lock",
    "facts_from_event",
    "lock_keys",
]

log = logging.getLogger("aftersales.complaints")


def facts_from_event(data: OrderPaid) -> OrderFacts:
    """The complaints view of an order: amounts and ids, never the buyer's contact (SPEC 7)."""
    lines = tuple(projected(OrderLine, line) for line in data.lines)
    return projected(OrderFacts, data, lines=lines)


@dataclass
class _Case:
    """One complaint and its order, stored together at the end of a handler. The order is read
    when it is needed (`loaded`): to compensate the complaint, or to name the buyer of a
    complaint not opened yet."""

    repo: ComplaintsRepository
    complaint: Complaint
    order_id: str
    order: ShopOrder | None = None  # None: not read yet
    stored: bool = True  # False: the order was not stored before (a new one)

    async def loaded(self) -> ShopOrder:
        if self.order is None:
            found = await self.repo.order(self.order_id)
            self.stored = found is not None
            self.order = found or ShopOrder.new(self.order_id)
        return self.order


class ComplaintsHandlers(RepositoryHandlers[ComplaintsRepository]):
    stored = ComplaintsRepository

    @property
    def rules(self) -> ComplaintsPolicy:
        return self.policy.complaints

    def events(self) -> Mapping[str, EventHandler]:
        return {
            "order.paid": self.order_paid,
            "order.shipped": self.order_shipped,
            "order.cancelled": self.order_cancelled,
            "complaint.opened": self.complaint_opened,
            "complaint.responded": self.complaint_responded,
            "complaint.resolved": self.complaint_resolved,
            "compensation.reviewed": self.compensation_reviewed,
            "satisfaction.low": self.satisfaction_low,
            "refund.issued": self.refund_issued,
        }

    def timers(self) -> Mapping[str, TimerHandler]:
        return {
            TimerKind.FIRST_RESPONSE.value: self.complaint_timer,
            TimerKind.RESOLUTION.value: self.complaint_timer,
            TimerKind.LATE_SHIPMENT.value: self.order_timer,
        }

    # --- orders -----------------------------------------------------------------------------

    async def order_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(OrderPaid)
        repo = self.repository(ctx)
        order = await self._order(repo, data.order_id)
        events = order.record_paid(facts_from_event(data), self.rules, ctx.now)
        await self._store_order(repo, ctx, order, events)
        # Upheld complaints that waited for the order's amounts are compensated now.
        for complaint in await repo.complaints_of_order(order.order_id):
            if complaint.awaits_compensation:
                await self._finish(_Case(repo, complaint, order.order_id, order), ctx, [])

    async def order_shipped(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(OrderShipped)
        repo = self.repository(ctx)
        order = await self._order(repo, data.order_id)
        events = order.record_shipped(data.shipped_at, self.rules, ctx.now)
        await self._store_order(repo, ctx, order, events)

    async def order_cancelled(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(OrderCancelled)
        repo = self.repository(ctx)
        order = await self._order(repo, data.order_id)
        events = order.record_cancelled(data.cancelled_at, self.rules, ctx.now)
        await self._store_order(repo, ctx, order, events)

    async def order_timer(self, timer: Timer, ctx: HandlerContext) -> None:
        repo = self.repository(ctx)
        order = await repo.order(timer.ref)
        if order is None:
            log.warning("timer for an unknown order", extra={"kind": timer.kind})
            return
        events = order.on_timer(timer.kind, timer.due_at, self.rules, ctx.now)
        await self._store_order(repo, ctx, order, events)

    # --- complaints -------------------------------------------------------------------------

    async def complaint_opened(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ComplaintOpened)
        case = await self._case(ctx, data.complaint_id, data.order_id)
        events = case.complaint.open(
            customer_id=data.customer_id,
            category=data.category,
            opened_at=data.opened_at,
            policy=self.rules,
            now=ctx.now,
        )
        await self._finish(case, ctx, events)

    async def complaint_responded(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ComplaintResponded)
        case = await self._case(ctx, data.complaint_id, data.order_id)
        events = case.complaint.respond(data.agent_id, data.responded_at, ctx.now)
        await self._finish(case, ctx, events)

    async def complaint_resolved(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ComplaintResolved)
        case = await self._case(ctx, data.complaint_id, data.order_id)
        events = case.complaint.resolve(
            outcome=data.outcome,
            remedy=data.remedy,
            agent_id=data.agent_id,
            resolved_at=data.resolved_at,
            policy=self.rules,
            now=ctx.now,
        )
        await self._finish(case, ctx, events)

    async def compensation_reviewed(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(CompensationReviewed)
        repo = self.repository(ctx)
        complaint = await repo.complaint(data.complaint_id)
        if complaint is None or not complaint.customer_id:
            log.warning("review of a compensation the service does not know; no effect")
            return
        case = await self._case(ctx, data.complaint_id, data.order_id, complaint)
        budget = await self._budget(ctx, repo, complaint.customer_id)
        events = complaint.review_compensation(
            data.decision, data.agent_id, data.reviewed_at, budget, self.rules, ctx.now
        )
        await repo.save_budget(budget, ctx.now)
        await self._finish(case, ctx, events)

    async def satisfaction_low(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(FollowupEvent)
        assert data.score is not None  # required for satisfaction.low by the contract
        repo = self.repository(ctx)
        score = LowScore(callback_id=data.callback_id, score=data.score)
        for ref in data.cases:
            if ref.type != "complaint":
                await self._priority_callback(ctx, data.customer_id, ref, score)
                continue
            order_id = await repo.order_of_complaint(ref.id)
            if order_id is None:
                await repo.park_low_score(ref.id, score, ctx.now)
                continue
            await ctx.uow.lock([order_id])
            case = await self._case(ctx, ref.id, order_id)
            events = case.complaint.record_low_satisfaction(
                score.callback_id, score.score, self.rules, ctx.now
            )
            await self._finish(case, ctx, events)

    async def refund_issued(self, event: CloudEvent, ctx: HandlerContext) -> None:
        """The ledger issued a complaint's refund: the buyer's one notice of the compensation,
        with the amount issued. Other cases' refunds, and re-issues of a failed part (ids of
        their own), are not this service's to tell."""
        data = event.data_as(RefundIssued)
        case = data.case
        if case.type != CaseType.COMPLAINT.value or data.refund_id != ids.refund_id(
            case.type, case.id
        ):
            return
        complaint = await self.repository(ctx).complaint(case.id)
        if complaint is None:
            log.warning("refund of a complaint the service does not know; no notice")
            return
        found = await self._case(ctx, case.id, data.order_id, complaint)
        cut = any(item.kind == "already_refunded" for item in data.breakdown)
        events = complaint.record_refund_issued(data.amount, cut)
        await self._finish(found, ctx, events)

    async def _priority_callback(
        self, ctx: HandlerContext, customer_id: str, ref: CaseRef, score: LowScore
    ) -> None:
        """A return or late-shipment case: escalated for a person to call the buyer back."""
        case = CaseKey(CaseType(ref.type), ref.id)
        events = priority_callback(case, customer_id, score, self.rules, ctx.now)
        # A late-shipment case is its order's; a return's order is the returns service's.
        order_id = ref.id if case.type == CaseType.LATE_SHIPMENT else None
        scope = _Scope(None, None, customer_id=customer_id, order_id=order_id)
        await TRANSLATIONS.apply(ctx, scope, events)

    async def complaint_timer(self, timer: Timer, ctx: HandlerContext) -> None:
        repo = self.repository(ctx)
        complaint = await repo.complaint(timer.ref)
        if complaint is None:
            log.warning("timer for an unknown complaint", extra={"kind": timer.kind})
            return
        case = await self._case(ctx, complaint.complaint_id, complaint.order_id, complaint)
        events = complaint.on_timer(timer.kind, timer.due_at, self.rules, ctx.now)
        await self._finish(case, ctx, events)

    # --- plumbing ---------------------------------------------------------------------------

    async def _case(
        self,
        ctx: HandlerContext,
        complaint_id: str,
        order_id: str,
        complaint: Complaint | None = None,
    ) -> _Case:
        repo = self.repository(ctx)
        if complaint is None:
            complaint = await repo.complaint(complaint_id)
        if complaint is None:
            complaint = Complaint.new(complaint_id, order_id)
        elif complaint.order_id != order_id:
            raise ValueError(
                f"complaint {complaint_id} belongs to order {complaint.order_id}, not {order_id}"
            )
        return _Case(repo, complaint, order_id)

    async def _budget(
        self, ctx: HandlerContext, repo: ComplaintsRepository, customer_id: str
    ) -> CompensationBudget:
        # The buyer's lock first: the buyer's complaints may be on other partitions.
        return await repo.locked_budget(customer_id, ctx.uow.lock)

    async def _finish(self, case: _Case, ctx: HandlerContext, events: list[DomainEvent]) -> None:
        """Hand over parked low scores, compensate when due, store, and emit everything."""
        complaint, order, repo = case.complaint, case.order, case.repo
        for score in await repo.take_parked_low_scores(complaint.complaint_id):
            events += complaint.record_low_satisfaction(
                score.callback_id, score.score, self.rules, ctx.now
            )
        if complaint.awaits_compensation or not complaint.customer_id:
            order = await case.loaded()
        # Compensating is all a complaint changes of its order (a late-shipment penalty); an
        # order not stored yet is stored as it is known.
        changed = not case.stored
        if order is not None and complaint.awaits_compensation and order.is_paid:
            budget = await self._budget(ctx, repo, complaint.customer_id)
            events += complaint.compensate(order, budget, self.rules, ctx.now)
            await repo.save_budget(budget, ctx.now)
            changed = True
        await repo.save_complaint(complaint, ctx.now)
        if order is None and not await repo.order_stored(case.order_id):
            order, changed = ShopOrder.new(case.order_id), True
        if order is not None and changed:
            await repo.save_order(order, ctx.now)
        await self._publish(ctx, order, complaint, events, order_id=case.order_id)

    async def _order(self, repo: ComplaintsRepository, order_id: str) -> ShopOrder:
        """The order as stored, or a new one: an order event may come before order.paid."""
        return await repo.order(order_id) or ShopOrder.new(order_id)

    async def _store_order(
        self,
        repo: ComplaintsRepository,
        ctx: HandlerContext,
        order: ShopOrder,
        events: list[DomainEvent],
    ) -> None:
        """Store an order an order event or timer changed, and emit what it decided."""
        await repo.save_order(order, ctx.now)
        await self._publish(ctx, order, None, events)

    async def _publish(
        self,
        ctx: HandlerContext,
        order: ShopOrder | None,
        complaint: Complaint | None,
        events: list[DomainEvent],
        *,
        order_id: str | None = None,
    ) -> None:
        """`order` None: one not read, whose complaint names the buyer (`order_id` its id)."""
        await TRANSLATIONS.apply(ctx, _Scope(order, complaint, order_id=order_id), events)
