"""Throughput and latency of the returns pipeline on a backlog, beside a minimal consumer.

    python -m bench.run [--flows 10000] [--instances 1,2] [--profile cpu|cprofile|py-spy]

For each scenario (the minimal consumer of bench/baseline.py; the returns service alone with 1
and with 2 instances, up to its `refund.requested`; the same with the refund ledger beside it,
up to `refund.issued`) on fresh topics (the in-memory broker restarted; on a configured broker
the consumer groups are moved to the end instead) and a fresh database:

1. publish a backlog of FLOWS return flows, each `order.paid`, outbound `parcel.signed`,
   `return.requested` (every unit, no reason) and the return-leg `parcel.signed` (4 events),
   BEFORE any consumer runs;
2. start the consumer(s) (`aftersales run returns`, one OS process per instance, and
   `aftersales run refunds`, one process, for the pipeline);
3. wait until every flow's output is published: `refund.requested` of the returns service
   alone, `refund.issued` of the pipeline (the baseline: every event stored);
4. measure:
   * events/s = input events of the returns service processed (inbox rows) / (the last
     output's broker timestamp - the start of the first batch transaction): the processing
     rate, start-up excluded (also given with start-up: from the process spawn);
   * latency per flow = the output record's timestamp (CreateTime, set by the service's
     producer when the relay sends it) - the return-leg signature record's publish timestamp
     (CreateTime set by our producer). With a backlog published first this is mostly time
     spent queued; so also the in-service latency = output timestamp - the start of the
     transaction that wrote it (its outbox row's `created_at`): the batch transaction, the
     commit and the outbox relay (for the pipeline: the ledger's own);
   * the ledger's own cost: its input events (`order.paid` and `refund.requested`, inbox
     rows) and its process's CPU per such event;
   * the extra hop: 1 - pipeline events/s / the returns service's alone, same instances.
   The baseline's latency is its insert's commit instant - the signature's publish timestamp.

Writes docs/results/bench.md (or --report) and prints the same figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from aftersales_dev.devenv import (
    LocalBroker,
    LocalPostgres,
    create_database,
    drop_database,
    find_postgres_bindir,
    plain_dsn,
    skip_history,
)
from faults import events as ev
from faults.infra import ROOT, ServiceProcess, service_env
from shared.contracts import topics
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ensure_topics
from shared.migrations import upgrade
from shared.settings import Settings

from .chart import Panel, render_svg

INPUT_TOPICS = (topics.ORDERS, topics.SIGNATURES, topics.RETURNS)
GROUP = "aftersales-returns"
LEDGER_GROUP = "aftersales-refunds"
LEDGER_TOPICS = (topics.ORDERS, topics.REFUND_REQUESTS, topics.PAYOUTS)
DEFAULT_REPORT = ROOT / "docs" / "results" / "bench.md"
PAID = 19_900


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Result:
    name: str
    events: int = 0
    seconds: float = 0.0  # first transaction -> last output
    seconds_with_startup: float = 0.0  # process spawn -> last output
    latencies: list[float] = field(default_factory=list)  # publish -> refund (s)
    in_service: list[float] = field(default_factory=list)  # signature processed -> refund (s)
    refunds: int = 0
    wrong: int = 0
    publish_seconds: float = 0.0
    # CPU time of the consumer's own processes while processing (first event -> last output)
    cpu_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    instances: int = 0
    ledger: bool = False
    ledger_events: int = 0  # the ledger's own inputs (inbox rows)
    ledger_cpu_seconds: float = 0.0
    peak_rss: list[int] = field(default_factory=list)  # bytes, per returns instance
    ledger_peak_rss: int = 0  # bytes
    stages: str = ""  # where the latency goes (steady load)

    @property
    def ledger_cpu_per_event(self) -> float:
        return self.ledger_cpu_seconds / self.ledger_events if self.ledger_events else float("nan")

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_event(self) -> float:
        return self.cpu_seconds / self.events if self.events else float("nan")

    @property
    def rate_with_startup(self) -> float:
        return self.events / self.seconds_with_startup if self.seconds_with_startup > 0 else 0.0


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --------------------------------------------------------------------------------------------
# infrastructure


@dataclass
class Infra:
    bootstrap: str
    server_url: str  # the PostgreSQL server (a fresh database is made on it per scenario)
    broker: LocalBroker | None


@contextlib.asynccontextmanager
async def infrastructure() -> AsyncIterator[Infra]:
    async with contextlib.AsyncExitStack() as stack:
        broker = None
        if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            bootstrap = servers
        else:
            broker = LocalBroker().start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
        if url := os.environ.get("DATABASE_URL"):
            server_url = Settings(database_url=url).database_url
        else:
            if find_postgres_bindir() is None:
                raise SystemExit("bench: no PostgreSQL server binaries and no DATABASE_URL")
            postgres = LocalPostgres()
            await asyncio.to_thread(postgres.start)
            stack.callback(postgres.stop)
            server_url = postgres.url
        yield Infra(bootstrap, server_url, broker)


async def fresh_topics(infra: Infra, group: str) -> None:
    if infra.broker is not None:
        await asyncio.to_thread(infra.broker.restart)  # in-memory: empty again
    settings = Settings(kafka_bootstrap_servers=infra.bootstrap, kafka_idempotence=False)
    await ensure_topics(settings, [*INPUT_TOPICS, *LEDGER_TOPICS, topics.REFUNDS])
    await skip_history(infra.bootstrap, group, INPUT_TOPICS)
    await skip_history(infra.bootstrap, LEDGER_GROUP, LEDGER_TOPICS)


# --------------------------------------------------------------------------------------------
# the backlog


def flow_events(run_id: str, n: int, now: datetime) -> list[dict[str, object]]:
    order_id, customer, return_id = f"{run_id}-O{n}", f"{run_id}-C{n}", f"{run_id}-O{n}-R1"
    h = timedelta(hours=1)
    line = ev.line("L1", category="apparel", quantity=1, paid_amount=PAID)
    return [
        ev.order_paid(order_id, customer, id=f"{order_id}-paid", at=now - 60 * h, lines=[line]),
        ev.outbound_signed(order_id, id=f"{order_id}-out", at=now - 40 * h),
        ev.return_requested(
            order_id, return_id, customer, id=f"{order_id}-req", at=now - 20 * h, lines={"L1": 1}
        ),
        ev.return_signed(order_id, return_id, id=f"{order_id}-back", at=now - 2 * h),
    ]


_HEADERS = [("content-type", CONTENT_TYPE.encode())]


async def send_flow(
    producer: AIOKafkaProducer, run_id: str, n: int, now: datetime
) -> tuple[str, asyncio.Future[object]]:
    """Send flow `n`'s events; returns its order id and the return-leg signature's send."""
    signature: tuple[str, asyncio.Future[object]] | None = None
    for event in flow_events(run_id, n, now):
        future = await producer.send(
            ev.topic_of(event), ev.encode(event), key=ev.key_of(event).encode(), headers=_HEADERS
        )
        if event["type"] == "parcel.signed" and event["data"]["leg"] == "return":  # type: ignore[index]
            signature = (ev.key_of(event), future)
    assert signature is not None
    return signature


def complaint_flow_events(run_id: str, n: int, now: datetime) -> list[dict[str, object]]:
    """A complaint through compensation: an order paid and shipped, a `service_attitude`
    complaint opened, responded to and upheld: one 500 coupon (5 input events)."""
    order_id, customer = f"{run_id}-P{n}", f"{run_id}-B{n}"
    complaint_id, h = f"{order_id}-K1", timedelta(hours=1)
    line = ev.line("L1", category="home", quantity=1, paid_amount=PAID)
    return [
        ev.order_paid(order_id, customer, id=f"{order_id}-paid", at=now - 24 * h, lines=[line]),
        ev.order_shipped(order_id, id=f"{order_id}-shipped", at=now - 20 * h),
        ev.complaint_opened(
            complaint_id, order_id, customer, "service_attitude", id=f"{order_id}-open", at=now - h
        ),
        ev.complaint_responded(complaint_id, order_id, id=f"{order_id}-resp", at=now - h / 2),
        ev.complaint_resolved(complaint_id, order_id, id=f"{order_id}-res", at=now - h / 4),
    ]


async def publish_backlog(bootstrap: str, run_id: str, flows: int) -> dict[str, int]:
    """Publish every flow; returns the publish timestamp (ms) of each return-leg signature."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        request_timeout_ms=120_000,
    )
    await producer.start()
    signed: dict[str, int] = {}
    now = datetime.now(UTC)
    try:
        for begin in range(0, flows, 1000):
            sent = [
                await send_flow(producer, run_id, n, now)
                for n in range(begin, min(begin + 1000, flows))
            ]
            signed.update(await signature_timestamps(sent))
    finally:
        await producer.stop()
    return signed


