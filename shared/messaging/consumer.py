"""Processing a fetched batch: validate, dead-letter the poison, apply the rest in one go."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import metrics
from shared.clock import Clock
from shared.contracts import (
    CloudEvent,
    DeadLettered,
    DeadLetterOrigin,
    InvalidEvent,
    dead_letter_topic,
    deterministic_id,
    event_key,
    parse_event,
)
from shared.crypto import redact
from shared.db import UnitOfWork, flush_pending

from . import journal
from .context import EventHandler, HandlerContext
from .deadletter_copy import dead_letter_key, fit_dead_letter, scrub_personal_data, storable_text
from .errors import (
    Rejected,
    describe_failure,
    failure_fields,
    is_storage_refusal,
    is_transient,
    sqlstate,
)
from .store import HOLD_WRITES, Inbox, WriteConflict
from .tables import MessagingTables
from .worker import ServiceWorker

log = logging.getLogger("aftersales.consumer")

# `session.info` key: the events the fast path applies in the session's transaction, all
# of their business keys locked. Set only there: a handler may read the aggregates they name
# once for the batch (and must see its own writes). On the event-by-event path (savepoints) it
# is absent, so nothing cached can outlive a rolled-back savepoint.
BATCH_EVENTS = "aftersales.batch_events"

# Characters of a failure's detail a dead letter keeps.
_MAX_DETAIL = 2000

# A batch that fails the same non-transient way this many times in a row (though every event
# was isolated) has each of its records dead-lettered (`batch_refused`) instead of looping.
LAST_RESORT_AFTER = 3

# Distinct advisory lock keys one batch's transaction takes at most. PostgreSQL's lock table is
# shared and sized for about 64 locks a connection: a batch naming tens of thousands of keys
# (events that each name up to 1,000 cases) fails with 53200, a passing fault by its class,
# and would be fetched again for ever. Past this many, the batch is cut after the events that
# fit (at least one: an event names at most ~1,000 keys) and the rest is fetched again.
MAX_LOCK_KEYS = 4_000


class Record(Protocol):
    """The parts of a Kafka consumer record the processor reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class BatchCut(Exception):
    """The event-by-event path used up the batch's time budget: the events applied so far are
    committed and the rest of the batch is fetched again (the applied ones are duplicates then).
    Not a failure: the consumer polls again in time instead of leaving its group."""

    def __init__(self, applied: int, records: int) -> None:
        super().__init__(f"{applied} of {records} records applied within the batch's budget")
        self.applied = applied
        self.records = records


class _HandlerFailed(Exception):
    """A handler failed deterministically (or rejected its event) in the fast path."""

    def __init__(self, event_id: str) -> None:
        super().__init__(event_id)
        self.event_id = event_id


@dataclass(frozen=True)
class _Poison:
    reason: str
    detail: str


def default_lock_keys(event: CloudEvent) -> Iterable[str]:
    return [event_key(event)]


