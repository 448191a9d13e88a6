"""Inbox, outbox and timer operations inside one unit of work."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    LargeBinary,
    Select,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from shared.contracts import CloudEvent, dump_event
from shared.db import driver_rows, flush_pending, pending_writes
from shared.projection import from_row
from shared.upserts import JsonRowsWrite, json_rows

from .tables import MessagingTables

# `session.info` flag: outbox rows and timer changes are held back and written together when
# the unit of work commits (one statement each for a whole batch instead of one per event).
# Set by the consumer's fast path, whose transaction starts with it; never set half-way.
HOLD_WRITES = "aftersales.hold_writes"


class WriteConflict(Exception):
    """A held-back write found the database other than it was told: an event queued as new was
    in the outbox already. Nothing is committed; the batch is applied again without holding
    writes back, which asks the database at each step."""


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
        rows = await driver_rows(
            self._session,
            _inbox_claim(self._table),
            {
                "ids": ids,
                "types": [events[i][0] for i in ids],
                "topics": [events[i][1] for i in ids],
            },
        )
        return {row[0] for row in rows}


@cache
def _inbox_claim(t: Table) -> ReturningInsert[Any]:
    # Built once per table (and compiled once for the driver): building it, and SQLAlchemy
    # working out its cache key, cost every batch ~0.1-0.3 ms. A SQLAlchemy construct, not
    # text: a schema_translate_map must apply to it too.
    arrays = [bindparam(name, type_=ARRAY(Text)) for name in ("ids", "types", "topics")]
    return (
        insert(t)
        .from_select(
            ["event_id", "event_type", "topic"],
            select(*(func.unnest(array) for array in arrays)),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(t.c.event_id)
    )


class Outbox:
    def __init__(self, session: AsyncSession, tables: MessagingTables) -> None:
        self._session = session
        self._table = tables.outbox

    async def add(
        self, event: CloudEvent, *, topic: str, key: str | None, known_new: bool = False
    ) -> bool:
        """Queue an event for the relay; False when an event with this id is already queued.

        `known_new`: the caller expects no committed row with this id (the event derives from
        one first seen in this transaction), so a held-back write needs no look-up; should the
        flush find one after all, it raises `WriteConflict` and nothing commits.
        """
        values = {
            "event_id": event.id,
            "event_type": event.type,
            "topic": topic,
            "key": key,
            "payload": dump_event(event),
        }
        session = self._session
        if not session.info.get(HOLD_WRITES):
            return (await session.execute(_outbox_add(self._table), values)).first() is not None
        held = pending_writes(session, "outbox", lambda: _HeldOutbox(self._table))
        if event.id in held.rows:
            return False
        if not known_new and (
            await session.scalar(_outbox_has(self._table), {"b_id": event.id}) is not None
        ):
            return False
        held.rows[event.id] = values
        return True


@dataclass(frozen=True)
class Timer:
    id: int
    kind: str
    ref: str
    lock_key: str
    due_at: datetime
    payload: Mapping[str, Any]


class TimerRows(ABC):
    """What a handler sets and cancels its timers in (`Timers`, `memory.MemoryTimers`)."""

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
        await self._set(kind, ref, due_at, lock_key, dict(payload or {}))

    @abstractmethod
    async def _set(
        self, kind: str, ref: str, due_at: datetime, lock_key: str, payload: dict[str, Any]
    ) -> None: ...

    @abstractmethod
    async def cancel(self, kind: str, ref: str, *, at: datetime) -> None: ...


class Timers(TimerRows):
    """Durable timers: one row per (kind, ref), fired once by whichever instance claims it."""

    def __init__(self, session: AsyncSession, tables: MessagingTables) -> None:
        self._session = session
        self._table = tables.timers

    async def _set(
        self, kind: str, ref: str, due_at: datetime, lock_key: str, payload: dict[str, Any]
    ) -> None:
        values = {
            "kind": kind,
            "ref": ref,
            "lock_key": lock_key,
            "due_at": due_at,
            "payload": payload,
        }
        if self._session.info.get(HOLD_WRITES):
            self._held().set((kind, ref), values)
            return
        await self._session.execute(_timer_set(self._table), values)

    async def cancel(self, kind: str, ref: str, *, at: datetime) -> None:
        if self._session.info.get(HOLD_WRITES):
            self._held().cancel((kind, ref), {"kind": kind, "ref": ref, "cancelled_at": at})
            return
        await self._session.execute(
            _timer_cancel(self._table), {"b_kind": kind, "b_ref": ref, "b_at": at}
        )

    def _held(self) -> _HeldTimers:
        return pending_writes(self._session, "timers", lambda: _HeldTimers(self._table))

    async def pending(self, ref: str) -> list[Timer]:
        await flush_pending(self._session)
        t = self._table
        rows = await self._session.execute(
            select(t).where(
                and_(t.c.ref == ref, t.c.fired_at.is_(None), t.c.cancelled_at.is_(None))
            )
        )
        return [timer_from_row(row) for row in rows.mappings()]


class _HeldOutbox:
    """Outbox rows of one transaction, inserted in one statement in the order they were queued
    (the relay publishes by row id, so per-key order is kept)."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self.rows: dict[str, dict[str, Any]] = {}

    async def flush(self, session: AsyncSession) -> None:
        if not self.rows:
            return
        rows = list(self.rows.values())
        inserted = await driver_rows(
            session,
            _outbox_add_many(self._table),
            {
                name: [row[name] for row in rows]
                for name in ("event_id", "event_type", "topic", "key", "payload")
            },
        )
        missing = set(self.rows) - {row[0] for row in inserted}
        if missing:
            raise WriteConflict(f"already in the outbox: {sorted(missing)[:5]}")


