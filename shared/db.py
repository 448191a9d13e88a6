"""Database access: async engine, per-service schema metadata and the unit of work."""

from __future__ import annotations

import socket
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from sqlalchemy import MetaData, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    """Every table of a service lives in that service's own schema."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


@dataclass(frozen=True)
class SessionLimits:
    """Limits set on every connection (PostgreSQL session settings; 0 turns one off).

    A statement that runs too long (57014) or waits too long for a lock (55P03) fails and its
    batch is tried again; a transaction left idle is ended by the server instead of holding
    its locks. TCP keepalives run both ways: the server's drop a connection whose client
    vanished, the client's (set on the socket, `client_keepalives`) make a connection whose
    server fell silent fail instead of waiting on it for hours.
    """

    statement_timeout_ms: int = 60_000
    lock_timeout_ms: int = 30_000
    idle_in_transaction_timeout_ms: int = 120_000
    tcp_keepalives_idle_s: int = 30
    tcp_keepalives_interval_s: int = 10
    tcp_keepalives_count: int = 3

    def server_settings(self) -> dict[str, str]:
        return {
            "application_name": "aftersales",
            "statement_timeout": str(self.statement_timeout_ms),
            "lock_timeout": str(self.lock_timeout_ms),
            "idle_in_transaction_session_timeout": str(self.idle_in_transaction_timeout_ms),
            "tcp_keepalives_idle": str(self.tcp_keepalives_idle_s),
            "tcp_keepalives_interval": str(self.tcp_keepalives_interval_s),
            "tcp_keepalives_count": str(self.tcp_keepalives_count),
        }

    def client_keepalives(self, sock: socket.socket) -> None:
        """Turn TCP keepalives on for a client socket with the same idle time, interval and
        count as the server's (0 leaves the system's default; a Unix socket needs none)."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", self.tcp_keepalives_idle_s),
            ("TCP_KEEPINTVL", self.tcp_keepalives_interval_s),
            ("TCP_KEEPCNT", self.tcp_keepalives_count),
        ):
            option = getattr(socket, name, None)  # absent on some systems
            if option is not None and value > 0:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def create_engine(
    url: str, *, pool_size: int = 10, limits: SessionLimits | None = None
) -> AsyncEngine:
    limits = limits or SessionLimits()
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping on checkout: SQLAlchemy's is three round trips (BEGIN, a statement, ROLLBACK),
        # ~0.25 ms of CPU and ~0.4 ms of waiting for every transaction, a batch's or a relay
        # round's alike. A connection the server closed (a restart, a terminated backend) is
        # known to asyncpg without asking: `on_checkout` has the pool replace it. One that went
        # silent fails its first statement, and the work is tried again (a passing fault).
        pool_pre_ping=False,
        connect_args={"server_settings": limits.server_settings()},
    )

    # asyncpg has no keepalive option of its own (MagicStack/asyncpg#606): set them on each new
    # connection's socket, reached through its transport.
    def on_connect(dbapi_connection: Any, _record: object) -> None:
        transport = getattr(dbapi_connection.driver_connection, "_transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            limits.client_keepalives(sock)

    def on_checkout(dbapi_connection: Any, _record: object, _proxy: object) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the server closed the connection")  # the pool reconnects

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "checkout", on_checkout)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def command_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine of one connection for a command (a report, an operator's fix), disposed when
    the command is done with it, whatever happened."""
    engine = create_engine(url, pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


def lock_id(key: str) -> int:
    """A stable signed 64-bit id for pg_advisory_xact_lock from a business key."""
    # surrogatepass: the same id as before for every valid key, and no error for one that is not
    high = zlib.crc32(key.encode("utf-8", "surrogatepass"))
    low = zlib.crc32(key[::-1].encode("utf-8", "surrogatepass"))
    value = (high << 32) | low
    return value - (1 << 64) if value >= (1 << 63) else value


# Locks in the order of the array: a volatile function in the select list is evaluated after
# the sort, and the ordinality is the array order.
_LOCK_MANY = text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) "
    "WITH ORDINALITY AS u(k, n) ORDER BY n"
)


@dataclass(frozen=True)
class _DriverSql:
    """A statement compiled for the driver: its SQL and, in the order of its $n, each
    parameter's name and the value it was built with (a literal's; `_GIVEN` for one that must
    be given: a missing one is a KeyError, never a NULL)."""

    sql: str
    parameters: tuple[tuple[str, Any], ...]


_GIVEN = object()
# Per statement (held weakly: one built per call, by mistake, is not kept) and schema mapping.
_DRIVER_SQL: weakref.WeakKeyDictionary[ClauseElement, dict[tuple[Any, ...], _DriverSql]] = (
    weakref.WeakKeyDictionary()
)
# `session.info`: the connection a transaction's driver statements run on, looked up at its
# first one (each look-up is a trip through SQLAlchemy's greenlet); dropped when it ends.
_DRIVER = "aftersales.driver"


@event.listens_for(Session, "after_transaction_end")
def _forget_driver(session: Session, _transaction: object) -> None:
    session.info.pop(_DRIVER, None)


async def driver_rows(
    session: AsyncSession, statement: ClauseElement, parameters: Mapping[str, Any]
) -> list[Any]:
    """Run `statement` (built once, module-level) in the session's transaction through the
    driver itself, asyncpg, and return its rows (asyncpg records: by index or column name).

    For the statements every batch runs (locks, the inbox claim, the writes held until
    commit): SQLAlchemy's execution of one costs ~0.1-0.3 ms of CPU more than asyncpg's (its
    parameters, the result's rows, the events), which made most of what a small batch costs.
    Only for parameters the driver takes as they are (text, numbers, arrays of them, bytes,
    aware instants); a literal the statement was built with keeps its value unless given. The
    schema mapping of the connection applies (tests map schemas); the engine's cursor hook
    still sees each statement (statement counts)."""
    held = session.info.get(_DRIVER)
    if held is None:
        connection = await session.connection()
        sync = connection.sync_connection
        assert sync is not None  # the session's connection, in its transaction
        translate = sync.get_execution_options().get("schema_translate_map") or {}
        mapping = tuple(sorted(translate.items(), key=repr))
        adapter: Any = (await connection.get_raw_connection()).dbapi_connection
        held = session.info[_DRIVER] = (sync, translate, mapping, adapter)
    sync, translate, mapping, driver = held
    by_mapping = _DRIVER_SQL.get(statement)
    if by_mapping is None:
        by_mapping = _DRIVER_SQL[statement] = {}
    compiled = by_mapping.get(mapping)
    if compiled is None:
        made: Any = statement.compile(
            dialect=sync.dialect,
            schema_translate_map=translate or None,
            render_schema_translate=bool(translate),
        )
        order = made.positiontup or ()  # the names of the driver's $1, $2, ... in order
        compiled = by_mapping[mapping] = _DriverSql(
            str(made),
            tuple(
                (name, _GIVEN if made.binds[name].required else made.binds[name].effective_value)
                for name in order
            ),
        )
    arguments = [
        parameters[name] if name in parameters or built is _GIVEN else built
        for name, built in compiled.parameters
    ]
    if sync.dispatch.before_cursor_execute:
        sync.dispatch.before_cursor_execute(sync, None, compiled.sql, arguments, None, False)
    # SQLAlchemy's asyncpg adapter begins its transaction lazily, at its first statement: begun
    # here as it would be (under the adapter's lock), or this statement would run outside the
    # transaction, committed at once. Private to the adapter (SQLAlchemy is pinned; the tests
    # of `driver_rows` fail should it change).
    async with driver._execute_mutex:
        if driver._transaction is None:
            await driver._start_transaction()
        return list(await driver._connection.fetch(compiled.sql, *arguments))


class PendingWrites(Protocol):
    """Writes a transaction holds back and sends together just before it commits."""

    async def flush(self, session: AsyncSession) -> None: ...


_PENDING = "aftersales.pending_writes"
W = TypeVar("W", bound=PendingWrites)


def pending_writes(session: AsyncSession, name: str, factory: Callable[[], W]) -> W:
    """The session's buffer `name` (made by `factory` on first use). `UnitOfWork.commit` flushes
    every buffer, in the order they were first used, before COMMIT; a rollback drops them with
    the session. Whoever writes through a buffer must also read through it (or call
    `flush_pending` first): the database does not have those rows yet."""
    buffers: dict[str, PendingWrites] = session.info.setdefault(_PENDING, {})
    buffer = buffers.get(name)
    if buffer is None:
        buffer = buffers[name] = factory()
    return buffer  # type: ignore[return-value]


async def flush_pending(session: AsyncSession) -> None:
    """Send every held-back write of the session's transaction now."""
    buffers: dict[str, PendingWrites] = session.info.pop(_PENDING, {})
    for buffer in buffers.values():
        await buffer.flush(session)


class UnitOfWork:
    """One database transaction: state changes, inbox, outbox and timers commit together."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, namespace: str = "") -> None:
        self._sessions = sessions
        # Services share one database: without a namespace, two services locking the same
        # order and buyer in different orders would deadlock each other.
        self._namespace = namespace
        self._session: AsyncSession | None = None
        self._committed = False
        self._after_commit: list[Callable[[], object]] = []

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open")
        return self._session

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        await self._session.begin()
        self._committed = False
        self._after_commit = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            if exc_type is not None or not self._committed:
                await session.rollback()
        finally:
            await session.close()
            self._session = None

    async def commit(self) -> None:
        await flush_pending(self.session)
        await self.session.commit()
        self._committed = True
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, *callbacks: Callable[[], object]) -> None:
        """Run `callbacks` once this unit has committed (metrics, say); dropped on rollback, so
        work that is rolled back and applied again is not counted twice."""
        self._after_commit.extend(callbacks)

    def lock_key(self, key: str) -> str:
        """The advisory lock's key for a business key, within this unit's namespace."""
        return f"{self._namespace}:{key}" if self._namespace else key

    async def lock(self, keys: Iterable[str]) -> None:
        """Serialise work on the same business keys (orders, buyers) across instances.

        Keys are locked in sorted order so two transactions never wait on each other in a cycle,
        all in one statement (one round trip however many keys).
        """
        ids = [lock_id(self.lock_key(key)) for key in sorted(set(keys))]
        if ids:
            await driver_rows(self.session, _LOCK_MANY, {"ids": ids})
