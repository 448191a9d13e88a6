"""A dedicated database for the returns service tests, migrated once with the real migrations.

Tests share it and keep apart by unique order and return ids; each test gets its own
ManualClock and a service wired over it (`svc`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from shared.db import create_engine
from tests.harness import migrated_database

from .helpers import T0, ReturnsService


@pytest.fixture(scope="session")
async def returns_database(database_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_url, "returns_it", "returns") as url:
        yield url


@pytest.fixture(scope="session")
async def returns_engine(returns_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(returns_database, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def svc(returns_engine: AsyncEngine, clock: ManualClock) -> ReturnsService:
    return ReturnsService(returns_engine, clock)
