"""Hostile records never stop the flow: whatever a record holds, and wherever the database
refuses it (the inbox claim, the writes held for the commit, its own dead letter), the batch is
applied event by event, the culprit is dead-lettered with its reason and every other event of
the batch applies. A batch that fails past that, the same way three times in a row, is
dead-lettered whole instead of looping."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import ManualClock
from shared.contracts import ORDER_PAID, CloudEvent, OrderPaid, parse_event
from shared.contracts import envelope as contract_envelope
from shared.contracts.envelope import MAX_EVENT_BYTES
from shared.messaging import consumer as consumer_module
from shared.messaging.consumer import LAST_RESORT_AFTER, EventProcessor
from shared.messaging.context import HandlerContext
from shared.messaging.deadletter_copy import MAX_DEAD_LETTER_RECORD

from .helpers import (
    Harness,
    encode,
    order_paid,
    paid,
    processor,
    records,
)
from .kit import MessagingKit
from .test_consumer import dead_letters


def ascii_json(document: dict[str, Any]) -> bytes:
    # How a producer sends U+0000 or a lone surrogate: as JSON escapes.
    return json.dumps(document, ensure_ascii=True).encode("ascii")


def around(harness: Harness, key: bytes | str | None, value: bytes | None) -> list[Any]:
    """A good order, the hostile record, a good order, all on one partition."""
    batch = records(
        harness.input_topic,
        [
            paid("o-before", "e-before"),
            ("placeholder", b""),
            paid("o-after", "e-after"),
        ],
    )
    hostile = batch[1]
    raw_key = key.encode() if isinstance(key, str) else key
    batch[1] = type(hostile)(hostile.topic, 0, hostile.offset, raw_key, value)
    return batch


def year_9999() -> bytes:
    doc = order_paid("o-bad", event_id="e-bad")
    doc["data"]["paid_at"] = "9999-12-31T20:00:00-12:00"
    return encode(doc)


def with_id(event_id: str) -> bytes:
    return ascii_json(order_paid("o-bad", event_id=event_id))


def surrogate_rejected() -> bytes:
    doc = order_paid("o-bad", event_id="e-bad")
    doc["data"]["payments"] = [{"method": "\ud800", "amount": -1}]
    return ascii_json(doc)


HOSTILE = [
    pytest.param("o-bad", with_id("e-bad\x00"), "invalid_text", id="nul-in-id"),
    pytest.param("o-bad", surrogate_rejected(), "invalid_text", id="surrogate"),
    pytest.param("o-bad", year_9999(), "timestamp_out_of_range", id="deadline-overflow"),
    pytest.param("o-bad", b"\x01\x02\x1f" * 70_000, "malformed_json", id="control-flood"),
    pytest.param(b"o-bad\x00", with_id("e-bad"), "invalid_text", id="nul-key"),
    pytest.param(b"\xff\xfe", with_id("e-bad"), "invalid_key", id="non-utf8-key"),
    pytest.param("k" * 100_000, with_id("e-bad"), "invalid_key", id="oversized-key"),
]


@pytest.mark.parametrize(("key", "value", "reason"), HOSTILE)
async def test_a_hostile_record_is_dead_lettered_and_its_neighbours_apply(
    kit: MessagingKit, key: Any, value: bytes, reason: str
) -> None:
    await kit.processor().process(around(kit.harness, key, value))
    assert await kit.effect_counts() == {"e-before": 1, "e-after": 1}
    [(row, letter)] = dead_letters(await kit.outbox_rows())
    assert (letter.reason, letter.origin.offset) == (reason, 1)
    # The letter is readable by the dead-letter tools and fits the broker whole.
    payload, key = bytes(row["payload"]), str(row["key"] or "")
    assert len(payload) + len(key.encode()) < MAX_DEAD_LETTER_RECORD
    assert parse_event(payload, max_bytes=MAX_DEAD_LETTER_RECORD).data == letter
    if len(value) > 100_000:  # the flood: 200 KiB that escape to more than 1 MiB
        assert letter.value_truncated and letter.value


async def test_a_record_of_letters_is_dead_lettered_in_time(kit: MessagingKit) -> None:
    # Redacting its copy tried an e-mail address from every position of the run: 256 KiB of
    # letters took minutes, with the event loop blocked (no heartbeat) and the batch's
    # transaction open (the server ends one idle for 120 s): fetched again, for ever.
    value = b"a" * MAX_EVENT_BYTES
    started = time.monotonic()
    await kit.processor().process(around(kit.harness, "o-bad", value))
    assert time.monotonic() - started < 30
    assert await kit.effect_counts() == {"e-before": 1, "e-after": 1}
    [(_, letter)] = dead_letters(await kit.outbox_rows())
    assert (letter.reason, letter.origin.offset, letter.value) == (
        "malformed_json",
        1,
        value.decode(),
    )


async def test_a_record_the_reader_fails_on_is_dead_lettered_as_a_bug(
    kit: MessagingKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader bug (an exception that is not InvalidEvent), as a record with a JSON array for
    # its `source` once raised: the record goes to the dead letters, its neighbours apply.
    def reader(value: bytes | None, **kwargs: Any) -> CloudEvent:
        if value is not None and b"e-bad" in value:
            raise TypeError("unhashable type: 'list'")
        return parse_event(value, **kwargs)

    monkeypatch.setattr(consumer_module, "parse_event", reader)
    batch = around(kit.harness, "o-bad", encode(order_paid("o-bad", event_id="e-bad")))
    await kit.processor().process(batch)
    assert await kit.effect_counts() == {"e-before": 1, "e-after": 1}
    [(_, letter)] = dead_letters(await kit.outbox_rows())
    assert (letter.reason, letter.origin.offset) == ("handler_error", 1)
    assert letter.detail == "reading the record failed: TypeError"


@pytest.fixture
def no_text_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation that misses hostile text, as a future gap might: the database must be the
    one refusing, and the batch must still go on."""
    monkeypatch.setattr(contract_envelope, "SUSPECT_ESCAPE", re.compile(rb"(?!)"))


