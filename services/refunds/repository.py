"""Loading and storing order ledgers (documents in the `refunds` schema) and their refunds.

Within a batch the consumer applies in one transaction (`BATCH_EVENTS` in the session's info),
the ledgers of every order its events name are read in one statement on first use and kept
as objects for the rest of the transaction (each handler of the batch works on the same one);
the changed ledgers and their refund rows are serialised and written in one statement per
table when the unit of work commits (`shared.db.pending_writes`). A handler that fails ends
the fast path: the transaction and this cache are dropped and the batch is applied again
without it. The consumer holds the advisory lock of every order of the batch,
so nothing else changes them meanwhile. Outside such a batch (the event-by-event path, timers,
the CLI) every read and every save is a query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.refunds import tables
from services.refunds.domain.model import OrderLedger
from services.refunds.domain.refund import IssuedRefund
from shared.contracts import CloudEvent, RefundRequested
from shared.db import driver_rows, pending_writes
from shared.messaging.batchcache import batch_cache, held_or_read
from shared.projection import as_row
from shared.schema import one_of
from shared.upserts import JsonRowsWrite, document_upsert, json_upsert, upsert

_CACHE = "refunds.batch_cache"
# Plain strings: orjson takes no str subclass (SQLAlchemy's quoted_name) as a key.
_REFUND_COLUMNS = tuple(str(column.key) for column in tables.refunds.c)


def _refund_row(refund: IssuedRefund) -> dict[str, Any]:
    """Its same-named fields, and whether a payout of it failed."""
    return as_row(refund, _REFUND_COLUMNS, failed=bool(refund.failures))


def _ledger_row(ledger: OrderLedger, now: datetime) -> dict[str, Any]:
    return {
        "order_id": ledger.order_id,
        "paid": ledger.facts is not None,
        "state": ledger.to_json(),
        "updated_at": now,
    }


@dataclass
class _BatchCache:
    """The batch's ledgers (None: none yet) and which ones to write at commit."""

    ledgers: dict[str, OrderLedger | None] = field(default_factory=dict)
    # refund_id -> the order it was issued for (None: not issued), for the batch's requests
    owners: dict[str, str | None] = field(default_factory=dict)
    changed: dict[str, datetime] = field(default_factory=dict)  # order id -> saved at

    async def flush(self, session: AsyncSession) -> None:
        changed, self.changed = self.changed, {}
        saved = [(self.ledgers[order_id], now) for order_id, now in changed.items()]
        rows = [_ledger_row(ledger, now) for ledger, now in saved if ledger is not None]
        refunds = [
            _refund_row(refund)
            for ledger, _ in saved
            if ledger is not None
            for refund in ledger.refunds.values()
        ]
        # One parameter each: the rows as a JSON array, each ledger's document embedded as the
        # text it was written as (the batch's ledgers and refunds are distinct by key).
        if rows:
            await driver_rows(session, _SAVE_LEDGERS.statement, _SAVE_LEDGERS.parameters(rows))
        if refunds:
            await driver_rows(session, _SAVE_REFUNDS.statement, _SAVE_REFUNDS.parameters(refunds))


class RefundsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _cache(self) -> _BatchCache | None:
        return await batch_cache(self._session, _CACHE, _prefetch)

    async def ledger(self, order_id: str) -> OrderLedger | None:
        cache = await self._cache()
        held = None if cache is None else cache.ledgers
        return await held_or_read(self._session, held, order_id, _LEDGER, OrderLedger.from_json)

    async def order_of_refund(self, refund_id: str) -> str | None:
        """The order a refund was issued for, if it was."""
        cache = await self._cache()
        held = None if cache is None else cache.owners
        return await held_or_read(self._session, held, refund_id, _OWNER)

    async def save(self, ledger: OrderLedger, now: datetime) -> None:
        """The document, and one row per refund (the rows that did not change are rewritten
        equal: an order has a handful of refunds)."""
        cache = await self._cache()
        if cache is not None and ledger.order_id in cache.ledgers:
            pending_writes(self._session, _CACHE, lambda: cache)
            cache.ledgers[ledger.order_id] = ledger
            cache.changed[ledger.order_id] = now
            cache.owners.update((rid, ledger.order_id) for rid in ledger.refunds)
            return
        refunds = [_refund_row(refund) for refund in ledger.refunds.values()]
        await self._session.execute(_SAVE_LEDGER, _ledger_row(ledger, now))
        if refunds:
            await self._session.execute(_SAVE_REFUND, refunds)


async def _prefetch(session: AsyncSession, events: Iterable[CloudEvent]) -> _BatchCache:
    """The ledgers of every order the batch names and the orders of the refund ids it asks
    for, in one statement each; absent ones as None."""
    order_ids: set[str] = set()
    refund_ids: set[str] = set()
    for event in events:
        if isinstance(order_id := getattr(event.data, "order_id", None), str):
            order_ids.add(order_id)
        if isinstance(event.data, RefundRequested):
            refund_ids.add(event.data.refund_id)
    cache = _BatchCache(ledgers=dict.fromkeys(order_ids), owners=dict.fromkeys(refund_ids))
    if order_ids:
        for order_id, state in await driver_rows(session, _PREFETCH, {"ids": sorted(order_ids)}):
            cache.ledgers[order_id] = OrderLedger.from_json(state)
    if refund_ids:
        rows = await driver_rows(session, _PREFETCH_OWNERS, {"ids": sorted(refund_ids)})
        for refund_id, order_id in rows:
            cache.owners[refund_id] = order_id
    return cache


# Statements built once and executed with parameters; documents bound and read as JSON text.
_L = tables.ledgers
_LEDGER = select(cast(_L.c.state, Text)).where(_L.c.order_id == bindparam("b_id"))
_PREFETCH = select(_L.c.order_id, cast(_L.c.state, Text)).where(one_of(_L.c.order_id, "ids"))
_R = tables.refunds
_OWNER = select(_R.c.order_id).where(_R.c.refund_id == bindparam("b_id"))
_PREFETCH_OWNERS = select(_R.c.refund_id, _R.c.order_id).where(one_of(_R.c.refund_id, "ids"))
_LEDGER_UPDATE = ("paid", "state", "updated_at")
_REFUND_UPDATE = ("settled_at", "failed", "needs_person")
_SAVE_LEDGER = document_upsert(_L, key="order_id", update=_LEDGER_UPDATE)
_SAVE_REFUND = upsert(_R, None, key=["refund_id"], update=_REFUND_UPDATE)
_SAVE_LEDGERS = JsonRowsWrite(
    json_upsert(
        _L, ("order_id", "paid", "state", "updated_at"), key="order_id", update=_LEDGER_UPDATE
    ),
    documents=("state",),
)
_SAVE_REFUNDS = JsonRowsWrite(
    json_upsert(_R, [c.name for c in _R.c], key="refund_id", update=_REFUND_UPDATE)
)
