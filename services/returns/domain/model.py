"""The ReturnRequest aggregate (SPEC section 4): one return or exchange and everything that
happened to it, decided against the order and what its returns took back (`OrderReturns`).

Every entry point takes the order with what its returns took back (`OrderReturns`, one
aggregate), the policy and `now`, and returns the domain events to publish; inside, they travel
as one `Turn` to the steps of `Decisions` (decisions.py). A method changes the request and the
order's returns: the service layer persists both, with the events, in one transaction.
The rules themselves live in the modules named after their SPEC sections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.returns.domain.deadlines import (
    delivery_sla,
    refund_due_by,
)
from services.returns.domain.decisions import Decisions, Turn
from services.returns.domain.eligibility import Assessment, assess
from services.returns.domain.events import (
    Decided,
    DomainEvent,
    ParcelOfClosedCase,
)
from services.returns.domain.messages import compose
from services.returns.domain.order_returns import OrderReturns
from services.returns.domain.values import Inspection, RefundCalculation, breakdown_as_pairs
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
)
from services.returns.domain.waiting import WAITING_FOR_DELIVERY
from services.returns.domain.wording import MessageFacts
from shared.catchup import fired_late, judge_at
from shared.clock import require_aware
from shared.documents import DocumentType, Stored, require_aware_fields
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
    "timers",
)


@dataclass
class ReturnRequest(Decisions, Stored):
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
    # Pending timers set again because they fired long after their due time (the catch-up
    # rule, `shared.catchup.fired_late`): judged when they fire, however late.
    timers_caught_up: set[TimerKind] = field(default_factory=set)

    def __post_init__(self) -> None:
        require_aware_fields(self, *_INSTANTS)

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
    def parcel_received(self) -> bool:
        """The warehouse signed for the returned parcel: the buyer can no longer cancel."""
        return self.return_signed_at is not None

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
        returns: OrderReturns,
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
        turn = Turn(returns, policy, now)
        return self._apply(assess(self, turn.returns, policy), turn)

    def reassess(
        self, *, returns: OrderReturns, policy: Policy, now: datetime
    ) -> list[DomainEvent]:
        """The order or its outbound signature arrived: decide a waiting request again."""
        if not self.is_requested or self.status != ReturnStatus.PENDING:
            return []
        turn = Turn(returns, policy, now)
        return self._apply(assess(self, turn.returns, policy), turn)

    def add_evidence(
        self,
        urls: Iterable[str],
        *,
        returns: OrderReturns,
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
        return self.reassess(returns=returns, policy=policy, now=now)

    def review(
        self,
        decision: str,
        agent_id: str,
        note: str,
        at: datetime,
        *,
        returns: OrderReturns,
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
        turn = Turn(returns, policy, now)
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
        returns: OrderReturns,
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
            turn = Turn(returns, policy, now)
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
        returns: OrderReturns,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """parcel.signed, leg return, at T: the refund is due by T + refund_deadline_hours.

        Only an approved return owes a refund: one still undecided (waiting for evidence, in
        review) sets no refund deadline timer. If it is approved after the deadline, the refund
        it then issues reports the breach (`_complete`); a rejection owes nothing. A parcel of
        a case already cancelled or rejected is goods the merchant holds that no rule refunds
        or sends back: it is reported for a person (`ParcelOfClosedCase`).
        """
        require_aware(signed_at, "signed_at")
        if self.return_signed_at is not None:
            return []
        self.return_signed_at = signed_at
        self.refund_due_by = refund_due_by(signed_at, policy)
        if self.status in (ReturnStatus.CANCELLED, ReturnStatus.REJECTED):
            return [ParcelOfClosedCase(self.status)]
        if not self.is_requested or self.is_final:
            return []
        if self.status == ReturnStatus.APPROVED:
            return self._progress(Turn(returns, policy, now))
        return []

    def record_inspection(
        self,
        passed: bool,
        findings: Iterable[str],
        at: datetime,
        *,
        returns: OrderReturns,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.inspected: a pass releases a waiting refund, a failure rejects the return.

        An inspection after completion (the grace period ran out) has no effect.
        """
        if self.inspection is not None or self.is_final:
            return []
        self.inspection = Inspection(passed=passed, findings=tuple(findings), at=at)
        return self._progress(Turn(returns, policy, now))

    def on_timer(
        self,
        kind: str,
        *,
        returns: OrderReturns,
        policy: Policy,
        now: datetime,
        due_at: datetime | None = None,
    ) -> list[DomainEvent]:
        """A timer fired. One the request no longer has (or with another `due_at`) is stale.

        A wait that would reject (for the order, the delivery, the photos) or an inspection
        grace that would refund, firing more than the catch-up grace after its due time (the
        service was down or its scheduler behind), is set again for a grace from now instead,
        once (`shared.catchup.fired_late`): the order.paid, parcel.signed, photos or failed
        inspection that met it may still be in the consumer's backlog, and a rejection or a
        refund cannot be taken back. The review and refund deadlines only report a breach and
        are judged at once.
        """
        timer = TimerKind(kind)
        active = self.timers.get(timer)
        if active is None or (due_at is not None and due_at != active):
            return []
        del self.timers[timer]
        judge_now = timer in self.timers_caught_up or not fired_late(active, now)
        self.timers_caught_up.discard(timer)
        turn = Turn(returns, policy, now)
        if timer == TimerKind.SIGNATURE_WAIT:
            if self.status != ReturnStatus.PENDING or self.waiting_for not in WAITING_FOR_DELIVERY:
                return []
            found = assess(self, turn.returns, policy)
            if found.waiting_for in WAITING_FOR_DELIVERY:
                if not judge_now:
                    return self._catch_up(timer, active, now)
                rejected = replace(found, status=ReturnStatus.REJECTED, waiting_for=None)
                return self._reject(rejected, turn)
            return self._apply(found, turn)
        if timer == TimerKind.EVIDENCE_WAIT:
            if self.status != ReturnStatus.PENDING or self.waiting_for != WaitingFor.EVIDENCE:
                return []
            found = assess(self, turn.returns, policy)
            if found.rule == Rule.EVIDENCE_MISSING:
                if not judge_now:
                    return self._catch_up(timer, active, now)
                rejected = replace(found, status=ReturnStatus.REJECTED, waiting_for=None)
                return self._reject(rejected, turn)
            return self._apply(found, turn)
        if timer == TimerKind.REVIEW_SLA:
            if self.status != ReturnStatus.REVIEW:
                return []
            return self._breach(Sla.RETURN_REVIEW, active, now)
        if timer == TimerKind.INSPECTION_GRACE:
            refunds_uninspected = self.status == ReturnStatus.APPROVED and self.inspection is None
            if refunds_uninspected and not judge_now:
                return self._catch_up(timer, active, now)
            return self._progress(turn, grace_over=True)
        # refund_deadline: the refund (or reshipment) is owed, late and still not issued. A
        # request not approved (a timer stored by an earlier version) owes nothing yet.
        if self.status != ReturnStatus.APPROVED:
            return []
        return self._breach(self.delivery_sla, active, now)

    def cancel(
        self, at: datetime, *, returns: OrderReturns, now: datetime | None = None
    ) -> list[DomainEvent]:
        """return.cancelled: before completion the case closes; afterwards no effect.

        Once the warehouse signed for the returned parcel a cancellation has no effect either:
        the merchant has the goods, so the case goes on to its inspection and its refund or
        replacement (or its rejection); closing it would leave the buyer with neither goods
        nor money. The input stays in the journal like every input.

        A case cancelled while in review after its review deadline had passed breached it,
        even when the cancellation beat the timer (SPEC 4.5, as for a late decision).
        """
        require_aware(at, "cancelled_at")
        if self.is_final or self.parcel_received:
            return []
        deadline = self.timers.get(TimerKind.REVIEW_SLA)
        late: list[DomainEvent] = []
        if self.status == ReturnStatus.REVIEW and deadline is not None and at > deadline:
            late = self._breach(Sla.RETURN_REVIEW, deadline, now or at)
        self.status, self.rule, self.waiting_for = ReturnStatus.CANCELLED, Rule.CANCELLED, None
        self.cancelled_at = self.decided_at = at
        returns.release(self.return_id)
        text = compose(ReturnStatus.CANCELLED, Rule.CANCELLED, MessageFacts(kind=self.kind))
        decided = Decided(ReturnStatus.CANCELLED, Rule.CANCELLED, text.zh, text.en)
        return [decided, *self._cancel_timers(), *late]

    def _catch_up(self, timer: TimerKind, due_at: datetime, now: datetime) -> list[DomainEvent]:
        """Set a timer that fired long after `due_at` again for a grace from now, once."""
        self.timers_caught_up.add(timer)
        return self._set_timer(timer, judge_at(due_at, now))

    # --- persistence ----------------------------------------------------------------------


def _v2_timers_caught_up(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 keeps which pending timers were set again by the catch-up rule: none before."""
    return {"timers_caught_up": [], **data}


def _v1_breakdowns(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 stores the refunds' breakdowns as [kind, amount] pairs (`breakdown_as_pairs`)."""
    upcast = dict(data)
    for key in ("refund", "return_shipping_refund"):
        if upcast.get(key) is not None:
            upcast[key] = breakdown_as_pairs(upcast[key])
    return upcast


RETURN_REQUEST_DOCUMENT = DocumentType(
    "returns.return_request",
    ReturnRequest,
    version=3,
    upcasters={1: _v1_breakdowns, 2: _v2_timers_caught_up},
)
