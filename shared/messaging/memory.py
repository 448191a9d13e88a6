"""An outbox and timer rows in memory, for fast tests of a service's outputs (and, later, for
simulating a policy over many cases) without a database or a broker.

They behave as the database's do where handlers can tell: an event id is queued once (a replay
finds it), setting a timer again moves it, a cancelled timer stays as a cancelled row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.contracts import CloudEvent

from .context import HandlerContext


@dataclass(frozen=True)
class QueuedEvent:
    topic: str
    key: str | None
    event: CloudEvent


class MemoryOutbox:
    def __init__(self) -> None:
        self.rows: dict[str, QueuedEvent] = {}  # by event id, in the order queued

    async def add(
        self, event: CloudEvent, *, topic: str, key: str | None, known_new: bool = False
    ) -> bool:
        if event.id in self.rows:
            return False
        self.rows[event.id] = QueuedEvent(topic, key, event)
        return True

    def of_type(self, event_type: str) -> list[QueuedEvent]:
        return [row for row in self.rows.values() if row.event.type == event_type]


@dataclass
class MemoryTimer:
    kind: str
    ref: str
    due_at: datetime
    lock_key: str
    payload: Mapping[str, Any]
    cancelled_at: datetime | None = None


class MemoryTimers:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], MemoryTimer] = {}

    async def set(
        self,
        kind: str,
        ref: str,
        *,
        due_at: datetime,
        lock_key: str,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        self.rows[(kind, ref)] = MemoryTimer(kind, ref, due_at, lock_key, dict(payload or {}))

    async def cancel(self, kind: str, ref: str, *, at: datetime) -> None:
        timer = self.rows.get((kind, ref))
        if timer is not None and timer.cancelled_at is None:
            timer.cancelled_at = at

    def pending(self) -> list[MemoryTimer]:
        return [timer for timer in self.rows.values() if timer.cancelled_at is None]


@dataclass
class MemoryUnitOfWork:
    """An outbox and timers kept across handler runs; `context` opens one run on them."""

    service: str
    outbox: MemoryOutbox = field(default_factory=MemoryOutbox)
    timers: MemoryTimers = field(default_factory=MemoryTimers)
    committed: list[Callable[[], object]] = field(default_factory=list)

    def context(self, *, now: datetime, cause_id: str) -> MemoryContext:
        return MemoryContext(self, now=now, cause_id=cause_id)

    def commit(self, ctx: HandlerContext) -> None:
        """What the consumer does once a handler's work committed: run its counters."""
        for action in ctx.on_commit:
            action()
        self.committed.extend(ctx.on_commit)


class MemoryContext(HandlerContext):
    """A `HandlerContext` whose outbox and timers live in a `MemoryUnitOfWork`."""

    def __init__(self, uow: MemoryUnitOfWork, *, now: datetime, cause_id: str) -> None:
        # Not HandlerContext.__init__: there is no session to open stores on.
        self.service = uow.service
        self.now = now
        self.cause_id = cause_id
        self.correlation_id = None
        self.fresh_cause = False
        self.outbox = uow.outbox
        self.timers = uow.timers
        self.emitted = []
        self.on_commit = []
