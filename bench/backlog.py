"""The benchmarks' infrastructure (a broker and a PostgreSQL server, fresh topics per run), the
flows they publish and the publishing: a backlog before any consumer runs, or a steady load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from aftersales_dev.devenv import (
    LocalBroker,
    LocalPostgres,
    create_database,
    drop_database,
    find_postgres_bindir,
    skip_history,
)
from faults import events as ev
from shared.contracts import topics
from shared.messaging.deadletters import read_records as topic_records
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ensure_topics
from shared.migrations import upgrade
from shared.settings import Settings

from .measure import tree_cpu_seconds

INPUT_TOPICS = (topics.ORDERS, topics.SIGNATURES, topics.RETURNS)
GROUP = "aftersales-returns"
LEDGER_GROUP = "aftersales-refunds"
LEDGER_TOPICS = (topics.ORDERS, topics.REFUND_REQUESTS, topics.PAYOUTS)
PAID = 19_900
SHIPPING_PAID = 1_000  # a complaint flow's outbound fee: a logistics delay refunds it

RETURN_DECISION_TYPES = ("return.approved", "return.rejected", "return.pending", "return.completed")

Event = dict[str, object]
FlowBuilder = Callable[[str, int, datetime], list[Event]]


# --------------------------------------------------------------------------------------------
# infrastructure


@dataclass
class Infra:
    bootstrap: str
    server_url: str  # the PostgreSQL server (a fresh database is made on it per scenario)
    broker: LocalBroker | None
    postgres: LocalPostgres | None = None

    def server_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the servers started here (PostgreSQL, the broker), by name;
        a configured server (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS) is not measured."""
        cpu: dict[str, float] = {}
        if self.postgres is not None and (pid := self.postgres.pid) is not None:
            cpu["PostgreSQL"] = tree_cpu_seconds(pid)
        if self.broker is not None and (pid := self.broker.pid) is not None:
            cpu["broker"] = tree_cpu_seconds(pid)
        return cpu

    def server_cpu_since(self, before: Mapping[str, float]) -> dict[str, float]:
        return {
            name: cpu - before[name] for name, cpu in self.server_cpu().items() if name in before
        }


@contextlib.asynccontextmanager
async def infrastructure() -> AsyncIterator[Infra]:
    async with contextlib.AsyncExitStack() as stack:
        broker = None
        if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            bootstrap = servers
        else:
            broker = LocalBroker().start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
        postgres = None
        if url := os.environ.get("DATABASE_URL"):
            server_url = Settings(database_url=url).database_url
        else:
            if find_postgres_bindir() is None:
                raise SystemExit("bench: no PostgreSQL server binaries and no DATABASE_URL")
            postgres = LocalPostgres()
            await asyncio.to_thread(postgres.start)
            stack.callback(postgres.stop)
            server_url = postgres.url
        yield Infra(bootstrap, server_url, broker, postgres)


async def fresh_topics(
    infra: Infra, groups: Mapping[str, Sequence[str]], also: Iterable[str] = ()
) -> None:
    """Empty topics (every topic the groups read, and `also`), each group at their end."""
    if infra.broker is not None:
        await asyncio.to_thread(infra.broker.restart)  # in-memory: empty again
    settings = Settings(kafka_bootstrap_servers=infra.bootstrap, kafka_idempotence=False)
    await ensure_topics(
        settings, [*dict.fromkeys([*(t for g in groups.values() for t in g), *also])]
    )
    for group, names in groups.items():
        await skip_history(infra.bootstrap, group, names)


@contextlib.asynccontextmanager
async def fresh_database(infra: Infra, name: str, services: Sequence[str]) -> AsyncIterator[str]:
    """A database of its own for a run, migrated for `services`, dropped after."""
    database = await create_database(infra.server_url, name)
    try:
        for service in services:
            await asyncio.to_thread(upgrade, service, database)
        yield database
    finally:
        await drop_database(infra.server_url, database)


def returns_topics(group: str) -> tuple[dict[str, Sequence[str]], list[str]]:
    """The returns pipeline's consumer groups and the topics it writes to."""
    return {group: INPUT_TOPICS, LEDGER_GROUP: LEDGER_TOPICS}, [topics.REFUNDS]


def service_topics(services: Sequence[str]) -> tuple[dict[str, Sequence[str]], list[str]]:
    """The services' consumer groups with the topics each reads, and every topic they use."""
    from aftersales.registry import definition
    from shared.clock import SystemClock
    from shared.policy import Policy

    groups: dict[str, Sequence[str]] = {}
    used: list[str] = []
    for name in services:
        d = definition(name, Policy(), SystemClock())
        groups[f"aftersales-{name}"] = tuple(d.topics)
        used += d.all_topics
    return groups, sorted(set(used))


# --------------------------------------------------------------------------------------------
# the flows


def flow_events(run_id: str, n: int, now: datetime) -> list[Event]:
    order_id, customer, return_id = f"{run_id}-O{n}", f"{run_id}-C{n}", f"{run_id}-O{n}-R1"
    h = timedelta(hours=1)
    line = ev.line("L1", category="apparel", quantity=1, paid_amount=PAID)
    return [
        ev.order_paid(order_id, customer, id=f"{order_id}-paid", at=now - 60 * h, lines=[line]),
        ev.outbound_signed(order_id, id=f"{order_id}-out", at=now - 40 * h),
        ev.return_requested(
            order_id, return_id, customer, id=f"{order_id}-req", at=now - 20 * h, lines={"L1": 1}
        ),
        ev.return_signed(order_id, return_id, id=f"{order_id}-back", at=now - 2 * h),
    ]


