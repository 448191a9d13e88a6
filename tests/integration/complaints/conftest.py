"""A database of its own for the complaints service-layer tests, migrated with the real
migrations; tests keep apart by unique ids, each with its own ManualClock."""

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

from .harness import T0, ComplaintsService


def _plain(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


@pytest.fixture(scope="session")
async def complaints_it_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    name = f"complaints_it_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_plain(database_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, query = database_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    await asyncio.to_thread(upgrade, "complaints", url)  # alembic runs its own event loop
    engine = create_engine(url, pool_size=5)
    yield engine
    await engine.dispose()
    conn = await asyncpg.connect(_plain(database_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def svc(complaints_it_engine: AsyncEngine, clock: ManualClock) -> ComplaintsService:
    return ComplaintsService(complaints_it_engine, clock)
