"""How many statements a notification costs: each step reads what it needs in one statement,
and the count per notification does not grow with the number of notifications."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.bootstrap import TIMER_CONCURRENCY
from services.notifier.channels import SENT, LogChannel, Outgoing, Result

# The notifier's own per notification: the claim's read and update of the delivery, the
# outcome's read and update. The rest goes per transaction, one statement each: the
# scheduler's claim, lock and timers marked fired with the recovery timers set; the outcomes'
# lock, recovery timers cancelled, status events and their journal rows. Timers fire in
# TIMER_CONCURRENCY transactions at once and their outcomes are recorded in as many; each
# round of the scheduler also looks for due timers once.
PER_NOTIFICATION = 4
PER_TRANSACTION = 4


class Accepting:
    """A gateway that takes every message at once."""

    name = "sms"

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def send(self, message: Outgoing) -> Result:
        self.sent.append(message)
        return SENT

    async def close(self) -> None:
        pass


_WRITE = re.compile(r"^(?:INSERT INTO|UPDATE|DELETE FROM) (?:\S+\.)?(\w+)")
_FROM = re.compile(r"\bFROM (?:\S+\.)?(\w+)")
_NESTED = re.compile(r"\([^()]*\)")


def _kind(statement: str) -> str:
    """`select deliveries`, `update timers`, `savepoint`...: what a statement is and on what."""
    text = " ".join(statement.split())
    verb = text.split(" ", 1)[0].lower()
    if match := _WRITE.match(text):
        return f"{verb} {match[1]}"
    while _NESTED.search(text):  # subqueries out: the table the statement reads from
        text = _NESTED.sub("", text)
    if verb == "select" and (match := _FROM.search(text)):
        return f"select {match[1]}"
    return verb


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen[_kind(statement)] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def _notify(h: Any, kit: Any, prefix: str, n: int) -> Counter[str]:
    """`n` buyers with a contact, one notification each; the statements of sending them."""
    customers = [f"{prefix}-{i}" for i in range(n)]
    await h.consume(*(kit.order_paid(c) for c in customers))
    await h.consume(*(kit.requested(c, request_id=f"req-{c}") for c in customers))
    with statements(h.engine) as seen:
        assert await h.fire() == n
    return seen


async def test_statements_per_notification_do_not_grow_with_the_batch(
    make_harness: Any, kit: Any
) -> None:
    gateway = Accepting()
    h = make_harness(channels={"sms": gateway})
    few = await _notify(h, kit, "few", 4)
    many = await _notify(h, kit, "many", 40)
    assert len(gateway.sent) == 44
    for n, seen in ((4, few), (40, many)):
        # One read per step (claim, outcome) of each notification: the delivery with its
        # buyer's slots used, contact and erasure; never the contact or the erasure apart.
        assert seen["select deliveries"] == 2 * n, seen
        assert seen["select contacts"] == seen["select erasures"] == 0, seen
        assert seen["update deliveries"] == 2 * n, seen
        # No savepoint per timer or outcome; the status events go out in one statement per
        # transaction, not one each.
        assert seen["savepoint"] == seen["release"] == 0, seen
        assert seen["insert outbox"] <= TIMER_CONCURRENCY, seen
        shared = sum(seen.values()) - PER_NOTIFICATION * n
        assert shared <= 2 + 2 * TIMER_CONCURRENCY * PER_TRANSACTION, seen


async def test_a_deferral_previews_the_message_from_the_contact_read_with_the_delivery(
    make_harness: Any, kit: Any, caplog_all: Any
) -> None:
    h = make_harness(channels={"log": LogChannel()})
    h.clock.set(datetime(2024, 5, 1, 22, 30, tzinfo=ZoneInfo("Asia/Shanghai")))  # quiet hours
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer))
    await h.consume(kit.requested(customer, request_id="preview-" + customer))
    with statements(h.engine) as seen:
        await h.fire()
    [line] = [r.getMessage() for r in caplog_all.records if "deferred until" in r.getMessage()]
    # Development (the log channel): the message that will go out, at any hour.
    assert line.startswith("notification deferred until 2024-05-02 09:00")
    assert "[complaint.acknowledged, zh-CN]" in line and "K1" in line
    assert seen["select deliveries"] == 1 and seen["select contacts"] == 0, seen
