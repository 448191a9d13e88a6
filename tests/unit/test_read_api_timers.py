"""A timer's entries on a case timeline: never cancelled or fired before it was set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from shared.messaging.readroutes import _timer_entries

SET = datetime(2026, 12, 6, 23, 38, 25, 167596, tzinfo=UTC)


def timer_row(**at: datetime | None) -> SimpleNamespace:
    fields = {"fired_at": None, "cancelled_at": None, **at}
    return SimpleNamespace(
        kind="late_shipment",
        ref="O-1",
        payload={"order_id": "O-1"},
        due_at=SET + timedelta(hours=72),
        created_at=SET,
        **fields,
    )


def test_a_timer_set_and_cancelled_in_one_batch_reads_set_then_cancelled() -> None:
    # The batch's clock (cancelled_at) was read a few milliseconds before the database's
    # transaction stamped the row's creation.
    earlier = SET - timedelta(milliseconds=10)
    entries = _timer_entries("complaints", timer_row(cancelled_at=earlier))
    ordered = sorted(entries, key=lambda e: e.at)
    assert [e.kind for e in ordered] == ["timer_set", "timer_cancelled"]
    assert ordered[1].at == SET


def test_a_timer_fired_later_keeps_its_own_time() -> None:
    fired = SET + timedelta(hours=72, seconds=1)
    entries = _timer_entries("complaints", timer_row(fired_at=fired))
    assert [(e.kind, e.at) for e in entries] == [("timer_set", SET), ("timer_fired", fired)]