class _HeldTimers:
    """Timer changes of one transaction, reduced to their net effect per (kind, ref): the last
    set, then a cancel made after it. Written as sets then cancels, which is what applying them
    one by one would leave."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._sets: dict[tuple[str, str], dict[str, Any]] = {}
        self._cancels: dict[tuple[str, str], dict[str, Any]] = {}

    def set(self, key: tuple[str, str], values: dict[str, Any]) -> None:
        self._cancels.pop(key, None)
        self._sets[key] = values

    def cancel(self, key: tuple[str, str], values: dict[str, Any]) -> None:
        self._cancels[key] = values

    async def flush(self, session: AsyncSession) -> None:
        # One statement each, the rows as one JSON parameter: a backlog sets and cancels a timer
        # for many of its events (a return waiting for its order), and a parameter set per row
        # cost SQLAlchemy's and asyncpg's work for every one.
        if self._sets:
            sets = _timer_set_many(self._table)
            await driver_rows(session, sets.statement, sets.parameters(self._sets.values()))
        if self._cancels:
            cancels = _timer_cancel_many(self._table)
            rows = self._cancels.values()
            await driver_rows(session, cancels.statement, cancels.parameters(rows))


# Statements built once per table and executed with parameters: building an upsert (its
# `excluded` alias above all) costs more CPU than running it.


@cache
def _outbox_add(table: Table) -> ReturningInsert[Any]:
    return insert(table).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.id)


@cache
def _outbox_has(table: Table) -> Select[tuple[int]]:
    return select(table.c.id).where(table.c.event_id == bindparam("b_id"))


@cache
def _outbox_add_many(table: Table) -> ReturningInsert[tuple[str]]:
    # Rows in array order (WITH ORDINALITY ... ORDER BY n), so their ids follow the queue order.
    columns = ("event_id", "event_type", "topic", "key", "payload")
    arrays = [
        bindparam(name, type_=ARRAY(LargeBinary if name == "payload" else Text)) for name in columns
    ]
    rows = func.unnest(*arrays).table_valued(*columns, with_ordinality="n").render_derived()
    return (
        insert(table)
        .from_select(list(columns), select(*(rows.c[name] for name in columns)).order_by(rows.c.n))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(table.c.event_id)
    )


@cache
def _timer_set(table: Table) -> Insert:
    stmt = insert(table)
    return stmt.on_conflict_do_update(index_elements=["kind", "ref"], set_=_timer_reset(stmt))


def _timer_reset(stmt: Insert) -> dict[str, Any]:
    """A timer set again: the new due time and payload, neither fired nor cancelled, no
    attempt made."""
    return {
        "due_at": stmt.excluded.due_at,
        "payload": stmt.excluded.payload,
        "lock_key": stmt.excluded.lock_key,
        "fired_at": None,
        "cancelled_at": None,
        "attempts": 0,
        "retry_at": None,
    }


_TIMER_SET_COLUMNS = ("kind", "ref", "lock_key", "due_at", "payload")


@cache
def _timer_set_many(table: Table) -> JsonRowsWrite:
    """`_timer_set` of many rows (their (kind, ref) differ)."""
    stmt = insert(table).from_select(list(_TIMER_SET_COLUMNS), json_rows(table, _TIMER_SET_COLUMNS))
    return JsonRowsWrite(
        stmt.on_conflict_do_update(index_elements=["kind", "ref"], set_=_timer_reset(stmt))
    )


@cache
def _timer_cancel_many(table: Table) -> JsonRowsWrite:
    """`_timer_cancel` of many rows (kind, ref, cancelled_at each)."""
    t = table
    rows = json_rows(t, ("kind", "ref", "cancelled_at")).subquery("cancelled")
    return JsonRowsWrite(
        update(t)
        .where(t.c.kind == rows.c.kind, t.c.ref == rows.c.ref, t.c.fired_at.is_(None))
        .values(cancelled_at=rows.c.cancelled_at)
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


def timer_from_row(row: Any) -> Timer:
    return from_row(Timer, row)
