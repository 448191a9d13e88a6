"""Writes held back on the fast path: a batch's outbox rows and timer changes are written in one
statement each when it commits, and the result is what applying its events one by one leaves:
timer sets and cancels in either order, outbox rows in batch order, an event taken as new that
was queued already (the batch is then applied again the exact way), metrics counted once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from shared.contracts import NOTIFICATION_REQUESTED, ORDER_PAID, CloudEvent, deterministic_id
from shared.messaging.context import EventHandler, HandlerContext

from .helpers import Harness, encode, order_paid, order_shipped, records, statements_sent
from .kit import MessagingKit


class Tally:
    """A stand-in metric: what `HandlerContext.count` increments once the work committed."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


def counting(harness: Harness, tally: Tally) -> dict[str, EventHandler]:
    """The harness's handlers, its payment handler counting `tally` as a metric."""
    handlers = dict(harness.definition().handlers)
    paid = handlers[ORDER_PAID]

    async def counted(event: CloudEvent, ctx: HandlerContext) -> None:
        await paid(event, ctx)
        ctx.count(tally)

    handlers[ORDER_PAID] = counted
    return handlers


def write_kind(statement: str) -> list[str]:
    """'VERB table' for writes to the outbox, timers and journal, 'SAVEPOINT' for savepoints."""
    verb = statement.split()[0].upper()
    if verb == "SAVEPOINT":
        return [verb]
    if verb not in ("INSERT", "UPDATE"):
        return []
    target = statement.split("(")[0]
    return [f"{verb} {table}" for table in ("outbox", "timers", "journal") if f".{table}" in target]


def paid_then_shipped(orders: range) -> list[tuple[str, bytes]]:
    values = []
    for i in orders:
        values.append((f"o-{i}", encode(order_paid(f"o-{i}", event_id=f"e-paid-{i}"))))
        values.append((f"o-{i}", encode(order_shipped(f"o-{i}", event_id=f"e-shipped-{i}"))))
    return values


def timers_of(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, bool]]:
    return {ref: (row["due_at"], row["cancelled_at"] is not None) for ref, row in rows.items()}


async def test_a_batch_writes_its_outbox_timers_and_journal_in_one_statement_each(
    kit: MessagingKit,
) -> None:
    # Orders 0-9 paid and shipped, 10-14 only paid: ten timers cancelled, five left live.
    values = paid_then_shipped(range(10)) + [
        (f"o-{i}", encode(order_paid(f"o-{i}", event_id=f"e-paid-{i}"))) for i in range(10, 15)
    ]
    with statements_sent(kit.engine, write_kind) as seen:
        await kit.processor().process(records(kit.harness.input_topic, values))
    assert seen == {
        "INSERT outbox": 1,
        "INSERT timers": 1,
        "UPDATE timers": 1,
        "INSERT journal": 1,  # the 25 events taken in and the 25 queued out
    }
    timers = timers_of(await kit.timer_rows())
    assert {ref for ref, (_, cancelled) in timers.items() if cancelled} == {
        f"o-{i}" for i in range(10)
    }
    assert {ref for ref, (_, cancelled) in timers.items() if not cancelled} == {
        f"o-{i}" for i in range(10, 15)
    }
    # The outbox in the order the events were applied, as one statement per event would be.
    rows = await kit.outbox_rows()
    assert [r["event_id"] for r in rows] == [
        deterministic_id(kit.harness.name, event_id, NOTIFICATION_REQUESTED, "")
        for event_id in [*(f"e-{k}-{i}" for i in range(10) for k in ("paid", "shipped"))]
        + [f"e-paid-{i}" for i in range(10, 15)]
    ]
    # The journal: each event taken in, then what it queued, in the order they were applied.
    journal = kit.harness.tables.journal
    async with kit.engine.connect() as conn:
        filed = (await conn.execute(select(journal).order_by(journal.c.id))).all()
    assert [(r.direction, r.event_type, r.order_id) for r in filed[:4]] == [
        ("input", "order.paid", "o-0"),
        ("output", NOTIFICATION_REQUESTED, "o-0"),
        ("input", "order.shipped", "o-0"),
        ("output", NOTIFICATION_REQUESTED, "o-0"),
    ]
    assert len(filed) == 50


