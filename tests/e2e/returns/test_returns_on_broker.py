"""The returns service end to end: CloudEvents published to the real broker, the running
service (consumer, database, outbox relay, timer scheduler) and its output topics read back.

One runtime serves the module (restarted where a test needs it); every test keeps to its own
order ids. The signature-wait test moves the shared ManualClock, so it comes last.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from aftersales_dev.events import unique
from services.returns import tables
from shared.clock import ManualClock
from shared.contracts import deterministic_id, topics
from shared.contracts.ids import refund_id
from shared.messaging.relay import CONTENT_TYPE
from shared.settings import Settings
from tests.polling import eventually

from .conftest import GROUP, Outputs, Platform, Service
from .events import (
    order_paid,
    outbound_signed,
    quality_claim,
    return_requested,
    return_reviewed,
    return_shipped,
    return_signed,
)

H = timedelta(hours=1)
D = timedelta(days=1)
DEAD_LETTERS = "aftersales.deadletter.returns"


def when(text_: str) -> datetime:
    return datetime.fromisoformat(text_)


def approved_flow(o: str, r: str, now: datetime) -> list[dict]:
    """Order paid 4 days ago and signed for 2 days ago; one of two sweaters asked back now."""
    return [
        order_paid(o, at=now - 4 * D),
        outbound_signed(o, at=now - 2 * D),
        return_requested(o, r, at=now),
        return_shipped(o, r, at=now),
    ]


async def second_refund(
    platform: Platform, outputs: Outputs, o: str, now: datetime
) -> tuple[str, dict]:
    """A later return of the order's other unit, used as a marker: its outputs are published
    after anything the service derived from the order's earlier records (same partitions,
    one outbox in commit order), so once they are on the topics no late duplicate can follow."""
    r2 = unique("R2")
    await platform.publish(return_requested(o, r2, at=now), return_signed(o, r2, at=now))
    [marker] = await outputs.wait(o, "refund.requested", where=lambda e: e.data["case"]["id"] == r2)
    await outputs.wait(o, "return.completed", where=lambda e: e.data["return_id"] == r2)
    return r2, marker.data


def decisions_of(outputs: Outputs, o: str, r: str, event_type: str) -> list:
    return [e for e in outputs.of(o, event_type) if e.data["return_id"] == r]


def refunds_of(outputs: Outputs, o: str, r: str | None = None) -> list:
    """Refunds of the order's returns (of one return when `r` is given)."""
    return [
        e
        for e in outputs.of(o, "refund.requested")
        if e.data["case"]["type"] == "return" and r in (None, e.data["case"]["id"])
    ]


