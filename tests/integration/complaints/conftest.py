"""A database of its own for the complaints service-layer tests, migrated with the real
migrations; tests keep apart by unique ids, each with its own ManualClock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aftersales_dev.devenv import temporary_database
from shared.clock import ManualClock
from shared.db import create_engine
from shared.migrations import upgrade

from .harness import T0, ComplaintsService


@pytest.fixture(scope="session")
async def complaints_it_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with temporary_database(database_url, "complaints_it") as url:
        await asyncio.to_thread(upgrade, "complaints", url)  # alembic runs its own event loop
        engine = create_engine(url, pool_size=5)
        yield engine
        await engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def svc(complaints_it_engine: AsyncEngine, clock: ManualClock) -> ComplaintsService:
    return ComplaintsService(complaints_it_engine, clock)
