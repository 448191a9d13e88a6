"""The complaints service wired on the real database without a broker: `feed` hands it records
the way the Kafka consumer does, `fire_due` runs due timers, and the read-back helpers decode
the outbox and the stored documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.complaints import tables
from services.complaints.bootstrap import build
from shared.clock import ManualClock
from tests.harness import Record, ServiceHarness

from ...e2e.complaints.helpers import T0, key_of

__all__ = ["T0", "ComplaintsService", "Record"]


class ComplaintsService(ServiceHarness):
    def __init__(self, engine: AsyncEngine, clock: ManualClock) -> None:
        super().__init__(build, engine, clock, key_of=key_of)

    async def outbox(self, key: str) -> list[dict[str, Any]]:
        return [row["event"] for row in await self.outbox_rows(self.outbox_table.c.key == key)]

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