async def publish_paced(
    bootstrap: str, run_id: str, flows: int, events_per_second: float
) -> dict[str, int]:
    """Publish `flows` flows at a steady rate (each flow's 4 events together, flows evenly
    spread); returns the publish timestamp (ms) of each return-leg signature."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=5
    )
    await producer.start()
    now = datetime.now(UTC)
    flows_per_second = events_per_second / 4
    sent = []
    try:
        started = time.monotonic()
        for n in range(flows):
            # Catch up to the schedule, then wait for the next flow's turn.
            if (delay := started + n / flows_per_second - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            sent.append(await send_flow(producer, run_id, n, now))
        return await signature_timestamps(sent)
    finally:
        await producer.stop()


async def signature_timestamps(
    sent: Sequence[tuple[str, asyncio.Future[object]]],
) -> dict[str, int]:
    """Each order's return-leg signature's record timestamp (ms), once the broker has it."""
    signed = {}
    for order_id, future in sent:
        metadata = await future
        signed[order_id] = metadata.timestamp  # type: ignore[attr-defined]
    return signed


async def read_refunds(bootstrap: str, topic: str) -> list[tuple[int, dict[str, object]]]:
    """(timestamp ms, event) of every record on `topic` (refund requests or refunds)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[int, dict[str, object]]] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in batch.values():
                out += [(r.timestamp, json.loads(r.value)) for r in records]
            for tp in list(remaining):
                end = max(ends[tp], consumer.highwater(tp) or 0)
                if await consumer.position(tp) >= end:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


