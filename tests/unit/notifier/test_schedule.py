"""Quiet hours, daily cap, expiry and retries of the notifier (pure rules)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notifier.domain.schedule import (
    Defer,
    DeferReason,
    Drop,
    FailReason,
    GiveUp,
    Retry,
    Send,
    after_failure,
    in_quiet_hours,
    local_day,
    next_day_opening,
    quiet_hours_end,
    retry_delay,
    when_due,
)
from shared.policy import LocalHours, NotifierPolicy

SH = ZoneInfo("Asia/Shanghai")
QUIET = LocalHours(start=time(21), end=time(9))
POLICY = NotifierPolicy()


def sh(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant given in Shanghai local time (May 2024), as UTC."""
    return datetime(2024, 5, day, hour, minute, tzinfo=SH).astimezone(UTC)


@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [
        (20, 59, False),
        (21, 0, True),
        (23, 59, True),
        (0, 0, True),
        (8, 59, True),
        (9, 0, False),
        (12, 0, False),
    ],
)
def test_quiet_hours_wrap_midnight(hour: int, minute: int, quiet: bool) -> None:
    assert in_quiet_hours(sh(1, hour, minute), QUIET, SH) is quiet


def test_quiet_hours_within_one_day_and_none() -> None:
    lunch = LocalHours(start=time(12), end=time(14))
    assert in_quiet_hours(sh(1, 12), lunch, SH)
    assert not in_quiet_hours(sh(1, 14), lunch, SH)
    assert not in_quiet_hours(sh(1, 11, 59), lunch, SH)
    none = LocalHours(start=time(0), end=time(0))
    assert not any(in_quiet_hours(sh(1, h), none, SH) for h in range(24))


def test_quiet_hours_end() -> None:
    assert quiet_hours_end(sh(1, 22), QUIET, SH) == sh(2, 9)
    assert quiet_hours_end(sh(1, 21), QUIET, SH) == sh(2, 9)
    assert quiet_hours_end(sh(2, 3), QUIET, SH) == sh(2, 9)
    assert quiet_hours_end(sh(2, 10), QUIET, SH) == sh(2, 10)  # not quiet: itself


def test_quiet_hours_ending_in_the_hour_a_clock_change_repeats() -> None:
    # Berlin turns 03:00 CEST back to 02:00 CET: 02:00-03:00 happens twice. A non-urgent
    # message due at 02:10 CET (the second time round) waits 20 minutes, not a day.
    berlin = ZoneInfo("Europe/Berlin")
    quiet = LocalHours(start=time(22), end=time(2, 30))
    second_pass = datetime(2024, 10, 27, 1, 10, tzinfo=UTC)  # 02:10 CET
    assert in_quiet_hours(second_pass, quiet, berlin)
    end = quiet_hours_end(second_pass, quiet, berlin)
    assert end == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert not in_quiet_hours(end, quiet, berlin)
    first_pass = datetime(2024, 10, 27, 0, 10, tzinfo=UTC)  # 02:10 CEST
    assert quiet_hours_end(first_pass, quiet, berlin) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)


def test_local_day_and_next_opening() -> None:
    # 2024-05-01 23:30 in Shanghai is still 15:30 UTC of the same day; 00:30 is the next day.
    assert local_day(sh(1, 23, 30), SH) == date(2024, 5, 1)
    assert local_day(sh(2, 0, 30), SH) == date(2024, 5, 2)
    assert next_day_opening(sh(1, 15), QUIET, SH) == sh(2, 9)
    assert next_day_opening(sh(1, 15), LocalHours(start=time(0), end=time(0)), SH) == sh(2, 0)


def test_retry_delays_grow_and_are_capped() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4, 5, 50)] == [
        timedelta(minutes=1),
        timedelta(minutes=4),
        timedelta(minutes=16),
        timedelta(hours=1),
        timedelta(hours=1),
        timedelta(hours=1),
    ]
    with pytest.raises(ValueError):
        retry_delay(0)


def due(now: datetime, **kw: object) -> object:
    args: dict[str, object] = {
        "now": now,
        "urgent": False,
        "deadline": None,
        "slot_day": None,
        "used_today": 0,
        "policy": POLICY,
        "zone": SH,
    }
    args.update(kw)
    return when_due(**args)  # type: ignore[arg-type]


def test_non_urgent_in_quiet_hours_is_deferred_to_their_end() -> None:
    assert due(sh(1, 22)) == Defer(sh(2, 9), DeferReason.QUIET_HOURS)
    assert due(sh(2, 8, 59)) == Defer(sh(2, 9), DeferReason.QUIET_HOURS)


def test_urgent_goes_at_once_at_any_hour_and_any_count() -> None:
    assert due(sh(1, 23), urgent=True, used_today=99) == Send(slot_day=None)


def test_daily_cap_counts_per_local_day() -> None:
    assert due(sh(1, 10), used_today=2) == Send(slot_day=date(2024, 5, 1))
    assert due(sh(1, 10), used_today=3) == Defer(sh(2, 9), DeferReason.DAILY_CAP)
    # A retry already holds its slot: it goes whatever today's count.
    assert due(sh(1, 10), used_today=3, slot_day=date(2024, 5, 1)) == Send(date(2024, 5, 1))


def test_a_cap_of_zero_switches_non_urgent_messages_off() -> None:
    decision = due(sh(1, 10), policy=NotifierPolicy(max_non_urgent_per_day=0))
    assert isinstance(decision, Drop) and decision.reason == FailReason.DAILY_CAP


def test_deadline_expires_messages_that_cannot_go_out_in_time() -> None:
    assert isinstance(due(sh(1, 10), deadline=sh(1, 10)), Drop)
    late = due(sh(1, 22), deadline=sh(2, 8))  # quiet hours last past it
    assert isinstance(late, Drop) and late.reason == FailReason.EXPIRED
    over = due(sh(1, 10), deadline=sh(1, 20), used_today=3)
    assert isinstance(over, Drop) and over.reason == FailReason.EXPIRED
    assert due(sh(1, 22), deadline=sh(2, 10)) == Defer(sh(2, 9), DeferReason.QUIET_HOURS)
    assert due(sh(1, 22), deadline=sh(2, 8), urgent=True) == Send(slot_day=None)


def fail(attempts: int, **kw: object) -> object:
    args: dict[str, object] = {
        "now": sh(1, 10),
        "attempts": attempts,
        "max_attempts": 5,
        "permanent": False,
        "channels_left": False,
        "deadline": None,
    }
    args.update(kw)
    return after_failure(**args)  # type: ignore[arg-type]


def test_transient_failures_back_off_then_give_up() -> None:
    assert fail(1) == Retry(sh(1, 10, 1))
    assert fail(2) == Retry(sh(1, 10, 4))
    assert fail(4) == Retry(sh(1, 11))
    assert fail(5) == GiveUp(FailReason.RETRIES_EXHAUSTED)
    assert fail(5, no_contact=True) == GiveUp(FailReason.NO_CONTACT)
    assert fail(1, deadline=sh(1, 10, 1)) == GiveUp(FailReason.EXPIRED)


def test_permanent_refusal_moves_to_the_next_channel_at_once() -> None:
    assert fail(1, permanent=True, channels_left=True) == Retry(sh(1, 10))
    assert fail(1, permanent=True) == GiveUp(FailReason.REJECTED)
    assert fail(5, permanent=True, channels_left=True) == GiveUp(FailReason.REJECTED)
