"""The outbox relay: publishes committed events to Kafka, at least once, in commit order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import cache

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
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


# How many slots the keys are spread over. Relays with different counts would split one key
# between two slots: changing it means stopping every relay of the service first.
SLOTS = 8
SLOTS_PER_BATCH = 4

_TRY_SHARED = text("SELECT pg_try_advisory_xact_lock_shared(:id)")
_TRY_EXCLUSIVE = text("SELECT pg_try_advisory_xact_lock(:id)")


@cache
def _pending_in_slots(t: Table) -> Select[tuple[int, str, str | None, bytes]]:
    # hashtext is the server's: every relay computes the same slot for a key. Keyless events
    # share the slot of the empty key.
    slot = (func.hashtext(func.coalesce(t.c.key, "")).op("&")(0x7FFFFFFF)) % SLOTS
    return (
        select(t.c.id, t.c.topic, t.c.key, t.c.payload)
        .where(t.c.published_at.is_(None), slot == any_(bindparam("slots", type_=ARRAY(Integer))))
        .order_by(t.c.id)
        .limit(bindparam("limit"))
    )


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
        # Before slots, one relay at a time per service held this lock; now taken shared.
        self._leader_lock = lock_id(f"outbox-relay:{tables.outbox.schema}")
        self._slot_locks = [
            lock_id(f"outbox-relay:{tables.outbox.schema}:{slot}/{SLOTS}") for slot in range(SLOTS)
        ]
        self._next_slot = 0

    def wake(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished events; returns how many were published (0:
        nothing left that this relay could take).

        Events are spread over `SLOTS` slots by a hash of their key. A relay publishes the
        events of a slot only while it holds that slot's advisory lock, in outbox order, and
        marks them published before letting go: the events of one key leave in the order they
        committed. A batch takes at most half of the slots (the next batch starts with the
        other half), so the relays of two instances publish at the same time.
        """
        for _ in range(SLOTS // SLOTS_PER_BATCH):
            first = self._next_slot
            self._next_slot = (first + SLOTS_PER_BATCH) % SLOTS
            slots = [(first + i) % SLOTS for i in range(SLOTS_PER_BATCH)]
            if published := await self._publish_slots(slots):
                return published
        return 0

    async def _publish_slots(self, slots: list[int]) -> int:
        t = self._table
        async with self._sessions() as session, session.begin():
            # Relays of versions before slots took the leader lock alone; taking it shared
            # keeps them and these from publishing at the same time during a rollout.
            if not await session.scalar(_TRY_SHARED, {"id": self._leader_lock}):
                return 0
            held = [
                slot
                for slot in slots
                if await session.scalar(_TRY_EXCLUSIVE, {"id": self._slot_locks[slot]})
            ]
            if not held:
                return 0
            rows = (
                await session.execute(
                    _pending_in_slots(t), {"slots": held, "limit": self._batch_size}
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
            # Cleared before looking, not after: a wake-up (new events, a stop) that comes
            # while a batch is being published must not be lost.
            self._wake.clear()
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
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
