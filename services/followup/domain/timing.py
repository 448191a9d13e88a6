"""When a satisfaction callback may go out (SPEC section 6): delay, quiet hours, deadline.

Pure functions of instants, the policy and `now`; every instant returned is in UTC.
Durations (`callback_delay_hours`, `callback_deadline_hours`) are elapsed time, not wall-clock
time; quiet hours are local wall-clock time in the policy's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.clock import require_aware
from shared.policy import LocalHours, Policy


def utc(instant: datetime) -> datetime:
    return require_aware(instant).astimezone(UTC)


def is_quiet(instant: datetime, zone: ZoneInfo, quiet: LocalHours) -> bool:
    """True inside the quiet hours: from `start` (included) to `end` (excluded), local time;
    a span whose start is after its end runs over midnight (21:00-09:00)."""
    return quiet.holds(utc(instant), zone)


def next_allowed(instant: datetime, zone: ZoneInfo, quiet: LocalHours) -> datetime:
    """The first instant at or after `instant` outside the quiet hours (their local end)."""
    return quiet.end_of(utc(instant), zone)


@dataclass(frozen=True)
class Window:
    """When one closed case's callback can go out: from `earliest` (the first allowed send
    instant, never before close + delay nor before `now`) to `deadline` (excluded)."""

    earliest: datetime
    deadline: datetime

    @property
    def open(self) -> bool:
        """A callback must go out *before* the deadline: at the deadline it is too late."""
        return self.earliest < self.deadline


def case_window(closed_at: datetime, now: datetime, policy: Policy) -> Window:
    rules = policy.followup
    closed_at = utc(closed_at)
    planned = closed_at + timedelta(hours=rules.callback_delay_hours)
    earliest = next_allowed(max(planned, utc(now)), policy.zone, rules.quiet_hours)
    return Window(
        earliest=earliest, deadline=closed_at + timedelta(hours=rules.callback_deadline_hours)
    )


def send_slot(now: datetime, policy: Policy) -> datetime:
    """The first instant from `now` on when a callback may go out."""
    return next_allowed(now, policy.zone, policy.followup.quiet_hours)
