"""A dedicated database for the returns service tests, migrated once with the real migrations.

Tests share it and keep apart by unique order and return ids; each test gets its own
ManualClock and a service wired over it (`svc`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from tests.harness import engine_at, migrated_database

from .helpers import T0, ReturnsService


@pytest.fixture(scope="session")
async def returns_database(database_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_url, "returns_it", "returns") as url:
        yield url


@pytest.fixture(scope="session")
async def returns_engine(returns_database: str) -> AsyncIterator[AsyncEngine]:
    async with engine_at(returns_database) as engine:
        yield engine


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def svc(returns_engine: AsyncEngine, clock: ManualClock) -> ReturnsService:
    return ReturnsService(returns_engine, clock)
