"""The complaints service wired on the real database without a broker: `feed` hands it records
the way the Kafka consumer does, `fire_due` runs due timers, and the read-back helpers decode
the outbox and the stored documents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.complaints import tables
from services.complaints.bootstrap import build
from shared.clock import ManualClock
from shared.db import session_factory
from shared.messaging.consumer import EventProcessor
from shared.messaging.scheduler import TimerScheduler
from shared.policy import Policy

from ...e2e.complaints.helpers import T0, key_of, topic_of

__all__ = ["T0", "ComplaintsService", "Record"]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ComplaintsService:
    def __init__(self, engine: AsyncEngine, clock: ManualClock) -> None:
        self.engine = engine
        self.clock = clock
        self.definition = build(Policy(), clock)
        sessions = session_factory(engine)
        self.processor = EventProcessor(
            service="complaints",
            sessions=sessions,
            tables=self.definition.tables,
            handlers=self.definition.handlers,
            clock=clock,
            lock_keys=self.definition.lock_keys,
        )
        self.scheduler = TimerScheduler(
            service="complaints",
            sessions=sessions,
            tables=self.definition.tables,
            handlers=self.definition.timer_handlers,
            clock=clock,
        )
        self._offset = 0

    async def feed(self, *events: dict[str, Any]) -> None:
        """One batch, in this order (as if fetched together)."""
        records = []
        for item in events:
            value = json.dumps(item).encode()
            self._offset += 1
            records.append(Record(topic_of(item), 0, self._offset, key_of(item).encode(), value))
        await self.processor.process(records)

    async def fire_due(self) -> int:
        return await self.scheduler.run_all_due()

    async def outbox(self, key: str) -> list[dict[str, Any]]:
        t = self.definition.tables.outbox
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.c.payload).where(t.c.key == key).order_by(t.c.id))
            return [json.loads(row.payload) for row in rows]

    async def documents(self, table: Any, column: Any, values: Sequence[str]) -> list[Any]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(table.c.state).where(column.in_(values)))
            return [row.state for row in rows]

    async def complaint(self, complaint_id: str) -> dict[str, Any]:
        found = await self.documents(
            tables.complaints, tables.complaints.c.complaint_id, [complaint_id]
        )
        assert len(found) == 1
        return found[0]  # type: ignore[no-any-return]
