"""What the services of a fault run read and write, and how far they got: the consumer groups'
lag, the outboxes, due timers, inboxes and unfinished notifications, read while waiting for the
run to get quiet and by the reconciliation."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from aftersales_dev.devenv import plain_dsn

from .flows import Flow, Message
from .infra import Infra, say

# After the wait's deadline, what came due just before it (a timer, a notification's retry) has
# this long to finish; nothing due after the deadline (the horizon) is waited for.
SETTLE_GRACE = 30.0
# A timer is overdue (not fired) only when it was due this long before the services stopped:
# the scheduler's poll interval (ServiceRuntime's timer_poll_interval, 1 s) and its claiming
# transaction.
TIMER_MARGIN = timedelta(seconds=1.0 + 2.0)


@dataclass(frozen=True)
class ServiceInfo:
    """What a service reads and handles (from its ServiceDefinition) and where it writes."""

    name: str
    schema: str
    group: str
    topics: tuple[str, ...]
    handled: frozenset[str]
    outputs: tuple[str, ...]
    dead_letters: str


@dataclass
class Published:
    """What the publisher sent: each record with where it landed."""

    messages: list[Message] = field(default_factory=list)
    # (topic, partition, offset) of each message, same order
    where: list[tuple[str, int, int]] = field(default_factory=list)
    failures: int = 0  # sends that failed for good and were sent again

    def ends(self) -> dict[TopicPartition, int]:
        """The end offset of every partition written (last acknowledged offset + 1)."""
        ends: dict[TopicPartition, int] = {}
        for topic, partition, offset in self.where:
            tp = TopicPartition(topic, partition)
            ends[tp] = max(ends.get(tp, 0), offset + 1)
        return ends


def service_infos(names: Sequence[str]) -> list[ServiceInfo]:
    from aftersales.registry import definition
    from shared.clock import SystemClock
    from shared.contracts import dead_letter_topic
    from shared.policy import Policy

    infos = []
    for name in names:
        d = definition(name, Policy(), SystemClock())
        infos.append(
            ServiceInfo(
                name=name,
                schema=d.schema,
                group=f"aftersales-{name}",
                topics=tuple(d.topics),
                handled=frozenset(d.handlers),
                outputs=tuple(sorted(d.publishes)),
                dead_letters=dead_letter_topic(name),
            )
        )
    return infos


# --- progress while waiting for quiet ---------------------------------------------------------


async def lag(bootstrap: str, service: ServiceInfo, ends: Mapping[TopicPartition, int]) -> int:
    """Records the service's consumer group has not committed yet, over the partitions written,
    and over the whole of the topics the publisher does not write (what other services emit,
    e.g. the refund requests the ledger reads)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=service.group,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        wanted = {tp: end for tp, end in ends.items() if tp.topic in service.topics}
        written = {tp.topic for tp in ends}
        internal = [
            TopicPartition(topic, partition)
            for topic in service.topics
            if topic not in written
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if internal:
            wanted.update(await consumer.end_offsets(internal))
        total = 0
        for tp, end in wanted.items():
            committed = await consumer.committed(tp) or 0
            total += max(0, end - committed)
        return total
    finally:
        await consumer.stop()


async def db_progress(conn: asyncpg.Connection, service: ServiceInfo) -> dict[str, int]:
    s = service.schema
    row = await conn.fetchrow(
        f"""
        SELECT
          (SELECT count(*) FROM "{s}".outbox WHERE published_at IS NULL) AS outbox,
          (SELECT count(*) FROM "{s}".timers
             WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= now()
               AND (retry_at IS NULL OR retry_at <= now())) AS due_timers,
          (SELECT count(*) FROM "{s}".inbox) AS inbox
        """  # noqa: S608 - schema names from the service definitions
    )
    return dict(row)


async def unfinished_notifications(
    conn: asyncpg.Connection, run_id: str, horizon: datetime
) -> tuple[int, int]:
    """Notifications of the run neither sent nor given up yet: (those due before `horizon` or
    being sent, those whose next attempt - the live deliver timer - is due at or after it). A
    send in progress has a live timer too, its recovery `SEND_LEASE` later: still unfinished."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE t.due_at IS NULL OR t.due_at < $3
                                   OR d.defer_reason = 'sending') AS due,
                  count(*) FILTER (WHERE t.due_at >= $3
                                   AND d.defer_reason IS DISTINCT FROM 'sending') AS deferred
           FROM notifier.deliveries d
           LEFT JOIN notifier.timers t
             ON t.kind = 'deliver' AND t.ref = d.delivery_id || '#' || d.timer_seq
            AND t.fired_at IS NULL AND t.cancelled_at IS NULL
           WHERE d.order_id LIKE $1 AND d.status = $2""",
        run_id + "%",
        "scheduled",
        horizon,
    )
    return int(row["due"]), int(row["deferred"])