# --------------------------------------------------------------------------------------------
# scenarios


async def run_baseline(infra: Infra, flows: int) -> Result:
    result = Result("minimal consumer (aiokafka + asyncpg, 1 INSERT per event)")
    group = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    await fresh_topics(infra, group)
    database = await create_database(infra.server_url, "bench_baseline")
    try:
        run_id = f"B{uuid.uuid4().hex[:8]}"
        t = time.monotonic()
        signed = await publish_backlog(infra.bootstrap, run_id, flows)
        result.publish_seconds = time.monotonic() - t
        spawned = time.time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.baseline",
            "--bootstrap",
            infra.bootstrap,
            "--dsn",
            plain_dsn(database),
            "--group",
            group,
            "--expect",
            str(4 * flows),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the baseline consumer failed ({proc.returncode})")
        figures = json.loads(out.decode().strip().splitlines()[-1])
        result.events = int(figures["stored"])
        result.seconds = float(figures["last"]) - float(figures["first"])
        result.seconds_with_startup = float(figures["last"]) - spawned
        result.cpu_seconds = float(figures["cpu"])
        result.peak_rss = [int(figures["peak_rss_bytes"])]
        result.latencies = [done - published / 1000 for published, done in figures["signatures"]]
        result.refunds = len(signed)
    finally:
        await drop_database(infra.server_url, database)
    return result


