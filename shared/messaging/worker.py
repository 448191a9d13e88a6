"""What the consumer's processor, the timer scheduler and the outbox relay each work on."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import Clock

from .tables import MessagingTables


class ServiceWorker:
    """A worker of one service: the service's name, its database sessions, its messaging tables
    (outbox, timers, inbox, journal) and the clock it reads."""

    def __init__(
        self,
        *,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        clock: Clock,
    ) -> None:
        self.service = service
        self._sessions = sessions
        self._tables = tables
        self._clock = clock
