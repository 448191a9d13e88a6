"""When a notification may go out: quiet hours, the daily cap, expiry and retries.

Pure rules: instants come in as arguments (the service layer passes the injected clock's `now`),
nothing here reads a clock or touches I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from shared.policy import LocalHours, NotifierPolicy

# Retries of a transient failure: 1 min, 4 min, 16 min, then hourly (attempts 2, 3, 4, 5...).
# With the default retry_max_attempts of 5 a message is tried for about 80 minutes. The first
# delay and the cap are the policy's (`retry_first_delay_seconds`, `retry_longest_delay_seconds`).
RETRY_BASE = timedelta(minutes=1)
RETRY_FACTOR = 4
RETRY_CAP = timedelta(hours=1)


class DeferReason(StrEnum):
    QUIET_HOURS = "quiet_hours"
    DAILY_CAP = "daily_cap"


class FailReason(StrEnum):
    """Why a notification was given up (`notification.failed` reason, dead-letter record)."""

    RETRIES_EXHAUSTED = "retries_exhausted"  # transient failures up to retry_max_attempts
    REJECTED = "rejected"  # every channel refused it for good (e.g. HTTP 400, SMTP 550)
    NO_CONTACT = "no_contact"  # no order.paid (contact data) for the buyer, after every retry
    NO_CHANNEL = "no_channel"  # no configured channel reaches the buyer
    EXPIRED = "expired"  # it could not go out before its `deadline` parameter
    DAILY_CAP = "daily_cap"  # non-urgent messages are switched off (max_non_urgent_per_day 0)
    TEMPLATE_ERROR = "template_error"  # the template no longer renders with its parameters
    CONTACT_UNREADABLE = "contact_unreadable"  # no key of the ring decrypts the contact


def _combine(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def local_day(instant: datetime, zone: ZoneInfo) -> date:
    """The calendar day of `instant` in the shop's time zone (the daily cap counts per it)."""
    return instant.astimezone(zone).date()


def in_quiet_hours(instant: datetime, quiet: LocalHours, zone: ZoneInfo) -> bool:
    """True inside [start, end) local time; a span across midnight (21:00-09:00) wraps."""
    return quiet.holds(instant, zone)


def quiet_hours_end(instant: datetime, quiet: LocalHours, zone: ZoneInfo) -> datetime:
    """The end of the quiet period holding `instant` (UTC); `instant` itself when not quiet."""
    return quiet.end_of(instant, zone)


def next_day_opening(instant: datetime, quiet: LocalHours, zone: ZoneInfo) -> datetime:
    """The first instant of the next local day at which a non-urgent message may go out."""
    midnight = _combine(local_day(instant, zone) + timedelta(days=1), time(0), zone)
    return quiet_hours_end(midnight, quiet, zone)


def retry_delay(
    failed_attempts: int, *, first: timedelta = RETRY_BASE, cap: timedelta = RETRY_CAP
) -> timedelta:
    """How long to wait after the n-th failed attempt (n >= 1) before the next one."""
    if failed_attempts < 1:
        raise ValueError("failed_attempts starts at 1")
    # Capped before it can grow large: 4**20 times the first delay is beyond any cap already.
    return min(first * RETRY_FACTOR ** min(failed_attempts - 1, 20), cap)


# --- what to do when a delivery is due -------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Go ahead now; `slot_day` is the local day whose non-urgent quota the message uses."""

    slot_day: date | None


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: DeferReason


@dataclass(frozen=True)
class Drop:
    reason: FailReason
    detail: str


DueDecision = Send | Defer | Drop


def when_due(
    *,
    now: datetime,
    urgent: bool,
    deadline: datetime | None,
    slot_day: date | None,
    used_today: int,
    policy: NotifierPolicy,
    zone: ZoneInfo,
) -> DueDecision:
    """Decide about a delivery whose timer fired.

    - Past its `deadline`: dropped (`expired`).
    - Urgent: sent at once, whatever the hour or the count (and it does not count).
    - Non-urgent in quiet hours: deferred to their end (unless that is past the deadline).
    - Non-urgent that already holds a slot (a retry): sent; it counts once, on its first day.
    - Non-urgent with `used_today` >= the cap: deferred to the next local day's opening
      (the end of its quiet hours), where it competes again; past the deadline it is dropped.
    """
    if deadline is not None and now >= deadline:
        return Drop(FailReason.EXPIRED, "its deadline passed before it could go out")
    if urgent:
        return Send(slot_day=None)
    if in_quiet_hours(now, policy.quiet_hours, zone):
        until = quiet_hours_end(now, policy.quiet_hours, zone)
        if deadline is not None and until >= deadline:
            return Drop(
                FailReason.EXPIRED, "quiet hours last past its deadline (non-urgent message)"
            )
        return Defer(until, DeferReason.QUIET_HOURS)
    if slot_day is not None:
        return Send(slot_day=slot_day)
    cap = policy.max_non_urgent_per_day
    if cap == 0:
        return Drop(
            FailReason.DAILY_CAP, "max_non_urgent_per_day is 0: non-urgent messages are off"
        )
    if used_today >= cap:
        until = next_day_opening(now, policy.quiet_hours, zone)
        if deadline is not None and until >= deadline:
            return Drop(
                FailReason.EXPIRED,
                f"the buyer's daily cap of {cap} non-urgent messages is reached and the next "
                "day is past its deadline",
            )
        return Defer(until, DeferReason.DAILY_CAP)
    return Send(slot_day=local_day(now, zone))


# --- what to do after a failed attempt --------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    at: datetime


@dataclass(frozen=True)
class GiveUp:
    reason: FailReason


AfterFailure = Retry | GiveUp


def after_failure(
    *,
    now: datetime,
    attempts: int,
    max_attempts: int,
    permanent: bool,
    channels_left: bool,
    deadline: datetime | None,
    no_contact: bool = False,
    first_delay: timedelta = RETRY_BASE,
    longest_delay: timedelta = RETRY_CAP,
) -> AfterFailure:
    """The next step after the `attempts`-th attempt failed.

    A permanent refusal moves on to the buyer's next channel at once (when there is one); a
    transient failure waits `retry_delay` and tries again. Either way at most `max_attempts`
    attempts are made in all, and never past the deadline.
    """
    if attempts >= max_attempts:
        if no_contact:
            return GiveUp(FailReason.NO_CONTACT)
        return GiveUp(FailReason.REJECTED if permanent else FailReason.RETRIES_EXHAUSTED)
    if permanent:
        return Retry(now) if channels_left else GiveUp(FailReason.REJECTED)
    at = now + retry_delay(attempts, first=first_delay, cap=longest_delay)
    if deadline is not None and at >= deadline:
        return GiveUp(FailReason.EXPIRED)
    return Retry(at)
