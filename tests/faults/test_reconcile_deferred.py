"""The fault run's reconciliation judges the notifier as it judges the other services: a
notification whose next attempt comes after the end of the wait is deferred, not a failure;
one due before it and not done is; a timer counts as not fired only when it was due some
margin before the services stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from aftersales_dev.devenv import plain_dsn, temporary_database
from faults.check import _check_timers
from faults.check_cases import check_notifications
from faults.findings import Findings
from faults.progress import TIMER_MARGIN, service_infos, unfinished_notifications
from shared.migrations import upgrade

RUN = "Ftest0001"


@pytest.fixture
async def notifier_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with temporary_database(database_url, "faults") as url:
        await asyncio.to_thread(upgrade, "notifier", url)
        conn = await asyncpg.connect(plain_dsn(url))
        try:
            yield conn
        finally:
            await conn.close()


async def scheduled(
    conn: asyncpg.Connection,
    delivery_id: str,
    seq: int,
    timer_due: datetime,
    *,
    fired: bool,
    sending: bool = False,
) -> None:
    """A notification neither sent nor given up, its timer `<id>#<seq>` due at `timer_due`
    (`sending`: an attempt claimed, its outcome not recorded yet, the timer its recovery)."""
    now = datetime.now(UTC)
    await conn.execute(
        """INSERT INTO notifier.deliveries (delivery_id, source_event_id, source_type,
             customer_id, order_id, template, urgent, status, attempts, timer_seq,
             next_attempt_at, defer_reason, requested_at)
           VALUES ($1, $1, 'return.rejected', 'C1', $2, 'return.rejected', false,
                   'scheduled', 2, $3, $4, $5, $6)""",
        delivery_id,
        f"{RUN}-{delivery_id}",
        seq,
        timer_due,
        "sending" if sending else None,
        now,
    )
    await conn.execute(
        """INSERT INTO notifier.timers (kind, ref, lock_key, due_at, fired_at)
           VALUES ('deliver', $1, 'C1', $2, $3)""",
        f"{delivery_id}#{seq}",
        timer_due,
        now if fired else None,
    )


async def test_a_notification_retried_after_the_wait_is_deferred_one_due_before_fails(
    notifier_db: asyncpg.Connection,
) -> None:
    conn = notifier_db
    horizon = datetime.now(UTC) + timedelta(seconds=60)
    # next attempt 2 s after the end of the wait (a no-contact retry): deferred
    await scheduled(conn, "later", 3, horizon + timedelta(seconds=2), fired=False)
    # next attempt 2 s before it, not made: a failure
    await scheduled(conn, "overdue", 3, horizon - timedelta(seconds=2), fired=False)
    # its timer fired, the attempt's outcome never recorded (in flight): a failure
    await scheduled(conn, "in-flight", 1, horizon + timedelta(seconds=9), fired=True)
    # an earlier timer of a notification, fired: not its next attempt
    await conn.execute(
        """INSERT INTO notifier.timers (kind, ref, lock_key, due_at, fired_at)
           VALUES ('deliver', 'later#2', 'C1', $1, $1)""",
        horizon - timedelta(seconds=30),
    )

    assert await unfinished_notifications(conn, RUN, horizon) == (2, 1)
    # being sent, its recovery timer due after the end of the wait: the wait goes on
    await scheduled(conn, "sending", 4, horizon + timedelta(seconds=25), fired=False, sending=True)
    assert await unfinished_notifications(conn, RUN, horizon) == (3, 1)
    await conn.execute("DELETE FROM notifier.deliveries WHERE delivery_id = 'sending'")

    f = Findings()
    await check_notifications(f, conn, {}, RUN, None, horizon)
    assert f.counts["notifications unfinished (neither sent nor given up)"] == 2
    assert f.counts["notifications deferred by a retry due after the wait (not failures)"] == 1
    assert f.problems == [
        "notifier: 2 notification(s) neither sent nor given up"
        f" (next attempt from {horizon - timedelta(seconds=2):%H:%M:%S} UTC)"
    ]


async def test_a_timer_due_just_before_the_services_stopped_is_not_reported_unfired(
    notifier_db: asyncpg.Connection,
) -> None:
    conn = notifier_db
    (notifier,) = service_infos(["notifier"])
    stopped = datetime.now(UTC)
    await scheduled(conn, "just-due", 1, stopped - TIMER_MARGIN / 2, fired=False)

    f = Findings()
    await _check_timers(f, conn, [notifier], [], stopped - TIMER_MARGIN)
    assert f.problems == []

    await scheduled(conn, "overdue", 1, stopped - TIMER_MARGIN * 2, fired=False)
    f = Findings()
    await _check_timers(f, conn, [notifier], [], stopped - TIMER_MARGIN)
    assert f.problems == ["notifier: 1 due deliver timer(s) not fired"]
