"""What a handler gets: the open unit of work, the instant, and a way to emit events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import BaseModel

from shared.contracts import CloudEvent, deterministic_id, new_event
from shared.db import UnitOfWork

from .store import Inbox, Outbox, Timer, Timers
from .tables import MessagingTables


class HandlerContext:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        tables: MessagingTables,
        service: str,
        now: datetime,
        cause_id: str,
        correlation_id: str | None = None,
    ) -> None:
        self.uow = uow
        self.session = uow.session
        self.service = service
        self.now = now
        self.cause_id = cause_id
        self.correlation_id = correlation_id
        self.inbox = Inbox(uow.session, tables)
        self.outbox = Outbox(uow.session, tables)
        self.timers = Timers(uow.session, tables)
        self.emitted: list[CloudEvent] = []

    async def emit(
        self,
        topic: str,
        event_type: str,
        data: BaseModel,
        *,
        key: str,
        discriminator: str = "",
        correlation_id: str | None = None,
        event_id: str | None = None,
        causation_id: str | None = None,
    ) -> CloudEvent:
        """Queue an event in the outbox, in the handler's transaction.

        Its id derives from the cause (or is given, for an event that must exist once per case
        whatever causes it), so processing the same cause again yields the same id and the
        outbox keeps only one copy.
        """
        event = new_event(
            event_type,
            data,
            id=event_id or deterministic_id(self.service, self.cause_id, event_type, discriminator),
            source=f"/aftersales/{self.service}",
            time=self.now,
            correlationid=correlation_id or self.correlation_id,
            causationid=causation_id or self.cause_id,
        )
        if await self.outbox.add(event, topic=topic, key=key):
            self.emitted.append(event)
        return event

    def is_new(self, event: CloudEvent) -> bool:
        """Whether `emit` queued `event` here; False when the outbox already held it (a replay),
        so counters count each event once."""
        return any(queued is event for queued in self.emitted)


EventHandler = Callable[[CloudEvent, HandlerContext], Awaitable[None]]
TimerHandler = Callable[[Timer, HandlerContext], Awaitable[None]]
