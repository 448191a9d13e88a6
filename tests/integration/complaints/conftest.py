"""A database of its own for the complaints service-layer tests, migrated with the real
migrations; tests keep apart by unique ids, each with its own ManualClock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from tests.harness import migrated_engine

from .harness import T0, ComplaintsService


@pytest.fixture(scope="session")
async def complaints_it_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(database_url, "complaints_it", "complaints") as engine:
        yield engine


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def svc(complaints_it_engine: AsyncEngine, clock: ManualClock) -> ComplaintsService:
    return ComplaintsService(complaints_it_engine, clock)