async def run_service(
    infra: Infra, flows: int, instances: int, run_dir: Path, profile: str | None, ledger: bool
) -> Result:
    plural = "s" if instances > 1 else ""
    name = f"returns service, {instances} instance{plural}"
    result = Result(
        f"{name} + refund ledger, 1 instance (to refund.issued)"
        if ledger
        else f"{name} (to refund.requested)",
        instances=instances,
        ledger=ledger,
    )
    # The returns service's output, or the ledger's: (schema, event type, topic).
    schema, output, topic = (
        ("refunds", "refund.issued", topics.REFUNDS)
        if ledger
        else ("returns", "refund.requested", topics.REFUND_REQUESTS)
    )
    await fresh_topics(infra, GROUP)
    database = await create_database(infra.server_url, "bench_returns")
    processes: list[ServiceProcess] = []
    try:
        for service in ("returns", "refunds") if ledger else ("returns",):
            await asyncio.to_thread(upgrade, service, database)
        run_id = f"S{uuid.uuid4().hex[:8]}"
        t = time.monotonic()
        signed = await publish_backlog(infra.bootstrap, run_id, flows)
        result.publish_seconds = time.monotonic() - t
        say(f"{result.name}: {4 * flows} events published in {result.publish_seconds:.1f} s")
        env = service_env(bootstrap=infra.bootstrap, database_url=database)
        processes = [ServiceProcess("returns", i, env, run_dir) for i in range(instances)]
        ledgers = [ServiceProcess("refunds", 0, env, run_dir)] if ledger else []
        profiler = _PROFILERS.get(profile or "", [])
        for process in (processes[0], *ledgers) if profiler else ():
            out = run_dir / f"{process.service}-x{instances}{'-ledger' if ledger else ''}.prof"
            process.argv_prefix = [*profiler, str(out)]
        spawned = time.time()
        for process in processes + ledgers:
            process.start()
        spy = None
        if profile == "py-spy":
            spy = start_py_spy(processes[0], run_dir / f"returns-x{instances}.pyspy.txt")
        dsn = plain_dsn(database)
        conn = await asyncpg.connect(dsn)
        try:
            cpu_at_start = await wait_outputs(conn, flows, processes + ledgers, schema, output)
            everyone = sum(cpu_seconds(p.pid) for p in processes + ledgers)
            result.cpu_seconds = everyone - sum(cpu_at_start.values())
            result.ledger_cpu_seconds = sum(
                cpu_seconds(p.pid) - cpu_at_start.get(p.pid, 0.0) for p in ledgers
            )
            stats = await conn.fetchrow(
                "SELECT count(*) AS events, extract(epoch FROM min(received_at)) AS first "
                "FROM returns.inbox"
            )
            if ledger:
                result.ledger_events = int(
                    await conn.fetchval("SELECT count(*) FROM refunds.inbox")
                )
            # The start of the transaction that wrote each output (its outbox row).
            issued = {
                r["event_id"]: float(r["at"])
                for r in await conn.fetch(
                    f"SELECT event_id, extract(epoch FROM created_at) AS at FROM {schema}.outbox "  # noqa: S608 - a constant
                    "WHERE event_type = $1",
                    output,
                )
            }
        finally:
            await conn.close()
        result.peak_rss = [peak_rss(p.pid) for p in processes]
        result.ledger_peak_rss = max((peak_rss(p.pid) for p in ledgers), default=0)
        for process in processes + ledgers:
            await asyncio.to_thread(process.terminate)
        if spy is not None:
            spy.wait(timeout=60)
            raw = run_dir / f"returns-x{instances}.pyspy.txt"
            if raw.exists():
                from .profile import summarize

                summary = summarize(raw)
                (run_dir / f"returns-x{instances}.summary.txt").write_text(summary + "\n")
                say(f"profile of {processes[0].name} ({result.name}):\n{summary}")
        refunds = await read_refunds(infra.bootstrap, topic)
        by_order: dict[str, int] = {}
        for ts, event in refunds:
            data = event["data"]
            assert isinstance(data, dict)
            if event["type"] != output or str(data["order_id"]) in by_order:
                continue  # a second copy (at-least-once relay): the first counts
            by_order[str(data["order_id"])] = ts
            if data["amount"] != PAID:
                result.wrong += 1
            if (started := issued.get(str(event["id"]))) is not None:
                result.in_service.append(ts / 1000 - started)
        result.refunds = len(by_order)
        result.events = int(stats["events"])
        last = max(by_order.values()) / 1000
        result.seconds = last - float(stats["first"])
        result.seconds_with_startup = last - spawned
        result.latencies = [(by_order[o] - signed[o]) / 1000 for o in signed if o in by_order]
        if len(by_order) != flows or result.wrong:
            result.notes.append(f"{len(by_order)} refunds for {flows} flows, {result.wrong} wrong")
    finally:
        for process in processes + ledgers:
            process.stop_now()
        await drop_database(infra.server_url, database)
    return result


