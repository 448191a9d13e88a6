"""A test-only service over the messaging foundation, event builders and read-back helpers.

The service keeps its tables in its own schema (`msgtest_<random>`): the inbox, outbox and
timers of `messaging_tables`, plus `orders` (state) and `effects` (one row per handler run,
with no unique key, so a second application of one event shows up as a second row).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aftersales_dev import events
from aftersales_dev.events import cloud_event, encode, kettle_order
from shared.clock import Clock
from shared.contracts import (
    NOTIFICATION_REQUESTED,
    ORDER_PAID,
    ORDER_SHIPPED,
    SLA_BREACHED,
    CaseRef,
    CloudEvent,
    NotificationRequested,
    OrderPaid,
    OrderShipped,
    SlaBreached,
    dead_letter_topic,
)
from shared.db import service_metadata
from shared.messaging.consumer import EventProcessor
from shared.messaging.context import HandlerContext
from shared.messaging.relay import OutboxRelay, Publish
from shared.messaging.runtime import ServiceDefinition
from shared.messaging.scheduler import TimerScheduler
from shared.messaging.store import Timer
from shared.messaging.tables import MessagingTables, messaging_tables
from tests.harness import Record

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)  # 2024-05-01 10:00 in Shanghai
SHIP_DEADLINE = "ship_deadline"
SHIP_WINDOW = timedelta(hours=72)

SOURCE = "/shop/test"

# Personal data of the buyer in test orders; must never reach a dead letter in clear.
CUSTOMER_NAME = "Zhang Sanfeng"
CUSTOMER_PHONE = "13812345678"
CUSTOMER_EMAIL = "zhang.sanfeng@example.com"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Harness:
    """One test service: its schema, tables, topics, handlers and fault switches."""

    name: str
    metadata: MetaData
    tables: MessagingTables
    orders: Table
    effects: Table
    input_topic: str
    output_topic: str
    # order_id -> exception the event handlers raise after writing their effect row, or SQL
    # they run then (to fail with a real database error).
    faults: dict[str, BaseException | str] = field(default_factory=dict)
    # timer ref -> exceptions the timer handler raises, one per call, before succeeding.
    timer_faults: dict[str, list[BaseException]] = field(default_factory=dict)
    timer_calls: Counter[str] = field(default_factory=Counter)
    # order_id -> how many times an event handler ran for it (committed or not).
    attempts: Counter[str] = field(default_factory=Counter)
    # Seconds each event handler sleeps, to make batches slow enough to stop mid-stream.
    handler_delay: float = 0.0

    @property
    def schema(self) -> str:
        assert self.metadata.schema is not None
        return self.metadata.schema

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.name)

    def definition(self) -> ServiceDefinition:
        return ServiceDefinition(
            name=self.name,
            metadata=self.metadata,
            tables=self.tables,
            topics=[self.input_topic],
            handlers={ORDER_PAID: self.on_paid, ORDER_SHIPPED: self.on_shipped},
            timer_handlers={SHIP_DEADLINE: self.on_ship_deadline},
            publishes={self.output_topic: [NOTIFICATION_REQUESTED, SLA_BREACHED]},
        )

    # --- handlers ---------------------------------------------------------------------------

    async def _effect(self, ctx: HandlerContext, event_id: str, order_id: str, kind: str) -> None:
        self.attempts[order_id] += 1
        if self.handler_delay:
            await asyncio.sleep(self.handler_delay)
        await ctx.session.execute(
            self.effects.insert().values(event_id=event_id, order_id=order_id, kind=kind)
        )
        fault = self.faults.get(order_id)
        if isinstance(fault, str):
            await ctx.session.execute(text(fault))
        elif fault is not None:
            raise fault

    async def on_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data
        assert isinstance(data, OrderPaid)
        await self._effect(ctx, event.id, data.order_id, "paid")
        stmt = insert(self.orders).values(
            order_id=data.order_id,
            customer_id=data.customer_id,
            status="paid",
            goods_total=data.goods_total,
        )
        await ctx.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["order_id"],
                set_={"customer_id": data.customer_id, "goods_total": data.goods_total},
            )
        )
        await ctx.timers.set(
            SHIP_DEADLINE,
            data.order_id,
            due_at=data.paid_at + SHIP_WINDOW,
            lock_key=data.order_id,
        )
        await ctx.emit(
            NOTIFICATION_REQUESTED,
            NotificationRequested(
                request_id=f"paid:{data.order_id}",
                customer_id=data.customer_id,
                order_id=data.order_id,
                template="order_paid",
            ),
            topic=self.output_topic,
            key=data.order_id,
        )

    async def on_shipped(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data
        assert isinstance(data, OrderShipped)
        await self._effect(ctx, event.id, data.order_id, "shipped")
        stmt = insert(self.orders).values(order_id=data.order_id, status="shipped")
        await ctx.session.execute(
            stmt.on_conflict_do_update(index_elements=["order_id"], set_={"status": "shipped"})
        )
        await ctx.timers.cancel(SHIP_DEADLINE, data.order_id, at=ctx.now)
        customer_id = await ctx.session.scalar(
            select(self.orders.c.customer_id).where(self.orders.c.order_id == data.order_id)
        )
        await ctx.emit(
            NOTIFICATION_REQUESTED,
            NotificationRequested(
                request_id=f"shipped:{data.order_id}",
                customer_id=customer_id or "unknown",
                order_id=data.order_id,
                template="order_shipped",
            ),
            topic=self.output_topic,
            key=data.order_id,
        )

    async def on_ship_deadline(self, timer: Timer, ctx: HandlerContext) -> None:
        self.timer_calls[timer.ref] += 1
        await ctx.session.execute(
            self.effects.insert().values(
                event_id=f"timer:{timer.id}", order_id=timer.ref, kind=timer.kind
            )
        )
        pending = self.timer_faults.get(timer.ref)
        if pending:
            raise pending.pop(0)
        await ctx.emit(
            SLA_BREACHED,
            ship_breach(timer, ctx.now),
            topic=self.output_topic,
            key=timer.ref,
        )


Sessions = async_sessionmaker[AsyncSession]


def wiring(harness: Harness, sessions: Sessions, clock: Clock) -> dict[str, Any]:
    """What every part of the runtime takes: the service, its sessions, tables and clock."""
    return {"service": harness.name, "sessions": sessions, "tables": harness.tables, "clock": clock}


def processor(
    harness: Harness, sessions: Sessions, clock: Clock, handlers: Any = None, **options: Any
) -> EventProcessor:
    """The harness's event processor (with other handlers, and EventProcessor options, when
    given)."""
    handlers = handlers if handlers is not None else harness.definition().handlers
    return EventProcessor(**wiring(harness, sessions, clock), handlers=handlers, **options)


def scheduler(
    harness: Harness, sessions: Sessions, clock: Clock, handlers: Any = None, **options: Any
) -> TimerScheduler:
    """The harness's timer scheduler (with other handlers, and options, when given)."""
    handlers = handlers if handlers is not None else harness.definition().timer_handlers
    return TimerScheduler(**wiring(harness, sessions, clock), handlers=handlers, **options)


