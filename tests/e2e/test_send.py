"""`aftersales send` as a newcomer uses it, a subprocess on the real broker: the README's
walk-through (docs/examples/my-return.py piped into it) gets its refund from the running
services; events land on their type's topic under the right key, as given; what a service would
dead-letter is refused with its reason, one line, and then nothing is sent."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from aftersales.commands.serving import serve
from aftersales_dev.devenv import free_port, temporary_database
from aftersales_dev.events import cloud_event, unique
from shared.contracts import topics
from shared.migrations import upgrade
from tests.e2e.test_cli import aftersales

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "docs" / "examples" / "my-return.py"


async def send(
    kafka_bootstrap: str, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AFTERSALES_", "KAFKA_"))}
    environ.update(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_IDEMPOTENCE="false")
    environ.update(env or {})
    process = await asyncio.create_subprocess_exec(
        *aftersales(),
        "send",
        *args,
        env=environ,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def end_offsets(kafka_bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def records(kafka_bootstrap: str, topic: str, since: dict[int, int]) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in since]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, since[tp.partition])
        batch = await consumer.getmany(*partitions, timeout_ms=2000)
        return [record for got in batch.values() for record in got]
    finally:
        await consumer.stop()


def survey_answer(customer: str) -> dict:
    return cloud_event(
        "survey.answered",
        {
            "callback_id": unique("cb"),
            "customer_id": customer,
            "score": 5,
            "comment": "",
            "answered_at": "2026-03-02T10:00:00+08:00",
        },
        "2026-03-02T10:00:00+08:00",
    )


@pytest.fixture(autouse=True)
async def surveys_topic(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.messaging.runtime import ensure_topics
    from shared.settings import load_settings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    await ensure_topics(load_settings(), [topics.SURVEYS, topics.REFUNDS])


async def test_an_event_goes_to_its_type_s_topic_keyed_by_its_buyer_as_given(kafka_bootstrap):
    customer = unique("C")
    value = json.dumps(survey_answer(customer), indent=2).encode()
    before = await end_offsets(kafka_bootstrap, topics.SURVEYS)

    code, out, err = await send(kafka_bootstrap, stdin=value)

    assert (code, err) == (0, ""), err
    [line] = out.splitlines()
    assert (
        line.startswith("sent survey.answered evt-survey.answered-") and f"key {customer}" in line
    )
    [record] = await records(kafka_bootstrap, topics.SURVEYS, before)
    assert record.key == customer.encode() and record.value == value
    assert ("content-type", b"application/cloudevents+json") in list(record.headers)


async def test_an_invalid_event_is_refused_with_its_reason_and_nothing_is_sent(
    kafka_bootstrap, tmp_path
):
    good = survey_answer(unique("C"))
    bad = survey_answer(unique("C"))
    bad["data"]["score"] = 9
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    before = await end_offsets(kafka_bootstrap, topics.SURVEYS)

    code, out, err = await send(kafka_bootstrap, str(path))

    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith(f"aftersales: event 2 of {path} is not a valid event (")
    assert "data.score" in line and line.endswith("nothing was sent")
    assert await end_offsets(kafka_bootstrap, topics.SURVEYS) == before


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        (b"", "not a valid event (empty"),
        (b'{"specversion": "1.0", "type": "return.requested", "data": ', "(malformed_json"),
        (
            json.dumps(
                cloud_event("order.refunded", {"order_id": "O-1"}, "2026-03-02T10:00:00Z")
            ).encode(),
            "(unknown_type",
        ),
        (
            json.dumps(
                cloud_event(
                    "refund.requested",
                    {"order_id": "O-1"},
                    "2026-03-02T10:00:00Z",
                    source="/shop-platform/test",
                )
            ).encode(),
            "refund.requested is published by the services, never sent by hand",
        ),
    ],
)
async def test_what_a_service_would_dead_letter_is_one_line_naming_the_reason(
    kafka_bootstrap, stdin, says
):
    code, out, err = await send(kafka_bootstrap, "-", stdin=stdin)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("aftersales: stdin") and says in line, line


async def test_an_unreadable_file_and_an_unreachable_broker_are_one_line_each(
    kafka_bootstrap, tmp_path
):
    code, _, err = await send(kafka_bootstrap, str(tmp_path / "missing.json"))
    assert code == 2
    missing = tmp_path / "missing.json"
    assert err.strip() == f"aftersales: send: cannot read {missing}: No such file or directory"

    value = json.dumps(survey_answer(unique("C"))).encode()
    code, _, err = await send("127.0.0.1:1", stdin=value)
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("aftersales: cannot reach the Kafka broker at 127.0.0.1:1"), line


@pytest.fixture
async def running(
    database_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """The returns service and the refund ledger running, as under `make run`."""
    names = ["returns", "refunds"]
    async with temporary_database(database_url, "send") as url:
        for name in names:
            await asyncio.to_thread(upgrade, name, url)
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
        monkeypatch.setenv("KAFKA_IDEMPOTENCE", "false")
        stop = asyncio.Event()
        task = asyncio.create_task(serve(names, port=free_port(), until=stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=120)


async def test_the_readme_walkthrough_sends_a_return_and_its_refund_is_issued(
    running, kafka_bootstrap
):
    example = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WALKTHROUGH),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    events, said = await example.communicate()
    order = said.decode().split()[1].rstrip(":")
    consumer = AIOKafkaConsumer(
        topics.REFUNDS, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        code, out, err = await send(kafka_bootstrap, stdin=events)
        assert (code, err) == (0, "")
        sent = out.splitlines()
        assert [line.split()[1] for line in sent] == [
            "order.paid",
            "order.shipped",
            "parcel.signed",
            "return.requested",
            "return.shipped",
            "parcel.signed",
        ]
        assert all(f"(key {order}," in line for line in sent)

        async def refund() -> dict:
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for got in batch.values():
                    for record in got:
                        event = json.loads(record.value)
                        if event["data"].get("order_id") == order:
                            return event

        issued = await asyncio.wait_for(refund(), timeout=90)
    finally:
        await consumer.stop()
    assert issued["type"] == "refund.issued"
    assert issued["data"]["case"]["type"] == "return"
    assert issued["data"]["amount"] > 0


async def test_an_event_the_broker_refuses_stops_the_send_saying_how_many_went(
    kafka_bootstrap, monkeypatch
):
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import MessageSizeTooLargeError

    from aftersales import send as sending
    from shared.settings import load_settings

    customers = [unique("C"), unique("C"), unique("C")]
    raw = "\n".join(json.dumps(survey_answer(c)) for c in customers).encode()
    outgoing = sending.check(raw, origin="stdin")
    real_send = AIOKafkaProducer.send_and_wait

    async def refuse_the_second(self, topic, value=None, key=None, **kwargs):
        if key == customers[1].encode():
            raise MessageSizeTooLargeError()
        return await real_send(self, topic, value, key=key, **kwargs)

    monkeypatch.setattr(AIOKafkaProducer, "send_and_wait", refuse_the_second)
    monkeypatch.setenv("KAFKA_IDEMPOTENCE", "false")
    before = await end_offsets(kafka_bootstrap, topics.SURVEYS)
    said: list[str] = []

    with pytest.raises(sending.BrokerRefused) as refused:
        await sending.publish(load_settings(), outgoing, said.append)

    assert str(refused.value).startswith("the broker refused survey.answered ")
    assert str(refused.value).endswith("(MessageSizeTooLargeError); 1 event(s) before it were sent")
    assert len(said) == 1 and f"key {customers[0]}" in said[0]
    sent = await records(kafka_bootstrap, topics.SURVEYS, before)
    assert [record.key for record in sent] == [customers[0].encode()]