class EventProcessor(ServiceWorker):
    def __init__(
        self,
        *,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        handlers: Mapping[str, EventHandler],
        clock: Clock,
        lock_keys: Callable[[CloudEvent], Iterable[str]] = default_lock_keys,
        on_committed: Callable[[], None] = lambda: None,
        budget: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_lock_keys: int = MAX_LOCK_KEYS,
    ) -> None:
        super().__init__(service=service, sessions=sessions, tables=tables, clock=clock)
        # Seconds a batch may take on the event-by-event path (measured from the batch's
        # start) before what is applied is committed and the rest fetched again; None: no end.
        self._budget = budget
        self._monotonic = monotonic
        self._max_lock_keys = max_lock_keys
        # After a cut: the last offset per partition whose record that round committed. Those
        # records are done when the batch comes again; only records past them count as the
        # progress each round must make (duplicates and repeated dead letters do not).
        self._done_through: dict[tuple[str, int], int] = {}
        self._handlers = handlers
        self._lock_keys = lock_keys
        self._on_committed = on_committed
        # (the kind of error, where its batch began, how often in a row) of the last batch that
        # failed past isolation.
        self._refused: tuple[str, frozenset[tuple[tuple[str, int], int]], int] | None = None

    async def process(self, records: Sequence[Record]) -> None:
        """Apply a batch in one transaction; raises only for passing faults (batch redelivered),
        for a batch that keeps failing otherwise until `LAST_RESORT_AFTER` attempts, and
        `BatchCut` when the event-by-event path ran out of the batch's time budget or the batch
        names more lock keys than `max_lock_keys`."""
        deadline = None if self._budget is None else self._monotonic() + self._budget
        items: list[tuple[Record, CloudEvent | _Poison]] = []
        for record in records:
            try:
                items.append(
                    (record, parse_event(record.value, topic=record.topic, key=record.key))
                )
            except InvalidEvent as exc:
                items.append((record, _Poison(exc.reason, exc.detail)))
            except Exception as exc:  # a bug in the reader: it must not stop the partition
                log.error(
                    "reading a record failed",
                    extra={"service": self.service, "topic": record.topic, "offset": record.offset},
                    exc_info=True,
                )
                detail = f"reading the record failed: {type(exc).__name__}"
                items.append((record, _Poison("handler_error", detail)))
        now = self._clock.now()
        applying = items
        with metrics.BATCH_SECONDS.labels(self.service).time():
            try:
                fitting, keys = self._lock_plan(items)  # a bug in `lock_keys` fails the batch
                if fitting < len(items):
                    applying = items[:fitting]
                    log.info(
                        "the batch names more lock keys than one transaction takes; the rest "
                        "of it is fetched again",
                        extra={"service": self.service, "applied": fitting, "records": len(items)},
                    )
                outcomes = await self._apply_isolating(applying, keys, now, deadline)
                self._refused = None
            except Exception as exc:
                if is_transient(exc):
                    raise
                outcomes = await self._last_resort(applying, now, exc)
        if len(outcomes) == len(items):
            self._done_through = {}
        else:
            for record, _ in items[: len(outcomes)]:
                where = (record.topic, record.partition)
                self._done_through[where] = max(record.offset, self._done_through.get(where, -1))
        counted = Counter(
            (item.type if isinstance(item, CloudEvent) else "invalid", outcome)
            for (_, item), outcome in zip(items[: len(outcomes)], outcomes, strict=True)
        )
        for (event_type, outcome), n in counted.items():  # a label lookup per kind, not per event
            metrics.labelled(metrics.EVENTS, self.service, event_type, outcome).inc(n)
        self._on_committed()
        if len(outcomes) < len(items):
            raise BatchCut(len(outcomes), len(items))

    async def _apply_isolating(
        self,
        items: Sequence[tuple[Record, CloudEvent | _Poison]],
        keys: set[str],
        now: datetime,
        deadline: float | None,
    ) -> list[str]:
        try:
            return await self._apply_together(items, keys, now)
        except Exception as exc:
            if is_transient(exc):
                raise
            # Roll everything back and apply the batch again, each event in its own savepoint,
            # so only the failing event is dead-lettered (rare: the slow path). Whatever failed
            # (a handler, the inbox claim, the writes held for the commit, a dead letter), the
            # culprit is isolated there.
            failed = exc.event_id if isinstance(exc, _HandlerFailed) else ""
            cause = exc.__cause__ if isinstance(exc, _HandlerFailed) and exc.__cause__ else exc
            log.info(
                "the batch is applied again event by event",
                extra={"service": self.service, "event_id": failed, **failure_fields(cause)},
            )
            async with UnitOfWork(self._sessions, namespace=self.service) as uow:
                await uow.lock(keys)
                outcomes: list[str] = []
                moved_on = False
                for record, item in items:
                    if self._done(record):
                        outcomes.append("duplicate")  # committed by the round a cut ended
                        continue
                    # A savepoint per event is slower than the fast path, which ran first: past
                    # the budget, commit what is applied (at least one new record, so every
                    # round moves on) and leave the rest for the batch fetched again.
                    if moved_on and deadline is not None and self._monotonic() >= deadline:
                        break
                    outcomes.append(await self._apply(uow, record, item, now))
                    moved_on = True
                await uow.commit()
            if len(outcomes) < len(items):
                log.info(
                    "the batch's time budget is used up; the rest of it is fetched again",
                    extra={
                        "service": self.service,
                        "applied": len(outcomes),
                        "records": len(items),
                    },
                )
            return outcomes

    async def _last_resort(
        self, items: Sequence[tuple[Record, CloudEvent | _Poison]], now: datetime, exc: Exception
    ) -> list[str]:
        """Count a batch that failed though its events were isolated; raise (it is fetched
        again) until it failed the same way `LAST_RESORT_AFTER` times in a row, then
        dead-letter every record of it, so the partitions move on."""
        if not items:
            raise exc
        # The same failure again: the same kind of error on a batch starting where the last one
        # did in one of its partitions (offsets are not committed while it fails; the batch may
        # grow at its end or come with other partitions).
        kind = sqlstate(exc) or type(exc).__name__
        starts: dict[tuple[str, int], int] = {}
        for record, _ in items:
            where = (record.topic, record.partition)
            starts[where] = min(starts.get(where, record.offset), record.offset)
        begun = frozenset(starts.items())
        previous = self._refused
        same = previous is not None and previous[0] == kind and previous[1] & begun
        count = previous[2] + 1 if previous is not None and same else 1
        self._refused = (kind, begun, count)
        log.error(
            "a batch failed though its events were isolated",
            extra={"service": self.service, "attempt": count, **failure_fields(exc)},
        )
        if count < LAST_RESORT_AFTER:
            raise exc
        self._refused = None
        detail = describe_failure(exc)
        outcomes: list[str] = []
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            for record, _ in items:
                if self._done(record):  # applied before a cut: not refused
                    outcomes.append("duplicate")
                    continue
                await self._dead_letter(
                    uow, record, "batch_refused", f"the batch kept failing: {detail}", now
                )
                outcomes.append("dead_lettered")
            await uow.commit()
        self._done_through = {}
        return outcomes

    def _done(self, record: Record) -> bool:
        """True for a record a round ended by a cut committed (see `_done_through`)."""
        return record.offset <= self._done_through.get((record.topic, record.partition), -1)

    async def _apply_together(
        self, items: Sequence[tuple[Record, CloudEvent | _Poison]], keys: set[str], now: datetime
    ) -> list[str]:
        """The fast path: one transaction, the batch's inbox ids claimed in one statement, no
        savepoint per event, and writes held back (`HOLD_WRITES`): outbox rows, timer changes
        and whatever a repository buffers go out in one statement each at commit. Anything
        failing here for a reason other than a passing fault (a handler, the inbox claim, a
        held-back write at commit, a dead letter) makes the caller roll back and apply the
        batch event by event (`_apply`), as if this path had not run."""
        async with UnitOfWork(self._sessions, namespace=self.service) as uow:
            uow.session.info[HOLD_WRITES] = True
            await uow.lock(keys)
            handled = {
                item.id: (item.type, record.topic)
                for record, item in reversed(items)  # the first copy in the batch counts
                if isinstance(item, CloudEvent) and item.type in self._handlers
            }
            fresh = await Inbox(uow.session, self._tables).claim(handled)
            # What this transaction will apply, for repositories that load a batch's
            # aggregates in one go (absent on the event-by-event path).
            uow.session.info[BATCH_EVENTS] = [
                item for _, item in items if isinstance(item, CloudEvent) and item.id in fresh
            ]
            outcomes: list[str] = []
            for record, item in items:
                if isinstance(item, _Poison):
                    # No savepoint here: should its letter be refused (at commit, with the held
                    # writes), the event-by-event path isolates it.
                    await self._queue_dead_letter(
                        uow, record, item.reason, item.detail, now, copy=True
                    )
                    outcomes.append("dead_lettered")
                    continue
                handler = self._handlers.get(item.type)
                if handler is None:
                    outcomes.append("ignored")
                    continue
                if item.id not in fresh:
                    outcomes.append("duplicate")
                    continue
                fresh.discard(item.id)  # a second copy later in the batch is a duplicate
                ctx = self._context(uow, item, now, fresh_cause=True)
                try:
                    # Filed before the handler runs: its outputs follow it in the journal.
                    await journal.record(uow.session, self._tables.journal, item, "input", now)
                    await handler(item, ctx)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    raise _HandlerFailed(item.id) from exc
                uow.after_commit(*ctx.on_commit)
                outcomes.append("processed")
            try:
                await uow.commit()
            except WriteConflict as exc:  # never expected; the slow path is right regardless
                log.warning(
                    "an event taken as new was queued already; the batch is applied again "
                    "event by event",
                    extra={"service": self.service},
                )
                raise _HandlerFailed("") from exc
        return outcomes

    def _lock_plan(
        self, items: Sequence[tuple[Record, CloudEvent | _Poison]]
    ) -> tuple[int, set[str]]:
        """How many of the batch's first records fit `max_lock_keys` (at least the first that
        takes locks, so every round moves on), and the keys they lock. A record a cut round
        committed is a duplicate: its keys are not locked again."""
        keys: set[str] = set()
        for n, (record, item) in enumerate(items):
            if not isinstance(item, CloudEvent) or item.type not in self._handlers:
                continue
            if self._done_through and self._done(record):
                continue
            more = self._lock_keys(item)
            if not isinstance(more, (list, tuple, set)):
                more = list(more)
            # Keys both already hold are counted twice: a cut a little early, never too late.
            if keys and len(keys) + len(more) > self._max_lock_keys:
                return n, keys
            keys.update(more)
        return len(items), keys

    def _context(
        self, uow: UnitOfWork, event: CloudEvent, now: datetime, *, fresh_cause: bool
    ) -> HandlerContext:
        """The context a handler applies `event` in, on either path. `fresh_cause`: the fast
        path claimed the event in the inbox in this transaction (what it emits is taken as
        new); the event-by-event path claims it in the handler's savepoint and asks."""
        return HandlerContext(
            uow=uow,
            tables=self._tables,
            service=self.service,
            now=now,
            cause_id=event.id,
            correlation_id=None,
            fresh_cause=fresh_cause,
        )

    async def _apply(
        self, uow: UnitOfWork, record: Record, item: CloudEvent | _Poison, now: datetime
    ) -> str:
        if isinstance(item, _Poison):
            await self._dead_letter(uow, record, item.reason, item.detail, now)
            return "dead_lettered"
        handler = self._handlers.get(item.type)
        if handler is None:
            return "ignored"
        ctx = self._context(uow, item, now, fresh_cause=False)
        try:
            async with uow.session.begin_nested():
                if not await ctx.inbox.first_time(item.id, item.type, record.topic):
                    return "duplicate"
                await journal.record(uow.session, self._tables.journal, item, "input", now)
                await handler(item, ctx)
                await flush_pending(uow.session)  # a buffered write fails inside the savepoint
            uow.after_commit(*ctx.on_commit)
        except Rejected as exc:
            log.warning(
                "handler rejected the event; dead-lettered",
                extra={"service": self.service, "event_type": item.type, "reason": exc.reason},
            )
            await self._dead_letter(uow, record, exc.reason, redact(exc.detail), now)
            return "dead_lettered"
        except Exception as exc:
            if is_transient(exc):
                raise
            # A deterministic failure would fail the same way on every redelivery: park it.
            # The database refusing the event's writes (bad text, a date it cannot store) is
            # `storage_refused`; anything else the handler's own `handler_error`.
            refused = is_storage_refusal(exc)
            reason = "storage_refused" if refused else "handler_error"
            log.error(
                "handler failed; event dead-lettered",
                # A refusal's traceback would print the statement's parameters (personal data):
                # its SQLSTATE and message say what the database refused.
                exc_info=not refused,
                extra={
                    "service": self.service,
                    "event_type": item.type,
                    "event_id": item.id,
                    "reason": reason,
                    **failure_fields(exc),
                },
            )
            await self._dead_letter(uow, record, reason, describe_failure(exc, limit=1000), now)
            return "dead_lettered"
        return "processed"

    async def _dead_letter(
        self, uow: UnitOfWork, record: Record, reason: str, detail: str, now: datetime
    ) -> None:
        """Queue the record's dead letter; this cannot fail for anything the record holds: the
        copy is storable text of bounded size, and should the database still refuse it, a
        letter without the copy and the key is queued instead."""
        try:
            async with uow.session.begin_nested():
                await self._queue_dead_letter(uow, record, reason, detail, now, copy=True)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error(
                "dead letter refused; queued again without the copy",
                extra={"service": self.service, "error": describe_failure(exc)},
            )
            await self._queue_dead_letter(uow, record, reason, detail, now, copy=False)

    async def _queue_dead_letter(
        self,
        uow: UnitOfWork,
        record: Record,
        reason: str,
        detail: str,
        now: datetime,
        *,
        copy: bool,
    ) -> None:
        value = record.value or b""
        digest = hashlib.sha256(value).hexdigest()
        if copy:
            text, truncated = scrub_personal_data(value)
            key, key_cut = dead_letter_key(record.key)
        else:
            text, truncated, key, key_cut = "", True, None, record.key is not None
        data = DeadLettered(
            service=self.service,
            reason=reason,
            detail=storable_text(detail)[:_MAX_DETAIL],
            origin=DeadLetterOrigin(
                topic=record.topic, partition=record.partition, offset=record.offset
            ),
            key=key,
            value=text,
            value_encoding="utf-8",
            value_truncated=truncated or key_cut,
            received_at=now,
        )
        data = fit_dead_letter(data)
        origin = f"{record.topic}/{record.partition}/{record.offset}/{digest}"
        ctx = HandlerContext(
            uow=uow, tables=self._tables, service=self.service, now=now, cause_id=origin
        )
        ctx.journal = None  # a record that was never applied is no part of any case
        letter = await ctx.emit(
            "event.deadlettered",
            data,
            topic=dead_letter_topic(self.service),
            key=key or origin,
            discriminator=deterministic_id(reason),
        )
        if ctx.is_new(letter):  # a record fetched again after its commit: counted once
            ctx.count(metrics.labelled(metrics.DEAD_LETTERS, self.service, reason))
        uow.after_commit(*ctx.on_commit)
        log.warning(
            "event dead-lettered",
            extra={
                "service": self.service,
                "reason": reason,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
        )
