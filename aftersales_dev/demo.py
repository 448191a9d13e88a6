"""The demo scenario of `make run`: a return goes from request to refund, then a complaint from
opening to a compensation coupon, then a second complaint whose refund the refund ledger cuts
by what the return already refunded, in the terminal."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from aftersales_dev import events
from shared.contracts import topics
from shared.policy import Policy

CONTENT_TYPE = [("content-type", b"application/cloudevents+json")]
WATCHED = [
    topics.RETURN_DECISIONS,
    topics.REFUNDS,
    topics.FULFILMENT,
    topics.SLA,
    "aftersales.deadletter.returns",
    topics.NOTIFICATIONS,
    topics.COUPONS,
    topics.ESCALATIONS,
    "aftersales.deadletter.complaints",
    "aftersales.deadletter.refunds",
    topics.NOTIFICATION_STATUS,
]
# How long the demo goes on showing the notifier's answers once the scenarios are done.
NOTIFY_LINGER = 6.0


# The demo's events come from the shop platform's own source, with ids of their own.
PLATFORM: dict[str, Any] = {"platform": "/shop-platform/demo", "id_prefix": "demo"}


def scenario(run: str, now: datetime) -> list[tuple[str, str, str, dict[str, Any] | bytes]]:
    """(caption, topic, key, event) in the order the platform would send them."""
    order, customer = f"O-{run}", f"C-{run}"
    paid = now - timedelta(days=4)
    signed = now - timedelta(days=2)
    lines = [
        events.order_line(
            "L1",
            sku="SWEATER-M",
            title="Wool sweater",
            category="apparel",
            quantity=2,
            paid_amount=19900,
        ),
        events.order_line(
            "L2",
            sku="MOONCAKE",
            title="Fresh mooncakes",
            category="fresh_perishable",
            paid_amount=5900,
        ),
        {
            **events.order_line(
                "L3", sku="GIFT-SOCKS", title="Socks (gift)", category="apparel", paid_amount=0
            ),
            "is_gift": True,
            "stated_price": 900,
        },
    ]
    buyer = events.buyer("Demo Buyer", "13800000000", "buyer@example.com")
    r1, r2 = f"R-{run}-1", f"R-{run}-2"
    return [
        (
            "order paid: 2 sweaters, fresh mooncakes and a gift; shipped free (over 200.00)",
            topics.ORDERS,
            order,
            events.order_paid(
                order,
                customer,
                at=paid,
                lines=lines,
                customer=buyer,
                shop_id="S-demo",
                payments=[("alipay", 20000), ("coupon", 5800)],
                free_shipping_threshold=20000,
                **PLATFORM,
            ),
        ),
        (
            "order shipped",
            topics.ORDERS,
            order,
            events.order_shipped(
                order, at=paid + timedelta(hours=20), tracking_no=f"SF{run}", **PLATFORM
            ),
        ),
        (
            "buyer signed for the parcel",
            topics.SIGNATURES,
            order,
            events.parcel_signed(order, at=signed, tracking_no=f"SF{run}", **PLATFORM),
        ),
        (
            "buyer asks to return the mooncakes, no reason given (statutory exclusion)",
            topics.RETURNS,
            order,
            events.return_requested(
                order, r2, customer, at=now, lines={"L2": 1}, reason="changed_mind", **PLATFORM
            ),
        ),
        (
            "a malformed event arrives (it must be dead-lettered, not block anything)",
            topics.RETURNS,
            order,
            b'{"specversion": "1.0", "type": "return.requested", "data": ',
        ),
        (
            "buyer asks to return one sweater: size does not fit, opened for inspection",
            topics.RETURNS,
            order,
            events.return_requested(
                order,
                r1,
                customer,
                at=now,
                lines={"L1": 1},
                condition=["opened_for_inspection"],
                **PLATFORM,
            ),
        ),
        (
            "buyer ships the sweater back (pays 12.00 freight)",
            topics.RETURNS,
            order,
            events.return_shipped(order, r1, at=now, fee=1200, tracking_no=f"YT{run}", **PLATFORM),
        ),
        (
            "the warehouse signs for the returned parcel: the refund is due within 24 hours",
            topics.SIGNATURES,
            order,
            events.parcel_signed(order, r1, at=now, tracking_no=f"YT{run}", **PLATFORM),
        ),
    ]


def complaint_opened(
    run: str, complaint: str, category: str, at: datetime, description: str
) -> dict[str, Any]:
    """The demo buyer's complaint `complaint` about the demo order of `run`."""
    return events.complaint_opened(
        complaint, f"O-{run}", f"C-{run}", category, at=at, description=description, **PLATFORM
    )


