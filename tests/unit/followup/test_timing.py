"""When a callback may go out: close + 24 h, out of quiet hours (21:00-09:00 local), before
close + 72 h; at every edge of the quiet hours, in several time zones and across UTC midnight."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.followup.domain.timing import case_window, is_quiet, next_allowed, send_slot
from shared.policy import FollowupPolicy, LocalHours, Policy

SHANGHAI = Policy()  # Asia/Shanghai, the SPEC's defaults
H = timedelta(hours=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def local(policy: Policy, instant: datetime) -> str:
    return instant.astimezone(policy.zone).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("closed", "expected"),
    [
        # the last minute before quiet hours: due the next day at 20:59, sent then
        ("2024-05-01T20:59:00+08:00", "2024-05-02 20:59"),
        # quiet hours start at 21:00 (included): shifted to the morning after
        ("2024-05-01T21:00:00+08:00", "2024-05-03 09:00"),
        ("2024-05-01T23:59:59+08:00", "2024-05-03 09:00"),
        ("2024-05-01T00:00:00+08:00", "2024-05-02 09:00"),  # local midnight
        # one minute before quiet hours end: shifted by one minute
        ("2024-05-01T08:59:00+08:00", "2024-05-02 09:00"),
        # quiet hours end at 09:00 (excluded): sent at 09:00 sharp
        ("2024-05-01T09:00:00+08:00", "2024-05-02 09:00"),
        ("2024-05-01T15:30:00+08:00", "2024-05-02 15:30"),
    ],
)
def test_callback_timing_at_the_edges_of_the_quiet_hours(closed: str, expected: str) -> None:
    close = at(closed)
    window = case_window(close, close, SHANGHAI)
    assert local(SHANGHAI, window.earliest) == expected
    assert window.deadline == close + 72 * H
    assert window.open
    assert window.earliest.tzinfo == UTC


@pytest.mark.parametrize(
    ("instant", "quiet"),
    [
        ("2024-05-01T20:59:59+08:00", False),
        ("2024-05-01T21:00:00+08:00", True),
        ("2024-05-02T00:00:00+08:00", True),
        ("2024-05-02T08:59:59+08:00", True),
        ("2024-05-02T09:00:00+08:00", False),
        ("2024-05-02T12:00:00+08:00", False),
    ],
)
def test_quiet_hours_include_their_start_and_exclude_their_end(instant: str, quiet: bool) -> None:
    rules = SHANGHAI.followup
    assert is_quiet(at(instant), SHANGHAI.zone, rules.quiet_hours) is quiet


def test_utc_midnight_is_shop_time_morning_in_shanghai() -> None:
    # 00:00 UTC is 08:00 in Shanghai: quiet, so a callback due then waits until 09:00 local.
    close = at("2024-05-01T00:00:00+00:00")
    window = case_window(close, close, SHANGHAI)
    assert window.earliest == at("2024-05-02T01:00:00+00:00")
    # 01:00 UTC is 09:00 local: not shifted, though it is the previous UTC day's evening nowhere.
    close = at("2024-04-30T23:59:00+00:00")  # 07:59 on 05-01 local
    assert case_window(close, close, SHANGHAI).earliest == at("2024-05-02T01:00:00+00:00")
    close = at("2024-05-01T13:00:00+00:00")  # 21:00 local: quiet
    assert case_window(close, close, SHANGHAI).earliest == at("2024-05-03T01:00:00+00:00")


def test_quiet_hours_are_shop_time_in_the_policy_time_zone() -> None:
    utc_policy = Policy(timezone="UTC")
    close = at("2024-05-01T20:30:00+00:00")  # 20:30 UTC: fine in UTC, 04:30 in Shanghai
    assert case_window(close, close, utc_policy).earliest == close + 24 * H
    assert case_window(close, close, SHANGHAI).earliest == at("2024-05-03T01:00:00+00:00")
    berlin = Policy(timezone="Europe/Berlin")
    close = at("2024-07-01T19:30:00+00:00")  # 21:30 in Berlin (CEST): quiet
    assert local(berlin, case_window(close, close, berlin).earliest) == "2024-07-03 09:00"


def test_delay_is_elapsed_time_across_a_daylight_saving_jump() -> None:
    new_york = Policy(timezone="America/New_York")
    close = at("2024-03-09T20:30:00-05:00")  # EST; clocks go forward at 02:00 on 03-10
    window = case_window(close, close, new_york)
    # 24 elapsed hours later it is 21:30 EDT: quiet, so 09:00 EDT on 03-11 (13:00 UTC).
    assert window.earliest == at("2024-03-11T13:00:00+00:00")
    assert local(new_york, window.earliest) == "2024-03-11 09:00"
    assert window.deadline == close + 72 * H
    # and back in autumn: 20:30 EDT + 24 h is 19:30 EST, outside the quiet hours
    close = at("2024-11-02T20:30:00-04:00")
    assert local(new_york, case_window(close, close, new_york).earliest) == "2024-11-03 19:30"


def test_a_late_close_event_goes_out_at_the_next_allowed_instant_before_the_deadline() -> None:
    close = at("2024-05-01T10:00:00+08:00")
    now = close + 30 * H  # the close event came in late, at 16:00 local: send now
    assert case_window(close, now, SHANGHAI).earliest == now
    now = close + 70 * H + 59 * timedelta(minutes=1)  # 08:59 local on 05-04: quiet
    window = case_window(close, now, SHANGHAI)
    assert local(SHANGHAI, window.earliest) == "2024-05-04 09:00"
    assert window.deadline == at("2024-05-04T10:00:00+08:00") and window.open


def test_a_callback_that_cannot_go_out_before_the_deadline_is_not_open() -> None:
    close = at("2024-05-01T10:00:00+08:00")
    assert not case_window(close, close + 72 * H, SHANGHAI).open  # at the deadline: too late
    assert case_window(close, close + 72 * H - timedelta(seconds=1), SHANGHAI).open
    # closed at 22:00: the deadline is 22:00 three days later, inside the quiet hours
    close = at("2024-05-01T22:00:00+08:00")
    assert case_window(close, at("2024-05-04T20:59:00+08:00"), SHANGHAI).open
    late = case_window(close, at("2024-05-04T21:30:00+08:00"), SHANGHAI)
    assert local(SHANGHAI, late.earliest) == "2024-05-05 09:00" and not late.open


def test_never_past_the_deadline_even_when_quiet_hours_end_exactly_at_it() -> None:
    # A policy whose quiet hours end exactly at the deadline: sending at it is too late.
    policy = Policy(
        followup=FollowupPolicy(
            callback_delay_hours=24,
            callback_deadline_hours=25,
            quiet_hours=LocalHours(start=time(10), end=time(11)),
        )
    )
    close = at("2024-05-01T10:00:00+08:00")
    window = case_window(close, close, policy)
    assert window.earliest == window.deadline == close + 25 * H
    assert not window.open


def test_quiet_hours_within_one_day_and_none_at_all() -> None:
    zone = SHANGHAI.zone
    lunch = LocalHours(start=time(12), end=time(13, 30))
    assert next_allowed(at("2024-05-01T12:10:00+08:00"), zone, lunch) == at(
        "2024-05-01T13:30:00+08:00"
    )
    assert next_allowed(at("2024-05-01T13:30:00+08:00"), zone, lunch) == at(
        "2024-05-01T13:30:00+08:00"
    )
    none = LocalHours(start=time(9), end=time(9))
    assert not is_quiet(at("2024-05-01T03:00:00+08:00"), zone, none)


def test_send_slot_is_now_outside_quiet_hours() -> None:
    now = at("2024-05-01T12:00:00+08:00")
    assert send_slot(now, SHANGHAI) == now
    assert send_slot(at("2024-05-01T22:00:00+08:00"), SHANGHAI) == at("2024-05-02T09:00:00+08:00")


def test_quiet_hours_ending_in_the_hour_a_clock_change_repeats() -> None:
    # Berlin turns 03:00 CEST back to 02:00 CET: 02:00-03:00 happens twice. At 02:10 CET
    # (the second time round) the quiet hours end 20 minutes later, at 02:30 CET.
    berlin = ZoneInfo("Europe/Berlin")
    quiet = LocalHours(start=time(22), end=time(2, 30))
    second_pass = at("2024-10-27T01:10:00+00:00")  # 02:10 CET
    assert is_quiet(second_pass, berlin, quiet)
    allowed = next_allowed(second_pass, berlin, quiet)
    assert allowed == at("2024-10-27T01:30:00+00:00")  # 02:30 CET, not quiet
    assert not is_quiet(allowed, berlin, quiet)
    # the first time round (CEST) it ends at the first 02:30
    assert next_allowed(at("2024-10-27T00:10:00+00:00"), berlin, quiet) == at(
        "2024-10-27T00:30:00+00:00"
    )
