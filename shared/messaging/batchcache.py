"""A repository's cache for one consumer batch: what the batch's events name, read at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import CloudEvent
from shared.messaging.consumer import BATCH_EVENTS

C = TypeVar("C")


async def batch_cache(
    session: AsyncSession,
    name: str,
    prefetch: Callable[[AsyncSession, list[CloudEvent]], Awaitable[C]],
) -> C | None:
    """The cache `name` of the batch the session applies, made by `prefetch` from the batch's
    events the first time it is asked for; None outside a batch (a timer, a single event)."""
    info = session.info
    cache: C | None = info.get(name)
    if cache is None and (events := info.get(BATCH_EVENTS)) is not None:
        cache = info[name] = await prefetch(session, events)
    return cache
