"""The ReturnRequest aggregate (SPEC section 4): one return or exchange and everything that
happened to it, decided against the order and what its returns took back (`OrderReturns`).

Every entry point takes the order (or None), the order's ledger, the policy and `now`, and
returns the domain events to publish; inside, they travel as one `_Turn`. A method changes the
request and the ledger: the service layer persists both, with the events, in one transaction.
The rules themselves live in the modules named after their SPEC sections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.returns.domain.deadlines import (
    delivery_sla,
    inspection_grace_end,
    late_freight_due_by,
    needs_inspection,
    refund_due_by,
)
from services.returns.domain.eligibility import Assessment, assess
from services.returns.domain.events import (
    Decided,
    DomainEvent,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.returns.domain.messages import MessageFacts, compose
from services.returns.domain.money import calculate_refund, calculate_return_shipping_refund
from services.returns.domain.order_returns import OrderLedger, OrderReturns
from services.returns.domain.shipping import return_shipping_cap, return_shipping_payer
from services.returns.domain.values import Inspection, Order, RefundCalculation, breakdown_as_pairs
from services.returns.domain.vocabulary import (
    CONDITION_FLAGS,
    FINAL_STATUSES,
    Payer,
    ReturnKind,
    ReturnStatus,
    Rule,
    Sla,
    TimerKind,
    WaitingFor,
    is_seller_fault,
    require_aware,
)
from services.returns.domain.waiting import WAITING_FOR_DELIVERY, wait_deadline
from shared.documents import DocumentType
from shared.policy import Policy

__all__ = ["RETURN_REQUEST_DOCUMENT", "ReturnRequest"]

_INSTANTS = (
    "requested_at",
    "decided_at",
    "shipped_at",
    "return_signed_at",
    "refund_due_by",
    "reviewed_at",
    "completed_at",
    "cancelled_at",
)
# The timers of a request still being decided; approval ends all three.
_WAIT_TIMERS = (TimerKind.SIGNATURE_WAIT, TimerKind.EVIDENCE_WAIT, TimerKind.REVIEW_SLA)


@dataclass(frozen=True)
class _Turn:
    """What one input is decided against: the order with its ledger, the policy, the time."""

    returns: OrderReturns
    policy: Policy
    now: datetime


@dataclass
class ReturnRequest:
    """One return or exchange request and everything that happened to it.

    A request can exist before return.requested arrives (`ReturnRequest.new`): facts that come
    early (return shipped or signed, inspection, evidence, cancellation) are remembered and
    used once it is submitted. Every method is idempotent for a repeated input.
    """

    return_id: str
    order_id: str
    customer_id: str = ""
    kind: ReturnKind = ReturnKind.REFUND
    reason: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # line_id -> quantity
    condition: list[str] = field(default_factory=list)
    evidence_urls: list[str] = field(default_factory=list)
    requested_at: datetime | None = None  # None until return.requested arrives
    status: ReturnStatus = ReturnStatus.PENDING
    waiting_for: WaitingFor | None = None
    rule: Rule | None = None  # last rule code; on completion, the approval rule
    decided_at: datetime | None = None
    return_shipping_payer: Payer | None = None
    carrier: str | None = None
    tracking_no: str | None = None
    return_shipping_fee_paid: int | None = None
    shipped_at: datetime | None = None
    return_signed_at: datetime | None = None
    refund_due_by: datetime | None = None
    inspection: Inspection | None = None
    reviewed_by: str | None = None
    review_note: str | None = None
    reviewed_at: datetime | None = None
    refund: RefundCalculation | None = None  # what completion refunded, if anything
    # The freight alone, when return.shipped came after completion (a refund of its own).
    return_shipping_refund: RefundCalculation | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    timers: dict[TimerKind, datetime] = field(default_factory=dict)  # pending timers
    breaches_reported: set[Sla] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Loaded documents too: an instant without its offset is refused, never guessed.
        for name in _INSTANTS:
            moment = getattr(self, name)
            if moment is not None:
                require_aware(moment, name)
        for kind, due in self.timers.items():
            require_aware(due, f"timer {kind}")

    @classmethod
    def new(cls, return_id: str, order_id: str) -> ReturnRequest:
        """A request known only by id: the first event about it may not be return.requested."""
        return cls(return_id=return_id, order_id=order_id)

    @property
    def is_requested(self) -> bool:
        return self.requested_at is not None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def delivery_sla(self) -> Sla:
        return delivery_sla(self.kind)

    def requested_on(self) -> datetime:
        if self.requested_at is None:
            raise ValueError(f"return {self.return_id} has not been requested yet")
        return self.requested_at

    # --- entry points ---------------------------------------------------------------------

    def submit(
        self,
        *,
        customer_id: str,
        kind: str,
        reason: str,
        lines: Mapping[str, int],
        condition: Iterable[str],
        evidence_urls: Iterable[str],
        requested_at: datetime,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.requested: assess the request (SPEC 4.6). A repeated submit has no effect."""
        if self.is_requested:
            return []
        require_aware(requested_at, "requested_at")
        require_aware(now, "now")
        return_kind = ReturnKind(kind)
        is_seller_fault(reason)  # rejects an unknown reason
        flags = list(dict.fromkeys(condition))
        unknown = [flag for flag in flags if flag not in CONDITION_FLAGS]
        if unknown:
            raise ValueError(f"unknown condition flags {unknown}")
        if not lines or any(quantity <= 0 for quantity in lines.values()):
            raise ValueError("a return names at least one line, each with a positive quantity")
        self.customer_id = customer_id
        self.kind = return_kind
        self.reason = reason
        self.lines = dict(lines)
        self.condition = flags
        self.evidence_urls = list(dict.fromkeys([*evidence_urls, *self.evidence_urls]))
        self.requested_at = requested_at
        if self.status == ReturnStatus.CANCELLED:  # cancelled before the request arrived
            return []
        turn = _Turn(OrderReturns(order, ledger), policy, now)
        return self._apply(assess(self, turn.returns, policy), turn)

    def reassess(
        self, *, order: Order | None, ledger: OrderLedger, policy: Policy, now: datetime
    ) -> list[DomainEvent]:
        """The order or its outbound signature arrived: decide a waiting request again."""
        if not self.is_requested or self.status != ReturnStatus.PENDING:
            return []
        turn = _Turn(OrderReturns(order, ledger), policy, now)
        return self._apply(assess(self, turn.returns, policy), turn)

    def add_evidence(
        self,
        urls: Iterable[str],
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.evidence_submitted: new photos let a request waiting for evidence go on."""
        if self.is_final:
            return []
        new = [url for url in dict.fromkeys(urls) if url not in self.evidence_urls]
        if not new:
            return []
        self.evidence_urls.extend(new)
        if self.waiting_for != WaitingFor.EVIDENCE:
            return []  # kept for the assessment or the reviewer
        return self.reassess(order=order, ledger=ledger, policy=policy, now=now)

    def review(
        self,
        decision: str,
        agent_id: str,
        note: str,
        at: datetime,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.reviewed: an agent decides a case in manual review; otherwise no effect."""
        if decision not in ("approve", "reject"):
            raise ValueError(f"unknown review decision {decision!r}")
        require_aware(at, "reviewed_at")
        if self.status != ReturnStatus.REVIEW:
            return []
        self.reviewed_by, self.review_note, self.reviewed_at = agent_id, note, at
        turn = _Turn(OrderReturns(order, ledger), policy, now)
        # A decision dated after the review deadline is a breach even when it beat the timer
        # (SPEC 4.5); a timer that fired first reported it already (`_breach` reports once).
        deadline = self.timers.get(TimerKind.REVIEW_SLA)
        late: list[DomainEvent] = []
        if deadline is not None and at > deadline:
            late = self._breach(Sla.RETURN_REVIEW, deadline, now)
        if decision == "reject":
            found = Assessment(ReturnStatus.REJECTED, Rule.REVIEWED_REJECT)
            return self._reject(found, turn) + late
        the_order = turn.returns.require_order("approving a return")
        # Units may have gone to another return while this one sat in review.
        exceeding = turn.returns.exceeding_lines(the_order, self.lines, self.return_id)
        if exceeding:
            found = Assessment(
                ReturnStatus.REJECTED, Rule.QUANTITY_EXCEEDS_PURCHASED, lines=exceeding
            )
            return self._reject(found, turn) + late
        return self._approve(Rule.REVIEWED_APPROVE, turn) + late

    def record_shipped(
        self,
        carrier: str,
        tracking_no: str,
        shipped_at: datetime,
        shipping_fee_paid: int,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.shipped: the buyer's return freight, reimbursed on seller fault.

        Known before completion, it is paid with the refund. The return-leg signature is on
        another topic and can come first: a completed return that did not know its freight
        then reimburses it with a refund of its own (`_reimburse_late_freight`).
        """
        require_aware(shipped_at, "shipped_at")
        require_aware(now, "now")
        if shipping_fee_paid < 0:
            raise ValueError("shipping_fee_paid must not be negative")
        if self.is_final:
            turn = _Turn(OrderReturns(order, ledger), policy, now)
            return self._reimburse_late_freight(
                carrier, tracking_no, shipped_at, shipping_fee_paid, turn
            )
        self.carrier, self.tracking_no = carrier, tracking_no
        self.shipped_at, self.return_shipping_fee_paid = shipped_at, shipping_fee_paid
        return []

    def record_return_signed(
        self,
        signed_at: datetime,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """parcel.signed, leg return, at T: the refund is due by T + refund_deadline_hours.

        Only an approved return owes a refund: one still undecided (waiting for evidence, in
        review) sets no refund deadline timer. If it is approved after the deadline, the refund
        it then issues reports the breach (`_complete`); a rejection owes nothing.
        """
        require_aware(signed_at, "signed_at")
        if self.return_signed_at is not None:
            return []
        self.return_signed_at = signed_at
        self.refund_due_by = refund_due_by(signed_at, policy)
        if not self.is_requested or self.is_final:
            return []
        if self.status == ReturnStatus.APPROVED:
            return self._progress(_Turn(OrderReturns(order, ledger), policy, now))
        return []

    def record_inspection(
        self,
        passed: bool,
        findings: Iterable[str],
        at: datetime,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.inspected: a pass releases a waiting refund, a failure rejects the return.

        An inspection after completion (the grace period ran out) has no effect.
        """
        if self.inspection is not None or self.is_final:
            return []
        self.inspection = Inspection(passed=passed, findings=tuple(findings), at=at)
        return self._progress(_Turn(OrderReturns(order, ledger), policy, now))

    def on_timer(
        self,
        kind: str,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
        due_at: datetime | None = None,
    ) -> list[DomainEvent]:
        """A timer fired. One the request no longer has (or with another `due_at`) is stale."""
        timer = TimerKind(kind)
        active = self.timers.get(timer)
        if active is None or (due_at is not None and due_at != active):
            return []
        del self.timers[timer]
        turn = _Turn(OrderReturns(order, ledger), policy, now)
        if timer == TimerKind.SIGNATURE_WAIT:
            if self.status != ReturnStatus.PENDING or self.waiting_for not in WAITING_FOR_DELIVERY:
                return []
            found = assess(self, turn.returns, policy)
            if found.waiting_for in WAITING_FOR_DELIVERY:
                rejected = replace(found, status=ReturnStatus.REJECTED, waiting_for=None)
                return self._reject(rejected, turn)
            return self._apply(found, turn)
        if timer == TimerKind.EVIDENCE_WAIT:
            if self.status != ReturnStatus.PENDING or self.waiting_for != WaitingFor.EVIDENCE:
                return []
            found = assess(self, turn.returns, policy)
            if found.rule == Rule.EVIDENCE_MISSING:
                rejected = replace(found, status=ReturnStatus.REJECTED, waiting_for=None)
                return self._reject(rejected, turn)
            return self._apply(found, turn)
        if timer == TimerKind.REVIEW_SLA:
            if self.status != ReturnStatus.REVIEW:
                return []
            return self._breach(Sla.RETURN_REVIEW, active, now)
        if timer == TimerKind.INSPECTION_GRACE:
            return self._progress(turn, grace_over=True)
        # refund_deadline: the refund (or reshipment) is owed, late and still not issued. A
        # request not approved (a timer stored by an earlier version) owes nothing yet.
        if self.status != ReturnStatus.APPROVED:
            return []
        return self._breach(self.delivery_sla, active, now)

    def cancel(self, at: datetime, *, ledger: OrderLedger) -> list[DomainEvent]:
        """return.cancelled: before completion the case closes; afterwards no effect."""
        require_aware(at, "cancelled_at")
        if self.is_final:
            return []
        self.status, self.rule, self.waiting_for = ReturnStatus.CANCELLED, Rule.CANCELLED, None
        self.cancelled_at = self.decided_at = at
        ledger.release(self.return_id)
        text = compose(ReturnStatus.CANCELLED, Rule.CANCELLED, MessageFacts(kind=self.kind))
        decided = Decided(ReturnStatus.CANCELLED, Rule.CANCELLED, text.zh, text.en)
        return [decided, *self._cancel_timers()]

    # --- transitions ----------------------------------------------------------------------

    def _apply(self, found: Assessment, turn: _Turn) -> list[DomainEvent]:
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

    def _wait(self, found: Assessment, turn: _Turn) -> list[DomainEvent]:
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
        facts = replace(self._facts(found, turn), wait_until=due, wait_hours=hours)
        return [self._decided(found.status, found.rule, facts), *timers]

    def _approve(self, rule: Rule, turn: _Turn) -> list[DomainEvent]:
        if self.inspection is not None and not self.inspection.passed:
            return self._reject(Assessment(ReturnStatus.REJECTED, Rule.INSPECTION_FAILED), turn)
        order = turn.returns.require_order("approving a return")
        self.status, self.rule, self.waiting_for = ReturnStatus.APPROVED, rule, None
        self.decided_at = turn.now
        self.return_shipping_payer = return_shipping_payer(self.reason, order)
        turn.returns.ledger.reserve(self.return_id, self.lines)
        estimate = self._calculate(order, turn)
        facts = replace(self._facts(None, turn), amount=estimate.amount)
        events: list[DomainEvent] = [
            self._decided(ReturnStatus.APPROVED, rule, facts, estimate=estimate)
        ]
        events += self._cancel_timers(*_WAIT_TIMERS)
        events += self._progress(turn)
        return events

    def _reject(self, found: Assessment, turn: _Turn) -> list[DomainEvent]:
        rules = turn.policy.returns
        self.status, self.rule, self.waiting_for = ReturnStatus.REJECTED, found.rule, None
        self.decided_at = turn.now
        turn.returns.ledger.release(self.return_id)
        facts = self._facts(found, turn)
        if found.rule in (Rule.UNKNOWN_ORDER, Rule.NOT_DELIVERED):
            facts = replace(facts, wait_hours=rules.signature_wait_hours)
        elif found.rule == Rule.EVIDENCE_MISSING:
            facts = replace(facts, wait_hours=rules.evidence_wait_hours)
        elif found.rule == Rule.INSPECTION_FAILED and self.inspection is not None:
            facts = replace(facts, conditions=self.inspection.findings)
        return [self._decided(ReturnStatus.REJECTED, found.rule, facts), *self._cancel_timers()]

    def _progress(self, turn: _Turn, *, grace_over: bool = False) -> list[DomainEvent]:
        """An approved return moves on once its parcel is signed (and inspected, if needed)."""
        if self.status != ReturnStatus.APPROVED:
            return []
        if self.inspection is not None and not self.inspection.passed:
            return self._reject(Assessment(ReturnStatus.REJECTED, Rule.INSPECTION_FAILED), turn)
        signed_at = self.return_signed_at
        if signed_at is None:
            return []
        order = turn.returns.require_order("completing a return")
        if self.inspection is None and needs_inspection(order, self.lines, turn.policy):
            grace_end = inspection_grace_end(signed_at, turn.policy)
            if not grace_over and turn.now < grace_end:
                return self._set_timer(TimerKind.INSPECTION_GRACE, grace_end)
        return self._complete(order, turn)

    def _complete(self, order: Order, turn: _Turn) -> list[DomainEvent]:
        due_by, now, ledger = self.refund_due_by, turn.now, turn.returns.ledger
        assert due_by is not None and self.rule is not None
        events: list[DomainEvent] = []
        # The ledger already holding this return means it was refunded: never twice.
        if not ledger.is_settled(self.return_id):
            calculation = self._calculate(order, turn)
            ledger.settle(self.return_id, calculation)
            if self.kind == ReturnKind.EXCHANGE:
                events.append(ReshipmentDue(dict(self.lines), due_by, now))
            if self.kind == ReturnKind.REFUND or calculation.amount > 0:
                # A seller-fault exchange still reimburses the return freight.
                self.refund = calculation
                events.append(RefundDue(calculation, due_by, now))
            facts = replace(
                self._facts(None, turn),
                amount=calculation.amount,
                return_shipping=calculation.return_shipping,
            )
            events.append(self._decided(ReturnStatus.COMPLETED, self.rule, facts))
            # A refund requested after due_by is the refund ledger's breach to report when it
            # issues it (SPEC 4.11); a late replacement is this service's.
            if now > due_by and self.kind == ReturnKind.EXCHANGE:
                events += self._breach(Sla.RESHIPMENT, due_by, now)
        ledger.release(self.return_id)
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
        turn: _Turn,
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
        if calculation.amount == 0 or not turn.returns.ledger.settle_return_shipping(
            self.return_id, calculation.amount
        ):
            return []
        self.return_shipping_refund = calculation
        due_by = late_freight_due_by(self.refund_due_by, turn.policy, turn.now)
        return [RefundDue(calculation, due_by, turn.now, supplementary=True)]

    def _calculate(self, order: Order, turn: _Turn) -> RefundCalculation:
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
        if self.timers.get(kind) == due_at:
            return []
        self.timers[kind] = due_at
        return [TimerSet(kind, due_at)]

    def _cancel_timers(self, *kinds: TimerKind) -> list[DomainEvent]:
        """Cancel the given pending timers, or all of them."""
        chosen = [kind for kind in (kinds or tuple(TimerKind)) if kind in self.timers]
        for kind in chosen:
            del self.timers[kind]
        return [TimerCancelled(kind) for kind in chosen]

    def _breach(self, sla: Sla, due_at: datetime, now: datetime) -> list[DomainEvent]:
        if sla in self.breaches_reported:
            return []
        self.breaches_reported.add(sla)
        return [SlaBreached(sla, due_at, now)]

    def _facts(self, found: Assessment | None, turn: _Turn) -> MessageFacts:
        rules, returns = turn.policy.returns, turn.returns
        about: tuple[str, ...] = () if found is None else found.lines
        currency = returns.currency
        return MessageFacts(
            kind=self.kind,
            zone=turn.policy.zone,
            currency=currency if currency is not None else "CNY",
            lines=returns.titles(about),
            other_lines=bool(about) and bool(set(self.lines) - set(about)),
            categories=() if found is None else found.categories,
            conditions=() if found is None else found.conditions,
            window_deadline=None if found is None else found.deadline,
            quality_deadline=None if found is None else found.quality_deadline,
            no_reason_days=rules.no_reason_days,
            quality_claim_days=rules.quality_claim_days,
            payer=self.return_shipping_payer,
            return_shipping_cap=(
                None if currency is None else return_shipping_cap(rules, currency)
            ),
            refund_deadline_hours=rules.refund_deadline_hours,
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

    # --- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return RETURN_REQUEST_DOCUMENT.dump(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReturnRequest:
        return RETURN_REQUEST_DOCUMENT.load(data)


def _v1_breakdowns(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 stores the refunds' breakdowns as [kind, amount] pairs (`breakdown_as_pairs`)."""
    upcast = dict(data)
    for key in ("refund", "return_shipping_refund"):
        if upcast.get(key) is not None:
            upcast[key] = breakdown_as_pairs(upcast[key])
    return upcast


RETURN_REQUEST_DOCUMENT = DocumentType(
    "returns.return_request", ReturnRequest, version=2, upcasters={1: _v1_breakdowns}
)
