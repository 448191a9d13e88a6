"""Reading and replaying a dead-letter topic on the real broker."""

from __future__ import annotations

import pytest

from shared.contracts import DeadLettered, parse_event
from shared.messaging.deadletters import (
    dead_letters_at,
    list_dead_letters,
    read_topic,
    replay_dead_letters,
    replay_one,
)
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ServiceRuntime
from shared.settings import Settings

from .helpers import (
    encode,
    header,
    order_paid,
    order_shipped,
    read_partitions,
    records,
)
from .kit import MessagingKit

# Order ids and tracking numbers are often long digit runs; a replay must keep them intact.
DIGIT_ORDER = "2024050100012345"


async def test_read_topic_returns_every_record(
    kit: MessagingKit, settings: Settings, runtime: ServiceRuntime
) -> None:
    values = [(f"o-{i % 3}", b'{"broken": ' + str(i).encode()) for i in range(9)]
    await kit.processor().process(records(kit.harness.input_topic, values))
    await runtime.relay.drain()

    got = [
        item
        async for item in read_topic(
            settings.kafka_bootstrap_servers, kit.harness.dead_letter_topic
        )
    ]
    expected = await read_partitions(
        settings.kafka_bootstrap_servers, kit.harness.dead_letter_topic
    )
    assert len(expected) == 9
    assert sorted(got) == sorted((r.partition, r.offset, r.value) for r in expected)
    offsets = sorted(parse_event(v).data.origin.offset for _, _, v in got)  # type: ignore[union-attr]
    assert offsets == list(range(9))

    assert [
        item
        async for item in read_topic(settings.kafka_bootstrap_servers, kit.harness.output_topic)
    ] == []
    assert [
        item
        async for item in read_topic(
            settings.kafka_bootstrap_servers, f"{kit.harness.output_topic}.missing"
        )
    ] == []


