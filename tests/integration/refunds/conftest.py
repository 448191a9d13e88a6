"""The refund ledger on a database of its own, migrated with its real migrations, driven
without a broker: `feed` hands it records the way the Kafka consumer does, `fire_due` runs
due timers, `emitted` reads its outbox back. Tests keep apart by unique order ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aftersales_dev.devenv import temporary_database
from services.refunds import tables
from services.refunds.bootstrap import build
from shared.clock import ManualClock
from shared.db import create_engine, session_factory
from shared.messaging.consumer import EventProcessor
from shared.messaging.scheduler import TimerScheduler
from shared.migrations import upgrade
from shared.policy import Policy
from tests.refund_events import TOPIC_OF

T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class RefundsService:
    def __init__(self, engine: AsyncEngine, clock: ManualClock) -> None:
        self.engine, self.clock = engine, clock
        self.definition = build(Policy(), clock)
        sessions = session_factory(engine)
        self.processor = EventProcessor(
            service="refunds",
            sessions=sessions,
            tables=self.definition.tables,
            handlers=self.definition.handlers,
            clock=clock,
            lock_keys=self.definition.lock_keys,
        )
        self.scheduler = TimerScheduler(
            service="refunds",
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
            self._offset += 1
            key = item["data"]["order_id"].encode()
            records.append(
                Record(TOPIC_OF[item["type"]], 0, self._offset, key, json.dumps(item).encode())
            )
        await self.processor.process(records)

    async def fire_due(self) -> int:
        return await self.scheduler.run_all_due()

    async def emitted(self, key: str, event_type: str | None = None) -> list[dict[str, Any]]:
        t = self.definition.tables.outbox
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t.c.payload, t.c.topic).where(t.c.key == key).order_by(t.c.id)
            )
            found = [{**json.loads(row.payload), "_topic": row.topic} for row in rows]
        return [e for e in found if event_type is None or e["type"] == event_type]

    async def dead_letters(self) -> list[dict[str, Any]]:
        t = self.definition.tables.outbox
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t.c.payload).where(t.c.event_type == "event.deadlettered").order_by(t.c.id)
            )
            return [json.loads(row.payload)["data"] for row in rows]

    async def refund_rows(self, order_id: str) -> list[dict[str, Any]]:
        t = tables.refunds
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t).where(t.c.order_id == order_id).order_by(t.c.issued_at, t.c.refund_id)
            )
            return [dict(row) for row in rows.mappings()]


@pytest.fixture(scope="session")
async def refunds_it_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with temporary_database(database_url, "refunds_it") as url:
        await asyncio.to_thread(upgrade, "refunds", url)  # alembic runs its own event loop
        engine = create_engine(url, pool_size=5)
        yield engine
        await engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def svc(refunds_it_engine: AsyncEngine, clock: ManualClock) -> RefundsService:
    return RefundsService(refunds_it_engine, clock)
