"""The fault run's report (docs/results/faults.md)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from . import check
from .chaos import SLOW_POLL_INTERVAL_MS, Chaos
from .flows import Flow


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
