"""The database check every command that needs one makes first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

# How long `migrate`, `run` and `report` try to reach the database before giving up.
DATABASE_PROBE_SECONDS = 10.0


class DatabaseUnreachable(Exception):
    """DATABASE_URL cannot be connected to (down, unknown host, no such database, refused)."""


def require_database(
    database_url: str,
    *,
    timeout: float = DATABASE_PROBE_SECONDS,
    schemas: Sequence[str] = (),
    wait_s: float = 0.0,
) -> None:
    """Connect once before any work, so that a database that is down, unknown or missing is
    one clear line naming host:port (never the password), not a driver's traceback; then
    the `schemas` (services) the command reads must be migrated (SchemaNotCurrent, one line).
    `wait_s`: how long a database not reachable yet (refused, no route, starting up) is tried
    again before giving up; a refused login or a missing database is answered at once."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    try:
        asyncio.run(_probe_until(database_url, timeout, wait_s, where))
    except Exception as exc:  # any failure to connect is the answer
        reason = _reason(exc)
        if url.password:
            reason = reason.replace(url.password, "***")
        raise DatabaseUnreachable(f"cannot reach the database at {where}: {reason}") from None
    if schemas:
        from shared.migrations import check_current

        async def check() -> None:
            for service in schemas:
                await check_current(service, database_url)

        asyncio.run(check())


async def _probe_until(database_url: str, timeout: float, wait_s: float, where: str) -> None:
    from shared.reachable import once_reachable

    await once_reachable(
        lambda: _probe(database_url, timeout),
        what="the database",
        passing=_passing,
        wait_s=wait_s,
        about={"database": where},
        cause=_cause,
    )


def _passing(exc: BaseException) -> bool:
    """Not reachable yet, as opposed to refused for good (wrong password, no such database)."""
    from asyncpg.exceptions import CannotConnectNowError

    cause = _cause(exc)
    return isinstance(cause, OSError | TimeoutError | CannotConnectNowError)


async def _probe(database_url: str, timeout: float) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(
        database_url, poolclass=NullPool, connect_args={"timeout": timeout}
    )
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout)
    finally:
        await engine.dispose()


def _cause(exc: BaseException) -> BaseException:
    """The driver's own error: SQLAlchemy wraps asyncpg's (`orig`, its `__cause__`)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "__cause__", None) or orig or exc


def _reason(exc: BaseException) -> str:
    cause = _cause(exc)
    return str(cause).strip() or type(cause).__name__