def complaint_flow_events(run_id: str, n: int, now: datetime) -> list[Event]:
    """A complaint through compensation: an order paid and shipped, a `service_attitude`
    complaint opened, responded to and upheld: one 500 coupon (5 input events)."""
    return _complaint_flow(run_id, n, now, "service_attitude", shipping_fee_paid=0)


def compensation_flow_events(run_id: str, n: int, now: datetime) -> list[Event]:
    """A complaint whose compensation takes the refund ledger: an order paid (with a 10.00
    outbound fee) and shipped, a `logistics_delay` complaint opened, responded to and upheld:
    a 500 coupon and `refund.requested` of the fee, which the ledger issues (5 input events)."""
    return _complaint_flow(run_id, n, now, "logistics_delay", shipping_fee_paid=SHIPPING_PAID)


def _complaint_flow(
    run_id: str, n: int, now: datetime, category: str, *, shipping_fee_paid: int
) -> list[Event]:
    order_id, customer = f"{run_id}-P{n}", f"{run_id}-B{n}"
    complaint_id, h = f"{order_id}-K1", timedelta(hours=1)
    line = ev.line("L1", category="home", quantity=1, paid_amount=PAID)
    paid = ev.order_paid(
        order_id,
        customer,
        id=f"{order_id}-paid",
        at=now - 24 * h,
        lines=[line],
        shipping_fee_paid=shipping_fee_paid,
    )
    return [
        paid,
        ev.order_shipped(order_id, id=f"{order_id}-shipped", at=now - 20 * h),
        ev.complaint_opened(
            complaint_id, order_id, customer, category, id=f"{order_id}-open", at=now - h
        ),
        ev.complaint_responded(complaint_id, order_id, id=f"{order_id}-resp", at=now - h / 2),
        ev.complaint_resolved(complaint_id, order_id, id=f"{order_id}-res", at=now - h / 4),
    ]


def topic_of(event: Event) -> str:
    """The platform's input topics, and the returns service's decisions (the notifier's)."""
    if str(event["type"]) in RETURN_DECISION_TYPES:
        return topics.RETURN_DECISIONS
    return ev.topic_of(event)


@dataclass(frozen=True)
class Backlog:
    """A run's input: its flows, the topics they go to (what the minimal consumer reads), and
    the event whose publish a flow's latency is timed from."""

    build: FlowBuilder
    topics: tuple[str, ...]
    events_per_flow: int
    mark: str  # an event type (a `parcel.signed`: of the return leg)

    def marked(self, event: Event) -> bool:
        data = event["data"]
        assert isinstance(data, dict)
        return event["type"] == self.mark and data.get("leg", "return") == "return"


RETURN_FLOWS = Backlog(flow_events, INPUT_TOPICS, 4, "parcel.signed")


# --------------------------------------------------------------------------------------------
# publishing


_HEADERS = [("content-type", CONTENT_TYPE.encode())]

Sent = tuple[str, "asyncio.Future[object]"]


async def send_flow(
    producer: AIOKafkaProducer, events: Sequence[Event], marked: Callable[[Event], bool]
) -> Sent:
    """Send a flow's events; returns its key (the order id) and the marked event's send (the
    return-leg signature's: the latency is measured from it)."""
    mark: Sent | None = None
    for event in events:
        future = await producer.send(
            topic_of(event), ev.encode(event), key=ev.key_of(event).encode(), headers=_HEADERS
        )
        if marked(event):
            mark = (ev.key_of(event), future)
    assert mark is not None
    return mark


async def publish_backlog(
    bootstrap: str, run_id: str, flows: int, backlog: Backlog = RETURN_FLOWS
) -> dict[str, int]:
    """Publish every flow; returns the publish timestamp (ms) of each flow's marked event (the
    return-leg signature), by order id."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        request_timeout_ms=120_000,
    )
    await producer.start()
    signed: dict[str, int] = {}
    now = datetime.now(UTC)
    try:
        for begin in range(0, flows, 1000):
            sent = [
                await send_flow(producer, backlog.build(run_id, n, now), backlog.marked)
                for n in range(begin, min(begin + 1000, flows))
            ]
            signed.update(await signature_timestamps(sent))
    finally:
        await producer.stop()
    return signed


async def publish_paced(
    bootstrap: str, run_id: str, flows: int, events_per_second: float
) -> dict[str, int]:
    """Publish `flows` flows at a steady rate (each flow's 4 events together, flows evenly
    spread); returns the publish timestamp (ms) of each return-leg signature."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=5
    )
    await producer.start()
    now = datetime.now(UTC)
    flows_per_second = events_per_second / 4
    sent = []
    try:
        started = time.monotonic()
        for n in range(flows):
            # Catch up to the schedule, then wait for the next flow's turn.
            if (delay := started + n / flows_per_second - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            sent.append(await send_flow(producer, flow_events(run_id, n, now), RETURN_FLOWS.marked))
        return await signature_timestamps(sent)
    finally:
        await producer.stop()


async def signature_timestamps(sent: Sequence[Sent]) -> dict[str, int]:
    """Each order's marked event's record timestamp (ms), once the broker has it."""
    signed = {}
    for order_id, future in sent:
        metadata = await future
        signed[order_id] = metadata.timestamp  # type: ignore[attr-defined]
    return signed


async def read_records(bootstrap: str, topic: str) -> list[tuple[int, Event]]:
    """(timestamp ms, event) of every record on `topic` (refund requests, refunds, coupons)."""
    return [
        (record.timestamp, json.loads(record.value))
        async for record in topic_records(bootstrap, topic)
        if record.value is not None
    ]