def complaint_scenario(
    run: str, now: datetime
) -> list[tuple[str, str, str, dict[str, Any], tuple[str, ...]]]:
    """(caption, topic, key, event, what to wait for) for the demo order's complaint."""
    order, complaint = f"O-{run}", f"K-{run}"
    answered, resolved = now + timedelta(minutes=20), now + timedelta(minutes=40)
    return [
        (
            "buyer complains: the sweater's seams came apart (quality issue)",
            topics.COMPLAINTS,
            order,
            complaint_opened(
                run, complaint, "quality_issue", now, "The seams came apart after one wash."
            ),
            ("complaint.acknowledged",),
        ),
        (
            "an agent answers the buyer",
            topics.COMPLAINTS,
            order,
            events.complaint_responded(
                complaint, order, at=answered, agent_id="agent-demo", **PLATFORM
            ),
            (),
        ),
        (
            "the agent resolves it: upheld, a quality problem (5% of the goods as a coupon)",
            topics.COMPLAINTS,
            order,
            events.complaint_resolved(
                complaint, order, at=resolved, agent_id="agent-demo", **PLATFORM
            ),
            ("coupon.granted", "complaint.compensated"),
        ),
    ]


def cut_scenario(run: str, now: datetime) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(caption, topic, key, event): a complaint whose refund the ledger's order cap cuts."""
    order, complaint = f"O-{run}", f"K-{run}-2"
    later = now + timedelta(hours=1)
    return [
        (
            "buyer complains again: 'the parcel never arrived' (not received)",
            topics.COMPLAINTS,
            order,
            complaint_opened(
                run, complaint, "not_received", later, "Tracking says delivered, nothing came."
            ),
        ),
        (
            "the agent upholds it with a refund of the whole order's goods: the refund ledger "
            "cuts what the sweater's return already gave back",
            topics.COMPLAINTS,
            order,
            events.complaint_resolved(
                complaint, order, at=later, remedy="refund", agent_id="agent-demo", **PLATFORM
            ),
        ),
    ]


def _summary(topic: str, event: dict[str, Any]) -> str:
    data = event.get("data", {})
    kind = event.get("type", "?")
    if kind == "refund.issued":
        parts = ", ".join(f"{b['kind']} {b['amount'] / 100:+.2f}" for b in data["breakdown"])
        pays = ", ".join(f"{p['method']} {p['amount'] / 100:.2f}" for p in data["payments"])
        return (
            f"{kind}: {data['amount'] / 100:.2f} {data['currency']} ({parts}); "
            f"paid back to {pays}; due by {data['due_by']}"
        )
    if kind.startswith("return."):
        extra = f", waiting for {data['waiting_for']}" if data.get("waiting_for") else ""
        text = data.get("message_en") or data["message"]
        return f"{kind} {data['return_id']} [{data['rule']}{extra}] {text}"
    if kind == "notification.requested":
        params = ", ".join(f"{k}={v}" for k, v in data["params"].items())
        urgent = " (urgent)" if data.get("urgent") else ""
        return f"{kind}: {data['template']}{urgent} to {data['customer_id']}: {params}"
    if kind == "coupon.granted":
        return (
            f"{kind}: {data['value'] / 100:.2f} {data['currency']} to {data['customer_id']} "
            f"for complaint {data['complaint_id']} ({data['reason']}), "
            f"expires {data['expires_at']}"
        )
    if kind == "notification.sent":
        to = data.get("recipient") or data["customer_id"]
        urgent = "urgent, " if data.get("urgent") else ""
        return (
            f"{kind}: {data['template']} to {to} via {data['channel']} "
            f"({urgent}{data['language']}, attempt {data['attempts']})"
        )
    if kind == "notification.failed":
        return f"{kind}: {data['template']} for {data['customer_id']}: {data['reason']}"
    if kind == "event.deadlettered":
        origin = data["origin"]
        return (
            f"{kind}: {data['reason']} ({origin['topic']}/{origin['partition']}@{origin['offset']})"
        )
    return f"{kind}: {json.dumps(data, ensure_ascii=False)[:200]}"


