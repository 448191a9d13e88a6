"""The EventProcessor's fast path: a clean batch in one transaction with its inbox ids claimed in
one statement, its advisory locks taken in one statement and no savepoint per event; a batch
whose handler fails is rolled back and applied again event by event (one savepoint each), so
the outcome is the same as before the fast path existed."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Text, bindparam, func, literal, select, text

from shared.contracts import EVENT_DEADLETTERED, NOTIFICATION_REQUESTED, parse_event
from shared.db import UnitOfWork, driver_rows, lock_id
from shared.messaging.errors import Rejected
from shared.messaging.store import Inbox

from .helpers import Harness, encode, order_paid, order_shipped, records, statements_sent
from .kit import MessagingKit


def statement_kind(statement: str) -> list[str]:
    """A statement by its first word; the advisory locks and inbox claims on their own."""
    kind = statement.split()[0].upper()
    if kind == "SELECT" and "pg_advisory_xact_lock" in statement:
        kind = "LOCK"
    elif kind == "INSERT" and "inbox" in statement:
        kind = "INBOX"
    return [kind]


def batch_of(harness: Harness, orders: int) -> list:
    values = []
    for i in range(orders):
        values.append((f"o-{i}", encode(order_paid(f"o-{i}", event_id=f"e-paid-{i}"))))
        values.append((f"o-{i}", encode(order_shipped(f"o-{i}", event_id=f"e-shipped-{i}"))))
    values.append(("o-0", values[0][1]))  # a duplicate delivery in the same batch
    return records(harness.input_topic, values)


async def test_a_clean_batch_takes_one_lock_and_one_inbox_statement_and_no_savepoint(
    kit: MessagingKit,
) -> None:
    batch = batch_of(kit.harness, 5)
    with statements_sent(kit.engine, statement_kind) as seen:
        await kit.processor().process(batch)
    assert seen["SAVEPOINT"] == 0
    assert seen["LOCK"] == 1
    assert seen["INBOX"] == 1
    expected = {f"e-{kind}-{i}": 1 for i in range(5) for kind in ("paid", "shipped")}
    assert await kit.effect_counts() == expected
    assert await kit.inbox_ids() == set(expected)

    # A redelivery of the whole batch: every event is a duplicate, nothing applies again.
    before = await kit.outbox_rows()
    await kit.processor().process(batch)
    assert await kit.effect_counts() == expected
    assert await kit.outbox_rows() == before


async def test_a_failing_handler_sends_the_batch_down_the_event_by_event_path(
    kit: MessagingKit,
) -> None:
    kit.harness.faults["o-3"] = ValueError("a bug")
    batch = batch_of(kit.harness, 5)
    with statements_sent(kit.engine, statement_kind) as seen:
        await kit.processor().process(batch)
    assert seen["SAVEPOINT"] > 0  # the second, event-by-event application
    # The fast attempt's writes were rolled back: every other event applied exactly once.
    counts = await kit.effect_counts()
    assert counts == {
        f"e-{kind}-{i}": 1 for i in range(5) if i != 3 for kind in ("paid", "shipped")
    }
    assert "e-paid-3" not in await kit.inbox_ids()  # so a replay can apply it
    rows = await kit.outbox_rows()
    letters = [parse_event(r["payload"]) for r in rows if r["event_type"] == EVENT_DEADLETTERED]
    assert sorted(letter.data.origin.offset for letter in letters) == [6, 7]  # type: ignore[union-attr]
    # Outputs in the order of the batch, as without the fast path.
    causes = [
        parse_event(r["payload"]).causationid
        for r in rows
        if r["event_type"] == NOTIFICATION_REQUESTED
    ]
    assert causes == [f"e-{k}-{i}" for i in range(5) if i != 3 for k in ("paid", "shipped")]


async def test_a_business_rejection_keeps_its_reason_after_the_fallback(kit: MessagingKit) -> None:
    kit.harness.faults["o-1"] = Rejected("unknown_callback", "no such callback")
    await kit.processor().process(batch_of(kit.harness, 2))
    letters = [
        parse_event(r["payload"]).data
        for r in await kit.outbox_rows()
        if r["event_type"] == EVENT_DEADLETTERED
    ]
    assert [d.reason for d in letters] == ["unknown_callback", "unknown_callback"]  # type: ignore[union-attr]
    assert await kit.effect_counts() == {"e-paid-0": 1, "e-shipped-0": 1}


async def test_a_database_error_in_the_fast_path_is_retried_event_by_event(
    kit: MessagingKit,
) -> None:
    # The error aborts the fast path's transaction; the events after it must still apply.
    kit.harness.faults["o-0"] = "SELECT 1 / 0"
    await kit.processor().process(batch_of(kit.harness, 3))
    assert await kit.effect_counts() == {
        f"e-{kind}-{i}": 1 for i in (1, 2) for kind in ("paid", "shipped")
    }


async def test_one_lock_statement_holds_every_key_until_the_end_of_the_transaction(
    kit: MessagingKit,
) -> None:
    keys = [f"order-{i}" for i in range(50)]
    async with UnitOfWork(kit.sessions) as uow:
        await uow.lock(reversed(keys))
        async with kit.engine.connect() as other:
            taken = [
                await other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock_id(k)})
                for k in keys
            ]
            await other.rollback()
        assert taken == [False] * len(keys)
        await uow.commit()
    async with kit.engine.connect() as other:
        assert await other.scalar(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock_id(keys[0])}
        )
        await other.rollback()


async def test_a_claim_sent_first_by_the_driver_is_rolled_back_with_its_unit_of_work(
    kit: MessagingKit,
) -> None:
    # The inbox claim goes to asyncpg directly; as a transaction's first statement it must
    # begin the transaction, not run on its own and commit at once.
    async with UnitOfWork(kit.sessions) as uow:
        claimed = await Inbox(uow.session, kit.harness.tables).claim({"e-x": ("order.paid", "t")})
        assert claimed == {"e-x"}
        assert await uow.session.scalar(text("SELECT now() = statement_timestamp()")) is False
    assert "e-x" not in await kit.inbox_ids()
    async with UnitOfWork(kit.sessions) as uow:
        await Inbox(uow.session, kit.harness.tables).claim({"e-x": ("order.paid", "t")})
        await uow.commit()
    assert "e-x" in await kit.inbox_ids()


async def test_the_driver_sends_a_statements_literals_and_refuses_a_missing_parameter(
    kit: MessagingKit,
) -> None:
    statement = select(func.coalesce(bindparam("given", type_=Text), "a literal"), literal(5))
    async with UnitOfWork(kit.sessions) as uow:
        rows = await driver_rows(uow.session, statement, {"given": None})
        assert [tuple(row) for row in rows] == [("a literal", 5)]
        rows = await driver_rows(uow.session, statement, {"given": "given"})
        assert [tuple(row) for row in rows] == [("given", 5)]
        with pytest.raises(KeyError):
            await driver_rows(uow.session, statement, {})


async def test_overlapping_batches_in_opposite_orders_neither_deadlock_nor_double_apply(
    kit: MessagingKit,
) -> None:
    kit.harness.handler_delay = 0.01
    batch = batch_of(kit.harness, 8)
    await asyncio.gather(
        kit.processor().process(batch),
        kit.processor().process(list(reversed(batch))),
        kit.processor().process(batch[3:] + batch[:3]),
    )
    expected = {f"e-{kind}-{i}": 1 for i in range(8) for kind in ("paid", "shipped")}
    assert await kit.effect_counts() == expected
