"""Retention: technical rows and case records purged after documented periods, in batches.

Technical rows (inbox ids, fired or cancelled timers, published outbox events) exist for
deduplication and delivery; case records (requests, decisions, complaints, callbacks, sent
notifications, dead letters, contacts) for the people who answer for a case. Each service
declares its case records (`ServiceDefinition.retained`); the messaging tables are the same
everywhere (`messaging_retention`). Periods are settings (docs/operations.md, Settings and
commands).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Table, delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from shared.clock import Clock
from shared.settings import Settings

from .errors import is_transient
from .tables import MessagingTables

log = logging.getLogger("aftersales.retention")

Period = Literal["inbox", "timers", "outbox", "cases"]

# Rows deleted per statement: short transactions, no long lock on a busy table.
PURGE_BATCH = 5000
# How often a running service purges (the first time one interval after it started).
PURGE_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class Retained:
    """Rows of `table` that may go once `since` is older than their period. A row whose `since`
    is NULL (a timer still due, an event not yet published, a parked one) is never purged."""

    table: Table
    since: ColumnElement[Any]
    period: Period

    @property
    def name(self) -> str:
        return self.table.name


@dataclass(frozen=True)
class RetentionPeriods:
    inbox: timedelta
    timers: timedelta
    outbox: timedelta
    cases: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPeriods:
        return cls(
            inbox=timedelta(days=settings.aftersales_retention_inbox_days),
            timers=timedelta(days=settings.aftersales_retention_timers_days),
            outbox=timedelta(days=settings.aftersales_retention_outbox_days),
            cases=timedelta(days=settings.aftersales_retention_case_days),
        )

    def of(self, period: Period) -> timedelta:
        value: timedelta = getattr(self, period)
        return value


def messaging_retention(tables: MessagingTables) -> list[Retained]:
    timers = tables.timers.c
    return [
        Retained(tables.inbox, tables.inbox.c.received_at, "inbox"),
        Retained(tables.timers, func.coalesce(timers.fired_at, timers.cancelled_at), "timers"),
        Retained(tables.outbox, tables.outbox.c.published_at, "outbox"),
        # A case's timeline is a case record: kept as long as the case itself.
        Retained(tables.journal, tables.journal.c.recorded_at, "cases"),
    ]


def case_records(*columns: Any) -> list[Retained]:
    """Case records kept for the case period, each counted from its column (last change)."""
    return [Retained(column.table, column, "cases") for column in columns]


async def purge(
    sessions: async_sessionmaker[AsyncSession],
    retained: Sequence[Retained],
    periods: RetentionPeriods,
    now: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = PURGE_BATCH,
) -> dict[str, int]:
    """Delete (or, with `dry_run`, count) what is past its period; returns rows per table."""
    done: dict[str, int] = {}
    for item in retained:
        expired = item.since < now - periods.of(item.period)
        if dry_run:
            async with sessions() as session:
                count = await session.scalar(
                    select(func.count()).select_from(item.table).where(expired)
                )
            done[item.name] = int(count or 0)
            continue
        key = tuple_(*item.table.primary_key.columns)
        batch = select(*item.table.primary_key.columns).where(expired).limit(batch_size)
        # `expired` again on the row deleted: a row changed meanwhile by a transaction the
        # delete waited for (a timer set again, a case updated) is judged as it is now, not as
        # the batch's snapshot saw it.
        stmt = delete(item.table).where(key.in_(batch), expired)
        total = 0
        while True:
            async with sessions() as session, session.begin():
                result = await session.execute(stmt)
            deleted = int(getattr(result, "rowcount", 0) or 0)
            total += deleted
            if deleted < batch_size:
                break
        done[item.name] = total
    return done


async def run_purges(
    service: str,
    sessions: async_sessionmaker[AsyncSession],
    retained: Sequence[Retained],
    periods: RetentionPeriods,
    clock: Clock,
    stop: asyncio.Event,
    interval: float = PURGE_INTERVAL_SECONDS,
) -> None:
    """A running service's periodic purge (several instances may run it: a row goes once)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
            return
        except TimeoutError:
            pass
        try:
            deleted = await purge(sessions, retained, periods, clock.now())
        except Exception as exc:  # tried again next interval
            log.log(
                logging.WARNING if is_transient(exc) else logging.ERROR,
                "purge failed",
                extra={"service": service, "error": type(exc).__name__},
            )
            continue
        if any(deleted.values()):
            log.info(
                "purged",
                extra={"service": service, **{f"purged_{k}": v for k, v in deleted.items()}},
            )
