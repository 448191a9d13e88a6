"""An outbox, timer rows, an inbox and keyed rows in memory, for fast tests of a service's
outputs and for simulating a policy over many cases (`shared.messaging.membus`) without a
database or a broker.

They behave as the database's do where handlers can tell: an event id is queued once (a replay
finds it), setting a timer again moves it (and re-arms a fired one), a cancelled timer stays as
a cancelled row, a fired one is marked fired. A `Journal` records how to undo each change, so a
handler that fails leaves nothing behind, like a rolled-back transaction.
"""

from __future__ import annotations

import heapq
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from shared.contracts import CloudEvent

from .context import HandlerContext
from .store import TimerRows

T = TypeVar("T")


class Journal:
    """The undo steps of the changes made since the last commit, newest last."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []

    def record(self, undo: Callable[[], object]) -> None:
        self._undo.append(undo)

    def commit(self) -> None:
        self._undo.clear()

    def rollback(self) -> None:
        while self._undo:
            self._undo.pop()()


_MISSING = object()


class MemoryRows:
    """Rows of one table by key, their changes journalled (a repository's table in memory)."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._rows: dict[Any, Any] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        return self._rows.get(key, default)

    def __contains__(self, key: Any) -> bool:
        return key in self._rows

    def values(self) -> Iterable[Any]:
        return self._rows.values()

    def put(self, key: Any, value: Any) -> None:
        before = self._rows.get(key, _MISSING)
        self._rows[key] = value
        self._journal.record(lambda: self._restore(key, before))

    def pop(self, key: Any) -> Any:
        before = self._rows.pop(key, _MISSING)
        if before is not _MISSING:
            self._journal.record(lambda: self._restore(key, before))
        return None if before is _MISSING else before

    def put_document(self, key: Any, document: Mapping[str, Any]) -> None:
        """A document kept serialised, as in a JSONB column, so each read is a fresh copy that
        nothing done to an object loaded from it can change (pickle: several times faster
        than JSON, and only ever reading what this process wrote)."""
        self.put(key, pickle.dumps(document, pickle.HIGHEST_PROTOCOL))

    def document(self, key: Any) -> Any:
        data = self._rows.get(key)
        return None if data is None else pickle.loads(data)  # noqa: S301 (our own bytes)

    def aggregate(self, key: Any, load: Callable[[Mapping[str, Any]], T]) -> T | None:
        """What `load` makes of the document stored under `key` (a fresh copy each read, see
        `put_document`); None: none stored."""
        document = self.document(key)
        return None if document is None else load(document)

    def _restore(self, key: Any, before: Any) -> None:
        if before is _MISSING:
            self._rows.pop(key, None)
        else:
            self._rows[key] = before


class MemoryCasesOfOrder:
    """When each case of a table was created and for which order, as its row says: an order's
    cases listed in the schema's order (created_at, then id)."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._created = uow.rows()  # case id -> (created_at, order id)
        self._of_order = uow.rows()  # order id -> its case ids

    def add(self, case_id: str, order_id: str, now: datetime) -> None:
        """A new case; created_at is kept when it is saved again, like the row's."""
        if case_id not in self._created:
            self._created.put(case_id, (now, order_id))
            self._of_order.put(order_id, (*self._of_order.get(order_id, ()), case_id))

    def order_of(self, case_id: str) -> str | None:
        created = self._created.get(case_id)
        return None if created is None else str(created[1])

    def of_order(self, order_id: str) -> list[str]:
        cases = self._of_order.get(order_id, ())
        return sorted(cases, key=lambda case_id: (self._created.get(case_id), case_id))


@dataclass(frozen=True)
class QueuedEvent:
    topic: str
    key: str | None
    event: CloudEvent


class MemoryOutbox:
    def __init__(self, journal: Journal | None = None) -> None:
        self.rows: dict[str, QueuedEvent] = {}  # by event id, in the order queued
        self._journal = journal
        self._unread: list[str] = []  # ids queued since `take_new`

    async def add(
        self, event: CloudEvent, *, topic: str, key: str | None, known_new: bool = False
    ) -> bool:
        if event.id in self.rows:
            return False
        self.rows[event.id] = QueuedEvent(topic, key, event)
        self._unread.append(event.id)
        if self._journal is not None:
            self._journal.record(lambda: self._forget(event.id))
        return True

    def _forget(self, event_id: str) -> None:
        del self.rows[event_id]
        self._unread.remove(event_id)

    def take_new(self) -> list[QueuedEvent]:
        """The rows queued since the last call, in queue order (what a relay would publish)."""
        new, self._unread = self._unread, []
        return [self.rows[event_id] for event_id in new]

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
    fired_at: datetime | None = None
    id: int = 0  # the order it was set in, as the table's serial id

    @property
    def live(self) -> bool:
        return self.cancelled_at is None and self.fired_at is None


class MemoryTimers(TimerRows):
    def __init__(self, journal: Journal | None = None) -> None:
        self.rows: dict[tuple[str, str], MemoryTimer] = {}
        self._journal = journal
        self._serial = 0
        # (due_at, id, kind, ref) of every row set; stale entries are skipped when looked at.
        self._queue: list[tuple[datetime, int, str, str]] = []

    async def _set(
        self, kind: str, ref: str, due_at: datetime, lock_key: str, payload: dict[str, Any]
    ) -> None:
        before = self.rows.get((kind, ref))
        self._serial += 1
        serial = before.id if before is not None else self._serial
        timer = MemoryTimer(kind, ref, due_at, lock_key, payload, id=serial)
        self._replace((kind, ref), timer)
        heapq.heappush(self._queue, (due_at, serial, kind, ref))

    async def cancel(self, kind: str, ref: str, *, at: datetime) -> None:
        timer = self.rows.get((kind, ref))
        if timer is not None and timer.fired_at is None and timer.cancelled_at is None:
            self._replace((kind, ref), _changed(timer, cancelled_at=at))

    def mark_fired(self, timer: MemoryTimer, at: datetime) -> None:
        """Fired, unless its handler set it again to another instant (re-armed: kept)."""
        current = self.rows.get((timer.kind, timer.ref))
        if current is not None and current.due_at == timer.due_at and current.live:
            self._replace((timer.kind, timer.ref), _changed(current, fired_at=at))

    def _replace(self, key: tuple[str, str], timer: MemoryTimer) -> None:
        before = self.rows.get(key)
        self.rows[key] = timer
        if self._journal is not None:
            self._journal.record(lambda: self._restore(key, before))

    def _restore(self, key: tuple[str, str], before: MemoryTimer | None) -> None:
        if before is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = before
            # Put back where the scheduler looks (a duplicate entry is skipped as stale).
            heapq.heappush(self._queue, (before.due_at, before.id, before.kind, before.ref))

    def next_due(self) -> MemoryTimer | None:
        """The live timer due first (ties: in the order set), without taking it."""
        while self._queue:
            due_at, serial, kind, ref = self._queue[0]
            timer = self.rows.get((kind, ref))
            if timer is not None and timer.live and timer.due_at == due_at and timer.id == serial:
                return timer
            heapq.heappop(self._queue)  # moved, cancelled or fired since: stale
        return None

    def pending(self) -> list[MemoryTimer]:
        return [timer for timer in self.rows.values() if timer.live]


def _changed(timer: MemoryTimer, **values: Any) -> MemoryTimer:
    fields = {**timer.__dict__, **values}
    return MemoryTimer(**fields)


class MemoryInbox:
    """Event ids a service has applied: a redelivered id has no second effect."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.seen: set[str] = set()
        self._journal = journal

    def first_time(self, event_id: str) -> bool:
        if event_id in self.seen:
            return False
        self.seen.add(event_id)
        if self._journal is not None:
            self._journal.record(lambda: self.seen.discard(event_id))
        return True


class _NoLocks:
    """What a handler's `ctx.uow` offers in memory: one process, one event at a time, so the
    advisory locks the handlers take have nothing to serialise."""

    async def lock(self, keys: Iterable[str]) -> None:
        return None


@dataclass
class MemoryUnitOfWork:
    """The outbox, timers, inbox and rows of one service, kept across handler runs; `context`
    opens one run on them, `commit` or `rollback` ends it."""

    service: str
    journal: Journal = field(default_factory=Journal)
    outbox: MemoryOutbox = field(init=False)
    timers: MemoryTimers = field(init=False)
    inbox: MemoryInbox = field(init=False)
    committed: list[Callable[[], object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outbox = MemoryOutbox(self.journal)
        self.timers = MemoryTimers(self.journal)
        self.inbox = MemoryInbox(self.journal)

    def rows(self) -> MemoryRows:
        """A new table of this unit's journalled rows (for a repository in memory)."""
        return MemoryRows(self.journal)

    def context(self, *, now: datetime, cause_id: str) -> MemoryContext:
        return MemoryContext(self, now=now, cause_id=cause_id)

    def commit(self, ctx: HandlerContext) -> None:
        """What the consumer does once a handler's work committed: run its counters."""
        self.journal.commit()
        for action in ctx.on_commit:
            action()
        self.committed.extend(ctx.on_commit)

    def rollback(self) -> None:
        self.journal.rollback()


class MemoryContext(HandlerContext):
    """A `HandlerContext` whose outbox and timers live in a `MemoryUnitOfWork`."""

    def __init__(self, uow: MemoryUnitOfWork, *, now: datetime, cause_id: str) -> None:
        # Not HandlerContext.__init__: there is no session to open stores on.
        self.memory = uow
        self.uow = _NoLocks()  # type: ignore[assignment]
        self.service = uow.service
        self.now = now
        self.cause_id = cause_id
        self.correlation_id = None
        self.fresh_cause = False
        self.outbox = uow.outbox
        self.timers = uow.timers
        self.emitted = []
        self.on_commit = []
