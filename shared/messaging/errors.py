"""Telling a passing infrastructure fault (retry) from a poison message (dead-letter)."""

from __future__ import annotations

import asyncio


class Rejected(Exception):
    """A valid event its handler refuses for a business reason (e.g. a survey answer for an
    unknown callback). The consumer dead-letters it with `reason` (a short code) and `detail`
    (no personal data) instead of the generic `handler_error`; the handler's changes roll back.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


# SQLSTATE classes that pass: connection, transaction rollback (deadlock, serialization),
# insufficient resources, operator intervention (restart), system error.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
# A missing table or schema means migrations have not run (yet): an operator's fix, after which
# the same events must still apply, so they wait rather than being dead-lettered.
_TRANSIENT_SQLSTATES = ("42P01", "3F000")


def _sqlstate(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for attr in ("sqlstate", "pgcode"):
            value = getattr(current, attr, None)
            if isinstance(value, str) and value:
                return value
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same work later can succeed."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, asyncio.CancelledError):
        return True
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, PoolTimeout)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state is not None:
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state in _TRANSIENT_SQLSTATES
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    # asyncpg raises its own connection errors outside SQLAlchemy's wrapping at times.
    name = type(exc).__name__
    return name in {"ConnectionDoesNotExistError", "InterfaceError", "ConnectionResetError"}


def unpublishable(exc: BaseException) -> bool:
    """True when the producer or the broker refuses this one record whatever the retry: larger
    than the request or message limit, or a key that cannot be encoded. Errors about the
    connection, the cluster or the code (a TypeError) are not: they would refuse every record,
    and parking every row for them would hide an outage."""
    from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

    return isinstance(exc, (MessageSizeTooLargeError, RecordTooLargeError, UnicodeError))
