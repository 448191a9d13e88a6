"""Every connection of an engine carries the session limits (timeouts, keepalives)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest
from sqlalchemy import text

from shared.db import SessionLimits, create_engine


async def test_every_connection_has_the_timeouts_and_keepalives(database_url: str) -> None:
    limits = SessionLimits(
        statement_timeout_ms=4321,
        lock_timeout_ms=1234,
        idle_in_transaction_timeout_ms=5678,
        tcp_keepalives_idle_s=31,
    )
    engine = create_engine(database_url, pool_size=1, limits=limits)
    try:
        async with engine.connect() as conn:
            shown = {
                name: await conn.scalar(text(f"SHOW {name}"))
                for name in (
                    "statement_timeout",
                    "lock_timeout",
                    "idle_in_transaction_session_timeout",
                    "application_name",
                    "tcp_keepalives_idle",
                )
            }
    finally:
        await engine.dispose()
    assert shown == {
        "statement_timeout": "4321ms",
        "lock_timeout": "1234ms",
        "idle_in_transaction_session_timeout": "5678ms",
        "application_name": "aftersales",
        "tcp_keepalives_idle": "31",
    }


async def test_a_statement_over_its_timeout_fails_as_a_passing_fault(database_url: str) -> None:
    from shared.messaging.errors import is_transient

    engine = create_engine(database_url, pool_size=1, limits=SessionLimits(statement_timeout_ms=50))
    try:
        async with engine.connect() as conn:
            try:
                await conn.execute(text("SELECT pg_sleep(2)"))
            except Exception as exc:
                assert is_transient(exc)  # 57014: the batch is tried again, not dead-lettered
            else:
                raise AssertionError("the statement should have been cancelled")
    finally:
        await engine.dispose()


def _client_socket(port: int) -> socket.socket:
    """A duplicate of this process's TCP socket whose local port is `port` (Linux /proc)."""
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue  # not a socket (or closed meanwhile)
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.getsockname()[1] == port:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError(f"no socket of this process has local port {port}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and Linux options")
async def test_every_connection_has_client_side_tcp_keepalives(database_url: str) -> None:
    limits = SessionLimits(
        tcp_keepalives_idle_s=17, tcp_keepalives_interval_s=7, tcp_keepalives_count=4
    )
    engine = create_engine(database_url, pool_size=1, limits=limits)
    try:
        async with engine.connect() as conn:
            # The server names the client's port; the socket is found by it, not through the
            # driver, and asked what the kernel holds for it.
            port = await conn.scalar(text("SELECT inet_client_port()"))
            assert port is not None, "the tests' database is reached over TCP"
            sock = _client_socket(port)
            with sock:
                options = (
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                )
    finally:
        await engine.dispose()
    assert options == (1, 17, 7, 4)


async def test_a_connection_the_server_closed_is_replaced_without_a_failed_transaction(
    database_url: str,
) -> None:
    # No ping on checkout (three round trips per transaction): a connection whose backend is
    # gone (a restart, a terminated backend) is known closed to asyncpg and replaced at checkout.
    from shared.db import UnitOfWork, session_factory

    engine = create_engine(database_url, pool_size=1)
    other = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        async with other.connect() as admin:
            assert await admin.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        for _ in range(50):  # the server's goodbye reaches the pooled connection
            await asyncio.sleep(0.02)
        async with UnitOfWork(session_factory(engine)) as uow:
            await uow.lock(["order-1"])
            again = await uow.session.scalar(text("SELECT pg_backend_pid()"))
            await uow.commit()
        assert again != pid
    finally:
        await engine.dispose()
        await other.dispose()
