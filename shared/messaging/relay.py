"""The outbox relay: publishes committed events to Kafka, at least once, in commit order."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from aiokafka.errors import OutOfOrderSequenceNumber
from sqlalchemy import (
    Integer,
    Select,
    Table,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.clock import Clock
from shared.crypto import redact
from shared.db import driver_rows, lock_id
from shared.schema import one_of

from .errors import is_transient, unpublishable
from .kafka import RecordBatches, Sent
from .tables import MessagingTables
from .worker import ServiceWorker

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

log = logging.getLogger("aftersales.relay")

CONTENT_TYPE = "application/cloudevents+json"
RELAY_HEADERS = [("content-type", CONTENT_TYPE.encode())]

# A row of `_pending_in_slots`, as the driver returns it (an asyncpg record: by index or column
# name, no attributes): id, topic, key, payload.
OutboxRow = Any

# Sends one record and returns an awaitable that completes when the broker acknowledged it.
Publish = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[object]]]

# The producer the relay may send record batches through (None: it sends with `publish`).
BatchProducer = Callable[[], "AIOKafkaProducer | None"]

# A record's headers with tracing on (the content type and its span's trace context).
RecordHeaders = Callable[[str, bytes | None], list[tuple[str, bytes]]]

# Replaces the producer after the broker refused records: an idempotent producer has spent
# their sequence numbers, and its next batch to that partition would be refused as out of order.
RenewProducer = Callable[[], Awaitable[None]]

# Keyed records up to this size (key and payload) go in record batches. A larger one goes
# through `publish` (`send`), whose own checks refuse it as they did before batches (the
# producer's request limit, 1 MiB) before it reaches the broker.
BATCHED_UP_TO = 64 * 1024


# How many slots the keys are spread over. Relays with different counts would split one key
# between two slots: changing it means stopping every relay of the service first.
SLOTS = 8
SLOTS_PER_BATCH = 4

# The slots whose lock this transaction got, of those asked, once it shares the leader lock
# (none when an old relay leads): one round trip. The leader's lock is tried first (a CTE
# calling a volatile function is evaluated once, before the query that reads it).
_TRY_SLOTS = text(
    "WITH leader AS (SELECT pg_try_advisory_xact_lock_shared(:leader) AS shared) "
    "SELECT s.slot FROM leader, "
    "unnest(CAST(:slots AS integer[]), CAST(:ids AS bigint[])) AS s(slot, id) "
    "WHERE leader.shared AND pg_try_advisory_xact_lock(s.id) ORDER BY s.slot"
)


def _behind_parked(t: Table) -> Any:
    """The row waits behind an earlier parked row of its key (the rows of a key leave in commit
    order, so none may overtake one that is parked)."""
    p = t.alias("parked")
    return exists().where(
        p.c.parked_at.is_not(None),
        p.c.published_at.is_(None),
        p.c.key.is_not_distinct_from(t.c.key),
        p.c.id < t.c.id,
    )


def _waiting(t: Table) -> Any:
    """Unpublished and neither parked nor held back by a parked row: what the relay owes."""
    return and_(t.c.published_at.is_(None), t.c.parked_at.is_(None), ~_behind_parked(t))


@cache
def _pending_in_slots(t: Table) -> Select[tuple[int, str, str | None, bytes]]:
    # hashtext is the server's: every relay computes the same slot for a key. Keyless events
    # share the slot of the empty key. Constants written in the SQL: the driver is given only
    # the named parameters.
    no_key = literal_column("''", Text)
    slot = (
        func.hashtext(func.coalesce(t.c.key, no_key)).op("&")(literal_column("2147483647", Integer))
    ) % literal_column(str(SLOTS), Integer)
    return (
        select(t.c.id, t.c.topic, t.c.key, t.c.payload)
        .where(_waiting(t), slot == any_(bindparam("slots", type_=ARRAY(Integer))))
        .order_by(t.c.id)
        .limit(bindparam("limit"))
    )


@cache
def _mark_published(t: Table) -> Update:
    # One bound parameter, not an IN list compiled anew for every batch size; a semi-join, not
    # `= ANY` (`one_of`): the outbox is the table that grows fastest.
    return update(t).where(one_of(t.c.id, "ids")).values(published_at=bindparam("at"))


@cache
def _mark_parked(t: Table) -> Update:
    return (
        update(t)
        .where(t.c.id == bindparam("b_id"))
        .values(parked_at=bindparam("b_at"), parked_error=bindparam("b_error"))
    )


def _key_bytes(key: str | None) -> bytes | None:
    return key.encode("utf-8") if key is not None else None


def parked_error(exc: BaseException) -> str:
    """What a parked row keeps of the refusal: the error's class and words, no payload."""
    return redact(f"{type(exc).__name__}: {exc}")[:500]