async def test_a_refusal_at_the_inbox_claim_is_isolated_as_storage_refused(
    kit: MessagingKit, no_text_check: None
) -> None:
    batch = around(kit.harness, "o-bad", with_id("e-bad\x00"))
    await kit.processor().process(batch)
    assert await kit.effect_counts() == {"e-before": 1, "e-after": 1}
    [(_, letter)] = dead_letters(await kit.outbox_rows())
    assert letter.reason == "storage_refused"
    assert letter.detail.startswith("SQLSTATE 22021")  # invalid byte sequence (0x00)


async def test_a_refusal_of_held_writes_at_commit_is_isolated(
    kit: MessagingKit, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_paid(event: CloudEvent, ctx: HandlerContext) -> None:
        await kit.harness.on_paid(event, ctx)
        assert isinstance(event.data, OrderPaid)
        if event.data.order_id == "o-bad":  # a timer payload JSONB cannot hold (U+0000)
            await ctx.timers.set(
                "note", "o-bad", due_at=ctx.now, lock_key="o-bad", payload={"n": "Zhang\x00"}
            )

    batch = around(kit.harness, "o-bad", encode(order_paid("o-bad", event_id="e-bad")))
    await kit.processor(handlers={ORDER_PAID: on_paid}).process(batch)
    assert await kit.effect_counts() == {"e-before": 1, "e-after": 1}
    [(_, letter)] = dead_letters(await kit.outbox_rows())
    assert (letter.reason, letter.origin.offset) == ("storage_refused", 1)
    assert "Zhang" not in letter.detail and "SQLSTATE 22P05" in letter.detail
    # Logged with the SQLSTATE, never with the refused statement's parameters.
    assert "Zhang" not in caplog.text
    assert any(getattr(r, "sqlstate", "") == "22P05" for r in caplog.records)


async def test_a_refused_dead_letter_is_written_without_its_copy(
    kit: MessagingKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key cleaning that lets U+0000 through: the outbox refuses the letter's key at commit.
    monkeypatch.setattr(
        consumer_module, "dead_letter_key", lambda key: (key.decode("utf-8", "replace"), False)
    )
    batch = around(kit.harness, b"o-bad\x00", b"{not json")
    await kit.processor().process(batch)
    assert await kit.effect_counts() == {"e-before": 1, "e-after": 1}
    [(row, letter)] = dead_letters(await kit.outbox_rows())
    assert (letter.reason, letter.key, letter.value) == ("invalid_text", None, "")
    assert letter.value_truncated and "\x00" not in str(row["key"])


def failing_lock_keys(error: Exception) -> Any:
    def lock_keys(event: CloudEvent) -> list[str]:
        if event.id == "e-bad":
            raise error  # before any savepoint, on both paths
        return [event.data.order_id]  # type: ignore[attr-defined]

    return lock_keys


def failing_batch(
    harness: Harness, sessions: async_sessionmaker[AsyncSession], clock: ManualClock, exc: Exception
) -> tuple[EventProcessor, list[Any]]:
    """A processor whose lock keys fail for `e-bad`, and a batch holding it."""
    batch = around(harness, "o-bad", encode(order_paid("o-bad", event_id="e-bad")))
    return processor(harness, sessions, clock, lock_keys=failing_lock_keys(exc)), batch


async def test_a_batch_failing_the_same_way_three_times_is_dead_lettered_whole(
    kit: MessagingKit,
) -> None:
    consumer, batch = failing_batch(
        kit.harness, kit.sessions, kit.clock, ValueError("a bug in lock_keys")
    )
    # Fetched again from the same offset; the first time the batch was shorter (new records
    # arrive behind it): still the same failure.
    for attempt in range(LAST_RESORT_AFTER - 1):
        with pytest.raises(ValueError):
            await consumer.process(batch[: 2 + attempt])
        assert await kit.outbox_rows() == []
    await consumer.process(batch)  # the third time: dead-lettered, the partition moves on
    letters = dead_letters(await kit.outbox_rows())
    assert [(d.reason, d.origin.offset) for _, d in letters] == [
        ("batch_refused", 0),
        ("batch_refused", 1),
        ("batch_refused", 2),
    ]
    assert "ValueError" in letters[0][1].detail
    assert await kit.effect_counts() == {}
    # Replayable: the copies are kept.
    assert parse_event(letters[0][1].value.encode()).id == "e-before"


async def test_a_passing_fault_is_retried_forever_never_dead_lettered(kit: MessagingKit) -> None:
    consumer, batch = failing_batch(
        kit.harness, kit.sessions, kit.clock, ConnectionResetError("gone")
    )
    for _ in range(LAST_RESORT_AFTER + 2):
        with pytest.raises(ConnectionResetError):
            await consumer.process(batch)
    assert await kit.outbox_rows() == []


async def test_another_failure_in_between_starts_the_count_again(kit: MessagingKit) -> None:
    consumer, batch = failing_batch(kit.harness, kit.sessions, kit.clock, ValueError("a bug"))
    other, _ = failing_batch(kit.harness, kit.sessions, kit.clock, KeyError("another bug"))
    for _ in range(LAST_RESORT_AFTER - 1):
        with pytest.raises(ValueError):
            await consumer.process(batch)
    consumer._lock_keys = other._lock_keys  # the same batch now fails another way
    with pytest.raises(KeyError):
        await consumer.process(batch)
    assert await kit.outbox_rows() == []
