"""The refund ledger on a database of its own, migrated with its real migrations, driven
without a broker: `feed` hands it records the way the Kafka consumer does, `fire_due` runs
due timers, `emitted` reads its outbox back. Tests keep apart by unique order ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.refunds import tables
from services.refunds.bootstrap import build
from shared.clock import ManualClock
from tests.harness import ServiceHarness, suite_fixtures

T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)


class RefundsService(ServiceHarness):
    def __init__(self, engine: AsyncEngine, clock: ManualClock) -> None:
        super().__init__(
            build,
            engine,
            clock,
            key_of=lambda event: event["data"]["order_id"],
        )

    async def emitted(self, key: str, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = await self.outbox_rows(self.outbox_table.c.key == key)
        found = [{**row["event"], "_topic": row["topic"]} for row in rows]
        return [e for e in found if event_type is None or e["type"] == event_type]

    async def dead_letters(self) -> list[dict[str, Any]]:
        rows = await self.outbox_rows(self.outbox_table.c.event_type == "event.deadlettered")
        return [row["event"]["data"] for row in rows]

    async def refund_rows(self, order_id: str) -> list[dict[str, Any]]:
        t = tables.refunds
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t).where(t.c.order_id == order_id).order_by(t.c.issued_at, t.c.refund_id)
            )
            return [dict(row) for row in rows.mappings()]


service_database, service_engine, clock, svc = suite_fixtures("refunds", RefundsService, T0)
