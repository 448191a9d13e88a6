"""How a return request moves between states (SPEC 4.5-4.10): wait, approve, reject, progress
to completion, reimburse late freight, and the events each step emits.

`ReturnRequest` (model.py) takes these as a base class: its entry points decide what an input
means, these steps carry it out against one `Turn`. Nothing here is called from outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from services.returns.domain.deadlines import (
    inspection_grace_end,
    late_freight_due_by,
    needs_inspection,
)
from services.returns.domain.eligibility import Assessment
from services.returns.domain.events import (
    Decided,
    DomainEvent,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.returns.domain.messages import compose
from services.returns.domain.money import calculate_refund, calculate_return_shipping_refund
from services.returns.domain.order_returns import OrderReturns
from services.returns.domain.shipping import return_shipping_cap, return_shipping_payer
from services.returns.domain.values import Inspection, Order, RefundCalculation
from services.returns.domain.vocabulary import (
    Payer,
    ReturnKind,
    ReturnStatus,
    Rule,
    Sla,
    TimerKind,
    WaitingFor,
)
from services.returns.domain.waiting import wait_deadline
from services.returns.domain.wording import MessageFacts
from shared.catchup import judge_at
from shared.policy import Policy
from shared.timers import cancel_timers, set_timer

# The timers of a request still being decided; approval ends all three.
_WAIT_TIMERS = (TimerKind.SIGNATURE_WAIT, TimerKind.EVIDENCE_WAIT, TimerKind.REVIEW_SLA)
_ALL_TIMERS = tuple(TimerKind)


@dataclass(frozen=True)
class Turn:
    """What one input is decided against: the order with its ledger, the policy, the time."""

    returns: OrderReturns
    policy: Policy
    now: datetime


class Decisions:
    """The state changes of a return request; the request's fields are declared for typing."""

    if TYPE_CHECKING:
        return_id: str
        kind: ReturnKind
        reason: str
        lines: dict[str, int]
        status: ReturnStatus
        waiting_for: WaitingFor | None
        rule: Rule | None
        decided_at: datetime | None
        return_shipping_payer: Payer | None
        carrier: str | None
        tracking_no: str | None
        return_shipping_fee_paid: int | None
        shipped_at: datetime | None
        return_signed_at: datetime | None
        refund_due_by: datetime | None
        inspection: Inspection | None
        refund: RefundCalculation | None
        return_shipping_refund: RefundCalculation | None
        completed_at: datetime | None
        timers: dict[TimerKind, datetime]
        breaches_reported: set[Sla]
        timers_caught_up: set[TimerKind]

        def requested_on(self) -> datetime: ...

    # --- transitions ----------------------------------------------------------------------

    def _apply(self, found: Assessment, turn: Turn) -> list[DomainEvent]:
        """Enter the assessed state, unless the request is in it already (idempotence)."""
        if self.rule is not None and (found.status, found.rule, found.waiting_for) == (
            self.status,
            self.rule,
            self.waiting_for,
        ):
            return []
        if found.status == ReturnStatus.APPROVED:
            turn.returns.require_order("approving a return")
            return self._approve(found.rule, turn)
        if found.status == ReturnStatus.REJECTED:
            return self._reject(found, turn)
        return self._wait(found, turn)

    def _wait(self, found: Assessment, turn: Turn) -> list[DomainEvent]:
        self.status, self.rule, self.waiting_for = found.status, found.rule, found.waiting_for
        self.decided_at = turn.now
        kind, due, hours = wait_deadline(
            found.waiting_for,
            requested_at=self.requested_on(),
            pending=self.timers,
            policy=turn.policy,
            now=turn.now,
        )
        others = [other for other in _WAIT_TIMERS if other != kind]
        timers = self._cancel_timers(*others) + self._set_timer(kind, due)
        facts = self._facts(found, turn, wait_until=due, wait_hours=hours)
        return [self._decided(found.status, found.rule, facts), *timers]

    def _approve(self, rule: Rule, turn: Turn) -> list[DomainEvent]:
        if self.inspection is not None and not self.inspection.passed:
            return self._reject(Assessment(ReturnStatus.REJECTED, Rule.INSPECTION_FAILED), turn)
        order = turn.returns.require_order("approving a return")
        self.status, self.rule, self.waiting_for = ReturnStatus.APPROVED, rule, None
        self.decided_at = turn.now
        self.return_shipping_payer = return_shipping_payer(self.reason, order)
        turn.returns.reserve(self.return_id, self.lines)
        estimate = self._calculate(order, turn)
        facts = self._facts(None, turn, amount=estimate.amount)
        events: list[DomainEvent] = [
            self._decided(ReturnStatus.APPROVED, rule, facts, estimate=estimate)
        ]
        events += self._cancel_timers(*_WAIT_TIMERS)
        events += self._progress(turn)
        return events

    def _reject(self, found: Assessment, turn: Turn) -> list[DomainEvent]:
        rules = turn.policy.returns
        self.status, self.rule, self.waiting_for = ReturnStatus.REJECTED, found.rule, None
        self.decided_at = turn.now
        turn.returns.release(self.return_id)
        if found.rule in (Rule.UNKNOWN_ORDER, Rule.NOT_DELIVERED) and not found.other_buyer:
            facts = self._facts(found, turn, wait_hours=rules.signature_wait_hours)
        elif found.rule == Rule.EVIDENCE_MISSING:
            facts = self._facts(found, turn, wait_hours=rules.evidence_wait_hours)
        elif found.rule == Rule.INSPECTION_FAILED and self.inspection is not None:
            facts = self._facts(found, turn, conditions=self.inspection.findings)
        else:
            facts = self._facts(found, turn)
        return [self._decided(ReturnStatus.REJECTED, found.rule, facts), *self._cancel_timers()]

    def _progress(self, turn: Turn, *, grace_over: bool = False) -> list[DomainEvent]:
        """An approved return moves on once its parcel is signed (and inspected, if needed)."""
        if self.status != ReturnStatus.APPROVED:
            return []
        if self.inspection is not None and not self.inspection.passed:
            return self._reject(Assessment(ReturnStatus.REJECTED, Rule.INSPECTION_FAILED), turn)
        signed_at = self.return_signed_at
        if signed_at is None:
            return []
        order = turn.returns.require_order("completing a return")
        waits = self.inspection is None and not grace_over
        if waits and needs_inspection(order, self.lines, turn.policy):
            # A grace already over when this is processed (a backlog) is judged by the
            # catch-up rule: a failed inspection behind in the backlog must still reject.
            grace_end = self.timers.get(TimerKind.INSPECTION_GRACE) or judge_at(
                inspection_grace_end(signed_at, turn.policy), turn.now
            )
            return self._set_timer(TimerKind.INSPECTION_GRACE, grace_end)
        return self._complete(order, turn)

    def _complete(self, order: Order, turn: Turn) -> list[DomainEvent]:
        due_by, now, returns = self.refund_due_by, turn.now, turn.returns
        assert due_by is not None and self.rule is not None
        events: list[DomainEvent] = []
        # The ledger already holding this return means it was refunded: never twice.
        if not returns.is_settled(self.return_id):
            calculation = self._calculate(order, turn)
            returns.settle(self.return_id, calculation)
            if self.kind == ReturnKind.EXCHANGE:
                events.append(ReshipmentDue(dict(self.lines), due_by, now))
            if self.kind == ReturnKind.REFUND or calculation.amount > 0:
                # A seller-fault exchange still reimburses the return freight.
                self.refund = calculation
                events.append(RefundDue(calculation, due_by, now))
            facts = self._facts(
                None, turn, amount=calculation.amount, return_shipping=calculation.return_shipping
            )
            events.append(self._decided(ReturnStatus.COMPLETED, self.rule, facts))
            # A refund requested after due_by is the refund ledger's breach to report when it
            # issues it (SPEC 4.11); a late replacement is this service's.
            if now > due_by and self.kind == ReturnKind.EXCHANGE:
                events += self._breach(Sla.RESHIPMENT, due_by, now)
        returns.release(self.return_id)
        self.status, self.waiting_for = ReturnStatus.COMPLETED, None
        self.completed_at = self.decided_at = now
        events += self._cancel_timers()
        return events

    def _reimburse_late_freight(
        self,
        carrier: str,
        tracking_no: str,
        shipped_at: datetime,
        fee_paid: int,
        turn: Turn,
    ) -> list[DomainEvent]:
        """Freight learnt after completion: on seller fault, reimbursed once, on its own.

        Only when completion did not know the freight (so the main refund holds none); the
        first return.shipped after completion counts, like the first signature. A no-reason
        return's freight is the buyer's; a rejected or cancelled return refunds nothing.
        """
        if (
            self.status != ReturnStatus.COMPLETED
            or self.return_shipping_payer != Payer.MERCHANT
            or self.return_shipping_fee_paid is not None
        ):
            return []
        order = turn.returns.require_order("reimbursing return freight")
        self.carrier, self.tracking_no = carrier, tracking_no
        self.shipped_at, self.return_shipping_fee_paid = shipped_at, fee_paid
        calculation = calculate_return_shipping_refund(
            order, self, turn.policy, return_shipping_fee_paid=fee_paid
        )
        # The ledger guards too, against a stale aggregate: never reimbursed twice.
        if calculation.amount == 0 or not turn.returns.settle_return_shipping(
            self.return_id, calculation.amount
        ):
            return []
        self.return_shipping_refund = calculation
        due_by = late_freight_due_by(self.refund_due_by, turn.policy, turn.now)
        return [RefundDue(calculation, due_by, turn.now, supplementary=True)]

    def _calculate(self, order: Order, turn: Turn) -> RefundCalculation:
        return calculate_refund(
            order,
            turn.returns.ledger,
            self,
            turn.policy,
            return_shipping_fee_paid=self.return_shipping_fee_paid or 0,
        )

    # --- helpers --------------------------------------------------------------------------

    def _set_timer(self, kind: TimerKind, due_at: datetime) -> list[DomainEvent]:
        """Set (or move) this request's one timer of `kind`; the same timer again is no event."""
        return [TimerSet(kind, due_at)] if set_timer(self.timers, kind, due_at) else []

    def _cancel_timers(self, *kinds: TimerKind) -> list[DomainEvent]:
        """Cancel the given pending timers, or all of them."""
        cancelled = cancel_timers(self.timers, kinds or _ALL_TIMERS)
        self.timers_caught_up.difference_update(cancelled)
        return [TimerCancelled(kind) for kind in cancelled]

    def _breach(self, sla: Sla, due_at: datetime, now: datetime) -> list[DomainEvent]:
        if sla in self.breaches_reported:
            return []
        self.breaches_reported.add(sla)
        return [SlaBreached(sla, due_at, now)]

    def _facts(
        self,
        found: Assessment | None,
        turn: Turn,
        *,
        wait_until: datetime | None = None,
        wait_hours: int | None = None,
        amount: int | None = None,
        return_shipping: int = 0,
        conditions: tuple[str, ...] | None = None,
    ) -> MessageFacts:
        """What the decision's message may say; the keywords are the facts of the step itself
        (a wait, an amount, an inspection's findings), given here so the facts are built once."""
        rules, returns = turn.policy.returns, turn.returns
        about: tuple[str, ...] = () if found is None else found.lines
        currency = returns.currency
        if conditions is None:
            conditions = () if found is None else found.conditions
        return MessageFacts(
            kind=self.kind,
            zone=turn.policy.zone,
            currency=currency if currency is not None else "CNY",
            # Most decisions are about no particular line (approvals, completions).
            lines=returns.titles(about) if about else (),
            other_lines=bool(about) and bool(set(self.lines) - set(about)),
            categories=() if found is None else found.categories,
            conditions=conditions,
            other_buyer=found is not None and found.other_buyer,
            window_deadline=None if found is None else found.deadline,
            quality_deadline=None if found is None else found.quality_deadline,
            no_reason_days=rules.no_reason_days,
            quality_claim_days=rules.quality_claim_days,
            payer=self.return_shipping_payer,
            return_shipping_cap=(
                None if currency is None else return_shipping_cap(rules, currency)
            ),
            refund_deadline_hours=rules.refund_deadline_hours,
            wait_until=wait_until,
            wait_hours=wait_hours,
            amount=amount,
            return_shipping=return_shipping,
        )

    def _decided(
        self,
        status: ReturnStatus,
        rule: Rule,
        facts: MessageFacts,
        *,
        estimate: RefundCalculation | None = None,
    ) -> Decided:
        text = compose(status, rule, facts)
        return Decided(
            status=status,
            rule=rule,
            message=text.zh,
            message_en=text.en,
            waiting_for=self.waiting_for,
            return_shipping_payer=(
                self.return_shipping_payer if status == ReturnStatus.APPROVED else None
            ),
            refund_estimate=estimate,
        )
