"""Speed of `aftersales simulate`: a made-up month of a shop (aftersales_dev.history) replayed
under the default policy and a candidate, as the command does it.

    python -m bench.simulate [--orders 10000] [--report docs/results/simulate.md]

Measured: the whole of `simulate` (reading and validating the recording, both replays, the
comparison), in wall-clock time and in CPU time (this process and the replay processes).
Events per minute = input events in the recording / wall-clock minutes. The goal is 50,000 a
minute. Writes the figures to --report (markdown) and prints them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aftersales.simulation.commands import simulate
from aftersales_dev.history import generate, write

GOAL_PER_MINUTE = 50_000
CANDIDATE = '[returns]\nno_reason_days = 15\nfree_shipping_deduction = "never"\n'


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--report", type=Path, default=Path("docs/results/simulate.md"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as work:
        events, candidate = Path(work) / "events.jsonl", Path(work) / "candidate.toml"
        write(events, generate(args.orders))
        candidate.write_text(CANDIDATE, encoding="utf-8")
        cpu, wall = _cpu_seconds(), time.perf_counter()
        comparison = simulate(events, candidate, None)
        wall = time.perf_counter() - wall
        cpu = _cpu_seconds() - cpu

    n = comparison.events
    per_minute = n / wall * 60
    flipped = sum(len(f.cases) for f in comparison.flips)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# Policy simulation speed",
        "",
        "Written by `make bench` (`python -m bench.simulate`); bench/simulate.py says what is "
        "measured.",
        "",
        f"- machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average before the run: {load}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- history: {args.orders:,} orders over 30 days, {n:,} input events; candidate: "
        '`no_reason_days = 15`, `free_shipping_deduction = "never"` '
        f"({flipped:,} decisions flip, {len(comparison.refund_changes):,} refunds change)",
        "",
        "| events | wall-clock s | events per minute | CPU s (all processes) | "
        "events per CPU-minute (read once, replayed twice) |",
        "|---:|---:|---:|---:|---:|",
        f"| {n:,} | {wall:.1f} | **{per_minute:,.0f}** | {cpu:.1f} | {n / cpu * 60:,.0f} |",
        "",
        f"Goal: {GOAL_PER_MINUTE:,} events a minute: "
        f"**{'reached' if per_minute >= GOAL_PER_MINUTE else 'NOT reached'}** on this run.",
    ]
    text = "\n".join(lines) + "\n"
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