def relay(
    harness: Harness, sessions: Sessions, publish: Publish, clock: Clock, **options: Any
) -> OutboxRelay:
    """The harness's outbox relay over `publish` (with OutboxRelay options when given)."""
    return OutboxRelay(**wiring(harness, sessions, clock), publish=publish, **options)


def ship_breach(timer: Timer, now: datetime) -> SlaBreached:
    """The breach a ship-deadline timer reports."""
    return SlaBreached(
        case=CaseRef(type="late_shipment", id=timer.ref),
        sla="reshipment",
        due_at=timer.due_at,
        detected_at=now,
        order_id=timer.ref,
    )


def make_harness() -> Harness:
    token = uuid.uuid4().hex[:10]
    name = f"msgtest_{token}"
    metadata = service_metadata(name)
    tables = messaging_tables(metadata)
    orders = Table(
        "orders",
        metadata,
        Column("order_id", Text, primary_key=True),
        Column("customer_id", Text, nullable=True),
        Column("status", Text, nullable=False),
        Column("goods_total", Integer, nullable=True),
    )
    effects = Table(
        "effects",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Text, nullable=False),
        Column("order_id", Text, nullable=False),
        Column("kind", Text, nullable=False),
    )
    return Harness(
        name=name,
        metadata=metadata,
        tables=tables,
        orders=orders,
        effects=effects,
        input_topic=f"msgtest.orders.{token}",
        output_topic=f"msgtest.out.{token}",
    )


async def create_schema(engine: AsyncEngine, harness: Harness) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{harness.schema}"'))
        await conn.run_sync(harness.metadata.create_all)


