"""The bad-input corpus (`tests/e2e/bad_inputs.py`) fed to all four services at once, on the
real broker and a fresh database with every service's migrations.

The services run as `aftersales run all` wires them (`aftersales.registry.definition` +
`ServiceRuntime`, one ManualClock), the notifier with an encryption key and a webhook gateway
(a local HTTP server recording what it is sent). Proven:

* every invalid message lands in `aftersales.deadletter.<service>` of each service that reads
  its topic, once, with the reason code and its origin (topic, partition, offset), and in no
  other service's;
* the services keep running: a valid event sent after the corpus on the same partition is
  processed by each of them;
* nothing else changes: no state row, inbox row, timer or output (other than the dead letters)
  mentions any of the corpus's keys;
* valid events carrying SQL, template and JNDI injection strings in free text (titles, the
  buyer's name, complaint descriptions and ids, an agent's note, a survey comment, notification
  params) are processed normally; the strings are stored and emitted verbatim and the notifier's
  templates show them as text, never evaluate them; every table still exists afterwards.

The broker is shared with other tests: every id is unique to this run, outputs are read by
direct partition assignment from the beginning and filtered by key, and the services' consumer
groups are moved to the end of their input topics before they start.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka.structs import RecordMetadata
from prometheus_client import REGISTRY
from sqlalchemy import text

from services.notifier.contacts import ContactBook, notifier_cipher
from shared.contracts import topics
from shared.db import session_factory
from tests.polling import eventually

from .bad_inputs import (
    EVALUATED_MARKERS,
    HOSTILE_TEXT,
    SQL_INJECTION,
    SQL_INJECTION_2,
    TEMPLATE_INJECTIONS,
    complaint_opened,
    complaint_resolved,
    corpus,
    hostile,
    hostile_keys,
    notification_requested,
    order_paid,
    order_shipped,
    parcel_signed,
    return_requested,
    return_reviewed,
    return_shipped,
    survey_answered,
)
from .corpus_system import (
    DEAD_LETTER_TOPICS,
    NAMES,
    T0,
    D,
    H,
    System,
    Webhook,
    outbox_rows_mentioning,
    rows_mentioning,
    running_system,
    stored,
)


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
async def system(
    database_url: str, kafka_bootstrap: str, webhook: Webhook
) -> AsyncIterator[System]:
    async with running_system(database_url, kafka_bootstrap, webhook) as system:
        yield system


# --- the corpus -------------------------------------------------------------------------------


async def test_every_bad_input_is_dead_lettered_by_each_reader_and_changes_nothing(
    system: System,
) -> None:
    started = time.monotonic()
    prefix = f"bad-{system.run}-"
    items = corpus(system.run, T0)
    origins: dict[str, RecordMetadata] = {}
    for item in items:
        origins[item.key] = await system.send(item.topic, item.key, item.value)

    # The services keep running: a valid order after the corpus, on the same partition, is
    # processed by every service (all four read `orders`).
    sentinel = f"ok-{system.run}-sentinel"
    await system.publish(topics.ORDERS, order_paid(sentinel, sentinel, at=T0 - D))
    for service, table, column in (
        ("returns", "orders", "order_id"),
        ("complaints", "orders", "order_id"),
        ("followup", "orders", "order_id"),
        ("notifier", "contacts", "customer_id"),
    ):
        await eventually(
            lambda s=service, t=table, c=column: stored(system, s, t, c, sentinel),
            what=f"{service} to process the order sent after the corpus",
        )

    expected = {
        (service, item.key): item for item in items for service in system.readers_of(item.topic)
    }
    assert {s for s, _ in expected} == set(NAMES)  # the corpus reaches every service

    def letters() -> dict[tuple[str, str], list[dict[str, Any]]]:
        found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for record, event in system.reader.keyed(prefix):
            if record.topic in DEAD_LETTER_TOPICS.values():
                service = record.topic.rsplit(".", 1)[1]
                found.setdefault((service, record.key.decode()), {})[event["id"]] = event
        return {k: list(v.values()) for k, v in found.items()}

    await eventually(
        lambda: set(expected) <= set(letters()) or None,
        what="a dead letter from each reader of each bad input",
    )
    await asyncio.sleep(1.0)  # anything else the corpus caused has had time to come out
    got = letters()
    assert set(got) == set(expected), set(got) ^ set(expected)  # no one else dead-letters
    for (service, key), item in expected.items():
        [letter] = got[(service, key)]  # once (one id, however often it is published)
        data = letter["data"]
        origin = origins[key]
        assert data["service"] == service
        assert (data["reason"], item.name) == (item.reason, item.name), data["detail"]
        assert data["origin"] == {
            "topic": item.topic,
            "partition": origin.partition,
            "offset": origin.offset,
        }
        assert data["key"] == key and data["detail"]
        assert letter["type"] == "event.deadlettered"
        if item.reason in ("oversized", "invalid_utf8"):
            assert data["value_truncated"] is True and data["value"] == ""
        elif item.truncated:  # cut so that the whole dead-letter record fits 1 MiB
            assert data["value_truncated"] is True and data["value"]
        elif item.value:
            assert data["value_truncated"] is False and data["value"]

    # Nothing else: no output but the dead letters, no state, inbox or timer row.
    for record, event in system.reader.keyed(prefix):
        if (record.topic, record.partition, record.offset) in system.sent:
            continue  # what this test itself sent to the services' topics
        assert record.topic in DEAD_LETTER_TOPICS.values(), (record.topic, event["type"])
    assert await rows_mentioning(system, prefix) == {}
    assert {t for _, t in await outbox_rows_mentioning(system, prefix)} == {"event.deadlettered"}
    print(
        f"corpus of {len(items)} inputs, {len(expected)} dead letters checked in "
        f"{time.monotonic() - started:.1f}s"
    )


# --- hostile records never stop the flow ------------------------------------------------------


def failed_batches() -> dict[tuple[str, str], float]:
    """The gauge aftersales_consecutive_failed_batches, by (service, sqlstate), when not 0."""
    found = {}
    for metric in REGISTRY.collect():
        if metric.name == "aftersales_consecutive_failed_batches":
            for sample in metric.samples:
                if sample.value and sample.labels["service"] in NAMES:
                    found[(sample.labels["service"], sample.labels["sqlstate"])] = sample.value
    return found


def valid_on(topic: str, key: str) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """A valid event for `topic` under `key`, and where its readers store it."""
    if topic == topics.COMPLAINTS:
        value = complaint_opened(key, f"{key}-c", key, at=T0 - H, description="ok")
        return value, [("complaints", "complaints", "complaint_id", f"{key}-c")]
    if topic == topics.RETURNS:  # its order is unknown: the request waits for it
        value = return_requested(key, f"{key}-r", key, at=T0 - H)
        return value, [("returns", "return_requests", "return_id", f"{key}-r")]
    value = order_paid(key, key, at=T0 - D)
    return value, [
        ("returns", "orders", "order_id", key),
        ("complaints", "orders", "order_id", key),
        ("followup", "orders", "order_id", key),
        ("notifier", "contacts", "customer_id", key),
    ]


async def test_a_good_flow_right_after_each_hostile_record_is_processed(system: System) -> None:
    """Each hostile record, then at once a valid event on the same key (or, for a hostile key,
    on the same partition): the valid one is processed within seconds by every service that
    reads the topic, the hostile one is dead-lettered once by each with its reason, and no
    batch keeps failing."""
    started = time.monotonic()
    run = f"{system.run}h"
    sent: list[tuple[RecordMetadata, str, str]] = []  # (origin, topic, reason)
    good: list[tuple[str, str, str, str]] = []  # (service, table, column, value) to be stored
    for item in hostile(run, T0):
        origin = await system.send(item.topic, item.key, item.value)
        sent.append((origin, item.topic, item.reason))
        value, stored_as = valid_on(item.topic, item.key)
        await system.send(item.topic, item.key, json.dumps(value).encode())
        good += stored_as
    for bad_key in hostile_keys(run, T0):
        origin = await system.send(topics.ORDERS, bad_key.key, bad_key.value)
        sent.append((origin, topics.ORDERS, bad_key.reason))
        value, stored_as = valid_on(topics.ORDERS, f"ok-{run}-{bad_key.name}")
        await system.publish(topics.ORDERS, value)
        good += stored_as

    for service, table, column, value in good:
        await eventually(
            lambda s=service, t=table, c=column, v=value: stored(system, s, t, c, v),
            what=f"{service} to process {value}, sent right after a hostile one",
        )

    def letters() -> dict[tuple[str, str, int, int], set[tuple[str, str]]]:
        """(service, topic, partition, offset) -> {(letter id, reason)}."""
        found: dict[tuple[str, str, int, int], set[tuple[str, str]]] = {}
        for record in list(system.reader.records):
            if record.topic not in DEAD_LETTER_TOPICS.values():
                continue
            letter = json.loads(record.value)
            origin = letter["data"]["origin"]
            where = (letter["data"]["service"], origin["topic"], origin["partition"])
            found.setdefault((*where, origin["offset"]), set()).add(
                (letter["id"], letter["data"]["reason"])
            )
        return found

    expected = {
        (service, topic, origin.partition, origin.offset): reason
        for origin, topic, reason in sent
        for service in system.readers_of(topic)
    }
    await eventually(
        lambda: set(expected) <= set(letters()) or None,
        what="a dead letter from each reader of each hostile record",
    )
    got = letters()
    for where, reason in expected.items():
        [(_, given)] = got[where]  # once, with its reason
        assert given == reason, where
    assert failed_batches() == {}  # nothing loops
    print(
        f"{len(sent)} hostile records and the flows after them in {time.monotonic() - started:.1f}s"
    )


# --- hostile text in valid events -------------------------------------------------------------


async def test_hostile_free_text_is_processed_verbatim_and_never_evaluated(
    system: System,
) -> None:
    started = time.monotonic()
    run = system.run
    title = f"毛衣 {HOSTILE_TEXT}"
    name = f"{TEMPLATE_INJECTIONS[2]} {SQL_INJECTION_2}"
    # A: a refused return whose message names the product by its (hostile) title.
    o_a, c_a, r_a = f"ok-{run}-oA", f"ok-{run}-cA", f"ok-{run}-rA"
    # C: a complaint with a hostile description and id.
    o_c, c_c = f"ok-{run}-oC", f"ok-{run}-cC"
    complaint_id = f"ok-{run}-k {TEMPLATE_INJECTIONS[0]}{TEMPLATE_INJECTIONS[1]}"
    # E: a late quality claim: reviewed with a hostile note, refunded, then a hostile survey
    # comment on its satisfaction callback.
    o_e, c_e, r_e = f"ok-{run}-oE", f"ok-{run}-cE", f"ok-{run}-rE"

    await system.publish(
        topics.ORDERS,
        order_paid(
            o_a, c_a, at=T0 - 5 * D, titles=(title,), category="fresh_perishable", name=name
        ),
        order_shipped(o_a, at=T0 - 4 * D),
        order_paid(o_c, c_c, at=T0 - 5 * D, titles=(title,), name=name),
        order_shipped(o_c, at=T0 - 4 * D),
        order_paid(o_e, c_e, at=T0 - 25 * D, titles=(title,)),
        order_shipped(o_e, at=T0 - 24 * D),
    )
    await system.publish(
        topics.SIGNATURES,
        parcel_signed(o_a, at=T0 - 2 * D),
        parcel_signed(o_e, at=T0 - 20 * D),
    )
    for customer in (c_a, c_c, c_e):
        await eventually(
            lambda c=customer: stored(system, "notifier", "contacts", "customer_id", c),
            what="the notifier to know the buyer",
        )
    for order in (o_a, o_e):
        await eventually(
            lambda o=order: stored(system, "returns", "outbound_signatures", "order_id", o),
            what="the returns service to know the delivery",
        )

    await system.publish(
        topics.RETURNS,
        return_requested(o_a, r_a, c_a, at=T0 - H),
        return_requested(
            o_e, r_e, c_e, at=T0 - H, reason="quality_issue", evidence=["https://img/1.jpg"]
        ),
    )
    await system.publish(
        topics.COMPLAINTS,
        complaint_opened(o_c, complaint_id, c_c, at=T0 - H, description=HOSTILE_TEXT),
        complaint_resolved(o_c, complaint_id, at=T0 - H / 2),
    )
    await system.publish(
        topics.NOTIFICATIONS,
        notification_requested(
            f"ok-{run}-n",
            c_a,
            o_a,
            at=T0,
            template="complaint.escalated",
            params={"complaint_id": HOSTILE_TEXT, "reason": SQL_INJECTION},
        ),
    )
    reader = system.reader
    [rejected] = await eventually(
        lambda: reader.events(topics.RETURN_DECISIONS, "return.rejected", return_id=r_a),
        what="the return refused for its category",
    )
    assert rejected["data"]["rule"] == "excluded_category"
    assert title in rejected["data"]["message"] and title in rejected["data"]["message_en"]
    await eventually(
        lambda: reader.events(topics.RETURN_DECISIONS, "return.pending", return_id=r_e),
        what="the late quality claim to wait for review",
    )
    await system.publish(
        topics.RETURNS,
        return_reviewed(o_e, r_e, at=T0, note=HOSTILE_TEXT),
        return_shipped(o_e, r_e, at=T0 - 2 * H, fee=1000),
    )

    async def freight_known() -> bool:
        fee = await system.scalar(
            "SELECT state->>'return_shipping_fee_paid' FROM returns.return_requests "
            "WHERE return_id = :r",
            r=r_e,
        )
        return fee == "1000"

    # (signatures are another topic: signed first, the freight would be refunded on its own)
    await eventually(freight_known, what="the return freight to be known")
    await system.publish(topics.SIGNATURES, parcel_signed(o_e, at=T0, return_id=r_e))
    [refund] = await eventually(
        lambda: reader.events(topics.REFUND_REQUESTS, "refund.requested", order_id=o_e),
        what="the refund the reviewed return asks for",
    )
    assert refund["data"]["amount"] == 5000 + 1000  # the goods and the return freight
    assert refund["data"]["breakdown"] == [
        {"kind": "goods", "amount": 5000},
        {"kind": "return_shipping", "amount": 1000},
    ]
    [scheduled] = await eventually(
        lambda: reader.events(topics.FOLLOWUPS, "callback.scheduled", customer_id=c_e),
        what="the satisfaction callback",
    )

    # A day later the callback goes out; the buyer answers with a hostile comment.
    system.clock.advance(25 * H)
    callback_id = scheduled["data"]["callback_id"]
    await eventually(
        lambda: reader.events(topics.FOLLOWUPS, "callback.sent", callback_id=callback_id),
        what="the callback to be sent",
    )
    await system.publish(
        topics.SURVEYS, survey_answered(callback_id, c_e, at=T0 + 25 * H, comment=HOSTILE_TEXT)
    )
    await eventually(
        lambda: reader.events(topics.FOLLOWUPS, "satisfaction.recorded", callback_id=callback_id),
        what="the answer to be recorded",
    )

    # Rendered by the templates: the hostile text shows as text, nothing is evaluated.
    def sent(customer: str, template: str) -> list[dict[str, Any]]:
        return [b for b in system.webhook.of(customer) if b["template"] == template]

    [refusal] = await eventually(lambda: sent(c_a, "return.rejected"), what="the refusal")
    assert title in refusal["text"]
    [escalated] = await eventually(lambda: sent(c_a, "complaint.escalated"), what="the notice")
    assert HOSTILE_TEXT in escalated["text"]
    [acknowledged] = await eventually(lambda: sent(c_c, "complaint.acknowledged"), what="ack")
    assert complaint_id in acknowledged["text"]
    await eventually(lambda: sent(c_c, "complaint.compensated"), what="the compensation notice")
    await eventually(lambda: sent(c_e, "return.completed"), what="the completion notice")
    await eventually(lambda: sent(c_e, "survey.invitation"), what="the survey invitation")
    bodies = [b for c in (c_a, c_c, c_e) for b in system.webhook.of(c)]
    for body in bodies:
        for marker in EVALUATED_MARKERS:
            assert marker not in body["title"] + body["text"], (marker, body)

    # Stored verbatim.
    async with system.engines["returns"].connect() as conn:
        order = await conn.scalar(
            text("SELECT state FROM returns.orders WHERE order_id = :o"), {"o": o_a}
        )
        note = await conn.scalar(
            text("SELECT state->>'review_note' FROM returns.return_requests WHERE return_id = :r"),
            {"r": r_e},
        )
        comment = await conn.scalar(
            text("SELECT state->>'comment' FROM followup.callbacks WHERE callback_id = :c"),
            {"c": callback_id},
        )
        params = await conn.scalar(
            text("SELECT params FROM notifier.deliveries WHERE delivery_id = :d"),
            {"d": f"ok-{run}-n"},
        )
    assert order["lines"][0]["title"] == title
    assert note == HOSTILE_TEXT
    assert comment == HOSTILE_TEXT
    assert params == {"complaint_id": HOSTILE_TEXT, "reason": SQL_INJECTION}
    async with session_factory(system.engines["notifier"])() as session:
        contact = await ContactBook(session, notifier_cipher(system.settings)).get(c_a, now=T0)
    assert contact is not None and contact.name == name

    # Every table is still there, and no valid event was parked.
    for d in system.definitions.values():
        present = {
            row.table_name
            for row in await system.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s",
                s=d.schema,
            )
        }
        assert {t.name for t in d.metadata.sorted_tables} <= present, d.schema
    assert await system.scalar("SELECT count(*) FROM returns.inbox") > 0
    parked = [
        (record.topic, event["data"]["reason"], event["data"]["detail"])
        for record, event in reader.keyed(f"ok-{run}-")
        if record.topic in DEAD_LETTER_TOPICS.values()
    ]
    assert parked == []
    print(f"hostile text through four services in {time.monotonic() - started:.1f}s")
