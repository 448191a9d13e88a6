"""What every benchmark run measures: a run's figures (`Result`), percentiles, a process's CPU
time and peak resident set (from /proc), waiting for the outputs, and the profilers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from faults.infra import ServiceProcess

# A run whose outputs stop coming for this long has gone wrong (see the service logs).
STALL_SECONDS = 120.0


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
    notes: list[str] = field(default_factory=list)  # what went wrong: the run fails
    remarks: list[str] = field(default_factory=list)  # worth knowing, not failures
    instances: int = 0
    ledger: bool = False
    ledger_events: int = 0  # the ledger's own inputs (inbox rows)
    ledger_cpu_seconds: float = 0.0
    peak_rss: list[int] = field(default_factory=list)  # bytes, per returns instance
    ledger_peak_rss: int = 0  # bytes
    stages: str = ""  # where the latency goes (steady load)
    # CPU time of the local PostgreSQL server and broker in the same window (None: not local)
    server_cpu: dict[str, float] | None = None
    outputs: int = 0  # what the run delivers, when not one per input event (notifications)

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

    @property
    def output_rate(self) -> float:
        return self.outputs / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_output(self) -> float:
        return self.cpu_seconds / self.outputs if self.outputs else float("nan")


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --profile: the command a profiled service process runs under, before the profile's path.
# `cpu` times functions by the process's CPU clock (bench/cpuprofile.py), `cprofile` by the
# wall clock (which counts the waits for a core on a busy machine).
PROFILERS = {
    "cprofile": [sys.executable, "-m", "cProfile", "-o"],
    "cpu": [sys.executable, "-m", "bench.cpuprofile"],
}


def _stat(path: Path) -> list[str] | None:
    """A process's /proc stat fields after its name (state, ppid, ...; utime is [11]), None
    when it is gone or unknown."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a live process (Linux /proc), 0 when unknown."""
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU time of a process and of its children, the live ones and those it reaped (Linux
    /proc): a PostgreSQL server's backends come and go with their connections."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        if (fields := _stat(stat)) is None:
            continue  # gone meanwhile
        if stat.parent.name == str(pid):
            total += sum(int(f) for f in fields[11:15]) / tick  # its own, and reaped children's
        elif fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


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
    *,
    first_inbox: str = "returns",
    on_start: Callable[[], None] | None = None,
) -> dict[int | None, float]:
    """Wait until every flow's output is published; returns each process's CPU time when the
    first event was processed (`first_inbox`'s first row; start-up excluded from the CPU per
    event)."""
    return await wait_until(
        conn,
        processes,
        f"SELECT count(*) FROM {schema}.outbox "  # noqa: S608 - a constant
        "WHERE event_type = $1 AND published_at IS NOT NULL",
        flows,
        f"{output} published",
        started=f"SELECT EXISTS (SELECT FROM {first_inbox}.inbox)",  # noqa: S608 - a constant
        args=(output,),
        on_start=on_start,
    )


# Seconds between two counts of the outputs in `wait_until`.
COUNT_EVERY = 1.0


async def wait_until(
    conn: asyncpg.Connection,
    processes: list[ServiceProcess],
    count_query: str,
    expected: int,
    what: str,
    *,
    started: str,
    args: Sequence[object] = (),
    stall_seconds: float | None = None,
    on_start: Callable[[], None] | None = None,
) -> dict[int | None, float]:
    """Wait until `count_query` counts `expected`, saying how far it got every 15 s; returns
    each process's CPU time when the `started` query first said true (the first event
    processed). Gives up when the count has not moved for `stall_seconds`.

    The start is looked for every 0.25 s (the CPU figures count from it); the count, a scan of
    the outputs that takes the database's CPU from the services measured on the same cores,
    once a second: the figures come from the outputs' timestamps, not from when it is seen."""
    last_said = last_moved = time.monotonic()
    last_done = -1
    counted_at = 0.0
    cpu_at_start: dict[int | None, float] | None = None
    while True:
        for process in processes:
            if not process.running:
                raise RuntimeError(f"{process.name} exited; see {process.run_dir}")
        if cpu_at_start is None and await conn.fetchval(started):
            cpu_at_start = {p.pid: cpu_seconds(p.pid) for p in processes}
            if on_start is not None:
                on_start()
        if time.monotonic() - counted_at >= COUNT_EVERY:
            counted_at = time.monotonic()
            done = await conn.fetchval(count_query, *args)
            if done >= expected:
                return cpu_at_start or {}
            if done != last_done:
                last_done, last_moved = done, time.monotonic()
            elif stall_seconds is not None and time.monotonic() - last_moved > stall_seconds:
                raise RuntimeError(f"stuck at {done}/{expected} {what} for {stall_seconds:.0f} s")
            if time.monotonic() - last_said > 15:
                say(f"{done}/{expected} {what}")
                last_said = time.monotonic()
        await asyncio.sleep(0.25)


def backlog_figures(
    result: Result,
    done: Mapping[str, int],
    signed: Mapping[str, int],
    inputs: Mapping[str, Any],
    spawned: float,
) -> None:
    """A backlog run's rate and latency from each flow's output (record timestamp, ms) and its
    marked input's publish timestamp (ms), by order id; `inputs`: the service's inbox rows
    (`events`) and the instant the first was taken (`first`, epoch s)."""
    result.refunds = len(done)
    result.events = int(inputs["events"])
    last = max(done.values()) / 1000
    result.seconds = last - float(inputs["first"])
    result.seconds_with_startup = last - spawned
    result.latencies = [(done[o] - signed[o]) / 1000 for o in signed if o in done]


async def stop_measured(
    result: Result, processes: list[ServiceProcess], ledgers: list[ServiceProcess]
) -> None:
    """Note the peak RSS of each process, then stop them gracefully (their outboxes drained)."""
    result.peak_rss = [peak_rss(p.pid) for p in processes]
    result.ledger_peak_rss = max((peak_rss(p.pid) for p in ledgers), default=0)
    for process in processes + ledgers:
        await asyncio.to_thread(process.terminate)


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


def finish_py_spy(spy: subprocess.Popen[bytes], raw: Path) -> str | None:
    """Wait for py-spy to write its profile (the process it watched has ended) and write its
    summary beside it; returns the summary."""
    spy.wait(timeout=60)
    if not raw.exists():
        return None
    from .profile import summarize

    summary = summarize(raw)
    raw.with_suffix(".summary.txt").write_text(summary + "\n")
    return summary
