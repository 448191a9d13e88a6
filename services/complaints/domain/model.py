"""The Complaint aggregate (SPEC section 5): acknowledgement, SLA timers, escalation,
compensation once per complaint (its steps in compensating.py, by the table in
compensation.py), supervisor review of coupons over budget, and reopening after a low
satisfaction score.

Methods take what they need (the policy, `now`, and for compensation the ShopOrder and the
buyer's CompensationBudget) and return the domain events to publish; they change the complaint
and the order/budget passed in, which the service layer stores with the events in one
transaction. Every method is idempotent for a repeated input. The complaint is stored as a
versioned document (shared.documents, `COMPLAINT_DOCUMENT`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.complaints.domain.compensating import Compensating, Compensation
from services.complaints.domain.events import (
    DomainEvent,
    Escalated,
    Notify,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.complaints.domain.rules import (
    CaseKey,
    CaseType,
    Category,
    ComplaintStatus,
    EscalationReason,
    Outcome,
    Priority,
    Remedy,
    Resolution,
    Sla,
    Template,
    TimerKind,
    resolution_hours,
    sla_deadlines,
)
from shared.catchup import deadline_timer, set_again_for
from shared.clock import instant_to_json, require_aware
from shared.documents import DocumentType, Stored, require_aware_fields
from shared.policy import ComplaintsPolicy
from shared.timers import cancel_timers, set_timer

_ESCALATION_PRIORITY = {
    EscalationReason.FIRST_RESPONSE_OVERDUE: Priority.HIGH,
    EscalationReason.RESOLUTION_OVERDUE: Priority.URGENT,
    EscalationReason.LOW_SATISFACTION: Priority.URGENT,
    EscalationReason.COMPENSATION_CURRENCY: Priority.HIGH,
    EscalationReason.CUSTOMER_MISMATCH: Priority.HIGH,
}


@dataclass(frozen=True)
class LowScore:
    callback_id: str
    score: int


@dataclass
class Complaint(Compensating, Stored):
    """One complaint, from whichever of its events arrived first.

    Before complaint.opened arrives (status NEW) a response or a resolution is kept and applied
    when it does. `round` counts reopenings: SLA breaches and escalations are reported once per
    round.
    """

    complaint_id: str
    order_id: str
    customer_id: str = ""
    category: Category | None = None
    opened_at: datetime | None = None
    status: ComplaintStatus = ComplaintStatus.NEW
    round: int = 0
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    responded_at: datetime | None = None
    responded_by: str | None = None
    resolution: Resolution | None = None
    reopened_at: datetime | None = None
    priority: Priority = Priority.NORMAL
    acknowledged_at: datetime | None = None
    compensation: Compensation | None = None
    timers: dict[TimerKind, datetime] = field(default_factory=dict)
    breaches: set[str] = field(default_factory=set)  # "<sla>@<round>"
    escalations: set[str] = field(default_factory=set)  # "<reason>@<round>"
    buyer_told_escalated: set[int] = field(default_factory=set)  # rounds
    low_scores: list[str] = field(default_factory=list)  # callback ids that were applied
    pending_low_score: LowScore | None = None  # arrived before the complaint was resolved

    @classmethod
    def new(cls, complaint_id: str, order_id: str) -> Complaint:
        return cls(complaint_id=complaint_id, order_id=order_id)

    @property
    def is_opened(self) -> bool:
        return self.opened_at is not None

    @property
    def case(self) -> CaseKey:
        return CaseKey(CaseType.COMPLAINT, self.complaint_id)

    @property
    def awaits_compensation(self) -> bool:
        """Upheld and opened (category known) but not compensated yet: the service layer then
        calls `compensate` as soon as the order's facts are known."""
        return (
            self.is_opened
            and self.compensation is None
            and self.resolution is not None
            and self.resolution.outcome == Outcome.UPHELD
        )

    def _category(self) -> Category:
        if self.category is None:
            raise ValueError(f"complaint {self.complaint_id} has not been opened yet")
        return self.category

    # --- entry points ---------------------------------------------------------------------

    def open(
        self,
        *,
        customer_id: str,
        category: str,
        opened_at: datetime,
        policy: ComplaintsPolicy,
        now: datetime,
    ) -> list[DomainEvent]:
        """complaint.opened: acknowledge the buyer at once and start the SLA timers.

        A complaint resolved before its opening arrived is not acknowledged (the buyer has the
        answer); its deadlines are still checked against the response and resolution times.
        """
        require_aware(opened_at, "opened_at")
        require_aware(now, "now")
        if self.is_opened:
            return []
        self.customer_id = customer_id
        self.category = Category(category)
        self.opened_at = opened_at
        deadlines = sla_deadlines(self.category, opened_at, policy)
        self.first_response_due = deadlines.first_response
        self.resolution_due = deadlines.resolution
        if self.resolution is not None:
            self.status = ComplaintStatus.RESOLVED
            events = self._lateness(now)
            return events + self._apply_pending_low_score(policy, now)
        self.status = ComplaintStatus.RESPONDED if self.responded_at else ComplaintStatus.OPEN
        self.acknowledged_at = now
        events = [self._acknowledgement(policy)]
        if self.responded_at is None:
            events += self._sla_timer(TimerKind.FIRST_RESPONSE, deadlines.first_response, now)
        else:
            events += self._lateness(now)
        events += self._sla_timer(TimerKind.RESOLUTION, deadlines.resolution, now)
        return events

    def respond(self, agent_id: str, responded_at: datetime, now: datetime) -> list[DomainEvent]:
        """complaint.responded: the first response stops the first-response clock.

        Later responses, and responses to a resolved or reopened case, change nothing.
        """
        require_aware(responded_at, "responded_at")
        if self.responded_at is not None or self.status not in (
            ComplaintStatus.NEW,
            ComplaintStatus.OPEN,
        ):
            return []
        self.responded_at, self.responded_by = responded_at, agent_id
        if not self.is_opened:
            return []  # kept until complaint.opened arrives
        self.status = ComplaintStatus.RESPONDED
        return self._cancel_timers(TimerKind.FIRST_RESPONSE) + self._lateness(now)

    def resolve(
        self,
        *,
        outcome: str,
        remedy: str,
        agent_id: str,
        resolved_at: datetime,
        policy: ComplaintsPolicy,
        now: datetime,
    ) -> list[DomainEvent]:
        """complaint.resolved: stop every clock. Compensation follows via `compensate`.

        A resolution no later than the one on record is a redelivery (no effect); one dated
        before the case was reopened belongs to the previous round (no effect either). A later
        resolution of a resolved case replaces the outcome on record (an agent's correction),
        but a complaint is compensated at most once.
        """
        resolution = Resolution(Outcome(outcome), Remedy(remedy), agent_id, resolved_at)
        if self.resolution is not None and resolved_at <= self.resolution.resolved_at:
            return []
        if (
            self.status == ComplaintStatus.REOPENED
            and self.reopened_at is not None
            and resolved_at < self.reopened_at
        ):
            return []
        self.resolution = resolution
        if not self.is_opened:
            return []  # kept until complaint.opened arrives
        if self.status == ComplaintStatus.RESOLVED:
            return []
        self.status = ComplaintStatus.RESOLVED
        events = self._cancel_timers() + self._lateness(now)
        return events + self._apply_pending_low_score(policy, now)

    def on_timer(
        self, kind: str, due_at: datetime, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        """An SLA timer fired: breach and escalate, unless the deadline was met meanwhile.

        The timer is due `CATCH_UP_GRACE` after its deadline (`_sla_timer`), so a response or
        resolution dated in time that is still on its way through the platform is read first;
        one dated after the deadline breaches when it is read (`_lateness`), timer or not. The
        breach and the escalation name the SLA deadline, not the timer's due time.

        A timer at deadline + grace that fires more than a grace late (the service was down or
        its scheduler behind: on a restart the scheduler fires before the consumer has read the
        responses and resolutions of the outage) is set again for a grace from now and judged
        then, once (the timer set again is not at deadline + grace). A timer at the deadline
        itself was set before the grace existed: it is moved to deadline + grace, or a grace
        from now when that has passed.

        A timer the complaint no longer has (or with another due time) is stale: no effect.
        """
        timer = TimerKind(kind)
        if self.timers.get(timer) != due_at:
            return []
        del self.timers[timer]
        if timer == TimerKind.FIRST_RESPONSE:
            if self.status != ComplaintStatus.OPEN:
                return []
            reason, sla = EscalationReason.FIRST_RESPONSE_OVERDUE, Sla.FIRST_RESPONSE
            deadline = self.first_response_due
        elif timer == TimerKind.RESOLUTION:
            if self.status not in (
                ComplaintStatus.OPEN,
                ComplaintStatus.RESPONDED,
                ComplaintStatus.REOPENED,
            ):
                return []
            reason, sla = EscalationReason.RESOLUTION_OVERDUE, Sla.RESOLUTION
            deadline = self.resolution_due
        else:
            raise ValueError(f"complaint timers have no kind {kind!r}")
        assert deadline is not None
        if (again := set_again_for(deadline, due_at, now)) is not None:
            return self._set_timer(timer, again)
        events = self._overdue(sla, reason, deadline, now)
        if self.round not in self.buyer_told_escalated:
            self.buyer_told_escalated.add(self.round)
            params: dict[str, str | int] = {
                "complaint_id": self.complaint_id,
                "reason": reason.value,
            }
            if self.resolution_due is not None and self.resolution_due > now:
                params["answer_by"] = instant_to_json(self.resolution_due) or ""
            events.append(
                Notify(
                    template=Template.ESCALATED, case=self.case, params=params, tag=str(self.round)
                )
            )
        return events

    def record_low_satisfaction(
        self, callback_id: str, score: int, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        """satisfaction.low: reopen a resolved complaint with priority (urgent).

        A score that arrives before the resolution waits for it. The same callback reopens at
        most once; a case already reopened stays as it is.
        """
        if callback_id in self.low_scores:
            return []
        if not self.is_opened or self.status != ComplaintStatus.RESOLVED:
            if self.status == ComplaintStatus.REOPENED:
                self.low_scores.append(callback_id)
            else:
                self.pending_low_score = LowScore(callback_id, score)
            return []
        return self._reopen(LowScore(callback_id, score), policy, now)

    # --- transitions ----------------------------------------------------------------------

    def _reopen(
        self, score: LowScore, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        self.low_scores.append(score.callback_id)
        self.pending_low_score = None
        self.round += 1
        self.status = ComplaintStatus.REOPENED
        self.reopened_at = now
        hours = resolution_hours(self._category(), policy)
        self.resolution_due = now + timedelta(hours=hours)
        events = self._sla_timer(TimerKind.RESOLUTION, self.resolution_due, now)
        events += self._escalate(
            EscalationReason.LOW_SATISFACTION,
            self.resolution_due,
            now,
            score=score.score,
            callback_id=score.callback_id,
        )
        events.append(
            Notify(
                template=Template.REOPENED,
                case=self.case,
                params={
                    "complaint_id": self.complaint_id,
                    "resolve_within_hours": hours,
                    "resolve_by": instant_to_json(self.resolution_due) or "",
                },
                tag=str(self.round),
            )
        )
        return events

    def _apply_pending_low_score(
        self, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        pending = self.pending_low_score
        if pending is None or self.status != ComplaintStatus.RESOLVED:
            return []
        return self._reopen(pending, policy, now)

    def _lateness(self, now: datetime) -> list[DomainEvent]:
        """Deadlines already met late (their timer had not fired yet, or the facts arrived
        before the opening): breached and escalated as the timer would have (SPEC 5), so the
        outcome does not depend on how far behind the service was. The buyer, already answered,
        is not told of the escalation."""
        events: list[DomainEvent] = []
        answered = self.responded_at  # a resolution is an answer too
        if answered is None and self.resolution is not None:
            answered = self.resolution.resolved_at
        if (
            self.round == 0
            and answered is not None
            and self.first_response_due is not None
            and answered > self.first_response_due
        ):
            events += self._overdue(
                Sla.FIRST_RESPONSE,
                EscalationReason.FIRST_RESPONSE_OVERDUE,
                self.first_response_due,
                now,
            )
        if (
            self.status == ComplaintStatus.RESOLVED
            and self.resolution is not None
            and self.resolution_due is not None
            and self.resolution.resolved_at > self.resolution_due
        ):
            events += self._overdue(
                Sla.RESOLUTION, EscalationReason.RESOLUTION_OVERDUE, self.resolution_due, now
            )
        return events

    def _overdue(
        self, sla: Sla, reason: EscalationReason, deadline: datetime, now: datetime
    ) -> list[DomainEvent]:
        """A missed deadline, however found: breached and escalated, each once per round."""
        return self._breach(sla, deadline, now) + self._escalate(reason, deadline, now)

    def _breach(self, sla: Sla, due_at: datetime, now: datetime) -> list[DomainEvent]:
        key = f"{sla.value}@{self.round}"
        if key in self.breaches:
            return []
        self.breaches.add(key)
        return [SlaBreached(self.case, sla, due_at, now, self.round)]

    def _escalate(
        self,
        reason: EscalationReason,
        due_at: datetime,
        now: datetime,
        *,
        score: int | None = None,
        callback_id: str | None = None,
    ) -> list[DomainEvent]:
        key = f"{reason.value}@{self.round}"
        if key in self.escalations:
            return []
        self.escalations.add(key)
        priority = _ESCALATION_PRIORITY[reason]
        if priority.rank > self.priority.rank:
            self.priority = priority
        return [Escalated(reason, priority, due_at, now, self.round, score, callback_id)]

    def _acknowledgement(self, policy: ComplaintsPolicy) -> Notify:
        """When to expect an answer; and when the resolution takes longer (the complex
        categories, 24 hours), that longer deadline too."""
        category = self._category()
        params: dict[str, str | int] = {
            "complaint_id": self.complaint_id,
            "category": category.value,
            "answer_within_hours": policy.first_response_hours,
            "answer_by": instant_to_json(self.first_response_due) or "",
        }
        if self.resolution_due != self.first_response_due:
            params["resolve_within_hours"] = resolution_hours(category, policy)
            params["resolve_by"] = instant_to_json(self.resolution_due) or ""
        return Notify(template=Template.ACKNOWLEDGED, case=self.case, params=params, urgent=True)

    def _sla_timer(self, kind: TimerKind, deadline: datetime, now: datetime) -> list[DomainEvent]:
        """The timer of an SLA deadline, learnt of at `now` (`shared.catchup.deadline_timer`)."""
        return self._set_timer(kind, deadline_timer(deadline, now))

    def _set_timer(self, kind: TimerKind, due_at: datetime) -> list[DomainEvent]:
        return [TimerSet(kind, due_at)] if set_timer(self.timers, kind, due_at) else []

    def _cancel_timers(self, *kinds: TimerKind) -> list[DomainEvent]:
        cancelled = cancel_timers(self.timers, kinds or tuple(self.timers))
        return [TimerCancelled(kind) for kind in cancelled]

    # --- persistence ----------------------------------------------------------------------

    def __post_init__(self) -> None:
        require_aware_fields(self, *_INSTANTS)


_INSTANTS = (
    "opened_at",
    "first_response_due",
    "resolution_due",
    "responded_at",
    "reopened_at",
    "acknowledged_at",
    "timers",
)


def _v1_refund_told(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 records what the ledger issued of a compensation's refund (`refund_issued`).
    A version-1 compensation told its refund at once, without an amount: it waits for nothing."""
    upcast = dict(data)
    comp = upcast.get("compensation")
    if comp is not None:
        refund_amount = comp.get("refund_amount", 0)
        upcast["compensation"] = {
            **comp,
            "refund_issued": refund_amount if refund_amount else None,
            "refund_already_refunded": False,
        }
    return upcast


def _v2_buyer_paid(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 records a compensation withheld from a complainant who did not pay the order
    (`not_buyer`). Every version-2 compensation was decided for the complainant as the buyer."""
    comp = data.get("compensation")
    if comp is None:
        return data
    return {**data, "compensation": {**comp, "not_buyer": False}}


COMPLAINT_DOCUMENT = DocumentType(
    "complaints.complaint",
    Complaint,
    version=3,
    upcasters={1: _v1_refund_told, 2: _v2_buyer_paid},
)
