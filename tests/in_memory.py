"""Playing a history through one service on the bus in memory (`shared.messaging.membus`),
for the tests that hold it to what the service does on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.contracts import dump_event, parse_event
from shared.contracts.events import PLATFORM_TOPIC_TYPES, SERVICE_TOPIC_TYPES
from shared.messaging.membus import MemoryBus, MemoryService, Published
from shared.messaging.memory import QueuedEvent

Step = tuple[datetime, Mapping[str, Any] | None]  # an event arriving then; None: timers only


async def play(
    service: MemoryService, steps: Sequence[Step], topic_of: Callable[[Any], str]
) -> list[QueuedEvent]:
    """What the service publishes, in order, for `steps` in the given order."""
    published: list[Published] = []
    bus = MemoryBus([service], start=steps[0][0], on_publish=published.append)
    for at, event in steps:
        if event is None:
            await bus.run_timers(until=at)
        else:
            await bus.publish(topic_of(event), parse_event(json.dumps(event).encode()), at)
    return [p.row for p in published]


def topic_of(event: Mapping[str, Any]) -> str:
    """The one topic that carries the event's type (SPEC sections 2 and 3)."""
    types = {**PLATFORM_TOPIC_TYPES, **SERVICE_TOPIC_TYPES}
    return next(topic for topic, carried in types.items() if event["type"] in carried)


def as_json(row: QueuedEvent) -> dict[str, Any]:
    """The event as the outbox stores it (the database tests read that back)."""
    return json.loads(dump_event(row.event))  # type: ignore[no-any-return]
