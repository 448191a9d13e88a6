"""`aftersales migrate` as an operator runs it: a subprocess with DATABASE_URL set."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.bootstrap import SERVICES


def plain_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


@pytest.fixture
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """An empty database of its own (no schema at all)."""
    name = f"cli_{uuid.uuid4().hex[:10]}"
    base, _, query = database_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield url
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def aftersales() -> list[str]:
    script = Path(sys.executable).with_name("aftersales")
    if script.exists():
        return [str(script)]
    found = shutil.which("aftersales")
    return [found] if found else [sys.executable, "-m", "shared.cli"]


async def migrate(database_url: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFTERSALES_", "KAFKA_"))}
    env["DATABASE_URL"] = database_url
    env["AFTERSALES_LOG_FORMAT"] = "text"
    process = await asyncio.create_subprocess_exec(
        *aftersales(),
        "migrate",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def schema_of(database_url: str) -> dict[str, tuple[set[str], list[str]]]:
    """Tables and alembic revision of every service schema."""
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        out = {}
        for service in SERVICES:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", service
            )
            versions = await conn.fetch(f'SELECT version_num FROM "{service}".alembic_version')
            out[service] = (
                {row["tablename"] for row in tables},
                [row["version_num"] for row in versions],
            )
    finally:
        await conn.close()
    return out


async def test_migrate_creates_every_schema_and_is_idempotent(fresh_database: str):
    code, output = await migrate(fresh_database)
    assert code == 0, output
    schemas = await schema_of(fresh_database)
    for service, (tables, versions) in schemas.items():
        # The messaging tables every service keeps in its own schema, at one revision.
        assert {"inbox", "outbox", "timers", "alembic_version"} <= tables, service
        assert len(versions) == 1, service
    assert {"orders", "order_ledgers", "return_requests", "outbound_signatures"} <= schemas[
        "returns"
    ][0]

    code, output = await migrate(fresh_database)  # again: nothing to do, still a success
    assert code == 0, output
    assert await schema_of(fresh_database) == schemas


async def test_migrate_fails_on_a_database_that_does_not_exist(fresh_database: str):
    missing = fresh_database.rsplit("/", 1)[0] + "/no_such_database_here"
    code, _ = await migrate(missing)
    assert code != 0
