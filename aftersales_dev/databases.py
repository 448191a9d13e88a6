"""Databases on a running PostgreSQL server: one per test or benchmark, dropped after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator


def plain_dsn(url: str) -> str:
    """The asyncpg / libpq form of a SQLAlchemy `postgresql+asyncpg://` URL."""
    return "postgresql://" + url.split("://", 1)[1]


def with_database(url: str, name: str) -> str:
    """`url` naming the database `name` instead (its query kept)."""
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


async def create_database(server_url: str, prefix: str) -> str:
    """A new empty database `<prefix>_<random>` on the server of `server_url`; its URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, created: str) -> None:
    """Drop a database made by `create_database`, cutting connections still open."""
    import asyncpg

    name = created.partition("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """`create_database` for the length of a `with` block (tests, benchmarks)."""
    url = await create_database(server_url, prefix)
    try:
        yield url
    finally:
        await drop_database(server_url, url)
