"""Retention purges on the real database: technical rows past their periods, in batches."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from shared.messaging.retention import RetentionPeriods, messaging_retention, purge, run_purges
from tests.polling import eventually

from .helpers import T0, Harness
from .kit import MessagingKit

PERIODS = RetentionPeriods(
    inbox=timedelta(days=30),
    timers=timedelta(days=30),
    outbox=timedelta(days=7),
    cases=timedelta(days=183),
)
NOW = T0 + timedelta(days=400)
DAY = timedelta(days=1)


async def fill(engine: AsyncEngine, harness: Harness) -> None:
    t = harness.tables
    old, recent = NOW - timedelta(days=31), NOW - timedelta(days=1)
    async with engine.begin() as conn:
        await conn.execute(
            t.inbox.insert(),
            [
                {"event_id": f"in-{i}", "event_type": "x", "topic": "t", "received_at": at}
                for i, at in enumerate([old] * 5 + [recent])
            ],
        )
        timer = {
            "kind": "k",
            "lock_key": "o",
            "due_at": old,
            "fired_at": None,
            "cancelled_at": None,
        }
        await conn.execute(
            t.timers.insert(),
            [
                {**timer, "ref": "fired-long-ago", "fired_at": old},
                {**timer, "ref": "cancelled-long-ago", "cancelled_at": old},
                {**timer, "ref": "fired-yesterday", "fired_at": recent},
                {**timer, "ref": "still-due"},  # overdue and never fired: kept
            ],
        )
        row = {
            "event_type": "x",
            "topic": "t",
            "key": "o",
            "payload": b"{}",
            "created_at": old,
            "published_at": None,
            "parked_at": None,
        }
        await conn.execute(
            t.outbox.insert(),
            [
                {**row, "event_id": "published-long-ago", "published_at": NOW - timedelta(days=8)},
                {**row, "event_id": "published-today", "published_at": NOW},
                {**row, "event_id": "never-published"},
                {**row, "event_id": "parked", "parked_at": old},
            ],
        )
        entry = {"direction": "input", "event_type": "x", "occurred_at": old}
        await conn.execute(
            t.journal.insert(),
            [
                {**entry, "event_id": "case-closed-long-ago", "recorded_at": NOW - 200 * DAY},
                {**entry, "event_id": "case-of-this-month", "recorded_at": NOW - 20 * DAY},
            ],
        )


async def remaining(engine: AsyncEngine, harness: Harness) -> dict[str, set[str]]:
    t = harness.tables
    async with engine.connect() as conn:
        return {
            "inbox": set((await conn.execute(select(t.inbox.c.event_id))).scalars()),
            "timers": set((await conn.execute(select(t.timers.c.ref))).scalars()),
            "outbox": set((await conn.execute(select(t.outbox.c.event_id))).scalars()),
            "journal": set((await conn.execute(select(t.journal.c.event_id))).scalars()),
        }


async def test_technical_rows_go_after_their_period_and_live_ones_stay(kit: MessagingKit) -> None:
    await fill(kit.engine, kit.harness)
    retained = messaging_retention(kit.harness.tables)
    before = await remaining(kit.engine, kit.harness)

    counted = await purge(kit.sessions, retained, PERIODS, NOW, dry_run=True)
    assert counted == {"inbox": 5, "timers": 2, "outbox": 1, "journal": 1}
    assert await remaining(kit.engine, kit.harness) == before  # a dry run deletes nothing

    # Two rows per statement: the five old inbox ids take three.
    assert await purge(kit.sessions, retained, PERIODS, NOW, batch_size=2) == counted
    assert await remaining(kit.engine, kit.harness) == {
        "inbox": {"in-5"},
        "timers": {"fired-yesterday", "still-due"},
        "outbox": {"published-today", "never-published", "parked"},
        "journal": {"case-of-this-month"},
    }
    nothing_left = {"inbox": 0, "timers": 0, "outbox": 0, "journal": 0}
    assert await purge(kit.sessions, retained, PERIODS, NOW) == nothing_left
    async with kit.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(kit.harness.tables.inbox)) == 1


async def test_a_running_service_purges_periodically_until_stopped(kit: MessagingKit) -> None:
    await fill(kit.engine, kit.harness)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_purges(
            kit.harness.name,
            kit.sessions,
            kit.harness.definition().retained,
            PERIODS,
            ManualClock(NOW),
            stop,
            interval=0.05,
        )
    )

    async def purged() -> bool:
        return (await remaining(kit.engine, kit.harness))["inbox"] == {"in-5"}

    await eventually(purged, what="the periodic purge ran")
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (await remaining(kit.engine, kit.harness))["outbox"] == {
        "published-today",
        "never-published",
        "parked",
    }


async def test_a_row_changed_while_the_purge_waits_for_it_is_judged_as_it_now_is(
    kit: MessagingKit,
) -> None:
    """A timer fired long ago and set again (fired_at cleared) by a transaction the purge has
    to wait for is live when the purge gets it: it stays."""
    await fill(kit.engine, kit.harness)
    t = kit.harness.tables.timers
    retained = messaging_retention(kit.harness.tables)
    async with kit.engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(
            t.update()
            .where(t.c.ref == "fired-long-ago")
            .values(fired_at=None, due_at=NOW + DAY, attempts=0)
        )
        task = asyncio.create_task(purge(kit.sessions, retained, PERIODS, NOW))

        async def purge_waits() -> bool:
            async with kit.engine.connect() as probe:
                waiting = await probe.scalar(
                    select(func.count())
                    .select_from(text("pg_stat_activity"))
                    .where(text("wait_event_type = 'Lock' AND query LIKE 'DELETE%'"))
                )
            return bool(waiting)

        await eventually(purge_waits, what="the purge waits for the timer's row")
        await transaction.commit()
        deleted = await asyncio.wait_for(task, 10)

    assert deleted["timers"] == 1  # cancelled-long-ago only
    timers = await kit.timer_rows()
    assert "fired-long-ago" in timers and timers["fired-long-ago"]["fired_at"] is None
