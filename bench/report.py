"""The returns pipeline's report (docs/results/bench.md) and the benchmark's chart panels."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .chart import Panel
from .measure import Result, pct


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


def ms(v: float) -> str:
    return f"{v * 1000:,.0f}" if v == v else "n/a"  # NaN check


def rss(r: Result) -> str:
    if not any(r.peak_rss):
        return "n/a"
    text = f"{max(r.peak_rss) / 2**20:,.0f}"
    return text + (f" (ledger {r.ledger_peak_rss / 2**20:,.0f})" if r.ledger_peak_rss else "")


def p50_p99(values: Sequence[float]) -> str:
    return f"{ms(pct(values, 0.5))} / {ms(pct(values, 0.99))}" if values else "n/a"


def backlog_rows(results: Sequence[Result], baseline: Result | None) -> list[str]:
    """The backlog table: each consumer beside the minimal one."""
    rows = [
        "| consumer | events | events/s | events/s incl. start-up | "
        "latency p50 / p99 (ms, from publish) | in-service p50 / p99 (ms) | "
        "CPU per event (µs) | peak RSS per instance (MiB) | ratio to minimal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ([baseline] if baseline else []) + list(results):
        ratio = f"{r.rate / baseline.rate:.2f}" if baseline and baseline.rate else "n/a"
        rows.append(
            f"| {r.name} | {r.events:,} | {r.rate:,.0f} | {r.rate_with_startup:,.0f} | "
            f"{ms(pct(r.latencies, 0.5))} / {ms(pct(r.latencies, 0.99))} | "
            f"{p50_p99(r.in_service)} | {r.cpu_per_event * 1e6:,.0f} | {rss(r)} | {ratio} |"
        )
    return rows


def header(title: str, command: str) -> list[str]:
    return [
        f"# {title}",
        "",
        "Written by `make bench` (`python -m bench.run`); bench/run.py says what is measured "
        "and how.",
        "",
        f"- machine: `{uname()}`, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"- command: `{command}`",
    ]


def render(
    flows: int,
    results: list[Result],
    baseline: Result | None,
    command: str,
    steady: Sequence[Result] = (),
    chart: str = "bench.svg",
) -> str:
    rows = backlog_rows(results, baseline)
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
    machine = machine_rows([*([baseline] if baseline else []), *results])
    machine_section = [
        "## Where the machine's CPU went (µs per input event)",
        "",
        *machine,
        "",
        "The consumer's processes as above; PostgreSQL: the server's processes (its backends "
        "included); the broker: the embedded broker's process; in the same window (for the "
        "minimal consumer, its process's life). They share the machine's cores: a consumer "
        "that asks less of the database leaves more of them to itself.",
        "",
    ]
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
            *header("Returns pipeline benchmark (returns service and refund ledger)", command),
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
            *(machine_section if machine else []),
            *(["## The extra hop (the refund ledger)", "", *hops, ""] if hops else []),
            *(steady_section if steady else []),
            f"Chart: [{chart}]({chart}). Where the time goes and what limits the ratio: "
            "bench/README.md.",
            "",
            *(["## Notes", "", *notes, ""] if notes else []),
        ]
    )


def machine_rows(results: Sequence[Result]) -> list[str]:
    """A row per run whose servers were measured: the CPU per input event of the consumer's
    processes, of PostgreSQL and of the broker; no table when none was."""
    measured = [r for r in results if r.server_cpu and r.events]
    if not measured:
        return []
    names = sorted({name for r in measured for name in r.server_cpu or {}})
    rows = [
        f"| consumer | its processes | {' | '.join(names)} | together |",
        f"|---|---:|{'---:|' * len(names)}---:|",
    ]
    for r in measured:
        servers = r.server_cpu or {}
        cells = [servers.get(name, float("nan")) / r.events * 1e6 for name in names]
        together = r.cpu_per_event * 1e6 + sum(c for c in cells if c == c)
        rows.append(
            f"| {r.name} | {r.cpu_per_event * 1e6:,.0f} | "
            f"{' | '.join(f'{c:,.0f}' for c in cells)} | {together:,.0f} |"
        )
    return rows


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
            "returns",
        ),
        Panel(
            "CPU per input event (µs, the consumer's own processes)",
            "µs",
            ["CPU"],
            [(_short(r.name), [r.cpu_per_event * 1e6]) for r in backlog],
            "returns",
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
                "returns",
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


def render_complaints(
    flows: int, result: Result, baseline: Result | None, command: str, chart: str
) -> str:
    notes = [f"- {result.name}: {n}" for n in result.notes]
    ratio = (
        [f"Ratio to the minimal consumer: **{result.rate / baseline.rate:.2f}**", ""]
        if baseline and baseline.rate
        else []
    )
    return "\n".join(
        [
            *header("Complaints benchmark (complaints service and refund ledger)", command),
            f"- flows: {flows:,} (5 input events each: {5 * flows:,} events: `order.paid` with a "
            "10.00 outbound fee, `order.shipped`, a `logistics_delay` complaint opened, "
            "responded to and upheld; outputs: the 500 `coupon.granted` and the fee's "
            "`refund.requested`, and the ledger's `refund.issued`), published before any "
            "consumer ran",
            "",
            *backlog_rows([result], baseline),
            "",
            "events/s: the complaints service's input events processed / (the flow's last "
            "output - first transaction start). Latency from publish: the later of a flow's "
            "`coupon.granted` and `refund.issued` record timestamps - its `complaint.resolved` "
            "publish timestamp (the minimal consumer: the insert's commit). In-service: that "
            "last output - the start of the complaints batch that upheld the complaint (the "
            "batch, its commit, the relay, and the ledger's hop). CPU per event: both "
            "processes' CPU time from the first event processed to the end, per input event. "
            "Peak RSS: per instance (and the ledger's).",
            "",
            *ratio,
            f"- the ledger processed {result.ledger_events:,} events of its own (`order.paid` "
            f"and `refund.requested`) at {result.ledger_cpu_per_event * 1e6:,.0f} µs CPU each",
            "",
            f"Chart: [{chart}]({chart}). The returns pipeline: [bench.md](bench.md).",
            "",
            *(["## Notes", "", *notes, ""] if notes else []),
        ]
    )


def render_notifier(
    flows: int, result: Result, baseline: Result | None, command: str, chart: str
) -> str:
    rows = [
        "| consumer | input events | notifications | notifications/s (minimal: events/s) | "
        "incl. start-up | latency p50 / p99 (ms, from publish) | in-service p50 / p99 (ms) | "
        "CPU per notification (µs; minimal: per event) | peak RSS (MiB) | ratio to minimal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if baseline:
        rows.append(
            f"| {baseline.name} | {baseline.events:,} | n/a | {baseline.rate:,.0f} | "
            f"{baseline.rate_with_startup:,.0f} | {p50_p99(baseline.latencies)} | n/a | "
            f"{baseline.cpu_per_event * 1e6:,.0f} | {rss(baseline)} | 1.00 |"
        )
    with_startup = (
        result.outputs / result.seconds_with_startup if result.seconds_with_startup else 0
    )
    ratio = f"{result.output_rate / baseline.rate:.2f}" if baseline and baseline.rate else "n/a"
    rows.append(
        f"| {result.name} | {result.events:,} | {result.outputs:,} | "
        f"{result.output_rate:,.0f} | {with_startup:,.0f} | {p50_p99(result.latencies)} | "
        f"{p50_p99(result.in_service)} | {result.cpu_per_output * 1e6:,.0f} | {rss(result)} | "
        f"{ratio} |"
    )
    notes = [f"- {result.name}: {n}" for n in result.notes]
    return "\n".join(
        [
            *header("Notifier benchmark (notifications to a local HTTP gateway)", command),
            f"- flows: {flows:,} (the buyers' contacts taken in first, not measured; then one "
            f"`return.approved` each: {flows:,} input events, one SMS notification each), "
            "published before the notifier started again",
            "",
            *rows,
            "",
            "notifications/s: distinct messages the gateway accepted / (the last one's arrival - "
            "the start of the first batch that took a decision). Latency from publish: the "
            "message's arrival at the gateway - the decision's publish timestamp (the minimal "
            "consumer: the insert's commit). In-service: the arrival - the delivery's "
            "`requested_at` (the consumer batch that accepted it: the timer, the rendering, "
            "the send). CPU per notification: the notifier's CPU time from the first decision "
            "processed to the end, per notification. The gateway (faults/gateway.py, keep-alive "
            "connections, never failing here) answers 200 at once.",
            "",
            *[f"- {remark}" for remark in result.remarks],
            "",
            f"Chart: [{chart}]({chart}). The returns pipeline: [bench.md](bench.md).",
            "",
            *(["## Notes", "", *notes, ""] if notes else []),
        ]
    )


def service_panels(
    complaints: tuple[Result, Result | None] | None,
    notifier: tuple[Result, Result | None] | None,
) -> list[Panel]:
    """The complaints run's input events/s and the notifier's notifications/s, each beside the
    minimal consumer's events/s."""
    parts = (
        (
            "complaints",
            complaints,
            "Complaints through compensation, on a backlog (input events/s)",
            "events/s",
        ),
        (
            "notifier",
            notifier,
            "Notifier on a backlog (notifications/s; the minimal consumer: events/s)",
            "/s",
        ),
    )
    panels = []
    for part, runs, title, unit in parts:
        if runs is None:
            continue
        result, baseline = runs
        rows = [(_short(r.name), [r.rate]) for r in ([baseline] if baseline else [])]
        label = _short(result.name).replace("complaints service", "complaints")
        rate = result.output_rate if result.outputs else result.rate
        panels.append(Panel(title, unit, [unit], [*rows, (label, [rate])], part))
    return panels