async def test_timer_changes_in_one_batch_leave_what_applying_them_one_by_one_leaves(
    kit: MessagingKit,
) -> None:
    # Per order, in one batch: shipped then paid (cancel, then set: live), paid then shipped
    # then paid again under a new id (set, cancel, set: live), paid then shipped (cancelled).
    def sequence(prefix: str) -> list[tuple[str, bytes]]:
        a, b, c = f"{prefix}a", f"{prefix}b", f"{prefix}c"
        return [
            (a, encode(order_shipped(a, event_id=f"{a}-shipped"))),
            (a, encode(order_paid(a, event_id=f"{a}-paid"))),
            (b, encode(order_paid(b, event_id=f"{b}-paid"))),
            (b, encode(order_shipped(b, event_id=f"{b}-shipped"))),
            (b, encode(order_paid(b, event_id=f"{b}-paid-again"))),
            (c, encode(order_paid(c, event_id=f"{c}-paid"))),
            (c, encode(order_shipped(c, event_id=f"{c}-shipped"))),
        ]

    together = sequence("t-")
    await kit.processor().process(records(kit.harness.input_topic, together))
    for record in records(kit.harness.input_topic, sequence("s-"), start=100):
        await kit.processor().process([record])
    timers = timers_of(await kit.timer_rows())
    for name in "abc":
        assert timers[f"t-{name}"] == timers[f"s-{name}"], name
    assert [timers[f"t-{name}"][1] for name in "abc"] == [False, False, True]


async def test_an_event_taken_as_new_but_queued_already_is_applied_again_the_exact_way(
    kit: MessagingKit,
) -> None:
    # The notification order o-2's payment would queue is in the outbox already (queued by
    # another path): the fast path takes it as new, the flush finds it, nothing commits, and
    # the batch is applied event by event, which asks the database.
    queued = deterministic_id(kit.harness.name, "e-paid-2", NOTIFICATION_REQUESTED, "")
    async with kit.engine.begin() as conn:
        await conn.execute(
            insert(kit.harness.tables.outbox).values(
                event_id=queued,
                event_type=NOTIFICATION_REQUESTED,
                topic=kit.harness.output_topic,
                key="o-2",
                payload=b"{}",
            )
        )
    tally = Tally()
    with statements_sent(kit.engine, write_kind) as seen:
        await kit.processor(counting(kit.harness, tally)).process(
            records(kit.harness.input_topic, paid_then_shipped(range(4)))
        )
    assert seen["SAVEPOINT"] > 0  # the second, event-by-event application
    expected = {f"e-{k}-{i}": 1 for i in range(4) for k in ("paid", "shipped")}
    assert await kit.effect_counts() == expected
    assert await kit.inbox_ids() == set(expected)
    ids = [r["event_id"] for r in await kit.outbox_rows()]
    assert ids.count(queued) == 1 and len(ids) == len(set(ids)) == 8
    assert tally.value == 4  # once per payment, not once more for the rolled-back attempt


async def test_metrics_of_a_batch_that_falls_back_are_counted_once(kit: MessagingKit) -> None:
    kit.harness.faults["o-3"] = ValueError("a bug")
    tally = Tally()
    await kit.processor(counting(kit.harness, tally)).process(
        records(kit.harness.input_topic, paid_then_shipped(range(5)))
    )
    # Orders 0, 1, 2 and 4 were paid; order 3's payment was dead-lettered. The fast attempt
    # ran the handlers of 0-2 before it failed: their counts were dropped with its rollback.
    assert tally.value == 4
    assert await kit.effect_counts() == {
        f"e-{k}-{i}": 1 for i in (0, 1, 2, 4) for k in ("paid", "shipped")
    }
