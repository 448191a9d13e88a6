"""A dedicated database for the returns service tests, migrated once with the real migrations.

Tests share it and keep apart by unique order and return ids; each test gets its own
ManualClock and a service wired over it (`svc`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import ManualClock
from shared.db import create_engine
from shared.migrations import upgrade

from .helpers import T0, ReturnsService


def plain_url(url: str) -> str:
    """asyncpg's own DSN for a SQLAlchemy `postgresql+asyncpg://` URL."""
    return "postgresql://" + url.split("://", 1)[1]


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


async def create_database(url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(url, name)


async def drop_database(url: str, created: str) -> None:
    name = created.partition("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def returns_database(database_url: str) -> AsyncIterator[str]:
    url = await create_database(database_url, "returns_it")
    # Alembic's env runs its own event loop: keep it off this one.
    await asyncio.to_thread(upgrade, "returns", url)
    yield url
    await drop_database(database_url, url)


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
