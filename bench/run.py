"""Throughput and latency of the services on a backlog, each beside a minimal consumer: the
returns pipeline, complaints through compensation, and the notifier.

    python -m bench.run [--flows 10000] [--instances 1,2] [--profile cpu|cprofile|py-spy]
                        [--only returns,complaints,notifier] [--complaint-flows N]
                        [--notifications N] [--no-ledger]

The returns pipeline (bench/returns.py):

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

Complaints (bench/complaints.py): a backlog of complaints through compensation, a coupon and
a refund by the ledger each, beside the minimal consumer on the same events. The notifier
(bench/notifier.py): a backlog of return decisions, each a notification delivered to a local
HTTP gateway, beside the minimal consumer on the same decisions.

Writes docs/results/bench.md (or --report), bench-complaints.md and bench-notifier.md beside
it (each when its part ran), the chart bench.svg (the panels of the parts run, with those of the
other parts kept from the chart before) and prints the same figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from faults.infra import ROOT

from .backlog import Infra, infrastructure
from .chart import redrawn
from .complaints import COMPENSATION_FLOWS, run_complaints
from .measure import PROFILERS, Result, pct, say
from .minimal import run_baseline
from .notifier import DECISIONS, run_notifier
from .report import (
    chart_panels,
    render,
    render_complaints,
    render_notifier,
    service_panels,
    write_report,
)
from .returns import run_service, run_steady

DEFAULT_REPORT = ROOT / "docs" / "results" / "bench.md"
PARTS = ("returns", "complaints", "notifier")


async def main_async(args: argparse.Namespace) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=_run_root()))
    say(f"{', '.join(args.only)}; {args.flows} flows; logs in {run_dir}")
    results: list[Result] = []
    baseline: Result | None = None
    steady: list[Result] = []
    done: dict[str, tuple[Result, Result | None]] = {}  # complaints, notifier: (run, minimal)
    async with infrastructure() as infra:
        if "returns" in args.only:
            if not args.no_baseline:
                baseline = await run_baseline(infra, args.flows)
                say(f"{baseline.name}: {baseline.rate:,.0f} events/s")
            for instances in args.instances:
                for ledger in (False, True) if args.ledger else (False,):
                    result = await run_service(
                        infra, args.flows, instances, run_dir, args.profile, ledger
                    )
                    say(f"{result.name}: {result.rate:,.0f} events/s")
                    results.append(result)
            for rate in args.steady:
                load = await run_steady(infra, rate, args.steady_seconds, run_dir, args.profile)
                say(
                    f"{load.name}: latency p50 / p99 {pct(load.latencies, 0.5) * 1000:,.0f} / "
                    f"{pct(load.latencies, 0.99) * 1000:,.0f} ms"
                )
                steady.append(load)
        for part, flows in (("complaints", args.complaint_flows), ("notifier", args.notifications)):
            if part in args.only:
                done[part] = await _service_part(infra, part, flows, run_dir, args)
    complaints, notifier = done.get("complaints"), done.get("notifier")
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    report = Path(args.report)
    chart = report.with_suffix(".svg")
    texts: dict[Path, str] = {}
    if "returns" in args.only:
        texts[report] = render(args.flows, results, baseline, command, steady, chart.name)
    if complaints is not None:
        texts[_beside(report, "complaints")] = render_complaints(
            args.complaint_flows, *complaints, command, chart.name
        )
    if notifier is not None:
        texts[_beside(report, "notifier")] = render_notifier(
            args.notifications, *notifier, command, chart.name
        )
    print("\n\n".join(texts.values()))
    if args.report != "-":
        for path, text in texts.items():
            write_report(path, text)
        panels = chart_panels(results, baseline, steady) if "returns" in args.only else []
        previous = chart.read_text() if chart.exists() else None
        svg = redrawn(previous, [*panels, *service_panels(complaints, notifier)], args.only, PARTS)
        if svg is None:
            say(
                f"results written to {', '.join(map(str, texts))}; {chart} left as it was (it "
                "carries no figures of the parts not run: a run of every part draws it again)"
            )
        else:
            chart.write_text(svg)
            say(f"results written to {', '.join(map(str, texts))} and {chart}")
    if not args.profile:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        say(f"profiles in {run_dir}")
    runs = [*results, *steady, *(r for part in done.values() for r in part if r)]
    failed = any(r.notes for r in runs)
    return 1 if failed else 0


# The other services' runs: what each publishes (the minimal consumer reads the same) and runs.
SERVICE_RUNS = {
    "complaints": (COMPENSATION_FLOWS, run_complaints),
    "notifier": (DECISIONS, run_notifier),
}


async def _service_part(
    infra: Infra, part: str, flows: int, run_dir: Path, args: argparse.Namespace
) -> tuple[Result, Result | None]:
    """The minimal consumer on the part's backlog (unless --no-baseline), then the service."""
    backlog, run = SERVICE_RUNS[part]
    minimal = None
    if not args.no_baseline:
        minimal = await run_baseline(infra, flows, backlog)
        say(f"{minimal.name} ({part} backlog): {minimal.rate:,.0f} events/s")
    result = await run(infra, flows, run_dir, args.profile)
    if result.outputs:
        say(f"{result.name}: {result.output_rate:,.0f} notifications/s")
    else:
        say(f"{result.name}: {result.rate:,.0f} events/s")
    return result, minimal


def _beside(report: Path, part: str) -> Path:
    """Where a part's report goes: bench-complaints.md beside bench.md."""
    return report.with_name(f"{report.stem}-{part}{report.suffix}")


def _run_root() -> Path:
    root = ROOT / ".run" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        raise argparse.ArgumentTypeError(f"unknown part(s): {', '.join(sorted(unknown))}")
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--flows", type=int, default=int(os.environ.get("BENCH_FLOWS") or 10_000))
    parser.add_argument(
        "--only",
        type=_parts,
        default=list(PARTS),
        help=f"the parts to run, e.g. returns,complaints (default: {','.join(PARTS)})",
    )
    parser.add_argument(
        "--complaint-flows", type=int, default=None, help="complaint flows (default: --flows)"
    )
    parser.add_argument(
        "--notifications", type=int, default=None, help="notifier flows (default: --flows)"
    )
    parser.add_argument(
        "--instances",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="returns service instance counts to measure, e.g. 1,2",
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--no-ledger",
        dest="ledger",
        action="store_false",
        help="the returns service alone, not also with the refund ledger",
    )
    parser.add_argument(
        "--steady",
        type=lambda s: [int(x) for x in s.split(",") if x and x != "0"],
        default=[500],
        help="steady loads to measure, in input events/s, e.g. 250,500 (0: none)",
    )
    parser.add_argument("--steady-seconds", type=int, default=60)
    parser.add_argument("--profile", choices=[*PROFILERS, "py-spy"], default=None)
    parser.add_argument("--report", default=str(DEFAULT_REPORT), help="'-': nowhere")
    args = parser.parse_args(argv)
    args.complaint_flows = args.complaint_flows or args.flows
    args.notifications = args.notifications or args.flows
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
