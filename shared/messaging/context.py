"""What a handler gets: the open unit of work, the instant, and a way to emit events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import (
    CloudEvent,
    deterministic_id,
    event_key,
    new_event,
    output_of,
    service_source,
)
from shared.db import UnitOfWork
from shared.policy import Policy

from . import journal
from .store import Inbox, Outbox, Timer, TimerRows, Timers
from .tables import MessagingTables


class Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class OutboxRows(Protocol):
    """What a handler queues its events in (`store.Outbox`, or `memory.MemoryOutbox`)."""

    async def add(
        self, event: CloudEvent, *, topic: str, key: str | None, known_new: bool = False
    ) -> bool: ...


@dataclass(frozen=True)
class Outside:
    """I/O a timer handler hands to the timer scheduler, to run outside any transaction.

    `call` runs once the handler's transaction committed (a send to a gateway); `record` then
    gets its result in a second short transaction that holds `lock_key`. Nothing of it runs if
    the handler's transaction rolls back; a crash between the two loses the result only, so the
    handler arms a timer of its own in the first transaction to find the work unrecorded.
    """

    call: Callable[[], Awaitable[Any]]
    record: Callable[[Any, HandlerContext], Awaitable[None]]
    lock_key: str
    cause_id: str


class HandlerContext:
    # Where emitted events are filed for the case timelines; None keeps no journal (in memory).
    journal: Table | None = None
    # Whether the caller runs what `run_outside` is handed: only the timer scheduler does.
    runs_outside: bool = False

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        tables: MessagingTables,
        service: str,
        now: datetime,
        cause_id: str,
        correlation_id: str | None = None,
        fresh_cause: bool = False,
        runs_outside: bool = False,
    ) -> None:
        self.uow = uow
        self.session = uow.session
        self.service = service
        self.now = now
        self.cause_id = cause_id
        self.correlation_id = correlation_id
        # The cause was claimed in the inbox by this transaction, so what it emits is taken as
        # new without asking the database; held-back writes verify that when they are flushed
        # (`shared.messaging.store.WriteConflict`).
        self.fresh_cause = fresh_cause
        self.inbox = Inbox(uow.session, tables)
        self.outbox: OutboxRows = Outbox(uow.session, tables)
        self.timers: TimerRows = Timers(uow.session, tables)
        self.journal = tables.journal
        self.emitted: list[CloudEvent] = []
        # Run by the caller once the handler's work committed (`UnitOfWork.after_commit`).
        self.on_commit: list[Callable[[], object]] = []
        # Work for outside the transaction (`run_outside`); only the timer scheduler runs it.
        self.outside: list[Outside] = []
        self.runs_outside = runs_outside

    def run_outside(
        self,
        call: Callable[[], Awaitable[Any]],
        *,
        record: Callable[[Any, HandlerContext], Awaitable[None]],
        lock_key: str,
    ) -> None:
        """Timer handlers: run `call` after this transaction committed, outside it, then
        `record(result, ctx)` in a short transaction of its own (see `Outside`).

        Elsewhere (an event handler, a `record`) nothing would run it, so it raises rather
        than drop the work: arm a timer due now and hand the work over from its handler.
        """
        if not self.runs_outside:
            raise RuntimeError(
                f"{self.service}: run_outside is for timer handlers only; nothing runs work "
                "handed over here (arm a timer due now and hand it over from its handler)"
            )
        self.outside.append(Outside(call, record, lock_key, self.cause_id))

    def count(self, counter: Counter, amount: float = 1) -> None:
        """Increment a metric when the handler's work commits: a batch rolled back and applied
        again (a failing neighbour, a passing fault) is then counted once."""
        self.on_commit.append(lambda: counter.inc(amount))

    async def emit(
        self,
        event_type: str,
        data: BaseModel,
        *,
        topic: str | None = None,
        key: str | None = None,
        discriminator: str = "",
        correlation_id: str | None = None,
        event_id: str | None = None,
        causation_id: str | None = None,
    ) -> CloudEvent:
        """Queue an event in the outbox, in the handler's transaction.

        Its id derives from the cause (or is given, for an event that must exist once per case
        whatever causes it), so processing the same cause again yields the same id and the
        outbox keeps only one copy. Topic and key come from the type's declaration
        (`shared.contracts.events.OUTPUTS`); only a dead letter, whose topic is per service and
        whose key is the original record's, names them.
        """
        event = new_event(
            event_type,
            data,
            id=event_id or deterministic_id(self.service, self.cause_id, event_type, discriminator),
            source=service_source(self.service),
            time=self.now,
            correlationid=correlation_id or self.correlation_id,
            causationid=causation_id or self.cause_id,
        )
        if topic is None:
            topic = output_of(event_type).topic
        if key is None:
            key = event_key(event)
        if await self.outbox.add(event, topic=topic, key=key, known_new=self.fresh_cause):
            self.emitted.append(event)
            if self.journal is not None:
                await journal.record(self.session, self.journal, event, "output", self.now)
        return event

    def is_new(self, event: CloudEvent) -> bool:
        """Whether `emit` queued `event` here; False when the outbox already held it (a replay),
        so counters count each event once."""
        return any(queued is event for queued in self.emitted)


EventHandler = Callable[[CloudEvent, HandlerContext], Awaitable[None]]
TimerHandler = Callable[[Timer, HandlerContext], Awaitable[None]]


R = TypeVar("R")


class RepositoryHandlers(Generic[R]):
    """A service's handlers, loading and storing its aggregates through `repository(ctx)`:
    the service's schema (`stored`, over the transaction's session) unless another is given
    (memory, for the policy simulation)."""

    stored: Callable[[AsyncSession], R]

    def __init__(
        self, policy: Policy, repository: Callable[[HandlerContext], R] | None = None
    ) -> None:
        self.policy = policy
        self.repository = repository or (lambda ctx: self.stored(ctx.session))
