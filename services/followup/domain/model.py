"""The Callback aggregate: one satisfaction callback of one buyer, naming one or more cases.

Functions and methods take the Policy and `now` and return domain events; they change the
callbacks passed in, which the service layer stores with the events in one transaction.
A callback is stored as one document through shared.documents (`CALLBACK_DOCUMENT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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
from services.followup.domain.rules import (
    SURVEY_VALIDITY,
    AnswerRejected,
    CallbackStatus,
    CaseKey,
    CaseOutcome,
    CaseType,
    Delivery,
)
from services.followup.domain.timing import Window, case_window, next_allowed, send_slot, utc
from shared.documents import DocumentType, Stored, require_aware_fields
from shared.policy import Policy


def _json(instant: datetime | None) -> str | None:
    return None if instant is None else utc(instant).isoformat()


@dataclass
class Case:
    """A closed case: what closed it, when, and whether its callback went out in time."""

    type: CaseType
    case_id: str
    order_id: str
    customer_id: str
    closed_at: datetime
    closed_by: str  # the event type that closed it
    deadline: datetime  # its callback must go out before this instant
    outcome: CaseOutcome = CaseOutcome.PENDING

    @property
    def key(self) -> CaseKey:
        return CaseKey(self.type, self.case_id)

    @classmethod
    def closed(
        cls,
        type: CaseType | str,
        case_id: str,
        *,
        order_id: str,
        customer_id: str,
        closed_at: datetime,
        closed_by: str,
        policy: Policy,
    ) -> Case:
        closed_at = utc(closed_at)
        return cls(
            type=CaseType(type),
            case_id=case_id,
            order_id=order_id,
            customer_id=customer_id,
            closed_at=closed_at,
            closed_by=closed_by,
            deadline=closed_at + timedelta(hours=policy.followup.callback_deadline_hours),
        )

    def window(self, policy: Policy, now: datetime) -> Window:
        return case_window(self.closed_at, now, policy)

    def __post_init__(self) -> None:
        require_aware_fields(self, "closed_at", "deadline")


@dataclass
class Callback(Stored):
    callback_id: str
    customer_id: str
    cases: list[Case]
    status: CallbackStatus
    due_at: datetime  # when it goes (or went, or would have gone) out
    deadline: datetime  # the earliest deadline of the cases it still serves
    revision: int = 0  # bumped on every change of plan (callback.scheduled is re-emitted)
    sent_at: datetime | None = None
    answer_by: datetime | None = None
    answered_at: datetime | None = None
    score: int | None = None
    comment: str | None = field(default=None, repr=False)  # free text: never logged
    delivery: Delivery | None = None  # once sent: what the notifier reported of the invitation
    delivered_at: datetime | None = None  # the notifier's sent_at
    delivery_failure: str | None = None  # the notifier's reason, when it gave the invitation up

    # --- queries ----------------------------------------------------------------------------

    def cases_with(self, outcome: CaseOutcome) -> list[Case]:
        return [case for case in self.cases if case.outcome == outcome]

    def keys(self, outcome: CaseOutcome | None = None) -> tuple[CaseKey, ...]:
        chosen = self.cases if outcome is None else self.cases_with(outcome)
        return tuple(case.key for case in chosen)

    def can_absorb(self, window: Window) -> bool:
        """A scheduled callback takes a new case when one send instant suits them all: not
        before any case's own earliest instant and before every case's deadline."""
        if self.status != CallbackStatus.SCHEDULED:
            return False
        return max(self.due_at, window.earliest) < min(self.deadline, window.deadline)

    # --- changes ----------------------------------------------------------------------------

    def _scheduled(self) -> CallbackScheduled:
        return CallbackScheduled(
            cases=self.keys(CaseOutcome.PENDING),
            due_at=self.due_at,
            deadline=self.deadline,
            revision=self.revision,
        )

    def absorb(self, case: Case, window: Window) -> list[DomainEvent]:
        if not self.can_absorb(window):
            raise ValueError(f"callback {self.callback_id} cannot take case {case.key}")
        if case.customer_id != self.customer_id:
            raise ValueError("a callback names the cases of one buyer only")
        case.outcome = CaseOutcome.PENDING
        self.cases.append(case)
        due_at = max(self.due_at, window.earliest)
        moved = due_at != self.due_at
        self.due_at = due_at
        self.deadline = min(self.deadline, window.deadline)
        self.revision += 1
        return [self._scheduled(), *([TimerSet(due_at)] if moved else [])]

    def on_due(self, policy: Policy, now: datetime) -> list[DomainEvent]:
        """The timer fired: send, wait out quiet hours, or give up on cases past their deadline."""
        now = utc(now)
        if self.status != CallbackStatus.SCHEDULED:
            return []  # already sent or missed: a late or repeated timer has no effect
        if now < self.due_at:
            return [TimerSet(self.due_at)]  # not yet (the plan moved): keep the timer
        slot = send_slot(now, policy)
        events: list[DomainEvent] = []
        for case in self.cases_with(CaseOutcome.PENDING):
            if slot >= case.deadline:
                case.outcome = CaseOutcome.MISSED
                events.append(CaseMissed(case.key, case.order_id, case.deadline, now))
        alive = self.cases_with(CaseOutcome.PENDING)
        if not alive:
            self.status = CallbackStatus.MISSED
            return events
        self.deadline = min(case.deadline for case in alive)
        if slot > now:  # the timer fired late, inside the quiet hours: wait for their end
            self.due_at = slot
            self.revision += 1
            return [*events, self._scheduled(), TimerSet(slot)]
        self.status, self.sent_at = CallbackStatus.SENT, now
        self.delivery = Delivery.AWAITING
        self.answer_by = now + SURVEY_VALIDITY
        for case in alive:
            case.outcome = CaseOutcome.SENT
        events.append(
            CallbackSent(
                cases=tuple(case.key for case in alive),
                due_at=self.due_at,
                deadline=self.deadline,
                sent_at=now,
                answer_by=self.answer_by,
            )
        )
        return events

    def on_delivered(self, delivered_at: datetime, now: datetime) -> list[DomainEvent]:
        """The notifier delivered the survey invitation (`notification.sent`): its cases had
        their callback in time, each judged against its own deadline. Only the first status
        counts: a repeated or contradicting one, or one for a callback not sent, changes
        nothing."""
        if self.delivery == Delivery.DELIVERED and self.delivered_at is None:
            self.delivered_at = utc(delivered_at)  # the answer came first: only the instant
            return []
        if self.status != CallbackStatus.SENT or self.delivery != Delivery.AWAITING:
            return []
        delivered_at = utc(delivered_at)
        self.delivery, self.delivered_at = Delivery.DELIVERED, delivered_at
        in_time: list[Case] = []
        events: list[DomainEvent] = []
        for case in self.cases_with(CaseOutcome.SENT):
            if delivered_at < case.deadline:
                case.outcome = CaseOutcome.DELIVERED
                in_time.append(case)
            else:  # the notifier never delivers past the deadline it was given: defensive
                case.outcome = CaseOutcome.UNDELIVERED
                events.append(
                    CaseMissed(case.key, case.order_id, case.deadline, utc(now), "delivered_late")
                )
        if in_time:
            events.insert(0, CallbackDelivered(tuple(c.key for c in in_time), delivered_at))
        return events

    def on_undelivered(self, reason: str, now: datetime) -> list[DomainEvent]:
        """The notifier gave the survey invitation up (`notification.failed`: expired past its
        deadline, no contact, retries exhausted): no callback reached the buyer, each case is
        missed (`sla.breached`). Only the first status counts, and an answer of the buyer
        before it proved the invitation delivered (an uncertain gateway outcome)."""
        if self.status != CallbackStatus.SENT or self.delivery != Delivery.AWAITING:
            return []
        now = utc(now)
        sent = self.cases_with(CaseOutcome.SENT)
        self.delivery, self.delivery_failure = Delivery.FAILED, reason
        events: list[DomainEvent] = [CallbackUndelivered(tuple(case.key for case in sent), reason)]
        for case in sent:
            case.outcome = CaseOutcome.UNDELIVERED
            events.append(CaseMissed(case.key, case.order_id, case.deadline, now, reason))
        return events

    def answer(
        self,
        *,
        customer_id: str,
        score: int,
        comment: str,
        answered_at: datetime,
        policy: Policy,
    ) -> list[DomainEvent]:
        """Record the buyer's 1-5 score, once, within the survey's validity."""
        answered_at = utc(answered_at)
        name = f"callback {self.callback_id}"
        if not 1 <= score <= 5:
            raise AnswerRejected("invalid_score", f"score must be 1 to 5, got {score}")
        if customer_id != self.customer_id:
            raise AnswerRejected("customer_mismatch", f"{name} was sent to another buyer")
        if self.status != CallbackStatus.SENT or self.answer_by is None:
            raise AnswerRejected("callback_not_sent", f"{name} was not sent (it is {self.status})")
        if self.answered_at is not None:
            raise AnswerRejected(
                "already_answered", f"{name} was already answered at {_json(self.answered_at)}"
            )
        if answered_at > self.answer_by:
            raise AnswerRejected(
                "survey_expired",
                f"{name} could be answered until {_json(self.answer_by)}, "
                f"answered at {_json(answered_at)}",
            )
        self.answered_at, self.score, self.comment = answered_at, score, comment
        delivered: list[DomainEvent] = []
        if self.delivery == Delivery.AWAITING:
            # The buyer answered: the invitation reached them, and before the callback's
            # deadline (the notifier never delivers past it), whatever status comes later.
            self.delivery = Delivery.DELIVERED
            for case in self.cases_with(CaseOutcome.SENT):
                case.outcome = CaseOutcome.DELIVERED
            delivered.append(CallbackDelivered(self.keys(CaseOutcome.DELIVERED), None))
        return [
            *delivered,
            SatisfactionRecorded(
                cases=tuple(c.key for c in self.cases if c.outcome in _REACHED),
                score=score,
                low=score <= policy.followup.low_score_threshold,
                answered_at=answered_at,
            ),
        ]

    # --- persistence ------------------------------------------------------------------------

    def __post_init__(self) -> None:
        require_aware_fields(
            self, "due_at", "deadline", "sent_at", "answer_by", "answered_at", "delivered_at"
        )


# The outcomes of the cases a sent callback asked the buyer about (answers name them).
_REACHED = frozenset({CaseOutcome.SENT, CaseOutcome.DELIVERED, CaseOutcome.UNDELIVERED})


def _v1_case_ids(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 stored each case's id under `id`; version 2 names it `case_id`."""
    upcast = dict(data)
    upcast["cases"] = [
        {("case_id" if key == "id" else key): value for key, value in case.items()}
        for case in data["cases"]
    ]
    return upcast