async def run_steady(
    infra: Infra, rate: int, seconds: int, run_dir: Path, profile: str | None = None
) -> Result:
    """The returns service (1 instance) and the ledger running, `rate` input events/s offered
    for `seconds`: latency from the return-leg signature's publish to `refund.issued`."""
    result = Result(
        f"returns service, 1 instance + refund ledger, {rate:,} events/s offered for {seconds} s",
        instances=1,
        ledger=True,
    )
    await fresh_topics(infra, GROUP)
    database = await create_database(infra.server_url, "bench_steady")
    env = service_env(bootstrap=infra.bootstrap, database_url=database)
    processes = [ServiceProcess("returns", 0, env, run_dir)]
    ledgers = [ServiceProcess("refunds", 0, env, run_dir)]
    profiler = _PROFILERS.get(profile or "", [])
    for process in processes + ledgers if profiler else ():
        out = run_dir / f"{process.service}-steady-{rate}.prof"
        process.argv_prefix = [*profiler, str(out)]
    warm_flows = 20
    flows = rate * seconds // 4
    try:
        for service in ("returns", "refunds"):
            await asyncio.to_thread(upgrade, service, database)
        for process in processes + ledgers:
            process.start()
        conn = await asyncpg.connect(plain_dsn(database))
        try:
            # Warm up (group joined, statements prepared) on flows that are not measured.
            await publish_backlog(infra.bootstrap, f"W{uuid.uuid4().hex[:8]}", warm_flows)
            await wait_outputs(conn, warm_flows, processes + ledgers, "refunds", "refund.issued")
            cpu_before = {p.pid: cpu_seconds(p.pid) for p in processes + ledgers}
            events_before = int(await conn.fetchval("SELECT count(*) FROM returns.inbox"))
            ledger_before = int(await conn.fetchval("SELECT count(*) FROM refunds.inbox"))
            run_id = f"L{uuid.uuid4().hex[:8]}"
            t = time.monotonic()
            say(f"{result.name}: publishing {4 * flows:,} events")
            signed = await publish_paced(infra.bootstrap, run_id, flows, rate)
            result.publish_seconds = time.monotonic() - t
            await wait_outputs(
                conn, warm_flows + flows, processes + ledgers, "refunds", "refund.issued"
            )
            result.seconds = time.monotonic() - t
            cpu = {p.pid: cpu_seconds(p.pid) - cpu_before[p.pid] for p in processes + ledgers}
            result.cpu_seconds = sum(cpu.values())
            result.ledger_cpu_seconds = sum(cpu[p.pid] for p in ledgers)
            result.events = int(await conn.fetchval("SELECT count(*) FROM returns.inbox"))
            result.events -= events_before
            result.ledger_events = int(await conn.fetchval("SELECT count(*) FROM refunds.inbox"))
            result.ledger_events -= ledger_before
            issued = {
                r["event_id"]: float(r["at"])
                for r in await conn.fetch(
                    "SELECT event_id, extract(epoch FROM created_at) AS at FROM refunds.outbox "
                    "WHERE event_type = 'refund.issued'"
                )
            }
            stages = await latency_stages(conn)
        finally:
            await conn.close()
        result.peak_rss = [peak_rss(p.pid) for p in processes]
        result.ledger_peak_rss = max(peak_rss(p.pid) for p in ledgers)
        for process in processes + ledgers:
            await asyncio.to_thread(process.terminate)
        first: dict[str, int] = {}
        for ts, event in await read_refunds(infra.bootstrap, topics.REFUNDS):
            data = event["data"]
            assert isinstance(data, dict)
            order_id = str(data["order_id"])
            if order_id not in signed or order_id in first:
                continue  # a warm-up flow, or a second copy (at-least-once relay)
            first[order_id] = ts
            if data["amount"] != PAID:
                result.wrong += 1
            if (begun := issued.get(str(event["id"]))) is not None:
                result.in_service.append(ts / 1000 - begun)
        result.refunds = len(first)
        result.latencies = [(first[o] - signed[o]) / 1000 for o in signed if o in first]
        if len(first) != flows or result.wrong:
            result.notes.append(f"{len(first)} refunds for {flows} flows, {result.wrong} wrong")
        result.stages = describe_stages(stages, signed)
        if result.publish_seconds > seconds * 1.1:
            result.notes.append(
                f"the load was published in {result.publish_seconds:.0f} s, not {seconds} s: "
                "the machine could not offer it"
            )
    finally:
        for process in processes + ledgers:
            process.stop_now()
        await drop_database(infra.server_url, database)
    return result