async def test_replay_republishes_to_the_origin_and_the_fixed_consumer_applies_it(
    kit: MessagingKit,
    settings: Settings,
    runtime: ServiceRuntime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    paid = order_paid(DIGIT_ORDER, event_id="e-paid")
    shipped = order_shipped(DIGIT_ORDER, event_id="e-shipped", tracking_no="SF1234567890123")
    kit.harness.faults[DIGIT_ORDER] = ValueError("a bug in the handler")
    batch = records(
        kit.harness.input_topic,
        [
            (DIGIT_ORDER, encode(paid)),
            (DIGIT_ORDER, encode(shipped)),
            ("o-9", b"not json at all"),
        ],
        partition=1,
        start=7,
    )
    await kit.processor().process(batch)
    await runtime.relay.drain()
    assert await kit.effect_counts() == {}

    assert await list_dead_letters(settings, kit.harness.name, None, 100) == 0
    listed = capsys.readouterr()
    assert "3 dead letter(s)" in listed.err
    assert f"{kit.harness.input_topic}/1@9  malformed_json" in listed.out

    # The bug is fixed; replay the handler errors only. order.paid carries the buyer's contact
    # data, masked in its dead letter: replayed, it would pass the mask off as the buyer's.
    del kit.harness.faults[DIGIT_ORDER]
    assert (
        await replay_dead_letters(settings, kit.harness.name, "handler_error", 100, kit.clock) == 0
    )
    output = capsys.readouterr()
    assert output.out.count("not replayed") == 1
    assert (
        f"not replayed {kit.harness.input_topic}/1@7: order.paid carries the buyer's" in output.out
    )
    assert "1 replayed, 0 skipped (truncated), 1 refused" in output.err
    replayed = await read_partitions(bootstrap, kit.harness.input_topic)
    assert len(replayed) == 1
    for record in replayed:
        assert record.key == DIGIT_ORDER.encode()
        assert header(record, "content-type") == CONTENT_TYPE.encode()
    # The replayed event is the original one.
    assert parse_event(replayed[0].value).model_dump(mode="json") == parse_event(
        encode(shipped)
    ).model_dump(mode="json")

    # Consumed again (as the runtime would), the replayed event is applied once.
    again = records(kit.harness.input_topic, [(DIGIT_ORDER, replayed[0].value)], start=100)
    await kit.processor().process(again)
    await kit.processor().process(again)
    assert await kit.effect_counts() == {"e-shipped": 1}

    # Dead letters are never lost by a replay: the topic still has all three.
    letters = [
        parse_event(v).data
        async for _, _, v in read_topic(bootstrap, kit.harness.dead_letter_topic)
    ]
    assert all(isinstance(d, DeadLettered) for d in letters)
    assert sorted(d.reason for d in letters) == [  # type: ignore[union-attr]
        "handler_error",
        "handler_error",
        "malformed_json",
    ]


async def test_a_copy_too_large_to_keep_is_named_so_the_platform_can_send_it_again(
    kit: MessagingKit,
    settings: Settings,
    runtime: ServiceRuntime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    huge = b'{"broken": "' + b"x" * (300 * 1024) + b'"}'
    await kit.processor().process(
        records(kit.harness.input_topic, [("o-huge", huge)], partition=2, start=3)
    )
    await runtime.relay.drain()

    assert await replay_dead_letters(settings, kit.harness.name, None, 100, kit.clock) == 0
    output = capsys.readouterr()
    assert f"not replayed {kit.harness.input_topic}/2@3: its value was truncated" in output.out
    assert "0 replayed, 1 skipped (truncated), 0 refused" in output.err
    assert await read_partitions(settings.kafka_bootstrap_servers, kit.harness.input_topic) == []


async def test_a_replay_the_broker_refuses_stops_there_in_one_line(
    kit: MessagingKit,
    settings: Settings,
    runtime: ServiceRuntime,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import MessageSizeTooLargeError

    kit.harness.faults["o-1"] = ValueError("a bug in the handler")
    kit.harness.faults["o-2"] = ValueError("a bug in the handler")
    events = [
        ("o-1", encode(order_shipped("o-1", event_id="e-1"))),
        ("o-2", encode(order_shipped("o-2", event_id="e-2"))),
    ]
    await kit.processor().process(records(kit.harness.input_topic, events, partition=0))
    await runtime.relay.drain()
    capsys.readouterr()

    async def refused(self, topic, value=None, key=None, **kwargs):  # type: ignore[no-untyped-def]
        raise MessageSizeTooLargeError()

    monkeypatch.setattr(AIOKafkaProducer, "send_and_wait", refused)
    code = await replay_dead_letters(settings, kit.harness.name, None, 100, kit.clock)
    output = capsys.readouterr()
    assert code == 1
    assert output.out == ""
    assert output.err.strip().splitlines() == [
        f"aftersales: the broker refused the replay of {kit.harness.input_topic}/0@0 "
        "(MessageSizeTooLargeError); 0 replayed before it, none after it"
    ]


async def test_a_console_replay_the_broker_refuses_says_so_in_its_answer(
    kit: MessagingKit,
    settings: Settings,
    runtime: ServiceRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The console replays one dead letter through the read API (`replay_one`): a refusal of
    the broker is its answer, not a server error."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import MessageSizeTooLargeError

    kit.harness.faults["o-1"] = ValueError("a bug in the handler")
    events = [("o-1", encode(order_shipped("o-1", event_id="e-1")))]
    await kit.processor().process(records(kit.harness.input_topic, events, partition=0))
    await runtime.relay.drain()
    letters = dead_letters_at(settings, kit.harness.name, 10)
    [(partition, offset, _)] = [letter async for letter in letters]

    async def refused(self, topic, value=None, key=None, **kwargs):  # type: ignore[no-untyped-def]
        raise MessageSizeTooLargeError()

    monkeypatch.setattr(AIOKafkaProducer, "send_and_wait", refused)
    why = await replay_one(settings, kit.harness.name, partition, offset, kit.clock.now())
    assert why == "the broker refused it (MessageSizeTooLargeError); have it sent again"
