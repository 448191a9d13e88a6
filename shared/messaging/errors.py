"""Telling a passing infrastructure fault (retry) from a poison message (dead-letter)."""

from __future__ import annotations

import asyncio
import re

from shared.crypto import redact
from shared.refusal import Refusal


class Rejected(Refusal):
    """A valid event its handler refuses for a business reason (e.g. a survey answer for an
    unknown callback). The consumer dead-letters it with `reason` (a short code) and `detail`
    (no personal data) instead of the generic `handler_error`; the handler's changes roll back.
    """


# SQLSTATE classes that pass: connection, transaction rollback (deadlock, serialization),
# insufficient resources, operator intervention (restart), system error.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
# A missing table or schema means migrations have not run (yet): an operator's fix, after which
# the same events must still apply, so they wait rather than being dead-lettered.
# Lock and idle timeouts (lock_timeout, idle_in_transaction_session_timeout) mean contention or
# a stalled client, not a bad event: the work is tried again.
_TRANSIENT_SQLSTATES = ("42P01", "3F000", "55P03", "25P03")


# The database refusing to store a value: text it cannot hold (U+0000, bad UTF-8, a lone
# surrogate asyncpg cannot encode), a number or date out of its range, a value too long, a
# broken constraint. Anything else a handler's SQL raises is the handler's own error.
_STORAGE_SQLSTATES = ("22000", "22001", "22003", "22007", "22008", "22021", "22P02", "22P05")


def is_storage_refusal(exc: BaseException) -> bool:
    """True when the database refused to store what an event carried (`storage_refused`)."""
    state = _sqlstate(exc)
    return state is not None and (state in _STORAGE_SQLSTATES or state.startswith("23"))


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (or of its cause), None when there is none."""
    return _sqlstate(exc)


# asyncpg quotes the refused parameter ("invalid input for query argument $1: 'the value'
# (reason)"); the value may be personal data, so it is cut out.
_QUOTED_ARGUMENT = re.compile(r"(query argument \$\d+): .*? \(", re.DOTALL)


def describe_failure(exc: BaseException, *, limit: int = 300) -> str:
    """One line for logs and dead letters: the SQLSTATE and the database's (or exception's)
    own message, without the statement, its parameters or personal data."""
    state = _sqlstate(exc)
    origin = getattr(exc, "orig", None) or exc
    message = str(origin).splitlines()[0] if str(origin) else ""
    message = redact(_QUOTED_ARGUMENT.sub(r"\1 (", message))[:limit]
    head = f"SQLSTATE {state}" if state else type(exc).__name__
    return f"{head}: {message}" if message else head


def failure_fields(exc: BaseException) -> dict[str, str]:
    """What a log line says of a failure: its SQLSTATE ('' when it is not the database's) and
    `describe_failure`."""
    return {"sqlstate": sqlstate(exc) or "", "error": describe_failure(exc)}


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