async def inbox_ids(conn: asyncpg.Connection, service: ServiceInfo, prefix: str) -> set[str]:
    rows = await conn.fetch(
        f'SELECT event_id FROM "{service.schema}".inbox WHERE event_id LIKE $1',  # noqa: S608
        prefix + "%",
    )
    return {r["event_id"] for r in rows}


async def live_timers(
    conn: asyncpg.Connection, schema: str, refs: Iterable[tuple[str, str]]
) -> list[tuple[str, str, Any]]:
    """(kind, ref, when it fires next: its due time, or a failed one's retry) of the given
    timers that have neither fired nor been cancelled."""
    wanted = list(refs)
    if not wanted:
        return []
    rows = await conn.fetch(
        f"""SELECT kind, ref, GREATEST(due_at, retry_at) AS due_at FROM "{schema}".timers
            WHERE fired_at IS NULL AND cancelled_at IS NULL
              AND (kind, ref) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",  # noqa: S608
        [k for k, _ in wanted],
        [r for _, r in wanted],
    )
    return [(r["kind"], r["ref"], r["due_at"]) for r in rows]


def expected_timers(flows: Iterable[Flow]) -> dict[str, list[tuple[str, str]]]:
    """Timers whose firing the outcome waits for, by schema: (kind, ref)."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for flow in flows:
        if flow.timer is not None:
            schema, kind, ref = flow.timer
            out[schema].append((kind, ref))
    return out


async def wait_quiet(
    infra: Infra,
    services: Sequence[ServiceInfo],
    flows: Sequence[Flow],
    published: Published,
    run_id: str,
    deadline: float,
    horizon: datetime,
) -> tuple[bool, dict[str, int]]:
    """Until every input is in an inbox or dead-lettered, the outboxes are empty, the consumer
    groups have no lag and no timer is due (and the timers the flows wait for have fired, and
    every notification is sent or given up), twice in a row. A timer the flows wait for, or a
    notification's next attempt, due at or after `horizon` (the wall-clock time of `deadline`)
    is deferred, not waited for; what came due before it has SETTLE_GRACE seconds past the
    deadline to finish."""
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
    timers = expected_timers(flows)
    quiet_rounds = 0
    last_said = time.monotonic()
    state: dict[str, int] = {}
    while True:
        try:
            state = {}
            conn = await asyncpg.connect(dsn, timeout=5)
            try:
                for s in services:
                    progress = await db_progress(conn, s)
                    state[f"{s.name} outbox"] = progress["outbox"]
                    state[f"{s.name} due timers"] = progress["due_timers"]
                    if s.name == "notifier":
                        unfinished, _ = await unfinished_notifications(conn, run_id, horizon)
                        state["notifier unfinished notifications"] = unfinished
                    inbox = await inbox_ids(conn, s, run_id)
                    state[f"{s.name} unprocessed"] = len(expected_inputs[s.name] - inbox)
                    state[f"{s.name} lag"] = await lag(infra.bootstrap, s, ends)
                # timers the flows wait for, unless due after the horizon (deferred)
                for schema, refs in timers.items():
                    live = await live_timers(conn, schema, refs)
                    state[f"{schema} awaited timers"] = sum(
                        1 for _, _, due in live if due < horizon
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
        if time.monotonic() > deadline + SETTLE_GRACE:
            return False, state
        await asyncio.sleep(2.0)
