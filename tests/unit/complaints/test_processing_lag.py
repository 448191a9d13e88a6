"""A complaint's breaches and escalations depend on its history, not on how far behind the
service processed it (SPEC 5: a missed deadline escalates whenever it is found, by its timer or
by a response or resolution dated after it).

A history is an opening, maybe a response, maybe a resolution, in that order (one partition).
Each is processed some lag after its date, never before the one ahead of it; timers fire when
the clock passes them (a grace after their deadline). The one thing lag may change is a response
dated in time but processed after its deadline's timer fired: the platform's delay, more than
that grace, not the agent's. Histories where that happens are left out; every other lag must
give what processing on the dot gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.complaints.domain.events import DomainEvent, Escalated, SlaBreached
from services.complaints.domain.model import Complaint
from services.complaints.domain.rules import Category, sla_deadlines
from shared.catchup import CATCH_UP_GRACE

from . import POLICY, T0

MINUTE = timedelta(minutes=1)
FAR = T0 + timedelta(days=30)


@dataclass(frozen=True)
class History:
    category: str
    responded_at: datetime | None
    resolved_at: datetime | None

    def dated(self) -> list[tuple[str, datetime]]:
        steps = [("opened", T0)]
        if self.responded_at is not None:
            steps.append(("responded", self.responded_at))
        if self.resolved_at is not None:
            steps.append(("resolved", self.resolved_at))
        return steps


def fire_timers(complaint: Complaint, *, before: datetime, inclusive: bool) -> list[DomainEvent]:
    events: list[DomainEvent] = []
    while True:
        due = [
            (at, kind)
            for kind, at in complaint.timers.items()
            if at < before or (inclusive and at == before)
        ]
        if not due:
            return events
        at, kind = min(due)
        events += complaint.on_timer(kind.value, at, POLICY, at)


def process(history: History, lags: list[timedelta]) -> tuple[list[DomainEvent], list[datetime]]:
    """Every event of `history` processed at its date + its lag; the events and the moments."""
    complaint = Complaint.new("k1", "o1")
    events: list[DomainEvent] = []
    moments: list[datetime] = []
    previous = T0
    for (step, dated), lag in zip(history.dated(), lags, strict=False):
        now = max(previous, dated + lag)
        events += fire_timers(complaint, before=now, inclusive=False)
        if step == "opened":
            events += complaint.open(
                customer_id="c1", category=history.category, opened_at=dated, policy=POLICY, now=now
            )
        elif step == "responded":
            events += complaint.respond("agent-1", dated, now)
        else:
            events += complaint.resolve(
                outcome="not_upheld",
                remedy="none",
                agent_id="agent-1",
                resolved_at=dated,
                policy=POLICY,
                now=now,
            )
        moments.append(now)
        previous = now
    events += fire_timers(complaint, before=FAR, inclusive=True)
    return events, moments


def findings(events: list[DomainEvent]) -> set[tuple[object, ...]]:
    """What supervisors and reports see, without the detection instants."""
    found: set[tuple[object, ...]] = set()
    for event in events:
        if isinstance(event, SlaBreached):
            found.add(("breach", event.sla, event.due_at, event.round))
        elif isinstance(event, Escalated):
            found.add(("escalation", event.reason, event.priority, event.due_at, event.round))
    return found


def met_in_time_but_seen_after_its_timer(history: History, moments: list[datetime]) -> bool:
    deadlines = sla_deadlines(Category(history.category), T0, POLICY)
    opened_seen = moments[0]

    def timer_fires(deadline: datetime) -> datetime:
        # a grace after the deadline, or after the opening was processed if that was later
        return max(deadline, opened_seen) + CATCH_UP_GRACE

    seen = dict(zip([step for step, _ in history.dated()], moments, strict=True))
    answer = next(
        (
            (step, at)
            for step, at in history.dated()[1:]
            if step == "responded" or history.responded_at is None
        ),
        None,
    )
    if (
        answer is not None
        and answer[1] <= deadlines.first_response
        and seen[answer[0]] > timer_fires(deadlines.first_response)
    ):
        return True
    resolved = history.resolved_at
    return (
        resolved is not None
        and resolved <= deadlines.resolution
        and seen["resolved"] > timer_fires(deadlines.resolution)
    )


minutes = st.integers(min_value=0, max_value=30 * 60).map(lambda m: m * MINUTE)
lags = st.one_of(
    st.just(timedelta(0)),
    st.integers(min_value=0, max_value=180).map(lambda m: m * MINUTE),
    st.integers(min_value=0, max_value=48 * 60).map(lambda m: m * MINUTE),
)


@st.composite
def histories(draw: st.DrawFn) -> History:
    category = draw(st.sampled_from(["other", "quality_issue"]))  # 2 h and 24 h to resolve
    responded_at = draw(st.none() | minutes.map(lambda m: T0 + m))
    start = responded_at or T0
    resolved_at = draw(st.none() | minutes.map(lambda m: start + m))
    return History(category, responded_at, resolved_at)


@settings(max_examples=400, deadline=None)
@given(histories(), st.lists(lags, min_size=3, max_size=3))
def test_breaches_and_escalations_do_not_depend_on_processing_lag(history, lag_list):
    on_the_dot, _ = process(history, [timedelta(0)] * 3)
    lagging, moments = process(history, lag_list)
    assume(not met_in_time_but_seen_after_its_timer(history, moments))
    assert findings(lagging) == findings(on_the_dot)
    # Every breach escalates, and nothing is reported twice.
    breaches = [e for e in lagging if isinstance(e, SlaBreached)]
    escalations = [e for e in lagging if isinstance(e, Escalated)]
    assert len(breaches) == len(escalations) == len(findings(lagging)) // 2


def test_a_late_response_escalates_whether_or_not_its_timer_fired_first() -> None:
    history = History("quality_issue", T0 + 3 * timedelta(hours=1), None)
    before_timer, _ = process(history, [timedelta(0), timedelta(0), timedelta(0)])
    opened_late, _ = process(history, [timedelta(hours=3), timedelta(0), timedelta(0)])
    assert findings(before_timer) == findings(opened_late)
    assert any(isinstance(e, Escalated) for e in opened_late)
