"""The complaints run: a backlog of complaints through compensation, beside the minimal
consumer on the same events.

Each flow (`bench.backlog.compensation_flow_events`, 5 input events): an order paid with a
10.00 outbound fee and shipped, a `logistics_delay` complaint opened, responded to and upheld.
The complaints service (1 instance) grants a 500 coupon and asks the refund ledger (1
instance) to refund the fee: the run ends when every flow's `coupon.granted` and `refund.issued`
are published. Measured as the returns run is (bench/returns.py): input events/s (the
complaints service's inbox rows of the platform's events / (the last output - the start of the
first batch)), CPU per input event of both processes, the peak RSS of each, latency from the
`complaint.resolved` publish to the flow's last output (the coupon or the refund), and in-service:
from the start of the complaints batch that upheld it to that last output.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import asyncpg

from aftersales_dev.devenv import plain_dsn
from faults.infra import ServiceProcess, service_env
from shared.contracts import topics

from .backlog import (
    SHIPPING_PAID,
    Backlog,
    Event,
    Infra,
    compensation_flow_events,
    fresh_database,
    fresh_topics,
    publish_backlog,
    read_records,
    service_topics,
)
from .measure import (
    PROFILERS,
    STALL_SECONDS,
    Result,
    backlog_figures,
    cpu_seconds,
    say,
    stop_measured,
    wait_until,
)

SERVICES = ("complaints", "refunds")
COMPENSATION_FLOWS = Backlog(
    compensation_flow_events, (topics.ORDERS, topics.COMPLAINTS), 5, "complaint.resolved"
)
COUPON = 500

# Both outputs of every flow published (the smaller of the two counts).
_DONE = """
SELECT least(
    (SELECT count(*) FROM complaints.outbox
     WHERE event_type = 'coupon.granted' AND published_at IS NOT NULL),
    (SELECT count(*) FROM refunds.outbox
     WHERE event_type = 'refund.issued' AND published_at IS NOT NULL))
"""


async def run_complaints(infra: Infra, flows: int, run_dir: Path, profile: str | None) -> Result:
    result = Result(
        "complaints service, 1 instance + refund ledger, 1 instance "
        "(to coupon.granted and refund.issued)",
        instances=1,
        ledger=True,
    )
    await fresh_topics(infra, *service_topics(SERVICES))
    async with fresh_database(infra, "bench_complaints", SERVICES) as database:
        await _measure(infra, database, result, flows, run_dir, profile)
    return result


async def _measure(
    infra: Infra, database: str, result: Result, flows: int, run_dir: Path, profile: str | None
) -> None:
    env = service_env(bootstrap=infra.bootstrap, database_url=database)
    processes = [ServiceProcess("complaints", 0, env, run_dir)]
    ledgers = [ServiceProcess("refunds", 0, env, run_dir)]
    try:
        run_id = f"K{uuid.uuid4().hex[:8]}"
        t = time.monotonic()
        signed = await publish_backlog(infra.bootstrap, run_id, flows, COMPENSATION_FLOWS)
        result.publish_seconds = time.monotonic() - t
        published = f"{COMPENSATION_FLOWS.events_per_flow * flows} events published"
        say(f"{result.name}: {published} in {result.publish_seconds:.1f} s")
        if profiler := PROFILERS.get(profile or "", []):
            for process in processes + ledgers:
                process.argv_prefix = [*profiler, str(run_dir / f"{process.service}-k.prof")]
        spawned = time.time()
        for process in processes + ledgers:
            process.start()
        conn = await asyncpg.connect(plain_dsn(database))
        try:
            cpu_at_start = await wait_until(
                conn,
                processes + ledgers,
                _DONE,
                flows,
                "flows compensated (coupon and refund published)",
                started="SELECT EXISTS (SELECT FROM complaints.inbox)",
                stall_seconds=STALL_SECONDS,
            )
            cpu = {
                p.pid: cpu_seconds(p.pid) - cpu_at_start.get(p.pid, 0.0)
                for p in processes + ledgers
            }
            result.cpu_seconds = sum(cpu.values())
            result.ledger_cpu_seconds = sum(cpu[p.pid] for p in ledgers)
            stats = await conn.fetchrow(
                "SELECT count(*) AS events, extract(epoch FROM min(received_at)) AS first "
                "FROM complaints.inbox WHERE topic = ANY($1::text[])",
                list(COMPENSATION_FLOWS.topics),
            )
            result.ledger_events = int(await conn.fetchval("SELECT count(*) FROM refunds.inbox"))
            # The start of the complaints batch that upheld each complaint (its coupon's row).
            upheld = {
                r["event_id"]: float(r["at"])
                for r in await conn.fetch(
                    "SELECT event_id, extract(epoch FROM created_at) AS at "
                    "FROM complaints.outbox WHERE event_type = 'coupon.granted'"
                )
            }
        finally:
            await conn.close()
        await stop_measured(result, processes, ledgers)
        coupons = _first_by_order(
            await read_records(infra.bootstrap, topics.COUPONS), "coupon.granted", "value", COUPON
        )
        refunds = _first_by_order(
            await read_records(infra.bootstrap, topics.REFUNDS),
            "refund.issued",
            "amount",
            SHIPPING_PAID,
        )
        result.wrong = coupons.wrong + refunds.wrong
        done = {o: max(ts, refunds.at[o]) for o, ts in coupons.at.items() if o in refunds.at}
        backlog_figures(result, done, signed, stats, spawned)
        result.in_service = [
            done[o] / 1000 - upheld[coupons.ids[o]] for o in done if coupons.ids[o] in upheld
        ]
        if len(done) != flows or result.wrong:
            result.notes.append(
                f"{len(coupons.at)} coupons and {len(refunds.at)} refunds for {flows} flows, "
                f"{result.wrong} wrong"
            )
    finally:
        for process in processes + ledgers:
            process.stop_now()


class _Firsts:
    """The first record of one event type per order (timestamp ms), and how many were wrong."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}
        self.ids: dict[str, str] = {}  # the event id of each
        self.wrong = 0


def _first_by_order(
    records: list[tuple[int, Event]], event_type: str, field: str, expected: int
) -> _Firsts:
    firsts = _Firsts()
    for ts, event in records:
        data = event["data"]
        assert isinstance(data, dict)
        if event["type"] != event_type or str(data["order_id"]) in firsts.at:
            continue  # another output, or a second copy (at-least-once relay): the first counts
        firsts.at[str(data["order_id"])] = ts
        firsts.ids[str(data["order_id"])] = str(event["id"])
        if data[field] != expected:
            firsts.wrong += 1
    return firsts
