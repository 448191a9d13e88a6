"""Loading and storing the returns aggregates (documents in the `returns` schema).

Within a batch the consumer applies in one transaction (`BATCH_EVENTS` in the session's info),
the aggregates its events name (orders, ledgers, outbound signatures and return requests, by
order and by return id) are read in four statements on first use and kept as JSON documents
for the rest of the transaction; a save changes the copy, and the changed rows are written in
one statement per table when the unit of work commits (`shared.db.pending_writes`). The
consumer holds the advisory lock of every order of the batch, so nothing else changes them
meanwhile. Outside such a batch (the event-by-event path, timers) every read and every save is
a query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, any_, bindparam, cast, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.returns import tables
from services.returns.domain.model import ReturnRequest
from services.returns.domain.order_returns import OrderLedger
from services.returns.domain.values import Order
from shared.contracts import CloudEvent
from shared.messaging.batchcache import HeldRows, batch_cache, write_row
from shared.upserts import document_upsert

_CACHE = "returns.batch_cache"


@dataclass
class _BatchCache:
    """Orders as objects (immutable); the mutable aggregates as JSON text, so each load builds
    fresh objects; None: known not to exist."""

    orders: dict[str, Order | None] = field(default_factory=dict)
    ledgers: dict[str, str | None] = field(default_factory=dict)
    signatures: dict[str, datetime | None] = field(default_factory=dict)
    # return id -> (created_at, order id, document)
    requests: dict[str, tuple[datetime, str, str] | None] = field(default_factory=dict)
    # order id -> ids of its return requests in `requests`
    requests_of: dict[str, set[str]] = field(default_factory=dict)
    # orders whose every return request is in `requests`
    complete: set[str] = field(default_factory=set)
    # rows to write when the transaction commits
    held: HeldRows = field(default_factory=lambda: HeldRows(_CACHE))

    def put_request(self, return_id: str, entry: tuple[datetime, str, str]) -> None:
        self.requests[return_id] = entry
        self.requests_of.setdefault(entry[1], set()).add(return_id)


class ReturnsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _cache(self) -> _BatchCache | None:
        return await batch_cache(self._session, _CACHE, _prefetch)

    async def order(self, order_id: str) -> Order | None:
        cache = await self._cache()
        if cache is not None and order_id in cache.orders:
            return cache.orders[order_id]
        state = await self._session.scalar(_ORDER, {"b_id": order_id})
        return None if state is None else Order.from_dict(state)

    async def _write(
        self, cache: _BatchCache | None, statement: Any, key: str, row: dict[str, Any]
    ) -> None:
        """Now, or with the batch's other changes at commit when a batch cache is in use."""
        await write_row(self._session, None if cache is None else cache.held, statement, key, row)

    async def save_order(self, order: Order, now: datetime) -> None:
        row = {
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "state": order.to_json(),
            "updated_at": now,
        }
        if (cache := await self._cache()) is not None:
            cache.orders[order.order_id] = order
        await self._write(cache, _SAVE_ORDER, order.order_id, row)

    async def outbound_signature(self, order_id: str) -> datetime | None:
        cache = await self._cache()
        if cache is not None and order_id in cache.signatures:
            return cache.signatures[order_id]
        return await self._session.scalar(_OUTBOUND_SIGNATURE, {"b_id": order_id})

    async def record_outbound_signature(self, order_id: str, signed_at: datetime) -> None:
        """The first signature counts; a later one (a redelivery, a re-sign) changes nothing."""
        cache = await self._cache()
        if cache is not None and order_id in cache.signatures:
            if cache.signatures[order_id] is not None:
                return  # the first one is stored already
            cache.signatures[order_id] = signed_at
        else:
            cache = None  # not named by the batch: whether a row exists is unknown, write now
        row = {"order_id": order_id, "signed_at": signed_at}
        await self._write(cache, _RECORD_OUTBOUND_SIGNATURE, order_id, row)

    async def ledger(self, order_id: str) -> OrderLedger:
        cache = await self._cache()
        if cache is not None and order_id in cache.ledgers:
            text = cache.ledgers[order_id]
            if text is None:
                return OrderLedger(order_id=order_id)
            return OrderLedger.from_json(text)
        state = await self._session.scalar(_LEDGER, {"b_id": order_id})
        return OrderLedger(order_id=order_id) if state is None else OrderLedger.from_dict(state)

    async def save_ledger(self, ledger: OrderLedger, now: datetime) -> None:
        text = ledger.to_json()
        row = {"order_id": ledger.order_id, "state": text, "updated_at": now}
        if (cache := await self._cache()) is not None:
            cache.ledgers[ledger.order_id] = text
        await self._write(cache, _SAVE_LEDGER, ledger.order_id, row)

    async def return_request(self, return_id: str) -> ReturnRequest | None:
        cache = await self._cache()
        if cache is not None and return_id in cache.requests:
            entry = cache.requests[return_id]
            return None if entry is None else ReturnRequest.from_json(entry[2])
        state = await self._session.scalar(_RETURN_REQUEST, {"b_id": return_id})
        return None if state is None else ReturnRequest.from_dict(state)

    async def returns_of_order(self, order_id: str) -> list[ReturnRequest]:
        cache = await self._cache()
        if cache is not None and order_id in cache.complete:
            found = sorted(
                (entry[0], return_id, entry[2])
                for return_id in cache.requests_of.get(order_id, ())
                if (entry := cache.requests[return_id]) is not None
            )
            return [ReturnRequest.from_json(text) for _, _, text in found]
        rows = await self._session.scalars(_RETURNS_OF_ORDER, {"b_id": order_id})
        return [ReturnRequest.from_dict(state) for state in rows]

    async def save_return(self, request: ReturnRequest, now: datetime) -> None:
        text = request.to_json()
        row = {
            "return_id": request.return_id,
            "order_id": request.order_id,
            "status": str(request.status),
            "state": text,
            "created_at": now,
            "updated_at": now,
        }
        if (cache := await self._cache()) is not None:
            before = cache.requests.get(request.return_id)
            created = before[0] if before is not None else now  # kept on update, like the row
            if before is None and request.return_id not in cache.requests:
                # Not read in this batch: the row may exist with an earlier created_at.
                existing = await self._session.scalar(_CREATED_AT, {"b_id": request.return_id})
                created = existing or now
            cache.put_request(request.return_id, (created, request.order_id, text))
        await self._write(cache, _SAVE_RETURN, request.return_id, row)


