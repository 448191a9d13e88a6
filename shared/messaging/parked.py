"""Outbox rows the relay parked (the broker refuses them): listing and re-queueing them, behind
`aftersales outbox list|retry`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import command_engine, service_metadata, session_factory

from .tables import MessagingTables, messaging_tables


@dataclass(frozen=True)
class ParkedRow:
    id: int
    event_id: str
    event_type: str
    topic: str
    key: str | None
    size: int
    created_at: datetime
    parked_at: datetime
    error: str
    # Later rows of the same key that wait for this one (the key's commit order).
    held_behind: int


async def parked_rows(
    sessions: async_sessionmaker[AsyncSession], tables: MessagingTables
) -> list[ParkedRow]:
    t = tables.outbox
    later = t.alias("later")
    held = (
        select(func.count())
        .where(
            later.c.published_at.is_(None),
            later.c.key.is_not_distinct_from(t.c.key),
            later.c.id > t.c.id,
        )
        .scalar_subquery()
    )
    stmt = (
        select(
            t.c.id,
            t.c.event_id,
            t.c.event_type,
            t.c.topic,
            t.c.key,
            func.length(t.c.payload).label("size"),
            t.c.created_at,
            t.c.parked_at,
            func.coalesce(t.c.parked_error, "").label("error"),
            held.label("held_behind"),
        )
        .where(t.c.parked_at.is_not(None), t.c.published_at.is_(None))
        .order_by(t.c.id)
    )
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    return [ParkedRow(**r._mapping) for r in rows]


async def retry_parked(
    sessions: async_sessionmaker[AsyncSession], tables: MessagingTables, ids: Sequence[int] | None
) -> list[int]:
    """Give parked rows back to the relay (all of them when `ids` is None); returns the ids
    re-queued. The relay sends them in their original place in their key's order; one the
    broker still refuses is parked again."""
    t = tables.outbox
    stmt = (
        update(t)
        .where(t.c.parked_at.is_not(None), t.c.published_at.is_(None))
        .values(parked_at=None, parked_error=None)
        .returning(t.c.id)
    )
    if ids is not None:
        stmt = stmt.where(t.c.id.in_(list(ids)))
    async with sessions() as session, session.begin():
        return sorted((await session.scalars(stmt)).all())


def service_tables(service: str) -> MessagingTables:
    """A service's messaging tables (in its own schema) without importing the service."""
    return messaging_tables(service_metadata(service))


async def main(database_url: str, service: str, action: str, ids: Sequence[int] | None) -> int:
    tables = service_tables(service)
    async with command_engine(database_url) as engine:
        sessions = session_factory(engine)
        if action == "list":
            rows = await parked_rows(sessions, tables)
            for row in rows:
                print(
                    f"{row.id}  {row.parked_at.isoformat()}  {row.event_type} -> {row.topic}  "
                    f"key={row.key}  {row.size} bytes  {row.held_behind} held behind  "
                    f"{row.error}"
                )
            print(f"{len(rows)} parked outbox event(s) in {service}", file=sys.stderr)
            return 0
        retried = await retry_parked(sessions, tables, ids)
        if ids is not None and (missing := sorted(set(ids) - set(retried))):
            print(
                f"aftersales: no parked outbox event with id {', '.join(map(str, missing))} "
                f"in {service}",
                file=sys.stderr,
            )
        print(f"{len(retried)} parked outbox event(s) re-queued in {service}")
        return 0 if ids is None or len(retried) == len(set(ids)) else 1
