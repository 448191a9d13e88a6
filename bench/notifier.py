"""The notifier's run: a backlog of return decisions, each a notification delivered to a local
HTTP gateway (faults/gateway.py, never failing here), beside the minimal consumer on the same
decisions.

1. the buyers' contacts first (one `order.paid` per flow), taken in by a notifier that is then
   stopped: the contact directory, not measured;
2. a backlog of one `return.approved` per flow (the returns service's decision, on its
   decisions topic), published before the notifier starts again;
3. measured until the gateway has every notification: notifications/s (distinct messages
   the gateway accepted / (the last one's arrival - the start of the first batch that took a
   decision)), CPU per notification (the notifier's process), its peak RSS, and latency: the
   arrival at the gateway - the decision's publish timestamp (from publish), or - the
   delivery's `requested_at` (the consumer batch that accepted it: in-service).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from aftersales_dev.devenv import plain_dsn
from faults import events as ev
from faults.gateway import DeliveryGateway
from faults.infra import ServiceProcess, notifier_extra, service_env
from shared.contracts import service_source, topics

from .backlog import (
    PAID,
    Backlog,
    Event,
    Infra,
    fresh_database,
    fresh_topics,
    publish_backlog,
    service_topics,
)
from .measure import (
    PROFILERS,
    STALL_SECONDS,
    Result,
    cpu_seconds,
    finish_py_spy,
    peak_rss,
    say,
    start_py_spy,
    wait_until,
)

INPUT_EVENT = "return.approved"


def contact_events(run_id: str, n: int, now: datetime) -> list[Event]:
    """The buyer's contact data (SMS preferred), in the order the decision is about."""
    order_id, customer = f"{run_id}-N{n}", f"{run_id}-M{n}"
    line = ev.line("L1", category="apparel", quantity=1, paid_amount=PAID)
    at = now - timedelta(hours=60)
    return [ev.order_paid(order_id, customer, id=f"{order_id}-paid", at=at, lines=[line])]


def decision_events(run_id: str, n: int, now: datetime) -> list[Event]:
    """The returns service's approval of flow `n`'s return: one notification to the buyer."""
    order_id, customer = f"{run_id}-N{n}", f"{run_id}-M{n}"
    data = {
        "return_id": f"{order_id}-R1",
        "order_id": order_id,
        "customer_id": customer,
        "kind": "refund",
        "rule": "eligible",
        "message": "退货申请已通过，请在 7 天内寄回商品。",
        "message_en": "Your return is approved; please send the item back within 7 days.",
        "return_shipping_payer": "buyer",
        "refund_estimate": PAID,
        "decided_at": now.isoformat(),
    }
    event = ev.cloudevent(INPUT_EVENT, data, now, id=f"{order_id}-approved")
    return [{**event, "source": service_source("returns")}]


CONTACTS = Backlog(contact_events, (topics.ORDERS,), 1, "order.paid")
DECISIONS = Backlog(decision_events, (topics.RETURN_DECISIONS,), 1, INPUT_EVENT)


async def run_notifier(infra: Infra, flows: int, run_dir: Path, profile: str | None) -> Result:
    result = Result("notifier, 1 instance (to the gateway's 200)", instances=1)
    await fresh_topics(infra, *service_topics(["notifier"]))
    async with fresh_database(infra, "bench_notifier", ("notifier",)) as database:
        await _measure(infra, database, result, flows, run_dir, profile)
    return result


async def _measure(
    infra: Infra, database: str, result: Result, flows: int, run_dir: Path, profile: str | None
) -> None:
    gateway = DeliveryGateway(keep_alive=True).start()
    env = {
        **service_env(bootstrap=infra.bootstrap, database_url=database),
        **notifier_extra(run_dir, gateway.url),
    }
    process = ServiceProcess("notifier", 0, env, run_dir)
    try:
        run_id = f"N{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(plain_dsn(database))
        try:
            await publish_backlog(infra.bootstrap, run_id, flows, CONTACTS)
            process.start()
            await wait_until(
                conn,
                [process],
                "SELECT count(*) FROM notifier.contacts",
                flows,
                "contacts stored",
                started="SELECT true",
                stall_seconds=STALL_SECONDS,
            )
            await asyncio.to_thread(process.terminate)
            t = time.monotonic()
            signed = await publish_backlog(infra.bootstrap, run_id, flows, DECISIONS)
            result.publish_seconds = time.monotonic() - t
            say(f"{result.name}: {flows} decisions published in {result.publish_seconds:.1f} s")
            if profiler := PROFILERS.get(profile or "", []):
                process.argv_prefix = [*profiler, str(run_dir / "notifier.prof")]
            spawned = time.time()
            process.start()
            spy = (
                start_py_spy(process, run_dir / "notifier.pyspy.txt")
                if profile == "py-spy"
                else None
            )
            cpu_at_start = await wait_until(
                conn,
                [process],
                "SELECT count(*) FROM notifier.deliveries WHERE status = 'sent'",
                flows,
                "notifications sent",
                stall_seconds=STALL_SECONDS,
                started=f"SELECT EXISTS (SELECT FROM notifier.inbox WHERE event_type = '{INPUT_EVENT}')",  # noqa: S608, E501 - a constant
            )
            result.cpu_seconds = cpu_seconds(process.pid) - sum(cpu_at_start.values())
            result.peak_rss = [peak_rss(process.pid)]
            stats = await conn.fetchrow(
                "SELECT count(*) AS events, extract(epoch FROM min(received_at)) AS first "
                "FROM notifier.inbox WHERE event_type = $1",
                INPUT_EVENT,
            )
            deliveries = await conn.fetch(
                "SELECT delivery_id, order_id, attempts, "
                "extract(epoch FROM requested_at) AS requested FROM notifier.deliveries"
            )
        finally:
            await conn.close()
        await asyncio.to_thread(process.terminate)
        if spy is not None and finish_py_spy(spy, raw := run_dir / "notifier.pyspy.txt"):
            say(f"profile: {raw} (summary: {raw.with_suffix('.summary.txt')})")
        arrived = dict(gateway.first_seen)
        requests = sum(gateway.accepted.values())
        result.events = int(stats["events"])
        result.outputs = len(arrived)
        last = max(arrived.values())
        result.seconds = last - float(stats["first"])
        result.seconds_with_startup = last - spawned
        for row in deliveries:
            if (at := arrived.get(row["delivery_id"])) is None:
                continue
            result.in_service.append(at - float(row["requested"]))
            if (published := signed.get(row["order_id"])) is not None:
                result.latencies.append(at - published / 1000)
        retried = sum(1 for row in deliveries if row["attempts"] > 1)
        result.remarks.append(
            f"{requests:,} requests to the gateway for {result.outputs:,} notifications; "
            f"{retried:,} delivered after a retry"
        )
        if result.outputs != flows:
            result.notes.append(f"{result.outputs} notifications for {flows} decisions")
    finally:
        process.stop_now()
        gateway.stop()
