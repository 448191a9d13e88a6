"""Inbox, outbox and timer operations inside one unit of work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import CloudEvent, dump_event

from .tables import MessagingTables


class Inbox:
    def __init__(self, session: AsyncSession, tables: MessagingTables) -> None:
        self._session = session
        self._table = tables.inbox

    async def first_time(self, event_id: str, event_type: str, topic: str) -> bool:
        """Record the event id; False when it was processed before (a duplicate delivery)."""
        stmt = (
            insert(self._table)
            .values(event_id=event_id, event_type=event_type, topic=topic)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(self._table.c.event_id)
        )
        return (await self._session.execute(stmt)).first() is not None


class Outbox:
    def __init__(self, session: AsyncSession, tables: MessagingTables) -> None:
        self._session = session
        self._table = tables.outbox

    async def add(self, event: CloudEvent, *, topic: str, key: str | None) -> bool:
        """Queue an event for the relay; False when an event with this id is already queued."""
        stmt = (
            insert(self._table)
            .values(
                event_id=event.id,
                event_type=event.type,
                topic=topic,
                key=key,
                payload=dump_event(event),
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(self._table.c.id)
        )
        return (await self._session.execute(stmt)).first() is not None


@dataclass(frozen=True)
class Timer:
    id: int
    kind: str
    ref: str
    lock_key: str
    due_at: datetime
    payload: Mapping[str, Any]


class Timers:
    """Durable timers: one row per (kind, ref), fired once by whichever instance claims it."""

    def __init__(self, session: AsyncSession, tables: MessagingTables) -> None:
        self._session = session
        self._table = tables.timers

    async def set(
        self,
        kind: str,
        ref: str,
        *,
        due_at: datetime,
        lock_key: str,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        if due_at.tzinfo is None:
            raise ValueError("timer due_at must be timezone-aware")
        values = {
            "kind": kind,
            "ref": ref,
            "lock_key": lock_key,
            "due_at": due_at,
            "payload": dict(payload or {}),
        }
        stmt = insert(self._table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "ref"],
            set_={
                "due_at": stmt.excluded.due_at,
                "payload": stmt.excluded.payload,
                "lock_key": stmt.excluded.lock_key,
                "fired_at": None,
                "cancelled_at": None,
                "attempts": 0,
            },
        )
        await self._session.execute(stmt)

    async def cancel(self, kind: str, ref: str, *, at: datetime) -> None:
        t = self._table
        await self._session.execute(
            update(t)
            .where(and_(t.c.kind == kind, t.c.ref == ref, t.c.fired_at.is_(None)))
            .values(cancelled_at=at)
        )

    async def pending(self, ref: str) -> list[Timer]:
        t = self._table
        rows = await self._session.execute(
            select(t).where(
                and_(t.c.ref == ref, t.c.fired_at.is_(None), t.c.cancelled_at.is_(None))
            )
        )
        return [_timer(row) for row in rows.mappings()]


def _timer(row: Any) -> Timer:
    return Timer(
        id=row["id"],
        kind=row["kind"],
        ref=row["ref"],
        lock_key=row["lock_key"],
        due_at=row["due_at"],
        payload=row["payload"],
    )


def timer_from_row(row: Any) -> Timer:
    return _timer(row)