# Per flow (keyed by order id), the instants (epoch s) an event passed each stage: the start of
# the returns batch that wrote its refund request, that request's publish, the start of the
# ledger's batch that issued the refund, and the refund's publish.
_STAGES = """
SELECT q.key AS order_id,
       extract(epoch FROM q.created_at) AS returns_batch,
       extract(epoch FROM q.published_at) AS requested,
       extract(epoch FROM i.created_at) AS ledger_batch,
       extract(epoch FROM i.published_at) AS issued
FROM returns.outbox q JOIN refunds.outbox i ON i.key = q.key
WHERE q.event_type = 'refund.requested' AND i.event_type = 'refund.issued'
"""


async def latency_stages(conn: asyncpg.Connection) -> dict[str, tuple[float, ...]]:
    return {
        r["order_id"]: tuple(
            float(r[k]) for k in ("returns_batch", "requested", "ledger_batch", "issued")
        )
        for r in await conn.fetch(_STAGES)
    }


def describe_stages(stages: dict[str, tuple[float, ...]], signed: dict[str, int]) -> str:
    """Where a flow's latency goes, as medians over the measured flows (ms)."""
    spans: list[list[float]] = [[], [], [], []]
    for order_id, published in signed.items():
        if (at := stages.get(order_id)) is None:
            continue
        points = (published / 1000, *at)
        for n in range(4):
            spans[n].append(points[n + 1] - points[n])
    if not spans[0]:
        return ""
    labels = (
        "signature published -> returns batch begins",
        "-> refund.requested published (the batch, its commit, the relay)",
        "-> the ledger's batch begins",
        "-> refund.issued published",
    )
    return "; ".join(
        f"{label} {pct(span, 0.5) * 1000:,.0f}" for label, span in zip(labels, spans, strict=True)
    )