class OutboxRelay(ServiceWorker):
    def __init__(
        self,
        *,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        publish: Publish,
        clock: Clock,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        producer: BatchProducer | None = None,
        renew_producer: RenewProducer | None = None,
        record_headers: RecordHeaders | None = None,
    ) -> None:
        super().__init__(service=service, sessions=sessions, tables=tables, clock=clock)
        self._table = tables.outbox
        self._publish = publish
        self._producer = producer
        self._renew_producer = renew_producer
        self._record_headers = record_headers
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        # Wake-ups so far, and for each half of the slots (by its first slot) the count when
        # it was last seen with nothing left to publish: the run loop skips such a half until
        # the next wake-up or poll, instead of a transaction that finds nothing.
        self._wakes = 0
        self._drained: dict[int, int] = {}
        # Before slots, one relay at a time per service held this lock; now taken shared.
        self._leader_lock = lock_id(f"outbox-relay:{tables.outbox.schema}")
        self._slot_locks = [
            lock_id(f"outbox-relay:{tables.outbox.schema}:{slot}/{SLOTS}") for slot in range(SLOTS)
        ]
        self._next_slot = 0

    def wake(self) -> None:
        self._wakes += 1
        self._wake.set()

    async def publish_pending(self, *, skip_drained: bool = False) -> int:
        """Publish one batch of unpublished events; returns how many were published (0:
        nothing left that this relay could take).

        Events are spread over `SLOTS` slots by a hash of their key. A relay publishes the
        events of a slot only while it holds that slot's advisory lock, in outbox order, and
        marks them published before letting go: the events of one key leave in the order they
        committed. A batch takes at most half of the slots (the next batch starts with the
        other half), so the relays of two instances publish at the same time.

        `skip_drained` (the run loop): leave out a half found with nothing to publish since
        the last wake-up or poll (`wake`, `forget_drained`).
        """
        for _ in range(SLOTS // SLOTS_PER_BATCH):
            first = self._next_slot
            self._next_slot = (first + SLOTS_PER_BATCH) % SLOTS
            if skip_drained and self._drained.get(first) == self._wakes:
                continue
            slots = [(first + i) % SLOTS for i in range(SLOTS_PER_BATCH)]
            if published := await self._publish_slots(slots):
                return published
        return 0

    def forget_drained(self) -> None:
        """Look at every slot again (a poll: other instances' events wake no one here)."""
        self._wakes += 1

    async def _publish_slots(self, slots: list[int]) -> int:
        t = self._table
        # Counted before the look: an event committed after it comes with a later wake-up.
        seen_at = self._wakes
        async with self._sessions() as session, session.begin():
            # Relays of versions before slots took the leader lock alone; taking it shared
            # keeps them and these from publishing at the same time during a rollout.
            locks = [self._slot_locks[slot] for slot in slots]
            held = [
                slot
                for (slot,) in await driver_rows(
                    session, _TRY_SLOTS, {"leader": self._leader_lock, "slots": slots, "ids": locks}
                )
            ]
            if not held:
                return 0
            rows = await driver_rows(
                session, _pending_in_slots(t), {"slots": held, "limit": self._batch_size}
            )
            # Every slot of the half held and fewer rows than asked: nothing else waits there.
            drained = len(held) == len(slots) and len(rows) < self._batch_size
            if not rows:
                if drained:
                    self._drained[slots[0]] = seen_at
                return 0
            published, parked = await self._send(rows)
            if published:
                await driver_rows(
                    session, _mark_published(t), {"ids": published, "at": self._clock.now()}
                )
            now = self._clock.now()
            for row, exc in parked:
                await driver_rows(
                    session,
                    _mark_parked(t),
                    {"b_id": row["id"], "b_at": now, "b_error": parked_error(exc)},
                )
        # Committed: what it sent is marked published. A row parked, held behind one or left
        # unsent (its partition's record batch failed) still waits.
        if drained and len(published) == len(rows):
            self._drained[slots[0]] = seen_at
        topics = {row_id: topic for row_id, topic, _, _ in rows}
        # A label look-up per topic, not per event: it costs more than the increment.
        for topic, n in Counter(topics[row_id] for row_id in published).items():
            metrics.OUTBOX_PUBLISHED.labels(self.service, topic).inc(n)
        for row, exc in parked:
            log.error(
                "outbox event parked: the broker refuses it; later events of its key wait",
                extra={
                    "service": self.service,
                    "outbox_id": row["id"],
                    "topic": row["topic"],
                    "error": type(exc).__name__,
                },
            )
        if parked:
            await self.observe()
        # Rows held back behind a row parked in this batch are not counted: they wait.
        return len(published) + len(parked)

    async def _send(
        self, rows: Sequence[OutboxRow]
    ) -> tuple[list[int], list[tuple[OutboxRow, BaseException]]]:
        """Send rows in order; returns the ids acknowledged and the rows refused for good.

        A row the producer refuses (`unpublishable`) is parked and the later rows of its key
        in the batch are not sent. Any other failure raises: nothing is marked, the batch is
        sent again (at least once). When the broker refuses records in its acknowledgement it
        refuses the whole produce request (or record batch); the rows it refused are then sent
        one at a time to find the ones at fault.

        With a producer (`producer`), keyed rows go in record batches per topic and partition
        (`RecordBatches`: the partition `send` would choose), other rows through `publish`. A
        partition whose record batch failed takes no more rows in this batch of the outbox:
        they are not sent and wait (a key's later rows never go out before its refused one).
        """
        held: set[str | None] = set()
        parked: list[tuple[OutboxRow, BaseException]] = []
        sent: list[Sent[OutboxRow]] = []
        if self._producer is not None and self._producer() is None and self._renew_producer:
            await self._renew_producer()  # one whose renewal could not start it: start it now
        producer = self._producer() if self._producer is not None else None
        batches = (
            RecordBatches[OutboxRow](producer, RELAY_HEADERS) if producer is not None else None
        )
        for row in rows:
            _, topic, row_key, payload = row
            if row_key in held:
                continue
            try:
                key = _key_bytes(row_key)
                if batches is not None and key is not None:
                    if len(key) + len(payload) <= BATCHED_UP_TO:
                        sent += await batches.add(topic, key, payload, row, self._record_headers)
                        continue
                    # Its key's earlier rows first, acknowledged; none after a refused batch.
                    sent += await batches.flush(topic, key)
                    if not await batches.settled(topic, key):
                        continue  # not sent: it waits for the next batch of the outbox
                    ack = await self._publish(topic, key, payload)
                    await batches.track(topic, key, ack)
                    sent.append(([row], ack))
                    continue
                sent.append(([row], await self._publish(topic, key, payload)))
            except Exception as exc:
                if not unpublishable(exc):
                    raise
                parked.append((row, exc))
                held.add(row_key)
        if batches is not None:
            sent += await batches.flush()
        results = await asyncio.gather(*(ack for _, ack in sent), return_exceptions=True)
        published: list[int] = []
        refused: list[OutboxRow] = []
        failures: list[BaseException] = []
        for (sent_rows, _), result in zip(sent, results, strict=True):
            if not isinstance(result, BaseException):
                published += (row["id"] for row in sent_rows)
            elif unpublishable(result):
                refused += sent_rows
            else:
                failures.append(result)
        # A refusal spent sequence numbers, and an out-of-order one says the producer's are
        # off: renewed before anything else is sent, whatever else failed.
        if refused or any(isinstance(f, OutOfOrderSequenceNumber) for f in failures):
            await self._after_broker_refusal()
        if failures:
            raise failures[0]
        # Rare: a topic whose limit is below the producer's. Sent again in outbox order (the
        # refused rows may come from several record batches).
        for row in sorted(refused, key=lambda row: row["id"]):
            if row["key"] in held:
                continue
            acknowledged = False
            try:
                ack = await self._publish_row(row)  # refused here: the producer's own check
                acknowledged = True
                await ack
            except Exception as exc:
                if not unpublishable(exc):
                    if isinstance(exc, OutOfOrderSequenceNumber):
                        await self._after_broker_refusal()
                    raise
                if acknowledged:  # the broker's refusal, in its acknowledgement
                    await self._after_broker_refusal()
                parked.append((row, exc))
                held.add(row["key"])
            else:
                published.append(row["id"])
        return published, parked

    async def _after_broker_refusal(self) -> None:
        if self._renew_producer is not None:
            await self._renew_producer()
            log.warning(
                "the broker refused records or their order; an idempotent producer is renewed",
                extra={"service": self.service},
            )

    async def _publish_row(self, row: OutboxRow) -> Awaitable[object]:
        _, topic, key, payload = row
        return await self._publish(topic, _key_bytes(key), payload)

    async def drain(self) -> None:
        """Publish until nothing is left (used at shutdown and in tests)."""
        while await self.publish_pending():
            pass

    async def observe(self) -> None:
        t = self._table
        async with self._sessions() as session:
            pending, oldest = (
                await session.execute(
                    select(func.count(), func.min(t.c.created_at)).where(_waiting(t))
                )
            ).one()
            parked, held = (
                await session.execute(
                    select(
                        func.count().filter(t.c.parked_at.is_not(None)),
                        func.count().filter(t.c.parked_at.is_(None), _behind_parked(t)),
                    ).where(t.c.published_at.is_(None))
                )
            ).one()
        metrics.OUTBOX_PENDING.labels(self.service).set(pending)
        metrics.OUTBOX_PARKED.labels(self.service).set(parked)
        metrics.OUTBOX_HELD.labels(self.service).set(held)
        lag = (self._clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        metrics.OUTBOX_LAG.labels(self.service).set(max(lag, 0.0))

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._poll_interval
        cycles = 0
        while not stop.is_set():
            # Cleared before looking, not after: a wake-up (new events, a stop) that comes
            # while a batch is being published must not be lost.
            self._wake.clear()
            try:
                published = await self.publish_pending(skip_drained=True)
                cycles += 1
                if cycles % 20 == 0:
                    await self.observe()
                backoff = self._poll_interval
                if published:
                    continue
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("outbox relay failed", extra={"service": self.service})
                else:
                    log.warning(
                        "outbox relay retrying after a passing fault",
                        extra={"service": self.service, "error": type(exc).__name__},
                    )
                backoff = min(backoff * 2, 10.0)
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                self.forget_drained()
