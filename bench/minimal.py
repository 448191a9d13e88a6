"""The minimal consumer (bench/baseline.py) on a backlog: every benchmark's yardstick."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from aftersales_dev.devenv import plain_dsn
from faults.infra import ROOT

from .backlog import (
    GROUP,
    RETURN_FLOWS,
    Backlog,
    Infra,
    fresh_database,
    fresh_topics,
    publish_backlog,
    returns_topics,
)
from .measure import Result

NAME = "minimal consumer (aiokafka + asyncpg, 1 INSERT per event)"


async def run_baseline(infra: Infra, flows: int, backlog: Backlog = RETURN_FLOWS) -> Result:
    """The minimal consumer on `flows` flows of `backlog` (the return flows by default); its
    latency is the commit of the insert of each flow's marked event (the return-leg signature)
    - that event's publish timestamp."""
    result = Result(NAME)
    group = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    groups, written = returns_topics(GROUP)
    await fresh_topics(infra, {**groups, group: backlog.topics}, written)
    async with fresh_database(infra, "bench_baseline", ()) as database:
        run_id = f"B{uuid.uuid4().hex[:8]}"
        t = time.monotonic()
        signed = await publish_backlog(infra.bootstrap, run_id, flows, backlog)
        result.publish_seconds = time.monotonic() - t
        spawned = time.time()
        servers = infra.server_cpu()  # its start-up too: a connection and a group to join
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
            str(backlog.events_per_flow * flows),
            "--topics",
            ",".join(backlog.topics),
            "--mark",
            backlog.mark,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        result.server_cpu = infra.server_cpu_since(servers)
        if proc.returncode != 0:
            raise RuntimeError(f"the baseline consumer failed ({proc.returncode})")
        figures = json.loads(out.decode().strip().splitlines()[-1])
        result.events = int(figures["stored"])
        result.seconds = float(figures["last"]) - float(figures["first"])
        result.seconds_with_startup = float(figures["last"]) - spawned
        result.cpu_seconds = float(figures["cpu"])
        result.peak_rss = [int(figures["peak_rss_bytes"])]
        result.latencies = [done - published / 1000 for published, done in figures["marked"]]
        result.refunds = len(signed)
    return result
