"""The outbox relay: publishes committed events to Kafka, at least once, in commit order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import cache

from sqlalchemy import (
    BigInteger,
    Table,
    Update,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.clock import Clock
from shared.db import lock_id

from .errors import is_transient
from .tables import MessagingTables

log = logging.getLogger("aftersales.relay")

CONTENT_TYPE = "application/cloudevents+json"

# Sends one record and returns an awaitable that completes when the broker acknowledged it.
Publish = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[object]]]


@cache
def _mark_published(t: Table) -> Update:
    # `= ANY(array)`: one bound parameter, not an IN list compiled anew for every batch size.
    return (
        update(t)
        .where(t.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
        .values(published_at=bindparam("at"))
    )


class OutboxRelay:
    def __init__(
        self,
        *,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        publish: Publish,
        clock: Clock,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.service = service
        self._sessions = sessions
        self._table = tables.outbox
        self._publish = publish
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retention = retention
        self._wake = asyncio.Event()
        # One relay at a time per service, so events of one key leave in the order they committed.
        self._leader_lock = lock_id(f"outbox-relay:{tables.outbox.schema}")

    def wake(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished events; returns how many were published."""
        t = self._table
        async with self._sessions() as session, session.begin():
            leader = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": self._leader_lock}
            )
            if not leader:
                return 0
            rows = (
                await session.execute(
                    select(t.c.id, t.c.topic, t.c.key, t.c.payload)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self._batch_size)
                )
            ).all()
            if not rows:
                return 0
            acks = [
                await self._publish(
                    row.topic, row.key.encode("utf-8") if row.key is not None else None, row.payload
                )
                for row in rows
            ]
            await asyncio.gather(*acks)
            await session.execute(
                _mark_published(t), {"ids": [row.id for row in rows], "at": self._clock.now()}
            )
        for row in rows:
            metrics.OUTBOX_PUBLISHED.labels(self.service, row.topic).inc()
        return len(rows)

    async def drain(self) -> None:
        """Publish until nothing is left (used at shutdown and in tests)."""
        while await self.publish_pending():
            pass

    async def observe(self) -> None:
        t = self._table
        async with self._sessions() as session:
            pending, oldest = (
                await session.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
                )
            ).one()
        metrics.OUTBOX_PENDING.labels(self.service).set(pending)
        lag = (self._clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        metrics.OUTBOX_LAG.labels(self.service).set(max(lag, 0.0))

    async def purge_published(self) -> int:
        t = self._table
        cutoff = self._clock.now() - self._retention
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(t).where(t.c.published_at.is_not(None), t.c.published_at < cutoff)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._poll_interval
        cycles = 0
        while not stop.is_set():
            try:
                published = await self.publish_pending()
                cycles += 1
                if cycles % 20 == 0:
                    await self.observe()
                if cycles % 7200 == 0:
                    await self.purge_published()
                backoff = self._poll_interval
                if published:
                    continue
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("outbox relay failed", extra={"service": self.service})
                else:
                    log.warning(
                        "outbox relay retrying after a passing fault",
                        extra={"service": self.service, "error": type(exc).__name__},
                    )
                backoff = min(backoff * 2, 10.0)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