async def drop_schema(engine: AsyncEngine, harness: Harness) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{harness.schema}" CASCADE'))


# --- events ---------------------------------------------------------------------------------


def order_paid(
    order_id: str,
    *,
    event_id: str | None = None,
    amount: int = 10000,
    paid_at: str = "2024-05-01T10:00:00+08:00",
    customer_id: str = "c-1",
) -> dict[str, Any]:
    data = kettle_order(
        order_id,
        customer_id,
        events.buyer(CUSTOMER_NAME, CUSTOMER_PHONE, CUSTOMER_EMAIL),
        paid_at=paid_at,
        amount=amount,
        shop_id="shop-1",
        line_id="l1",
        sku="sku-1",
    )
    return cloud_event(ORDER_PAID, data, paid_at, id=event_id or unique("evt-paid-"), source=SOURCE)


def paid(order_id: str, event_id: str) -> tuple[str, bytes]:
    """An order.paid's record for `records`: its key (the order) and its encoded value."""
    return order_id, encode(order_paid(order_id, event_id=event_id))


def order_shipped(
    order_id: str,
    *,
    event_id: str | None = None,
    tracking_no: str = "SF1234567890123",
    shipped_at: str = "2024-05-02T09:00:00+08:00",
) -> dict[str, Any]:
    return events.order_shipped(
        order_id,
        at=datetime.fromisoformat(shipped_at),
        tracking_no=tracking_no,
        id=event_id or unique("evt-shipped-"),
        source=SOURCE,
    )


def records(
    topic: str, values: Iterable[tuple[str | None, bytes]], *, partition: int = 0, start: int = 0
) -> list[Record]:
    return [
        Record(topic, partition, start + i, key.encode() if key is not None else None, value)
        for i, (key, value) in enumerate(values)
    ]


# --- database read-back ---------------------------------------------------------------------


async def effect_counts(engine: AsyncEngine, harness: Harness) -> Counter[str]:
    """How many times each event (or timer) id was applied."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(harness.effects.c.event_id))
        return Counter(row.event_id for row in rows)


async def effect_rows(engine: AsyncEngine, harness: Harness) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(harness.effects).order_by(harness.effects.c.id))
        return [dict(row) for row in rows.mappings()]


async def inbox_ids(engine: AsyncEngine, harness: Harness) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(harness.tables.inbox.c.event_id))).scalars())


async def outbox_rows(engine: AsyncEngine, harness: Harness) -> list[dict[str, Any]]:
    t = harness.tables.outbox
    async with engine.connect() as conn:
        rows = await conn.execute(select(t).order_by(t.c.id))
        return [dict(row) for row in rows.mappings()]


async def unpublished_count(engine: AsyncEngine, harness: Harness) -> int:
    t = harness.tables.outbox
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).where(t.c.published_at.is_(None))) or 0)


async def timer_rows(engine: AsyncEngine, harness: Harness) -> dict[str, dict[str, Any]]:
    """Timers by ref."""
    t = harness.tables.timers
    async with engine.connect() as conn:
        rows = await conn.execute(select(t))
        return {row["ref"]: dict(row) for row in rows.mappings()}


# --- Kafka read-back ------------------------------------------------------------------------


async def read_partitions(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now on `topic`, without a consumer group.

    The end of a partition is the high watermark of the fetch responses: the local Tansu broker
    answers ListOffsets(latest) with the base offset of the last record batch plus one, which
    is less than the real end whenever a batch holds several records.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        remaining = set(tps)
        while remaining:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batch = await consumer.getmany(*remaining, timeout_ms=300)
            for recs in batch.values():
                out.extend(recs)
            for tp in list(remaining):
                highwater = consumer.highwater(tp)
                if (
                    not batch.get(tp)
                    and highwater is not None
                    and await consumer.position(tp) >= highwater
                ):
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


def header(record: ConsumerRecord[Any, Any], name: str) -> bytes | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value)
    return None


def event_of(record: ConsumerRecord[Any, Any]) -> dict[str, Any]:
    return json.loads(record.value)  # type: ignore[no-any-return]


@contextmanager
def statements_sent(
    engine: AsyncEngine, kinds: Callable[[str], Iterable[str]]
) -> Iterator[Counter[str]]:
    """Count the statements sent through `engine`, under the kinds `kinds` names for each."""
    seen: Counter[str] = Counter()

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.update(kinds(statement))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
