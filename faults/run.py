"""Fault-injection run: thousands of return and complaint flows through the real services while
they are killed, their database restarted and their broker connections cut; then a
reconciliation of every input, refund, coupon and timer.

    python -m faults.run [--flows 2000] [--complaint-flows 500] [--seconds 90] [--quick]

Starts a PostgreSQL cluster and an in-memory broker (behind a TCP proxy) unless DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS are set (then: a fresh database on that server, no database restarts;
no connection drops, since a proxy only works when the broker advertises it). Migrates, starts
`aftersales run returns` and `aftersales run complaints` as OS processes, publishes the flows
(faults/flows.py, in the order of faults/plan.py) while the chaos loop (faults/chaos.py) runs,
waits until everything is quiet (faults/progress.py), reconciles (faults/check.py and
faults/check_cases.py), prints the figures, writes docs/results/faults.md (faults/report.py)
and exits 1 on any discrepancy.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aftersales_dev.devenv import plain_dsn, skip_history
from shared.messaging.runtime import ensure_topics
from shared.migrations import upgrade
from shared.policy import Policy
from shared.settings import Settings

from . import check, progress
from .chaos import SLOW_POLL_INTERVAL_MS, Chaos
from .flows import generate
from .gateway import DeliveryGateway
from .infra import ROOT, ServiceProcess, infrastructure, notifier_extra, say, service_env
from .plan import POISON_KINDS, plan
from .progress import wait_quiet
from .publish import publish
from .report import render

SERVICES = ("returns", "complaints", "refunds", "followup", "notifier")
DEFAULT_REPORT = ROOT / "docs" / "results" / "faults.md"


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
        services = progress.service_infos(SERVICES)
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
            # What comes due after the wait's deadline (a catch-up timer, a notification's
            # retry) is deferred: the reconciliation counts it apart, not as a failure.
            horizon = datetime.now(UTC) + timedelta(seconds=args.settle_timeout)
            quiet, state = await wait_quiet(
                infra, services, flows, published, run_id, t2 + args.settle_timeout, horizon
            )
            timings["waiting until quiet"] = time.monotonic() - t2
            stop.set()
            await supervisor
            say(f"quiet: {quiet} {state}")

            # Stopped (gracefully: the outbox drained) before the reconciliation: the notifier
            # is still working off its backlog, and what it sends while the topics and the
            # database are read would be in one and not yet in the other.
            stopped = datetime.now(UTC)  # when the services are told to stop
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
                horizon=horizon,
                stopped=stopped,
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