def _v2_delivery(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 records what the notifier reported of a sent callback's invitation; a callback
    sent before awaits it (the notifier's statuses are read from the topic's start)."""
    upcast = dict(data)
    sent = data.get("status") == CallbackStatus.SENT
    upcast["delivery"] = str(Delivery.AWAITING) if sent else None
    upcast["delivered_at"] = None
    upcast["delivery_failure"] = None
    return upcast


CALLBACK_DOCUMENT = DocumentType(
    "followup.callback", Callback, version=3, upcasters={1: _v1_case_ids, 2: _v2_delivery}
)


def close_case(
    case: Case,
    pending: Sequence[Callback],
    *,
    new_callback_id: str,
    policy: Policy,
    now: datetime,
) -> tuple[Callback, list[DomainEvent]]:
    """A case of the buyer closed: join a scheduled callback of theirs, or start a new one.

    `pending` are the buyer's scheduled callbacks. The case joins the first one (by send time)
    that can still go out within its window; otherwise it gets its own callback, planned for
    close + delay out of quiet hours. A case whose window has already closed (the close event
    came too late) gets a callback record that is missed at once: `sla.breached`, nothing sent.
    """
    window = case.window(policy, now)
    for callback in sorted(pending, key=lambda c: (c.due_at, c.callback_id)):
        if callback.customer_id == case.customer_id and callback.can_absorb(window):
            return callback, callback.absorb(case, window)
    if not window.open:
        case.outcome = CaseOutcome.MISSED
        planned = next_allowed(
            case.closed_at + timedelta(hours=policy.followup.callback_delay_hours),
            policy.zone,
            policy.followup.quiet_hours,
        )
        missed = Callback(
            callback_id=new_callback_id,
            customer_id=case.customer_id,
            cases=[case],
            status=CallbackStatus.MISSED,
            due_at=planned,
            deadline=case.deadline,
        )
        return missed, [CaseMissed(case.key, case.order_id, case.deadline, utc(now))]
    case.outcome = CaseOutcome.PENDING
    callback = Callback(
        callback_id=new_callback_id,
        customer_id=case.customer_id,
        cases=[case],
        status=CallbackStatus.SCHEDULED,
        due_at=window.earliest,
        deadline=window.deadline,
    )
    return callback, [callback._scheduled(), TimerSet(window.earliest)]
