"""Waiting and review (SPEC 4.5): how long a request waits for its order, the delivery or
the buyer's evidence, and the review deadline counted in working hours."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.returns.domain.vocabulary import TimerKind, WaitingFor
from shared.catchup import judge_at
from shared.clock import require_aware
from shared.policy import LocalHours, Policy

WAITING_FOR_DELIVERY = (WaitingFor.ORDER, WaitingFor.SIGNATURE)


def add_working_hours(
    start: datetime, hours: int, zone: ZoneInfo, working_hours: LocalHours
) -> datetime:
    """`start` plus `hours` of working time, counted only inside the daily working hours.

    Working hours apply every day of the week, in local wall-clock time: weekends and public
    holidays are not modelled (the policy file has no key for them). An end that lands exactly
    on closing time stays on that day.
    """
    require_aware(start, "start")
    if hours < 0:
        raise ValueError("hours must not be negative")
    remaining = timedelta(hours=hours)
    cursor = start.astimezone(zone)
    if not remaining:
        return cursor
    day = cursor.date()
    while True:
        opens = datetime.combine(day, working_hours.start, tzinfo=zone)
        closes = datetime.combine(day, working_hours.end, tzinfo=zone)
        begin = max(cursor, opens)
        if begin < closes:
            # Same tzinfo on both sides: Python does wall-clock arithmetic, as intended here.
            available = closes - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day += timedelta(days=1)
        cursor = datetime.combine(day, working_hours.start, tzinfo=zone)


def wait_deadline(
    waiting_for: WaitingFor | None,
    *,
    requested_at: datetime,
    pending: dict[TimerKind, datetime],
    policy: Policy,
    now: datetime,
) -> tuple[TimerKind, datetime, int]:
    """The timer a waiting request sets, when it is due and how many hours that is.

    The order or delivery is awaited from the request's own time; evidence and review from
    when the wait began, so a reassessment never moves a deadline already set. A request
    processed after its wait for the order was over (a backlog) is judged by the catch-up
    rule (`shared.catchup`): the order.paid behind it in the backlog still counts.
    """
    rules = policy.returns
    if waiting_for in WAITING_FOR_DELIVERY:
        hours = rules.signature_wait_hours
        due = pending.get(TimerKind.SIGNATURE_WAIT) or judge_at(
            requested_at + timedelta(hours=hours), now
        )
        return TimerKind.SIGNATURE_WAIT, due, hours
    if waiting_for == WaitingFor.EVIDENCE:
        hours = rules.evidence_wait_hours
        due = pending.get(TimerKind.EVIDENCE_WAIT) or now + timedelta(hours=hours)
        return TimerKind.EVIDENCE_WAIT, due, hours
    hours = rules.review_sla_working_hours
    due = pending.get(TimerKind.REVIEW_SLA) or add_working_hours(
        now, hours, policy.zone, rules.working_hours
    )
    return TimerKind.REVIEW_SLA, due, hours
