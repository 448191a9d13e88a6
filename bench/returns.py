"""The returns pipeline's runs: a backlog through the returns service (1 or more instances),
alone up to its `refund.requested` or with the refund ledger up to `refund.issued`, and a
steady load through both (latency by stage)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import asyncpg

from aftersales_dev.devenv import plain_dsn
from faults.infra import ServiceProcess, service_env
from shared.contracts import topics

from .backlog import (
    GROUP,
    PAID,
    Infra,
    fresh_database,
    fresh_topics,
    publish_backlog,
    publish_paced,
    read_records,
    returns_topics,
)
from .measure import (
    PROFILERS,
    Result,
    backlog_figures,
    cpu_seconds,
    finish_py_spy,
    pct,
    say,
    start_py_spy,
    stop_measured,
    wait_outputs,
)


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
    await fresh_topics(infra, *returns_topics(GROUP))
    services = ("returns", "refunds") if ledger else ("returns",)
    processes: list[ServiceProcess] = []
    ledgers: list[ServiceProcess] = []
    async with fresh_database(infra, "bench_returns", services) as database:
        try:
            run_id = f"S{uuid.uuid4().hex[:8]}"
            t = time.monotonic()
            signed = await publish_backlog(infra.bootstrap, run_id, flows)
            result.publish_seconds = time.monotonic() - t
            say(f"{result.name}: {4 * flows} events published in {result.publish_seconds:.1f} s")
            env = service_env(bootstrap=infra.bootstrap, database_url=database)
            processes = [ServiceProcess("returns", i, env, run_dir) for i in range(instances)]
            ledgers = [ServiceProcess("refunds", 0, env, run_dir)] if ledger else []
            profiler = PROFILERS.get(profile or "", [])
            for process in (processes[0], *ledgers) if profiler else ():
                out = run_dir / f"{process.service}-x{instances}{'-ledger' if ledger else ''}.prof"
                process.argv_prefix = [*profiler, str(out)]
            spawned = time.time()
            for process in processes + ledgers:
                process.start()
            name = f"x{instances}{'-ledger' if ledger else ''}"
            spies = []
            for process in (processes[0], *ledgers) if profile == "py-spy" else ():
                raw = run_dir / f"{process.service}-{name}.pyspy.txt"
                if (spy := start_py_spy(process, raw)) is not None:
                    spies.append((process, spy, raw))
            dsn = plain_dsn(database)
            conn = await asyncpg.connect(dsn)
            try:
                servers: dict[str, float] = {}
                cpu_at_start = await wait_outputs(
                    conn,
                    flows,
                    processes + ledgers,
                    schema,
                    output,
                    on_start=lambda: servers.update(infra.server_cpu()),
                )
                result.server_cpu = infra.server_cpu_since(servers)
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
                outbox = f"{schema}.outbox"  # a constant
                issued = {
                    r["event_id"]: float(r["at"])
                    for r in await conn.fetch(
                        f"SELECT event_id, extract(epoch FROM created_at) AS at FROM {outbox} "  # noqa: S608
                        "WHERE event_type = $1",
                        output,
                    )
                }
            finally:
                await conn.close()
            await stop_measured(result, processes, ledgers)
            for process, spy, raw in spies:
                if summary := finish_py_spy(spy, raw):
                    say(f"profile of {process.name} ({result.name}):\n{summary}")
            refunds = await read_records(infra.bootstrap, topic)
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
            backlog_figures(result, by_order, signed, stats, spawned)
            if len(by_order) != flows or result.wrong:
                result.notes.append(
                    f"{len(by_order)} refunds for {flows} flows, {result.wrong} wrong"
                )
        finally:
            for process in processes + ledgers:
                process.stop_now()
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
    await fresh_topics(infra, *returns_topics(GROUP))
    async with fresh_database(infra, "bench_steady", ("returns", "refunds")) as database:
        await _steady(infra, database, result, rate, seconds, run_dir, profile)
    return result


async def _steady(
    infra: Infra,
    database: str,
    result: Result,
    rate: int,
    seconds: int,
    run_dir: Path,
    profile: str | None,
) -> None:
    env = service_env(bootstrap=infra.bootstrap, database_url=database)
    processes = [ServiceProcess("returns", 0, env, run_dir)]
    ledgers = [ServiceProcess("refunds", 0, env, run_dir)]
    profiler = PROFILERS.get(profile or "", [])
    for process in processes + ledgers if profiler else ():
        out = run_dir / f"{process.service}-steady-{rate}.prof"
        process.argv_prefix = [*profiler, str(out)]
    warm_flows = 20
    flows = rate * seconds // 4
    try:
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
        await stop_measured(result, processes, ledgers)
        first: dict[str, int] = {}
        for ts, event in await read_records(infra.bootstrap, topics.REFUNDS):
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
