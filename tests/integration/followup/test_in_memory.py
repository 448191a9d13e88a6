"""The follow-up service in memory (`services.followup.memory`, on `shared.messaging.membus`)
does what it does on PostgreSQL: the same history, played through both, queues the same events
(callbacks scheduled, merged, sent, delivered or not, answered, missed) in the same order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.followup.memory import in_memory
from shared.clock import ManualClock
from shared.contracts import ids
from shared.policy import Policy
from tests.in_memory import Step, as_json, play, topic_of

# In UTC, as the services' clock gives instants.
T0 = datetime.fromisoformat("2024-05-01T10:00:00+08:00").astimezone(UTC)
H = timedelta(hours=1)


def history(ev: Any) -> list[Step]:
    """(instant, event); None: only the clock moves, to a callback's due time."""
    return [
        (T0, ev.order_paid("o-1", "S-1", "c-1")),
        (T0, ev.order_paid("o-2", "S-2", "c-1")),
        (T0, ev.refund_issued("r-1", "o-1", "c-1", T0)),
        (T0 + H, ev.return_completed("r-1", "o-1", "c-1", T0 + H)),  # the same case again
        (T0 + 3 * H, ev.complaint_opened("k-1", "o-2", "c-1", T0 - 10 * H)),
        (T0 + 3 * H, ev.complaint_resolved("k-1", "o-2", T0 + 3 * H)),  # merged with r-1
        (T0 + 3 * H, ev.refund_issued("r-9", "o-9", "c-2", T0 + 3 * H)),  # another buyer
        # A resolution before its opening waits for the buyer.
        (T0 + 4 * H, ev.complaint_resolved("k-2", "o-3", T0 + 4 * H)),
        (T0 + 5 * H, ev.complaint_opened("k-2", "o-3", "c-3", T0 + 2 * H)),
        (T0 + 27 * H, None),  # the merged callback and r-9's
        (T0 + 28 * H, None),  # k-2's
        # What the notifier did with the invitations: r-9's delivered, k-2's given up.
        (T0 + 28 * H, ev.survey_delivered(ids.callback_id("return", "r-9"), "c-2", T0 + 27 * H)),
        (T0 + 29 * H, ev.survey_failed(ids.callback_id("complaint", "k-2"), "c-3", T0 + 29 * H)),
        (T0 + 29 * H, ev.survey_failed("cb-unknown", "c-3", T0 + 29 * H)),  # not ours: ignored
        (T0 + 30 * H, ev.survey_answered(ids.callback_id("return", "r-1"), "c-1", 1, T0 + 30 * H)),
        (T0 + 31 * H, ev.survey_answered(ids.callback_id("return", "r-9"), "c-2", 5, T0 + 31 * H)),
        # Closed long after the fact: past its deadline, reported instead of sent.
        (T0 + 80 * H, ev.refund_issued("r-5", "o-5", "c-5", T0 - 4 * H)),
        (T0 + 81 * H, None),
    ]


async def test_the_same_history_queues_the_same_events_in_memory_and_on_the_database(
    service,
) -> None:
    steps = history(service.ev)
    for at, event in steps:
        await service.at(at)
        if event is not None:
            await service.send(event)
    on_database = [
        {k: v for k, v in e.items() if k not in ("_topic", "_key")} for e in await service.emitted()
    ]

    rows = await play(in_memory(Policy(), ManualClock(T0)), steps, topic_of)
    in_memory_events = [as_json(row) for row in rows]

    kinds = [e["type"] for e in on_database]
    assert {"callback.scheduled", "callback.sent", "satisfaction.low", "sla.breached"} <= set(kinds)
    assert kinds.count("sla.breached") == 2  # k-2 undelivered, r-5 missed
    assert in_memory_events == on_database
