"""Inbox, outbox and timer operations inside one unit of work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, Text, Update, and_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

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

    async def claim(self, events: Mapping[str, tuple[str, str]]) -> set[str]:
        """Record many event ids at once ({id: (type, topic)}); returns those seen first now.

        One statement for a whole batch. Ids are inserted in sorted order, so two batches
        claiming some of the same ids wait for each other instead of deadlocking.
        """
        if not events:
            return set()
        ids = sorted(events)
        t = self._table
        # A SQLAlchemy construct, not text: a schema_translate_map must apply to it too.
        arrays = [bindparam(name, type_=ARRAY(Text)) for name in ("ids", "types", "topics")]
        stmt = (
            insert(t)
            .from_select(
                ["event_id", "event_type", "topic"],
                select(*(func.unnest(array) for array in arrays)),
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(t.c.event_id)
        )
        rows = await self._session.execute(
            stmt,
            {
                "ids": ids,
                "types": [events[i][0] for i in ids],
                "topics": [events[i][1] for i in ids],
            },
        )
        return {row[0] for row in rows}


class Outbox:
    def __init__(self, session: AsyncSession, tables: MessagingTables) -> None:
        self._session = session
        self._table = tables.outbox

    async def add(self, event: CloudEvent, *, topic: str, key: str | None) -> bool:
        """Queue an event for the relay; False when an event with this id is already queued."""
        values = {
            "event_id": event.id,
            "event_type": event.type,
            "topic": topic,
            "key": key,
            "payload": dump_event(event),
        }
        return (await self._session.execute(_outbox_add(self._table), values)).first() is not None


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
        await self._session.execute(_timer_set(self._table), values)

    async def cancel(self, kind: str, ref: str, *, at: datetime) -> None:
        await self._session.execute(
            _timer_cancel(self._table), {"b_kind": kind, "b_ref": ref, "b_at": at}
        )

    async def pending(self, ref: str) -> list[Timer]:
        t = self._table
        rows = await self._session.execute(
            select(t).where(
                and_(t.c.ref == ref, t.c.fired_at.is_(None), t.c.cancelled_at.is_(None))
            )
        )
        return [_timer(row) for row in rows.mappings()]


# Statements built once per table and executed with parameters: building an upsert (its
# `excluded` alias above all) costs more CPU than running it.


@cache
def _outbox_add(table: Table) -> ReturningInsert[Any]:
    return insert(table).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.id)


@cache
def _timer_set(table: Table) -> Insert:
    stmt = insert(table)
    return stmt.on_conflict_do_update(
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


@cache
def _timer_cancel(table: Table) -> Update:
    t = table
    return (
        update(t)
        .where(
            and_(t.c.kind == bindparam("b_kind"), t.c.ref == bindparam("b_ref")),
            t.c.fired_at.is_(None),
        )
        .values(cancelled_at=bindparam("b_at"))
    )


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
