"""The catch-up rule: a deadline already past when it is learnt of is judged a grace later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.catchup import CATCH_UP_GRACE, deadline_timer, fired_late, judge_at, set_again_for

NOW = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
offsets = st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30))


def test_a_deadline_still_ahead_is_judged_when_it_falls_due():
    assert judge_at(NOW + timedelta(seconds=1), NOW) == NOW + timedelta(seconds=1)


def test_a_deadline_passed_or_falling_due_now_is_judged_a_grace_after_now():
    assert judge_at(NOW - timedelta(hours=30), NOW) == NOW + CATCH_UP_GRACE
    assert judge_at(NOW, NOW) == NOW + CATCH_UP_GRACE


@given(offsets)
def test_never_judged_before_the_deadline_nor_before_now(offset):
    deadline = NOW + offset
    judged = judge_at(deadline, NOW)
    assert judged >= deadline and judged > NOW
    assert judged <= max(deadline, NOW + CATCH_UP_GRACE)


def test_a_timer_is_late_once_it_fires_more_than_the_grace_after_its_due_time():
    assert not fired_late(NOW, NOW)
    assert not fired_late(NOW - CATCH_UP_GRACE, NOW)  # a scheduler a little behind
    assert fired_late(NOW - CATCH_UP_GRACE - timedelta(microseconds=1), NOW)
    assert fired_late(NOW - timedelta(hours=2), NOW)  # after an outage
    # set again for a grace from now, it is judged then
    assert judge_at(NOW - timedelta(hours=2), NOW) == NOW + CATCH_UP_GRACE


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        judge_at(datetime(2026, 3, 3), NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        fired_late(datetime(2026, 3, 3), NOW)


def test_a_deadline_timer_waits_a_grace_after_the_deadline_or_after_now_once_past() -> None:
    assert (
        deadline_timer(NOW + timedelta(hours=1), NOW) == NOW + timedelta(hours=1) + CATCH_UP_GRACE
    )
    assert deadline_timer(NOW - timedelta(hours=1), NOW) == NOW + CATCH_UP_GRACE


def test_a_deadline_timer_is_set_again_only_at_its_own_instants_and_then_once() -> None:
    deadline = NOW - timedelta(hours=1)
    due = deadline + CATCH_UP_GRACE
    # At the deadline itself (set before the grace): moved a grace after it, or from now.
    assert set_again_for(deadline, deadline, NOW) == NOW + CATCH_UP_GRACE
    assert set_again_for(deadline, deadline, deadline) == due
    # At deadline + grace, fired within a grace of it: judged now; later: a grace from now.
    assert set_again_for(deadline, due, due + CATCH_UP_GRACE) is None
    assert set_again_for(deadline, due, NOW) == NOW + CATCH_UP_GRACE
    # Set again (at neither instant): judged whenever it fires.
    assert set_again_for(deadline, NOW + CATCH_UP_GRACE, NOW + timedelta(days=1)) is None