async def test_full_return_flow_reaches_finance(
    service: Service, platform: Platform, outputs: Outputs, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    now = clock.now()
    await platform.publish(*approved_flow(o, r, now), return_signed(o, r, at=now))

    [refund] = await outputs.wait(o, "refund.requested")
    data = refund.data
    assert data["refund_id"] == refund_id("return", r)
    assert refund.event["id"] == deterministic_id("refund.requested", data["refund_id"])
    assert data["order_id"] == o and data["customer_id"] == "C-e2e"
    assert data["case"] == {"type": "return", "id": r}
    assert data["amount"] == 9950  # one of two sweaters paid 19900 together
    assert data["breakdown"] == [{"kind": "goods", "amount": 9950}]
    assert "payments" not in data  # the refund ledger splits over alipay and coupon
    assert data["requested_by"] == "returns"
    assert data["return_shipping_payer"] == "buyer"
    assert when(data["due_by"]) == now + 24 * H
    assert refund.record.topic == topics.REFUND_REQUESTS
    assert refund.record.key == o.encode()
    assert dict(refund.record.headers)["content-type"] == CONTENT_TYPE.encode()
    assert refund.event["correlationid"] == r

    [approved] = await outputs.wait(o, "return.approved")
    assert approved.data["refund_estimate"] == 9950
    [completed] = await outputs.wait(o, "return.completed")
    assert completed.data["rule"] == "eligible"
    assert outputs.of(o, "sla.breached") == []


async def test_duplicated_and_interleaved_deliveries_give_one_refund(
    service: Service, platform: Platform, outputs: Outputs, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    now = clock.now()
    paid, signed, requested, shipped = approved_flow(o, r, now)
    back = return_signed(o, r, at=now)
    await platform.publish(
        paid, signed, paid, requested, signed, requested, paid, shipped,
        back, requested, back, shipped, back, signed,
    )  # fmt: skip
    [refund] = await outputs.wait(o, "refund.requested")
    assert refund.data["amount"] == 9950

    r2, marker = await second_refund(platform, outputs, o, now)
    assert marker["amount"] == 19900 - 9950  # the other unit: together exactly what was paid
    assert marker["refund_id"] == refund_id("return", r2) != refund.data["refund_id"]
    assert len(refunds_of(outputs, o, r)) == 1
    assert len(refunds_of(outputs, o)) == 2
    assert len(decisions_of(outputs, o, r, "return.approved")) == 1
    assert len(decisions_of(outputs, o, r, "return.completed")) == 1


async def test_malformed_events_are_dead_lettered_and_the_partition_goes_on(
    service: Service, platform: Platform, outputs: Outputs, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    now = clock.now()
    naive = return_requested(o, unique("R"), at=now)
    naive["data"]["requested_at"] = "2026-03-02T10:00:00"  # no offset
    await platform.publish(order_paid(o, at=now - 4 * D), outbound_signed(o, at=now - D))
    cut, bad_time, good = await platform.publish(
        (topics.RETURNS, o, b'{"specversion": "1.0", "type": "return.requested", "data": {'),
        naive,
        return_requested(o, r, at=now),
    )
    assert cut.partition == bad_time.partition == good.partition  # one key, one partition

    await outputs.wait(o, "return.approved")  # the good event behind the poison went through
    letters = await outputs.wait(o, "event.deadlettered", count=2)
    assert len(letters) == 2
    by_reason = {letter.data["reason"]: letter for letter in letters}
    assert set(by_reason) == {"malformed_json", "naive_timestamp"}
    for reason, sent in (("malformed_json", cut), ("naive_timestamp", bad_time)):
        letter = by_reason[reason]
        assert letter.record.topic == DEAD_LETTERS
        assert letter.data["origin"] == {
            "topic": topics.RETURNS,
            "partition": sent.partition,
            "offset": sent.offset,
        }
        assert letter.data["key"] == o
        assert letter.data["detail"]
    assert "requested_at" in by_reason["naive_timestamp"].data["detail"]


async def test_restart_mid_flow_loses_nothing(
    service: Service, platform: Platform, outputs: Outputs, clock: ManualClock
):
    o, r = unique("O"), unique("R")
    now = clock.now()
    await platform.publish(*approved_flow(o, r, now))
    await outputs.wait(o, "return.approved")

    await service.stop()
    assert outputs.of(o, "refund.requested") == []
    # The warehouse signs while the service is down.
    await platform.publish(return_signed(o, r, at=now + H))
    await service.start()

    [refund] = await outputs.wait(o, "refund.requested")
    assert refund.data["amount"] == 9950
    assert when(refund.data["due_by"]) == now + 25 * H
    await second_refund(platform, outputs, o, now)
    assert len(refunds_of(outputs, o, r)) == 1
    assert len(decisions_of(outputs, o, r, "return.approved")) == 1
    assert len(decisions_of(outputs, o, r, "return.completed")) == 1


async def test_crash_between_database_commit_and_offset_commit_refunds_once(
    service: Service,
    platform: Platform,
    outputs: Outputs,
    clock: ManualClock,
    settings: Settings,
):
    """The batch committed in the database, then the process died before its offsets were
    committed: the next instance fetches those records again (here: the group's offsets are
    rewound to before the flow) and must not refund twice."""
    o, r = unique("O"), unique("R")
    now = clock.now()
    sent = await platform.publish(*approved_flow(o, r, now), return_signed(o, r, at=now))
    [refund] = await outputs.wait(o, "refund.requested")
    await outputs.wait(o, "return.completed")

    await service.stop()
    first = {}
    for meta in sent:
        tp = TopicPartition(meta.topic, meta.partition)
        first[tp] = min(first.get(tp, meta.offset), meta.offset)
    await rewind_group(settings.kafka_bootstrap_servers, first)
    duplicates_before = duplicate_count()

    await service.start()
    r2, marker = await second_refund(platform, outputs, o, now)
    assert marker["amount"] == 19900 - 9950
    # Every record of the flow was fetched and recognised again...
    await eventually(
        lambda: duplicate_count() - duplicates_before >= len(sent), what="the flow re-fetched"
    )
    # ...and nothing came of it: one refund on the topic, one in the outbox.
    assert len(refunds_of(outputs, o, r)) == 1
    assert refunds_of(outputs, o, r)[0].event["id"] == refund.event["id"]
    assert len(refunds_of(outputs, o, r2)) == 1
    assert len(decisions_of(outputs, o, r, "return.completed")) == 1
    outbox = tables.messaging.outbox
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.payload).where(
                    outbox.c.event_type == "refund.requested", outbox.c.key == o
                )
            )
            cases = sorted(json.loads(payload)["data"]["case"]["id"] for payload in rows.scalars())
    finally:
        await engine.dispose()
    assert cases == sorted([r, r2])  # once each


async def test_a_review_dated_after_its_deadline_breaches_before_the_timer_fires(
    service: Service, platform: Platform, outputs: Outputs, clock: ManualClock
):
    """Signed for 20 days ago: past the 15-day quality window, the claim goes to review, due
    12 working hours from now. The decision, dated three days on, arrives before the clock
    reaches the deadline."""
    o, r = unique("O"), unique("R")
    now = clock.now()
    await platform.publish(
        order_paid(o, at=now - 22 * D),
        outbound_signed(o, at=now - 20 * D),
        quality_claim(o, r, at=now),
    )
    await outputs.wait(o, "return.pending", where=lambda e: e.data["waiting_for"] == "review")
    await platform.publish(return_reviewed(o, r, at=now + 3 * D))
    [approved] = await outputs.wait(o, "return.approved")
    assert approved.data["rule"] == "reviewed_approve"
    [breach] = await outputs.wait(o, "sla.breached")
    assert breach.data["sla"] == "return_review"
    assert breach.data["case"] == {"type": "return", "id": r}
    assert now < when(breach.data["due_at"]) < now + 3 * D


async def test_a_request_processed_before_its_order_in_a_backlog_is_decided_on_the_order(
    service: Service, platform: Platform, outputs: Outputs, clock: ManualClock
):
    """A backlog: the request was made three days ago, past its 48-hour wait for the order,
    and the service reaches it before the order.paid on the other topic. The catch-up rule
    (shared.catchup) gives the order a grace: the request is decided on it, not rejected."""
    o, r = unique("O"), unique("R")
    now = clock.now()
    await platform.publish(return_requested(o, r, at=now - 3 * D))
    [pending] = await outputs.wait(o, "return.pending")
    assert pending.data["rule"] == "unknown_order"
    await platform.publish(order_paid(o, at=now - 6 * D), outbound_signed(o, at=now - 5 * D))
    [approved] = await outputs.wait(o, "return.approved")
    assert approved.data["rule"] == "eligible"
    assert outputs.of(o, "return.rejected") == []


async def test_signature_wait_ends_on_the_running_scheduler(
    service: Service, platform: Platform, outputs: Outputs, clock: ManualClock
):
    """Runs last: it moves the module's clock two days on."""
    o, r = unique("O"), unique("R")
    requested_at = clock.now()
    await platform.publish(
        order_paid(o, at=requested_at - D), return_requested(o, r, at=requested_at)
    )
    # Two topics, no order between them: the request may wait for the order first.
    [pending] = await outputs.wait(
        o, "return.pending", where=lambda e: e.data["rule"] == "not_delivered"
    )
    assert pending.data["waiting_for"] == "signature"

    clock.advance(48 * H + timedelta(seconds=1))
    [rejected] = await outputs.wait(o, "return.rejected")
    assert rejected.data["rule"] == "not_delivered"
    assert rejected.data["return_id"] == r
    assert when(rejected.data["decided_at"]) == clock.now()
    assert outputs.of(o, "refund.requested") == []


# --- helpers -----------------------------------------------------------------------------


def duplicate_count() -> float:
    total = 0.0
    for event_type in ("order.paid", "parcel.signed", "return.requested", "return.shipped"):
        value = REGISTRY.get_sample_value(
            "aftersales_events_total",
            {"service": "returns", "type": event_type, "outcome": "duplicate"},
        )
        total += value or 0.0
    return total


async def rewind_group(bootstrap: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit earlier offsets for the service's (now empty) consumer group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await eventually(
            lambda: admin.list_consumer_group_offsets(GROUP, partitions=list(offsets)),
            what="rewound offsets",
        )
    finally:
        await admin.close()
    assert {tp: meta.offset for tp, meta in committed.items()} == offsets