# --profile: the command a profiled service process runs under, before the profile's path.
# `cpu` times functions by the process's CPU clock (bench/cpuprofile.py), `cprofile` by the
# wall clock (which counts the waits for a core on a busy machine).
_PROFILERS = {
    "cprofile": [sys.executable, "-m", "cProfile", "-o"],
    "cpu": [sys.executable, "-m", "bench.cpuprofile"],
}


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a live process (Linux /proc), 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def peak_rss(pid: int | None) -> int:
    """Peak resident set size of a live process in bytes (Linux /proc VmHWM), 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


async def wait_outputs(
    conn: asyncpg.Connection,
    flows: int,
    processes: list[ServiceProcess],
    schema: str,
    output: str,
) -> dict[int | None, float]:
    """Wait until every flow's output is published; returns each process's CPU time when the
    first event was processed (start-up excluded from the CPU per event)."""
    last_said = time.monotonic()
    cpu_at_start: dict[int | None, float] | None = None
    while True:
        if cpu_at_start is None and await conn.fetchval(
            "SELECT EXISTS (SELECT FROM returns.inbox)"
        ):
            cpu_at_start = {p.pid: cpu_seconds(p.pid) for p in processes}
        done = await conn.fetchval(
            f"SELECT count(*) FROM {schema}.outbox "  # noqa: S608 - a constant
            "WHERE event_type = $1 AND published_at IS NOT NULL",
            output,
        )
        if done >= flows:
            return cpu_at_start or {}
        for process in processes:
            if not process.running:
                raise RuntimeError(f"{process.name} exited; see {process.run_dir}")
        if time.monotonic() - last_said > 15:
            say(f"{done}/{flows} {output} published")
            last_said = time.monotonic()
        await asyncio.sleep(0.25)


def start_py_spy(process: ServiceProcess, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        say("py-spy not found (pip install py-spy); not profiling")
        return None
    assert process.pid is not None
    return subprocess.Popen(  # noqa: S603 - argv built here
        [
            spy,
            "record",
            "--pid",
            str(process.pid),
            "--format",
            "raw",
            "--rate",
            "50",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------------------------
# report


def uname() -> str:
    try:
        return subprocess.run(
            ["uname", "-a"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return " ".join(platform.uname()).strip()


def render(
    flows: int,
    results: list[Result],
    baseline: Result | None,
    command: str,
    steady: Sequence[Result] = (),
    chart: str = "bench.svg",
) -> str:
    def ms(v: float) -> str:
        return f"{v * 1000:,.0f}" if v == v else "n/a"  # NaN check

    def rss(r: Result) -> str:
        if not any(r.peak_rss):
            return "n/a"
        text = f"{max(r.peak_rss) / 2**20:,.0f}"
        return text + (f" (ledger {r.ledger_peak_rss / 2**20:,.0f})" if r.ledger_peak_rss else "")

    rows = [
        "| consumer | events | events/s | events/s incl. start-up | "
        "latency p50 / p99 (ms, from publish) | in-service p50 / p99 (ms) | "
        "CPU per event (µs) | peak RSS per instance (MiB) | ratio to minimal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ([baseline] if baseline else []) + results:
        ratio = f"{r.rate / baseline.rate:.2f}" if baseline and baseline.rate else "n/a"
        in_service = (
            f"{ms(pct(r.in_service, 0.5))} / {ms(pct(r.in_service, 0.99))}"
            if r.in_service
            else "n/a"
        )
        rows.append(
            f"| {r.name} | {r.events:,} | {r.rate:,.0f} | {r.rate_with_startup:,.0f} | "
            f"{ms(pct(r.latencies, 0.5))} / {ms(pct(r.latencies, 0.99))} | {in_service} | "
            f"{r.cpu_per_event * 1e6:,.0f} | {rss(r)} | {ratio} |"
        )
    steady_rows = [
        "| load | events | published in (s) | done in (s) | latency p50 / p99 (ms) | "
        "in-service p50 / p99 (ms) | CPU per input event (µs) | ledger CPU per own event (µs) "
        "| peak RSS per instance (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in steady:
        steady_rows.append(
            f"| {r.name} | {r.events:,} | {r.publish_seconds:,.1f} | {r.seconds:,.1f} | "
            f"{ms(pct(r.latencies, 0.5))} / {ms(pct(r.latencies, 0.99))} | "
            f"{ms(pct(r.in_service, 0.5))} / {ms(pct(r.in_service, 0.99))} | "
            f"{r.cpu_per_event * 1e6:,.0f} | {r.ledger_cpu_per_event * 1e6:,.0f} | {rss(r)} |"
        )
    steady_section = [
        "## Steady load (returns service and refund ledger running, flows published evenly)",
        "",
        *steady_rows,
        "",
        "Latency: the `refund.issued` record's timestamp - the return-leg signature's publish "
        "timestamp, every flow of the load (the four events of a flow are published together). "
        "Done in: from the first publish to the last refund published.",
        "",
        *[f"- {r.name}, medians (ms): {r.stages}" for r in steady if r.stages],
        "",
    ]
    notes = [f"- {r.name}: {n}" for r in [*results, *steady] for n in r.notes]
    alone = {r.instances: r for r in results if not r.ledger}
    hops = []
    for r in results:
        if r.ledger and (one := alone.get(r.instances)) is not None and one.rate:
            cost = 1 - r.rate / one.rate
            change = f"{cost * 100:.0f} % fewer" if cost >= 0 else f"{-cost * 100:.0f} % more"
            hops.append(
                f"- {r.name}: **{change}** events/s than "
                f"the returns service alone ({r.rate:,.0f} against {one.rate:,.0f}; CPU per "
                f"input event {r.cpu_per_event * 1e6:,.0f} µs against "
                f"{one.cpu_per_event * 1e6:,.0f}); the "
                f"ledger processed {r.ledger_events:,} events of its own at "
                f"{r.ledger_cpu_per_event * 1e6:,.0f} µs CPU each, in-service p50 / p99 "
                f"{ms(pct(r.in_service, 0.5))} / {ms(pct(r.in_service, 0.99))} ms"
            )
    return "\n".join(
        [
            "# Returns pipeline benchmark (returns service and refund ledger)",
            "",
            "Written by `make bench` (`python -m bench.run`); bench/run.py says what is measured "
            "and how.",
            "",
            f"- machine: `{uname()}`, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
            f"- command: `{command}`",
            f"- flows: {flows:,} (4 input events each: {4 * flows:,} events; outputs: "
            "return.approved, refund.requested, return.completed, and the ledger's "
            "refund.issued), published before any consumer ran",
            "",
            *rows,
            "",
            "events/s: input events processed / (last output - first transaction start). "
            "Latency from publish: the output record's timestamp (`refund.requested`, or the "
            "ledger's `refund.issued`) - the return-leg signature's publish timestamp (mostly "
            "time queued in the backlog). In-service: output timestamp - the start of the batch "
            "transaction that wrote it (the batch, the commit and the outbox relay). CPU per "
            "event: CPU time of the consumer's own processes (all instances, the ledger's "
            "included; not PostgreSQL's or the broker's) from the first event processed to the "
            "end, per input event. Peak RSS: the largest peak resident set of the returns "
            "instances (and the ledger's), read from /proc when the run ends.",
            "",
            *[
                f"Ratio to the minimal consumer, {r.name}: **{r.rate / baseline.rate:.2f}**"
                for r in results
                if baseline and baseline.rate
            ],
            "",
            *(["## The extra hop (the refund ledger)", "", *hops, ""] if hops else []),
            *(steady_section if steady else []),
            f"Chart: [{chart}]({chart}). Where the time goes and what limits the ratio: "
            "bench/README.md.",
            "",
            *(["## Notes", "", *notes, ""] if notes else []),
        ]
    )


# --------------------------------------------------------------------------------------------
# main


async def main_async(args: argparse.Namespace) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=_run_root()))
    say(f"{args.flows} flows; logs in {run_dir}")
    results: list[Result] = []
    baseline: Result | None = None
    async with infrastructure() as infra:
        if not args.no_baseline:
            baseline = await run_baseline(infra, args.flows)
            say(f"{baseline.name}: {baseline.rate:,.0f} events/s")
        for instances in args.instances:
            for ledger in (False, True):
                result = await run_service(
                    infra, args.flows, instances, run_dir, args.profile, ledger
                )
                say(f"{result.name}: {result.rate:,.0f} events/s")
                results.append(result)
        steady = []
        for rate in args.steady:
            load = await run_steady(infra, rate, args.steady_seconds, run_dir, args.profile)
            say(
                f"{load.name}: latency p50 / p99 {pct(load.latencies, 0.5) * 1000:,.0f} / "
                f"{pct(load.latencies, 0.99) * 1000:,.0f} ms"
            )
            steady.append(load)
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    chart = Path(args.report).with_suffix(".svg")
    text = render(args.flows, results, baseline, command, steady, chart.name)
    print(text)
    if args.report != "-":
        write_report(Path(args.report), text)
        chart.write_text(render_svg(chart_panels(results, baseline, steady)))
        say(f"results written to {args.report} and {chart}")
    if not args.profile:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        say(f"profiles in {run_dir}")
    failed = any(r.notes for r in [*results, *steady])
    return 1 if failed else 0


def chart_panels(
    results: Sequence[Result], baseline: Result | None, steady: Sequence[Result]
) -> list[Panel]:
    """Throughput by consumer and instance count; latency (p50, p99) on the backlog and under
    each steady load."""
    backlog = ([baseline] if baseline else []) + list(results)
    panels = [
        Panel(
            "Throughput on a backlog (input events/s)",
            "events/s",
            ["events/s"],
            [(_short(r.name), [r.rate]) for r in backlog],
        ),
        Panel(
            "CPU per input event (µs, the consumer's own processes)",
            "µs",
            ["CPU"],
            [(_short(r.name), [r.cpu_per_event * 1e6]) for r in backlog],
        ),
    ]
    if steady:
        panels.append(
            Panel(
                "Steady load: return-leg signature to refund.issued (ms)",
                "ms",
                ["p50", "p99"],
                [
                    (_short(r.name), [pct(r.latencies, 0.5) * 1000, pct(r.latencies, 0.99) * 1000])
                    for r in steady
                ],
            )
        )
    return panels


def _short(name: str) -> str:
    return (
        name.split(" (")[0].replace("returns service", "returns").replace("refund ledger", "ledger")
    )


def write_report(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _run_root() -> Path:
    root = ROOT / ".run" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--flows", type=int, default=int(os.environ.get("BENCH_FLOWS") or 10_000))
    parser.add_argument(
        "--instances",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="service instance counts to measure, e.g. 1,2",
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--steady",
        type=lambda s: [int(x) for x in s.split(",") if x and x != "0"],
        default=[500],
        help="steady loads to measure, in input events/s, e.g. 250,500 (0: none)",
    )
    parser.add_argument("--steady-seconds", type=int, default=60)
    parser.add_argument("--profile", choices=[*_PROFILERS, "py-spy"], default=None)
    parser.add_argument("--report", default=str(DEFAULT_REPORT), help="'-': nowhere")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
