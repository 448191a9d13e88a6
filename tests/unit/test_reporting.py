from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from shared.reporting import check_period, period_bounds, text_table

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_period_runs_from_the_first_local_midnight_to_the_one_after_its_last_day():
    start, end = period_bounds(date(2026, 3, 1), date(2026, 3, 2), SHANGHAI)
    assert start == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    assert period_bounds(None, None, SHANGHAI) == (None, None)


def test_a_period_over_a_clock_change_keeps_local_midnights():
    berlin = ZoneInfo("Europe/Berlin")
    # 29 March 2026 has 23 hours in Berlin: CET until 02:00, CEST after.
    start, end = period_bounds(date(2026, 3, 29), date(2026, 3, 29), berlin)
    assert (start, end) == (
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 29, 22, tzinfo=UTC),
    )


def test_a_period_may_not_end_before_it_begins():
    check_period(date(2026, 3, 1), date(2026, 3, 1))
    check_period(None, date(2026, 3, 1))
    with pytest.raises(ValueError, match="--since must not be after --until"):
        check_period(date(2026, 3, 2), date(2026, 3, 1))


def test_a_table_aligns_its_first_column_left_and_the_others_right():
    lines = text_table(("shop", "sent"), [("a", "12"), ("longer", "3")])
    assert lines == [
        "shop    sent",
        "------  ----",
        "a         12",
        "longer     3",
    ]
