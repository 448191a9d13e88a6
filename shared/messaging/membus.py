"""A message bus in memory: services' own handlers over in-memory units of work, their outputs
routed to the services that read them, and their timers fired in simulated time.

What the consumer, the outbox relay and the timer scheduler do, without a broker or a database
(`shared.messaging.consumer`, `relay`, `scheduler`): each service applies an event once (its
inbox), in a unit of work of its own that a failing handler rolls back; what a service queues
in its outbox goes, in queue order, to every service that reads that topic and handles that
type, before the next input; a timer fires at its due instant, before any input stamped later.
The clock is the simulation's: it follows the inputs and the timers, never the wall clock.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from shared.contracts import CloudEvent
from shared.projection import projected

from .context import EventHandler, TimerHandler
from .errors import Rejected, describe_failure
from .memory import MemoryTimer, MemoryUnitOfWork, QueuedEvent
from .runtime import ServiceDefinition
from .store import Timer

log = logging.getLogger("aftersales.membus")


@dataclass(frozen=True)
class MemoryService:
    """One service as the bus runs it: what it reads, its handlers, its state in memory."""

    name: str
    topics: tuple[str, ...]
    handlers: Mapping[str, EventHandler]
    timer_handlers: Mapping[str, TimerHandler]
    uow: MemoryUnitOfWork

    @classmethod
    def of(
        cls, definition: ServiceDefinition, handlers: Handlers, uow: MemoryUnitOfWork
    ) -> MemoryService:
        """A service's definition (its topics) run with `handlers` on `uow`'s state."""
        return cls(
            name=definition.name,
            topics=tuple(definition.topics),
            handlers=handlers.events(),
            timer_handlers=handlers.timers(),
            uow=uow,
        )


class Handlers(Protocol):
    """A service's handlers object (`ReturnsHandlers`...)."""

    def events(self) -> Mapping[str, EventHandler]: ...

    def timers(self) -> Mapping[str, TimerHandler]: ...


@dataclass(frozen=True)
class Published:
    """An output a service published, and when (simulated time)."""

    service: str
    row: QueuedEvent
    at: datetime


class MemoryBus:
    def __init__(
        self,
        services: Sequence[MemoryService],
        *,
        start: datetime,
        on_publish: Callable[[Published], None] = lambda published: None,
    ) -> None:
        self.services = tuple(services)
        self.now = start.astimezone(UTC)  # as a Clock gives it
        self._on_publish = on_publish
        # Outcomes per (service, event type or timer kind, outcome), as the consumer counts.
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        # Dead letters per (service, reason); the timers a failing handler parked, per service.
        self.dead_letters: Counter[tuple[str, str]] = Counter()
        self.parked_timers: Counter[tuple[str, str]] = Counter()
        self._readers: dict[tuple[str, str], list[MemoryService]] = {}
        for service in self.services:
            for topic in service.topics:
                for event_type in service.handlers:
                    self._readers.setdefault((topic, event_type), []).append(service)

    async def publish(self, topic: str, event: CloudEvent, at: datetime) -> None:
        """An input on `topic` at `at`: the timers due before then fire first, then every
        service that reads it applies it, then everything that follows from it. A timer due at
        `at` itself fires after it: the rules take an answer dated at its deadline as in time,
        so a timer must not call it late first."""
        await self.run_timers(until=at, inclusive=False)
        self.now = max(self.now, at.astimezone(UTC))
        await self._deliver(deque([(topic, event)]))

    async def run_timers(self, *, until: datetime, inclusive: bool = True) -> None:
        """Fire, earliest first, every timer due by `until` (before it, unless `inclusive`),
        those their handlers set included."""
        while True:
            due: tuple[datetime, int, int, MemoryService, MemoryTimer] | None = None
            for order, service in enumerate(self.services):
                timer = service.uow.timers.next_due()
                if timer is not None and (due is None or (timer.due_at, order, timer.id) < due[:3]):
                    due = (timer.due_at, order, timer.id, service, timer)
            if due is None or due[0] > until or (due[0] == until and not inclusive):
                return
            _, _, _, service, timer = due
            self.now = max(self.now, timer.due_at.astimezone(UTC))
            await self._fire(service, timer)

    async def _fire(self, service: MemoryService, timer: MemoryTimer) -> None:
        uow = service.uow
        # The scheduler's cause: a timer set again for another instant is another cause.
        ctx = uow.context(
            now=self.now, cause_id=f"timer:{timer.kind}:{timer.ref}:{timer.due_at.isoformat()}"
        )
        handler = service.timer_handlers.get(timer.kind)
        try:
            if handler is not None:
                await handler(_timer(timer), ctx)
            uow.timers.mark_fired(timer, self.now)
        except Exception as exc:
            uow.rollback()
            # The scheduler retries a failing timer a few times, then parks it; a handler that
            # fails on the same state fails each time, so it is parked at once here.
            log.warning(
                "timer handler failed; parked",
                extra={"service": service.name, "kind": timer.kind, "error": describe_failure(exc)},
            )
            await uow.timers.cancel(timer.kind, timer.ref, at=self.now)
            uow.journal.commit()
            self.parked_timers[(service.name, timer.kind)] += 1
            return
        self._committed(service, f"timer:{timer.kind}", "fired")
        await self._deliver(deque(self._take_outputs(service)))

    async def _deliver(self, queue: deque[tuple[str, CloudEvent]]) -> None:
        while queue:
            topic, event = queue.popleft()
            for service in self._readers.get((topic, event.type), ()):
                if await self._apply(service, topic, event):
                    queue.extend(self._take_outputs(service))

    async def _apply(self, service: MemoryService, topic: str, event: CloudEvent) -> bool:
        uow = service.uow
        if not uow.inbox.first_time(event.id):
            self.outcomes[(service.name, event.type, "duplicate")] += 1
            return False
        ctx = uow.context(now=self.now, cause_id=event.id)
        try:
            await service.handlers[event.type](event, ctx)
        except Rejected as exc:
            self._dead_letter(service, event, exc.reason)
            return False
        except Exception as exc:  # as the consumer does: a deterministic failure is parked
            log.warning(
                "handler failed; event dead-lettered",
                extra={
                    "service": service.name,
                    "event_type": event.type,
                    "error": describe_failure(exc),
                },
            )
            self._dead_letter(service, event, "handler_error")
            return False
        self._committed(service, event.type, "processed")
        return True

    def _dead_letter(self, service: MemoryService, event: CloudEvent, reason: str) -> None:
        service.uow.rollback()
        # The dead letter is the only effect, so a redelivery is tried again, as on Kafka.
        self.outcomes[(service.name, event.type, "dead_lettered")] += 1
        self.dead_letters[(service.name, reason)] += 1

    def _committed(self, service: MemoryService, what: str, outcome: str) -> None:
        # The handler's metrics are left uncounted: a replay's figures are its own report's,
        # not the process's (and counting them costs a few per cent of a replay).
        service.uow.journal.commit()
        self.outcomes[(service.name, what, outcome)] += 1

    def _take_outputs(self, service: MemoryService) -> list[tuple[str, CloudEvent]]:
        rows = service.uow.outbox.take_new()
        for row in rows:
            self._on_publish(Published(service.name, row, self.now))
        return [(row.topic, row.event) for row in rows]


def _timer(timer: MemoryTimer) -> Timer:
    return projected(Timer, timer)
