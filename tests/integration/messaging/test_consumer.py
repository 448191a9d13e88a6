"""EventProcessor against the real database: validation, dead letters, dedup, one transaction."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from shared.contracts import (
    EVENT_DEADLETTERED,
    NOTIFICATION_REQUESTED,
    ORDER_PAID,
    CloudEvent,
    DeadLettered,
    dead_letter_topic,
    deterministic_id,
    parse_event,
)
from shared.contracts.outputs import MAX_DEAD_LETTER_BYTES
from shared.messaging.context import HandlerContext

from .helpers import (
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    CUSTOMER_PHONE,
    encode,
    order_paid,
    order_shipped,
    paid,
    records,
)
from .kit import MessagingKit


def dead_letters(rows: list[dict[str, object]]) -> list[tuple[dict[str, object], DeadLettered]]:
    out = []
    for row in rows:
        if row["event_type"] != EVENT_DEADLETTERED:
            continue
        event = parse_event(row["payload"], max_bytes=MAX_DEAD_LETTER_BYTES)  # type: ignore[arg-type]
        assert isinstance(event.data, DeadLettered)
        out.append((row, event.data))
    return out


def paid_batch(kit: MessagingKit, *orders: str) -> list:
    """A batch of one order.paid per order `o-…`, its event id `e-…` (`o-1`: `e-1`)."""
    return records(kit.harness.input_topic, [paid(o, "e-" + o[2:]) for o in orders])


async def test_batch_with_valid_duplicate_and_invalid_events(kit: MessagingKit) -> None:
    paid = order_paid("o-1", event_id="e-paid-1")
    shipped = order_shipped("o-1", event_id="e-shipped-1")

    naive = order_paid("o-2", event_id="e-naive")
    naive["data"]["paid_at"] = "2024-05-01T10:00:00"  # no offset

    unknown = order_paid("o-3", event_id="e-unknown")
    unknown["type"] = "order.teleported"

    negative = order_paid("o-4", event_id="e-negative")
    negative["data"]["lines"][0]["paid_amount"] = -100

    malformed = encode(order_paid("o-5", event_id="e-malformed"))[:-40]  # cut mid-document

    batch = records(
        kit.harness.input_topic,
        [
            ("o-1", encode(paid)),
            ("o-1", encode(paid)),  # the same event delivered twice in one batch
            ("o-5", malformed),
            ("o-2", encode(naive)),
            ("o-3", encode(unknown)),
            ("o-4", encode(negative)),
            ("o-1", encode(shipped)),
        ],
        partition=2,
        start=40,
    )
    await kit.processor().process(batch)

    assert await kit.effect_counts() == {"e-paid-1": 1, "e-shipped-1": 1}
    assert await kit.inbox_ids() == {"e-paid-1", "e-shipped-1"}

    rows = await kit.outbox_rows()
    outputs = [row for row in rows if row["event_type"] == NOTIFICATION_REQUESTED]
    assert [(row["topic"], row["key"]) for row in outputs] == [
        (kit.harness.output_topic, "o-1"),
        (kit.harness.output_topic, "o-1"),
    ]
    assert [parse_event(row["payload"]).causationid for row in outputs] == [
        "e-paid-1",
        "e-shipped-1",
    ]

    letters = dead_letters(rows)
    by_offset = {data.origin.offset: (row, data) for row, data in letters}
    assert sorted(by_offset) == [42, 43, 44, 45]
    expected = {
        42: ("malformed_json", "o-5"),
        43: ("naive_timestamp", "o-2"),
        44: ("unknown_type", "o-3"),
        45: ("negative_amount", "o-4"),
    }
    for offset, (reason, key) in expected.items():
        row, data = by_offset[offset]
        assert row["topic"] == dead_letter_topic(kit.harness.name)
        assert row["key"] == key
        assert data.reason == reason
        assert data.detail
        assert data.service == kit.harness.name
        assert (data.origin.topic, data.origin.partition) == (kit.harness.input_topic, 2)
        assert data.key == key
        # No personal data of the buyer, anywhere in the dead letter.
        payload = row["payload"].decode("utf-8")  # type: ignore[attr-defined]
        for secret in (CUSTOMER_PHONE, CUSTOMER_EMAIL, CUSTOMER_NAME, "zhang.sanfeng"):
            assert secret not in payload, (reason, secret)

    # The structured copies keep their shape: only the buyer's contact is masked.
    negative_copy = json.loads(by_offset[45][1].value)
    assert negative_copy["id"] == "e-negative"
    assert negative_copy["data"]["customer"]["phone"] == "138****5678"
    assert negative_copy["data"]["customer"]["preferred_channel"] == "sms"

    # Processing the same batch again (a redelivery) changes nothing.
    before = await kit.outbox_rows()
    await kit.processor().process(batch)
    assert await kit.effect_counts() == {"e-paid-1": 1, "e-shipped-1": 1}
    assert [row["event_id"] for row in await kit.outbox_rows()] == [
        row["event_id"] for row in before
    ]


async def test_handler_error_is_dead_lettered_and_the_rest_commits(kit: MessagingKit) -> None:
    kit.harness.faults["o-bad"] = ValueError(f"cannot handle buyer {CUSTOMER_PHONE}")
    batch = paid_batch(kit, "o-1", "o-bad", "o-2")
    await kit.processor().process(batch)

    # The failing handler's own writes are rolled back (its savepoint), the others commit.
    assert await kit.effect_counts() == {"e-1": 1, "e-2": 1}
    assert await kit.inbox_ids() == {"e-1", "e-2"}
    async with kit.engine.connect() as conn:
        orders = set((await conn.execute(select(kit.harness.orders.c.order_id))).scalars())
        timers = set((await conn.execute(select(kit.harness.tables.timers.c.ref))).scalars())
    assert orders == timers == {"o-1", "o-2"}

    rows = await kit.outbox_rows()
    letters = dead_letters(rows)
    assert len(letters) == 1
    row, data = letters[0]
    assert data.reason == "handler_error"
    assert (data.origin.topic, data.origin.partition, data.origin.offset) == (
        kit.harness.input_topic,
        0,
        1,
    )
    assert "ValueError" in data.detail
    payload = row["payload"].decode("utf-8")
    for secret in (CUSTOMER_PHONE, CUSTOMER_EMAIL, CUSTOMER_NAME):
        assert secret not in payload
    # The valid event is kept whole apart from the masked contact, so it can be replayed.
    copy = json.loads(data.value)
    assert copy["id"] == "e-bad"
    assert copy["data"]["order_id"] == "o-bad"
    assert [r["event_id"] for r in rows if r["event_type"] == NOTIFICATION_REQUESTED] == [
        deterministic_id(kit.harness.name, "e-1", NOTIFICATION_REQUESTED, ""),
        deterministic_id(kit.harness.name, "e-2", NOTIFICATION_REQUESTED, ""),
    ]


@pytest.mark.parametrize(
    "fault",
    [ConnectionError("connection reset by peer"), OSError("network unreachable")],
    ids=["ConnectionError", "OSError"],
)
async def test_transient_failure_rolls_back_the_batch_and_a_retry_applies_it_once(
    kit: MessagingKit, fault: BaseException
) -> None:
    batch = records(
        kit.harness.input_topic,
        [
            paid("o-1", "e-1"),
            ("o-x", b"{not json"),
            paid("o-2", "e-2"),
            paid("o-3", "e-3"),
        ],
    )
    kit.harness.faults["o-2"] = fault
    with pytest.raises(type(fault)):
        await kit.processor().process(batch)

    assert await kit.effect_counts() == {}
    assert await kit.inbox_ids() == set()
    assert await kit.outbox_rows() == []

    del kit.harness.faults["o-2"]
    await kit.processor().process(batch)
    await kit.processor().process(batch)  # and once more: no effect
    assert await kit.effect_counts() == {"e-1": 1, "e-2": 1, "e-3": 1}
    rows = await kit.outbox_rows()
    assert (
        sorted(r["event_type"] for r in rows) == [EVENT_DEADLETTERED] + [NOTIFICATION_REQUESTED] * 3
    )


async def test_concurrent_deliveries_of_one_event_apply_it_once(kit: MessagingKit) -> None:
    kit.harness.handler_delay = 0.05  # keep the first transaction open while the others arrive
    events = [encode(order_paid(f"o-{i}", event_id=f"e-{i}")) for i in range(5)]
    batches = [
        records(kit.harness.input_topic, [(f"o-{i}", value) for i, value in enumerate(events)])
        for _ in range(3)
    ]
    await asyncio.gather(*(kit.processor().process(b) for b in batches))
    assert await kit.effect_counts() == {f"e-{i}": 1 for i in range(5)}
    assert len(await kit.outbox_rows()) == 5


async def test_personal_data_of_an_unparseable_order_is_redacted(kit: MessagingKit) -> None:
    # Not JSON at all (a trailing comma), so the copy is free text: still no phone or e-mail.
    broken = encode(order_paid("o-1", event_id="e-1"))[:-2] + b",}}"
    # A JSON document whose customer is not an object: free text, redacted as well.
    odd = order_paid("o-2", event_id="e-2")
    odd["data"]["customer"] = f"{CUSTOMER_PHONE} / {CUSTOMER_EMAIL}"
    batch = records(kit.harness.input_topic, [("o-1", broken), ("o-2", encode(odd))])
    await kit.processor().process(batch)
    letters = dead_letters(await kit.outbox_rows())
    assert [data.reason for _, data in letters] == ["malformed_json", "invalid_data"]
    for row, _ in letters:
        payload = row["payload"].decode("utf-8")  # type: ignore[attr-defined]
        for secret in (CUSTOMER_PHONE, CUSTOMER_EMAIL, CUSTOMER_NAME):
            assert secret not in payload, secret


async def test_a_free_text_dead_letter_keeps_its_ids_readable_and_masks_phones(
    kit: MessagingKit,
) -> None:
    """Ids with digit runs (order, event, UUID-like) are not taken for phone numbers; a phone
    number in free text still is."""
    order_id, event_id = "O-2024050100012345", "R-df30123456788bb"
    paid = order_paid(order_id, event_id=event_id)
    paid["data"]["lines"][0]["title"] = "Kettle, call 13912345678 or tel:+86-139-1234-5679"
    broken = encode(paid)[:-2] + b",}}"  # not JSON: the copy is free text
    await kit.processor().process(records(kit.harness.input_topic, [(order_id, broken)]))
    ((_, data),) = dead_letters(await kit.outbox_rows())
    assert data.reason == "malformed_json"
    assert order_id in data.value and event_id in data.value
    for secret in ("13912345678", "139-1234-5679", CUSTOMER_PHONE, CUSTOMER_EMAIL, CUSTOMER_NAME):
        assert secret not in data.value, secret
    assert "139****5678" in data.value


@pytest.mark.parametrize("depth", [100_000, 900], ids=["too-deep-to-parse", "deep"])
async def test_deeply_nested_value_is_dead_lettered_and_does_not_block(
    kit: MessagingKit, depth: int
) -> None:
    nested = b'{"specversion": "1.0", "data": ' + b"[" * depth + b"]" * depth + b"}"
    batch = records(
        kit.harness.input_topic,
        [("o-1", nested), paid("o-1", "e-1")],
    )
    await kit.processor().process(batch)
    assert await kit.effect_counts() == {"e-1": 1}
    letters = dead_letters(await kit.outbox_rows())
    assert len(letters) == 1
    assert letters[0][1].origin.offset == 0


def raise_sqlstate(code: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$"


@pytest.mark.parametrize(
    "sqlstate",
    ["40001", "40P01", "57014"],
    ids=["serialization_failure", "deadlock", "query_canceled"],
)
async def test_transient_database_error_rolls_back_the_whole_batch(
    kit: MessagingKit, sqlstate: str
) -> None:
    kit.harness.faults["o-2"] = raise_sqlstate(sqlstate)
    batch = paid_batch(kit, "o-1", "o-2")
    with pytest.raises(DBAPIError):
        await kit.processor().process(batch)
    assert await kit.effect_counts() == {}
    assert await kit.outbox_rows() == []
    del kit.harness.faults["o-2"]
    await kit.processor().process(batch)
    assert await kit.effect_counts() == {"e-1": 1, "e-2": 1}


async def test_deterministic_database_error_dead_letters_only_that_event(kit: MessagingKit) -> None:
    kit.harness.faults["o-2"] = "SELECT 1 / 0"  # 22012, the same on every delivery
    batch = paid_batch(kit, "o-1", "o-2", "o-3")
    await kit.processor().process(batch)
    assert await kit.effect_counts() == {"e-1": 1, "e-3": 1}
    letters = dead_letters(await kit.outbox_rows())
    assert [(d.reason, d.origin.offset) for _, d in letters] == [("handler_error", 1)]
    assert "DivisionByZero" in letters[0][1].detail or "division" in letters[0][1].detail


async def test_ambiguous_json_is_kept_as_text_in_the_dead_letter(kit: MessagingKit) -> None:
    value = encode(order_paid("o-1", event_id="e-1"))[:-1] + b', "id": "e-other"}'
    await kit.processor().process(records(kit.harness.input_topic, [("o-1", value)]))
    ((_, data),) = dead_letters(await kit.outbox_rows())
    assert data.reason == "malformed_json"
    # Both ids survive: a replay must not turn the ambiguous event into a valid one.
    assert '"id": "e-1"' in data.value and '"id": "e-other"' in data.value
    assert CUSTOMER_PHONE not in data.value and CUSTOMER_NAME not in data.value


async def test_work_handed_outside_by_an_event_handler_is_refused_not_dropped(
    kit: MessagingKit,
) -> None:
    # Only the timer scheduler runs work handed to run_outside: from a consumer handler it
    # would never run, so the handler fails (the event is dead-lettered) instead.
    calls: list[str] = []

    async def call() -> None:
        calls.append("sent")

    async def record(result: object, rctx: HandlerContext) -> None:
        calls.append("recorded")

    async def hand_over(event: CloudEvent, ctx: HandlerContext) -> None:
        ctx.run_outside(call, record=record, lock_key="o-1")

    batch = paid_batch(kit, "o-1")
    await kit.processor({ORDER_PAID: hand_over}).process(batch)

    [(_, letter)] = dead_letters(await kit.outbox_rows())
    assert letter.reason == "handler_error" and "run_outside" in letter.detail
    assert calls == []
