"""A repository's cache for one consumer batch: what the batch's events name, read at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import CloudEvent
from shared.db import driver_rows, pending_writes
from shared.documents import Stored
from shared.messaging.consumer import BATCH_EVENTS
from shared.upserts import JsonRowsWrite

C = TypeVar("C")
V = TypeVar("V")
S = TypeVar("S", bound=Stored)
Row = dict[str, Any]


async def batch_cache(
    session: AsyncSession,
    name: str,
    prefetch: Callable[[AsyncSession, list[CloudEvent]], Awaitable[C]],
) -> C | None:
    """The cache `name` of the batch the session applies, made by `prefetch` from the batch's
    events the first time it is asked for; None outside a batch (a timer, a single event)."""
    info = session.info
    cache: C | None = info.get(name)
    if cache is None and (events := info.get(BATCH_EVENTS)) is not None:
        cache = info[name] = await prefetch(session, events)
    return cache


async def held_or_read(
    session: AsyncSession,
    held: Mapping[str, V | None] | None,
    key: str,
    query: Any,
    load: Callable[[Any], V] | None = None,
) -> V | None:
    """What a batch cache keeps under `key` in `held` (one of its maps, None outside a batch;
    a None kept: known not to exist), else what the scalar `query` reads for it (`b_id`), made
    by `load` where given (None: no row)."""
    if held is not None and key in held:
        return held[key]
    found = await session.scalar(query, {"b_id": key})
    return found if found is None or load is None else load(found)


def loaded(held: dict[str, S | str | None], key: str, kind: type[S]) -> S | None:
    """The aggregate a batch cache keeps under `key` (None: known not to exist), read from its
    JSON text on first use and kept as the object from then on."""
    found = held[key]
    if isinstance(found, str):
        found = held[key] = kind.from_json(found)
    return found


class HeldRows:
    """Rows a batch's transaction writes just before it commits (`shared.db.pending_writes`
    under `name`), one statement each however many rows: statement -> {row key: parameters},
    a later row of the same key replacing the earlier one (the last state is written). A row
    may be given as a function that makes it, called at flush: an aggregate saved by several
    events of the batch is then serialised once, in its last state. A `JsonRowsWrite`
    statement gets its rows as one JSON array parameter, any other one as a parameter set
    each (executemany)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._changed: dict[Any, dict[str, Row | Callable[[], Row]]] = {}

    def hold(
        self, session: AsyncSession, statement: Any, key: str, row: Row | Callable[[], Row]
    ) -> None:
        pending_writes(session, self._name, lambda: self)
        self._changed.setdefault(statement, {})[key] = row

    async def flush(self, session: AsyncSession) -> None:
        changed, self._changed = self._changed, {}
        for statement, rows in changed.items():
            made = [row() if callable(row) else row for row in rows.values()]
            if isinstance(statement, JsonRowsWrite):
                await driver_rows(session, statement.statement, statement.parameters(made))
            else:
                await session.execute(statement, made)
