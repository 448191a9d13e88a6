"""One fixture object for what most messaging tests arrange with, and the calls they make on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from shared.messaging.consumer import EventProcessor
from shared.messaging.relay import OutboxRelay, Publish
from shared.messaging.scheduler import TimerScheduler

from . import helpers
from .helpers import Harness, Sessions


@dataclass(frozen=True)
class MessagingKit:
    """A fresh service schema (the harness), the engine, its sessions and the manual clock."""

    harness: Harness
    engine: AsyncEngine
    sessions: Sessions
    clock: ManualClock

    def processor(self, handlers: Any = None, **options: Any) -> EventProcessor:
        return helpers.processor(self.harness, self.sessions, self.clock, handlers, **options)

    def scheduler(self, handlers: Any = None, **options: Any) -> TimerScheduler:
        return helpers.scheduler(self.harness, self.sessions, self.clock, handlers, **options)

    def relay(self, publish: Publish, **options: Any) -> OutboxRelay:
        return helpers.relay(self.harness, self.sessions, publish, self.clock, **options)

    async def outbox_rows(self) -> list[dict[str, Any]]:
        return await helpers.outbox_rows(self.engine, self.harness)

    async def effect_counts(self) -> Counter[str]:
        return await helpers.effect_counts(self.engine, self.harness)

    async def effect_rows(self) -> list[dict[str, Any]]:
        return await helpers.effect_rows(self.engine, self.harness)

    async def inbox_ids(self) -> set[str]:
        return await helpers.inbox_ids(self.engine, self.harness)

    async def unpublished_count(self) -> int:
        return await helpers.unpublished_count(self.engine, self.harness)

    async def timer_rows(self) -> dict[str, dict[str, Any]]:
        return await helpers.timer_rows(self.engine, self.harness)
