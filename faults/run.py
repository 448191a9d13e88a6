"""Fault-injection run: thousands of return and complaint flows through the real services while
they are killed, their database restarted and their broker connections cut; then a
reconciliation of every input, refund, coupon and timer.

    python -m faults.run [--flows 2000] [--complaint-flows 500] [--seconds 90] [--quick]

Starts a PostgreSQL cluster and an in-memory broker (behind a TCP proxy) unless DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS are set (then: a fresh database on that server, no database restarts;
no connection drops, since a proxy only works when the broker advertises it). Migrates, starts
`aftersales run returns` and `aftersales run complaints` as OS processes, publishes the flows
(faults/flows.py) while the chaos loop runs, waits until everything is quiet, reconciles
(faults/check.py), prints the figures, writes docs/results/faults.md and exits 1 on any
discrepancy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from aftersales_dev.devenv import (
    LocalPostgres,
    create_database,
    drop_database,
    find_postgres_bindir,
    plain_dsn,
    skip_history,
    tail,
)
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ensure_topics
from shared.migrations import upgrade
from shared.policy import Policy
from shared.settings import Settings

from . import check
from .flows import POISON_KINDS, Flow, Message, generate, plan
from .gateway import DeliveryGateway
from .infra import ROOT, DatabaseProxy, ProxiedBroker, ServiceProcess, service_env

SERVICES = ("returns", "complaints", "refunds", "followup", "notifier")
DEFAULT_REPORT = ROOT / "docs" / "results" / "faults.md"
# max.poll.interval of the slow returns instance: a database blackhole (1-5 s) or latency on
# top of a batch's own time outlasts it now and then.
SLOW_POLL_INTERVAL_MS = 4000


def say(text: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# infrastructure


@dataclass
class Infra:
    bootstrap: str
    database_url: str
    broker: ProxiedBroker | None = None  # None: a configured broker (no connection drops)
    postgres: LocalPostgres | None = None  # None: a configured server (no restarts)
    # In front of the local PostgreSQL for the services (latency, blackholes); None: no proxy.
    db_proxy: DatabaseProxy | None = None

    @property
    def services_database_url(self) -> str:
        return self.db_proxy.database_url if self.db_proxy is not None else self.database_url


@contextlib.asynccontextmanager
async def infrastructure(run_dir: Path) -> AsyncIterator[Infra]:
    stack = contextlib.AsyncExitStack()
    async with stack:
        broker: ProxiedBroker | None = None
        if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            bootstrap = servers
            say(f"using the configured broker {servers} (no connection drops)")
        else:
            broker = ProxiedBroker(run_dir).start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
            say(f"broker (Tansu, in-memory) behind a proxy on {bootstrap}")
        postgres: LocalPostgres | None = None
        if url := os.environ.get("DATABASE_URL"):
            server = Settings(database_url=url).database_url
            database_url = await create_database(server, "faults")
            stack.push_async_callback(drop_database, server, database_url)
            say("using a fresh database on the configured server (no database restarts)")
        else:
            if find_postgres_bindir() is None:
                raise SystemExit(
                    "faults: no PostgreSQL server binaries and no DATABASE_URL (run make install)"
                )
            postgres = LocalPostgres()
            await asyncio.to_thread(postgres.start)
            stack.callback(postgres.stop)
            database_url = postgres.url
        db_proxy: DatabaseProxy | None = None
        if postgres is not None:
            db_proxy = DatabaseProxy(run_dir, database_url)
            stack.callback(db_proxy.stop)
            say(f"services reach PostgreSQL through a proxy on port {db_proxy.port}")
        yield Infra(bootstrap, database_url, broker, postgres, db_proxy)


# --------------------------------------------------------------------------------------------
# chaos


@dataclass
class Chaos:
    instances: list[ServiceProcess]
    infra: Infra
    rng: random.Random
    kills_until: float  # monotonic instant after which no service is killed any more
    gateway: DeliveryGateway | None = None  # the notifier's SMS gateway
    kills: int = 0
    db_restarts: int = 0
    drops: int = 0
    connections_cut: int = 0
    crashes: list[str] = field(default_factory=list)  # exits nobody asked for
    log: list[str] = field(default_factory=list)
    terms: int = 0
    pauses: int = 0
    _busy: set[str] = field(default_factory=set)  # instances a chaos action is working on

    async def run(self, until: float, *, gap: tuple[float, float]) -> None:
        weights = {"kill": 4, "term": 1, "pause": 2, "db": 2, "drop": 3, "db_slow": 2, "db_hold": 1}
        if self.gateway is not None:
            weights |= {"gw_fail": 2, "gw_hang": 2}
        if self.infra.postgres is None:
            del weights["db"]
        if self.infra.db_proxy is None:
            del weights["db_slow"], weights["db_hold"]
        if self.infra.broker is None:
            del weights["drop"]
        background: list[asyncio.Task[None]] = []
        while (remaining := until - time.monotonic()) > 0:
            await asyncio.sleep(min(self.rng.uniform(*gap), remaining))
            if time.monotonic() >= until:
                break
            on_services = time.monotonic() < self.kills_until
            allowed = [a for a in weights if on_services or a not in ("kill", "term", "pause")]
            action = self.rng.choices(allowed, [weights[a] for a in allowed])[0]
            if action in ("kill", "term", "pause"):
                running = [i for i in self.instances if i.running and i.name not in self._busy]
                if not running:
                    continue
                victim = self.rng.choice(running)
                self._busy.add(victim.name)
                if action == "kill":
                    self._note(f"SIGKILL {victim.name} (pid {victim.pid})")
                    victim.kill()
                    self.kills += 1
                    background.append(asyncio.create_task(self._restart(victim)))
                elif action == "term":
                    self._note(f"SIGTERM {victim.name} (pid {victim.pid}), graceful stop")
                    background.append(asyncio.create_task(self._graceful(victim)))
                else:
                    pause = self.rng.uniform(2, 15)
                    self._note(f"SIGSTOP {victim.name} (pid {victim.pid}) for {pause:.1f} s")
                    background.append(asyncio.create_task(self._pause(victim, pause)))
            elif action in ("db_slow", "db_hold"):
                proxy = self.infra.db_proxy
                assert proxy is not None
                seconds = self.rng.uniform(1, 5)
                if action == "db_slow":
                    latency = self.rng.uniform(20, 200)
                    self._note(f"PostgreSQL {latency:.0f} ms slower per packet for {seconds:.1f} s")
                    await asyncio.to_thread(proxy.slow, latency, seconds)
                else:
                    self._note(f"PostgreSQL blackholed (nothing forwarded) for {seconds:.1f} s")
                    await asyncio.to_thread(proxy.hold, seconds)
            elif action in ("gw_fail", "gw_hang"):
                assert self.gateway is not None
                seconds = self.rng.uniform(1, 4)
                if action == "gw_fail":
                    self._note(f"delivery gateway answers 503 for {seconds:.1f} s")
                    self.gateway.fail(seconds)
                else:
                    self._note(f"delivery gateway holds requests, {seconds:.1f} s")
                    self.gateway.hang(seconds)
            elif action == "db":
                assert self.infra.postgres is not None
                self._note("PostgreSQL restart")
                await asyncio.to_thread(self.infra.postgres.restart)
                self.db_restarts += 1
            else:
                assert self.infra.broker is not None
                blackout = self.rng.uniform(0, 2.5)
                cut = await asyncio.to_thread(self.infra.broker.drop, blackout)
                self.drops += 1
                self.connections_cut += cut
                self._note(f"broker connections dropped ({cut}), refused for {blackout:.1f} s")
        for task in background:
            await task

    async def _restart(self, victim: ServiceProcess) -> None:
        await asyncio.sleep(self.rng.uniform(0, 3))
        victim.start()
        self._busy.discard(victim.name)

    async def _graceful(self, victim: ServiceProcess) -> None:
        code = await asyncio.to_thread(victim.terminate)
        self.terms += 1
        if code != 0:
            self.crashes.append(f"{victim.name} stopped with {code} on SIGTERM")
        await self._restart(victim)

    async def _pause(self, victim: ServiceProcess, seconds: float) -> None:
        victim.pause()
        await asyncio.sleep(seconds)
        victim.resume()
        self.pauses += 1
        self._busy.discard(victim.name)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart an instance that exited by itself (as an orchestrator would), noting it."""
        while not stop.is_set():
            for instance in self.instances:
                proc = instance.proc
                if instance.name in self._busy or proc is None or proc.poll() is None:
                    continue
                self.crashes.append(
                    f"{instance.name} exited with {proc.returncode}: {last_error(instance)}"
                )
                self._note(f"{instance.name} exited by itself ({proc.returncode}); restarted")
                instance.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def _note(self, text: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {text}")
        say(f"chaos: {text}")


def last_error(instance: ServiceProcess) -> str:
    """The last exception line of an instance's log (why it exited)."""
    lines = tail(instance.run_dir / f"{instance.name}.log", 60).splitlines()
    errors = [
        line
        for line in lines
        if line.startswith("aftersales:") or (line[:1].isalnum() and "Error: " in line[:60])
    ]
    return errors[-1][:200] if errors else "no error logged"


# --------------------------------------------------------------------------------------------
# publishing


async def publish(bootstrap: str, messages: Sequence[Message], seconds: float) -> check.Published:
    """Every message in order, paced over `seconds`; each chunk acknowledged before the next.

    The producer retries a batch cut by a dropped connection itself, one request in flight
    per broker, so the order within a partition holds (a retried batch may be written twice:
    more duplicates). A send that fails for good is sent again and counted.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks="all",
        linger_ms=5,
        request_timeout_ms=120_000,
        retry_backoff_ms=200,
    )
    await producer.start()
    published = check.Published(messages=list(messages))
    where: list[tuple[str, int, int] | None] = [None] * len(messages)
    headers = [("content-type", CONTENT_TYPE.encode())]
    chunk = max(50, int(len(messages) / max(seconds * 4, 1)))
    started = time.monotonic()
    try:
        for begin in range(0, len(messages), chunk):
            indexes = list(range(begin, min(begin + chunk, len(messages))))
            while indexes:
                futures = [
                    await producer.send(
                        messages[i].topic,
                        messages[i].value,
                        key=messages[i].key.encode(),
                        headers=headers,
                    )
                    for i in indexes
                ]
                results = await asyncio.gather(*futures, return_exceptions=True)
                failed = []
                for i, result in zip(indexes, results, strict=True):
                    if isinstance(result, BaseException):
                        failed.append(i)
                    else:
                        where[i] = (result.topic, result.partition, result.offset)
                published.failures += len(failed)
                indexes = failed
            # pace: the chunk ends at its share of `seconds`
            due = started + seconds * min(begin + chunk, len(messages)) / len(messages)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    finally:
        await producer.stop()
    published.where = [w for w in where if w is not None]
    assert len(published.where) == len(messages)
    return published


# --------------------------------------------------------------------------------------------
# waiting until quiet


async def wait_quiet(
    infra: Infra,
    services: Sequence[check.ServiceInfo],
    flows: Sequence[Flow],
    published: check.Published,
    run_id: str,
    deadline: float,
) -> tuple[bool, dict[str, int]]:
    """Until every input is in an inbox or dead-lettered, the outboxes are empty, the consumer
    groups have no lag and no timer is due (and the timers the flows wait for have fired)."""
    dsn = plain_dsn(infra.database_url)
    ends = published.ends()
    expected_inputs = {
        s.name: {
            m.event_id
            for m in published.messages
            if m.poison_reason is None and m.topic in s.topics and m.event_type in s.handled
        }
        for s in services
    }
    timers = check.expected_timers(flows)
    quiet_rounds = 0
    last_said = time.monotonic()
    state: dict[str, int] = {}
    while True:
        try:
            state = {}
            conn = await asyncpg.connect(dsn, timeout=5)
            try:
                for s in services:
                    progress = await check.db_progress(conn, s)
                    state[f"{s.name} outbox"] = progress["outbox"]
                    state[f"{s.name} due timers"] = progress["due_timers"]
                    if s.name == "notifier":
                        unfinished = await check.unfinished_notifications(conn, run_id)
                        state["notifier unfinished notifications"] = unfinished
                    inbox = await check.inbox_ids(conn, s, run_id)
                    state[f"{s.name} unprocessed"] = len(expected_inputs[s.name] - inbox)
                    state[f"{s.name} lag"] = await check.lag(infra.bootstrap, s, ends)
                # timers the flows wait for, unless due after the deadline (deferred)
                horizon = time.time() + (deadline - time.monotonic())
                for schema, refs in timers.items():
                    live = await check.live_timers(conn, schema, refs)
                    state[f"{schema} awaited timers"] = sum(
                        1 for _, _, due in live if due.timestamp() < horizon
                    )
            finally:
                await conn.close()
            if time.monotonic() - last_said > 15:
                say(f"waiting until quiet: {state}")
                last_said = time.monotonic()
            if all(v == 0 for v in state.values()):
                quiet_rounds += 1
                if quiet_rounds >= 2:
                    return True, state
            else:
                quiet_rounds = 0
        except (TimeoutError, OSError, asyncpg.PostgresError, KafkaError) as exc:
            state = {"error": 1}
            say(f"progress check failed: {type(exc).__name__}: {exc}")
        if time.monotonic() > deadline:
            return False, state
        await asyncio.sleep(2.0)


# --------------------------------------------------------------------------------------------
# the report


def uname() -> str:
    try:
        out = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout  # noqa: S607
    except (OSError, subprocess.CalledProcessError):
        return " ".join(platform.uname()).strip()
    return out.strip()


def machine() -> dict[str, str]:
    return {
        "uname -a": uname(),
        "CPUs": str(os.cpu_count()),
        "Python": sys.version.split()[0],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def render(
    args: argparse.Namespace,
    findings: check.Findings,
    chaos: Chaos,
    flows: Sequence[Flow],
    timings: dict[str, float],
    quiet: bool,
    state: dict[str, int],
) -> str:
    ok = not findings.problems
    kinds = Counter(f.kind for f in flows)
    lines = [
        "# Fault-injection run",
        "",
        "Written by `make faults` (`python -m faults.run`); see faults/flows.py for the flows and "
        "their expected outcomes, faults/check.py for the reconciliation.",
        "",
        f"**Result: {'PASS' if ok else 'FAIL'}**",
        "",
        "## Machine",
        "",
        *[f"- {k}: `{v}`" for k, v in machine().items()],
        "",
        "## Run",
        "",
        f"- command: `{' '.join(['python -m faults.run', *sys.argv[1:]])}`",
        f"- seed {args.seed}, {args.flows} return flows, {args.complaint_flows} complaint flows, "
        f"duplicate rate {args.dup_rate}, {args.returns_instances} returns + "
        f"{args.complaints_instances} complaints + {args.refunds_instances} refund ledger "
        "instance(s)",
        f"- flows by kind: {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}",
        *[f"- {k}: {v:.1f} s" for k, v in timings.items()],
        f"- quiet reached: {'yes' if quiet else 'NO'} (last check: "
        f"{', '.join(f'{k} {v}' for k, v in state.items())})",
        "",
        "## Faults injected",
        "",
        f"- service processes killed (SIGKILL): {chaos.kills}",
        f"- service processes stopped gracefully (SIGTERM) and restarted: {chaos.terms}",
        f"- service processes paused (SIGSTOP, 2-15 s, then SIGCONT): {chaos.pauses}",
        f"- slow consumer: returns instance {args.returns_instances - 1} polls within "
        f"{SLOW_POLL_INTERVAL_MS} ms (KAFKA_MAX_POLL_INTERVAL_MS) or leaves its group",
        f"- PostgreSQL restarts: {chaos.db_restarts}",
        f"- PostgreSQL slowed down (20-200 ms per packet, 1-5 s): "
        f"{chaos.infra.db_proxy.slowdowns if chaos.infra.db_proxy else 0}",
        f"- PostgreSQL blackholed (nothing forwarded, 1-5 s): "
        f"{chaos.infra.db_proxy.holds if chaos.infra.db_proxy else 0}",
        f"- broker connection drops: {chaos.drops} ({chaos.connections_cut} connections reset)",
        f"- delivery gateway answering 503 (1-4 s): "
        f"{chaos.gateway.failures if chaos.gateway else 0}",
        f"- delivery gateway holding requests past the notifier's timeout (1-4 s): "
        f"{chaos.gateway.hangs if chaos.gateway else 0}",
        f"- service exits nobody asked for (restarted): {len(chaos.crashes)}"
        + (f" ({'; '.join(chaos.crashes[:5])})" if chaos.crashes else ""),
        "",
        "## Counts",
        "",
        "| what | count |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in findings.counts.items()],
        "",
        "## Discrepancies",
        "",
        *([f"- {p}" for p in findings.problems] or ["none"]),
        "",
    ]
    if findings.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in findings.notes], ""]
    lines += ["## Chaos log", "", "```", *chaos.log, "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m faults.run", description=__doc__)
    parser.add_argument("--flows", type=int, default=None, help="return flows (2000)")
    parser.add_argument("--complaint-flows", type=int, default=None, help="complaint flows (500)")
    parser.add_argument("--seconds", type=float, default=None, help="chaos duration (90)")
    parser.add_argument("--quick", action="store_true", help="a short run for CI (< 90 s)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dup-rate", type=float, default=0.15)
    parser.add_argument("--returns-instances", type=int, default=None)
    parser.add_argument("--complaints-instances", type=int, default=1)
    parser.add_argument("--refunds-instances", type=int, default=1)
    parser.add_argument("--settle-timeout", type=float, default=None, help="seconds to get quiet")
    parser.add_argument("--no-chaos", action="store_true", help="publish and check only")
    parser.add_argument(
        "--report", default=str(DEFAULT_REPORT), help="where to write the results ('-': nowhere)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    quick = args.quick
    args.flows = args.flows if args.flows is not None else (300 if quick else 2000)
    if args.complaint_flows is None:
        args.complaint_flows = 100 if quick else 500
    args.seconds = args.seconds if args.seconds is not None else (25.0 if quick else 90.0)
    if args.returns_instances is None:
        args.returns_instances = 1 if quick else 2
    if args.settle_timeout is None:
        args.settle_timeout = 90.0 if quick else 300.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    return args


async def main_async(args: argparse.Namespace) -> int:
    run_id = f"F{uuid.uuid4().hex[:8]}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"faults-{run_id}-", dir=_run_root()))
    say(f"run {run_id}, seed {args.seed}, logs in {run_dir}")
    rng = random.Random(args.seed)  # noqa: S311 - reproducible chaos
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    async with infrastructure(run_dir) as infra:
        for name in SERVICES:
            await asyncio.to_thread(upgrade, name, infra.database_url)
        services = check.service_infos(SERVICES)
        settings = Settings(kafka_bootstrap_servers=infra.bootstrap, kafka_idempotence=False)
        from aftersales.registry import definition
        from shared.clock import SystemClock

        all_topics = sorted(
            {t for n in SERVICES for t in definition(n, Policy(), SystemClock()).all_topics}
        )
        await ensure_topics(settings, all_topics)
        if infra.broker is None:
            for s in services:
                await skip_history(infra.bootstrap, s.group, s.topics)
        env = service_env(bootstrap=infra.bootstrap, database_url=infra.services_database_url)
        gateway = DeliveryGateway().start()
        notifier_env = {**env, **notifier_extra(run_dir, gateway.url)}
        # The last returns instance is a slow consumer: under database latency or a blackhole
        # its batch outlasts max.poll.interval, it leaves its group mid-batch and the batch is
        # fetched again; the reconciliation shows nothing lost and nothing applied twice.
        slow_env = {**env, "KAFKA_MAX_POLL_INTERVAL_MS": str(SLOW_POLL_INTERVAL_MS)}
        slow = ("returns", args.returns_instances - 1)
        instances = [
            ServiceProcess(
                name,
                i,
                notifier_env if name == "notifier" else slow_env if (name, i) == slow else env,
                run_dir,
            )
            for name, count in (
                ("returns", args.returns_instances),
                ("complaints", args.complaints_instances),
                ("refunds", args.refunds_instances),
                ("followup", 1),
                ("notifier", 1),
            )
            for i in range(count)
        ]
        try:
            for instance in instances:
                instance.start()
            for instance in instances:
                await asyncio.to_thread(instance.wait_ready, 90.0)
            timings["start-up (infrastructure, migrations, services ready)"] = time.monotonic() - t0

            now = datetime.now(UTC)
            publish_seconds = args.seconds * 0.5
            timer_window = (args.seconds * 0.5, args.seconds * 0.9)
            flows = generate(
                run_id=run_id,
                now=now,
                seed=args.seed,
                returns=args.flows,
                complaints=args.complaint_flows,
                timer_window=timer_window,
            )
            messages = plan(
                flows,
                seed=args.seed,
                duplicate_rate=args.dup_rate,
                poison_records=max(len(POISON_KINDS), (args.flows + args.complaint_flows) // 150),
                run_id=run_id,
            )
            say(f"{len(flows)} flows, {len(messages)} records over {publish_seconds:.0f} s")

            t1 = time.monotonic()
            kills_until = t1 + args.seconds * 0.7
            chaos = Chaos(instances, infra, rng, kills_until=kills_until, gateway=gateway)
            stop = asyncio.Event()
            supervisor = asyncio.create_task(chaos.supervise(stop))
            chaos_task = None
            if not args.no_chaos:
                gap = (1.0, 3.0) if args.quick else (1.5, 5.0)
                chaos_task = asyncio.create_task(chaos.run(t1 + args.seconds, gap=gap))
            published = await publish(infra.bootstrap, messages, publish_seconds)
            timings["publishing"] = time.monotonic() - t1
            say(f"published {len(messages)} records ({published.failures} sends repeated)")
            if chaos_task is not None:
                await chaos_task
            timings["chaos"] = time.monotonic() - t1
            for instance in instances:  # everything up again for the end
                instance.start()

            t2 = time.monotonic()
            quiet, state = await wait_quiet(
                infra, services, flows, published, run_id, t2 + args.settle_timeout
            )
            timings["waiting until quiet"] = time.monotonic() - t2
            stop.set()
            await supervisor
            say(f"quiet: {quiet} {state}")

            # Stopped (gracefully: the outbox drained) before the reconciliation: the notifier
            # is still working off its backlog, and what it sends while the topics and the
            # database are read would be in one and not yet in the other.
            for instance in instances:
                await asyncio.to_thread(instance.terminate)
            t3 = time.monotonic()
            findings = await check.reconcile(
                dsn=plain_dsn(infra.database_url),
                bootstrap=infra.bootstrap,
                run_id=run_id,
                services=services,
                flows=flows,
                published=published,
                gateway=gateway,
            )
            timings["reconciliation"] = time.monotonic() - t3
            if not quiet:
                findings.problem(f"not quiet within {args.settle_timeout:.0f} s: {state}")
        finally:
            for instance in instances:  # whatever happened, none is left behind
                instance.stop_now()
            gateway.stop()
        timings["total"] = time.monotonic() - t0

    c = findings.counts
    summary = {
        "published records": c.get("published records"),
        "unique events": c.get("published events (unique ids)"),
        "duplicates": c.get("duplicate deliveries published"),
        "processed": c.get("processed (inbox rows, all services)"),
        "dead-lettered": c.get("dead-lettered (poison, all services)"),
        "refunds expected/found/missing/duplicated/wrong": "/".join(
            str(c.get(k))
            for k in (
                "refunds expected",
                "refunds found",
                "refunds missing",
                "refunds duplicated (several event ids)",
                "refunds with a wrong amount",
            )
        ),
        "coupons expected/found/twice": "/".join(
            str(c.get(k)) for k in ("coupons expected", "coupons found", "coupons granted twice")
        ),
        "kills": chaos.kills,
        "graceful stops": chaos.terms,
        "pauses": chaos.pauses,
        "db restarts": chaos.db_restarts,
        "connection drops": chaos.drops,
    }
    print("\n".join(f"{k:>50}: {v}" for k, v in c.items()))
    print("-" * 72)
    print("  ".join(f"{k}: {v}" for k, v in summary.items()))
    for note in findings.notes:
        print(f"note: {note}")
    for problem in findings.problems:
        print(f"DISCREPANCY: {problem}")
    print("PASS" if not findings.problems else "FAIL")
    if args.report != "-":
        write_report(Path(args.report), render(args, findings, chaos, flows, timings, quiet, state))
        say(f"results written to {args.report}")
    if findings.problems or chaos.crashes or args.keep_logs:
        say(f"service logs kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if findings.problems else 0


def notifier_extra(run_dir: Path, gateway_url: str) -> dict[str, str]:
    """The notifier's gateway, a key every instance shares (contacts survive restarts) and a
    policy whose quiet hours lie hours away and whose daily cap the run cannot reach, so that
    every notification is due now, and whose retries come seconds apart (1, 4, 5, 5 s) instead
    of minutes, so that every notification ends, sent or given up, within the run. Only the
    notifier reads it: the other services keep the default policy the expected outcomes are
    computed with."""
    from zoneinfo import ZoneInfo

    from shared.crypto import generate_key

    local = datetime.now(ZoneInfo(Policy().timezone))
    start = (local.hour + 12) % 24
    policy = run_dir / "notifier-policy.toml"
    policy.write_text(
        "[notifier]\n"
        "max_non_urgent_per_day = 100\n"
        "retry_first_delay_seconds = 1\n"
        "retry_longest_delay_seconds = 5\n"
        f'quiet_hours = "{start:02d}:00-{(start + 1) % 24:02d}:00"\n'
    )
    return {
        "AFTERSALES_SMS_GATEWAY_URL": gateway_url,
        "AFTERSALES_ENCRYPTION_KEY": generate_key(),
        "AFTERSALES_POLICY_FILE": str(policy),
    }


def write_report(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _run_root() -> Path:
    root = ROOT / ".run" / "faults"
    root.mkdir(parents=True, exist_ok=True)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The publisher's and checker's clients log every cut connection; the chaos log says it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