# Statements built once and run with parameters: building an upsert (its `excluded` alias)
# costs more CPU than running it.


_ORDER = select(tables.orders.c.state).where(tables.orders.c.order_id == bindparam("b_id"))
_SAVE_ORDER = document_upsert(tables.orders, key="order_id", update=("state", "updated_at"))
_OUTBOUND_SIGNATURE = select(tables.outbound_signatures.c.signed_at).where(
    tables.outbound_signatures.c.order_id == bindparam("b_id")
)
_RECORD_OUTBOUND_SIGNATURE = insert(tables.outbound_signatures).on_conflict_do_nothing(
    index_elements=["order_id"]
)
_LEDGER = select(tables.order_ledgers.c.state).where(
    tables.order_ledgers.c.order_id == bindparam("b_id")
)
_SAVE_LEDGER = document_upsert(tables.order_ledgers, key="order_id", update=("state", "updated_at"))
_RETURN_REQUEST = select(tables.return_requests.c.state).where(
    tables.return_requests.c.return_id == bindparam("b_id")
)
_RETURNS_OF_ORDER = (
    select(tables.return_requests.c.state)
    .where(tables.return_requests.c.order_id == bindparam("b_id"))
    .order_by(tables.return_requests.c.created_at, tables.return_requests.c.return_id)
)
_SAVE_RETURN = document_upsert(
    tables.return_requests, key="return_id", update=("status", "state", "updated_at")
)
_CREATED_AT = select(tables.return_requests.c.created_at).where(
    tables.return_requests.c.return_id == bindparam("b_id")
)


# `= ANY(array)`: one parameter, not an IN list compiled anew for every batch.
_IDS = any_(bindparam("ids", type_=ARRAY(Text)))
_PREFETCH_ORDERS = select(tables.orders.c.order_id, cast(tables.orders.c.state, Text)).where(
    tables.orders.c.order_id == _IDS
)
_PREFETCH_LEDGERS = select(
    tables.order_ledgers.c.order_id, cast(tables.order_ledgers.c.state, Text)
).where(tables.order_ledgers.c.order_id == _IDS)
_PREFETCH_SIGNATURES = select(
    tables.outbound_signatures.c.order_id, tables.outbound_signatures.c.signed_at
).where(tables.outbound_signatures.c.order_id == _IDS)
_PREFETCH_RETURNS = select(
    tables.return_requests.c.return_id,
    tables.return_requests.c.order_id,
    cast(tables.return_requests.c.state, Text),
    tables.return_requests.c.created_at,
).where(
    or_(
        tables.return_requests.c.order_id == _IDS,
        tables.return_requests.c.return_id == any_(bindparam("rids", type_=ARRAY(Text))),
    )
)


async def _prefetch(session: AsyncSession, events: Iterable[CloudEvent]) -> _BatchCache:
    """Everything the batch's events name, in four statements; absent ones recorded as such."""
    order_ids: set[str] = set()
    return_ids: set[str] = set()
    for event in events:
        if isinstance(order_id := getattr(event.data, "order_id", None), str):
            order_ids.add(order_id)
        if isinstance(return_id := getattr(event.data, "return_id", None), str):
            return_ids.add(return_id)
    cache = _BatchCache(
        orders=dict.fromkeys(order_ids),
        ledgers=dict.fromkeys(order_ids),
        signatures=dict.fromkeys(order_ids),
        requests=dict.fromkeys(return_ids),
        complete=set(order_ids),
    )
    if not order_ids and not return_ids:
        return cache
    given = {"ids": sorted(order_ids), "rids": sorted(return_ids)}
    # Documents as text: they are kept as text, so decoding them here would be wasted.
    for order_id, state in await session.execute(_PREFETCH_ORDERS, given):
        cache.orders[order_id] = Order.from_json(state)
    for order_id, state in await session.execute(_PREFETCH_LEDGERS, given):
        cache.ledgers[order_id] = state
    for order_id, signed_at in await session.execute(_PREFETCH_SIGNATURES, given):
        cache.signatures[order_id] = signed_at
    for return_id, order_id, state, created_at in await session.execute(_PREFETCH_RETURNS, given):
        cache.put_request(return_id, (created_at, order_id, state))
    return cache