def _notifier_note(policy: Policy, now: datetime) -> str:
    quiet, cap = policy.notifier.quiet_hours, policy.notifier.max_non_urgent_per_day
    local = now.astimezone(policy.zone).time()
    if quiet.start < quiet.end:
        in_quiet = quiet.start <= local < quiet.end
    else:
        in_quiet = quiet.start != quiet.end and (local >= quiet.start or local < quiet.end)
    held = (
        f"it is quiet hours ({quiet}, {policy.timezone}), so non-urgent ones wait until they end"
        if in_quiet
        else f"beyond {cap} non-urgent messages a day, the rest waits for the next morning"
    )
    return (
        "== notifications: the notifier's log shows each message the buyer gets (lines with "
        f"\u2709, masked recipient) and each one it holds back: {held} =="
    )


async def play(
    bootstrap: str,
    policy: Policy,
    *,
    out: Callable[[str], None] = lambda line: print(line, flush=True),
    timeout: float = 90.0,
) -> int:
    """Publish the scenarios and print what the system answers; 0 when the refund, then the
    complaint's coupon, then the second complaint's (cut) refund arrived."""
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    consumer = AIOKafkaConsumer(
        *WATCHED,
        bootstrap_servers=bootstrap,
        group_id=f"demo-{run}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
    except Exception:
        await consumer.stop()
        raise
    # Wait for the assignment so nothing the system answers is missed.
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    for tp in consumer.assignment():
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    out(
        f"== demo {run}: buyer C-{run}, order O-{run} (search either in the operations console); "
        f"shop time zone {policy.timezone} =="
    )
    try:
        previous = None
        for caption, topic, key, event in scenario(run, now):
            if previous is not None and topic != previous:
                # Orders, signatures and returns are different topics with no order between
                # them; a pause keeps the story, and the case's timeline in the console, in
                # the order it is told (the service would cope either way).
                await asyncio.sleep(2)
            previous = topic
            value = event if isinstance(event, bytes) else json.dumps(event).encode()
            await producer.send_and_wait(topic, value, key=key.encode(), headers=CONTENT_TYPE)
            out(f"-> {topic:<11} {caption}")
        deadline = asyncio.get_running_loop().time() + timeout

        async def watch(*wanted: str, linger: float = 0.0) -> bool:
            """Print the run's outputs until each event type (or notification template) in
            `wanted` has been seen, or for `linger` seconds."""
            missing = set(wanted)
            loop = asyncio.get_running_loop()
            end = min(deadline, loop.time() + linger) if linger else deadline
            while (missing or linger) and loop.time() < end:
                batch = await consumer.getmany(timeout_ms=500)
                # Several topics arrive together: show them in the order they were published.
                arrived = sorted(
                    ((tp, r) for tp, records in batch.items() for r in records),
                    key=lambda item: (item[1].timestamp, item[1].offset),
                )
                for tp, record in arrived:
                    if run not in (record.value or b"").decode("utf-8", "replace"):
                        continue  # another run's traffic on a shared broker
                    try:
                        event = json.loads(record.value or b"{}")
                    except ValueError:
                        continue
                    out(f"<- {tp.topic:<22} {_summary(tp.topic, event)}")
                    missing -= {event.get("type"), (event.get("data") or {}).get("template")}
            return not missing

        if not await watch("return.completed", "refund.issued"):
            out("!! no refund arrived in time: are the services running?")
            return 1
        out("== the refund is on aftersales.refunds for finance ==")
        for caption, topic, key, event, wanted in complaint_scenario(run, now):
            value = json.dumps(event).encode()
            await producer.send_and_wait(topic, value, key=key.encode(), headers=CONTENT_TYPE)
            out(f"-> {topic:<11} {caption}")
            if wanted and not await watch(*wanted):
                out(f"!! no {' and '.join(wanted)} in time: is the complaints service running?")
                return 1
        for caption, topic, key, event in cut_scenario(run, now):
            value = json.dumps(event).encode()
            await producer.send_and_wait(topic, value, key=key.encode(), headers=CONTENT_TYPE)
            out(f"-> {topic:<11} {caption}")
        if not await watch("refund.issued"):
            out("!! no second refund in time: is the refunds service running?")
            return 1
        out(
            "== the refund ledger issued what remained of the goods: the already_refunded line "
            "is what the return had refunded (`aftersales refunds O-" + run + "` shows it) =="
        )
        # The notifier tells the buyer (or holds non-urgent messages back) a moment later.
        await watch(linger=NOTIFY_LINGER)
        out(_notifier_note(policy, now))
        out(
            "== demo done: the complaint is compensated, the coupon is on aftersales.coupons, "
            "the cut refund on aftersales.refunds =="
        )
        return 0
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    from aftersales.registry import environment

    env = environment()
    sys.exit(asyncio.run(play(env.settings.kafka_bootstrap_servers, env.policy)))
