"""Loading and storing the returns aggregates (documents in the `returns` schema).

Within a batch the consumer applies in one transaction (`BATCH_EVENTS` in the session's info),
the aggregates its events name (orders, ledgers, outbound signatures and return requests, by
order and by return id) are read in four statements on first use and kept as objects for the
rest of the transaction (each handler of the batch works on the same one, read from its JSON
text on first use); the changed ones are serialised and written in one statement per table
when the unit of work commits (`shared.db.pending_writes`). A handler saves every aggregate
it changes (`ReturnsHandlers._run` saves the request and the ledger it decided on); one that
fails ends the fast path: the transaction and this cache are dropped and the batch is applied
again without it. The consumer holds the advisory lock of every order of the batch, so
nothing else changes them meanwhile. Outside such a batch (the event-by-event path, timers)
every read and every save is a query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Text, any_, bindparam, cast, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.returns import tables
from services.returns.domain.model import ReturnRequest
from services.returns.domain.order_returns import OrderLedger
from services.returns.domain.values import Order
from shared.contracts import CloudEvent
from shared.db import driver_rows
from shared.messaging.batchcache import HeldRows, batch_cache, held_or_read, loaded
from shared.messaging.batchcases import HeldCase, HeldCases, case_or_read, cases_or_read
from shared.schema import one_of
from shared.upserts import JsonRowsWrite, document_upsert, json_upsert

_CACHE = "returns.batch_cache"


def _order_row(order: Order, now: datetime) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "state": order.to_json(),
        "updated_at": now,
    }


def _ledger_row(ledger: OrderLedger, now: datetime) -> dict[str, Any]:
    return {"order_id": ledger.order_id, "state": ledger.to_json(), "updated_at": now}


def _return_row(request: ReturnRequest, now: datetime) -> dict[str, Any]:
    """`created_at` counts on insert only: the upsert keeps a stored row's."""
    return {
        "return_id": request.return_id,
        "order_id": request.order_id,
        "status": str(request.status),
        "state": request.to_json(),
        "created_at": now,
        "updated_at": now,
    }


@dataclass
class _Request(HeldCase[ReturnRequest]):
    """A return request of the batch."""

    kind = ReturnRequest


@dataclass
class _BatchCache:
    """The batch's aggregates as objects (a ledger as its JSON text until first loaded);
    None: known not to exist."""

    orders: dict[str, Order | None] = field(default_factory=dict)
    ledgers: dict[str, OrderLedger | str | None] = field(default_factory=dict)
    signatures: dict[str, datetime | None] = field(default_factory=dict)
    requests: HeldCases[_Request] = field(default_factory=lambda: HeldCases({}, set()))
    # rows to write when the transaction commits, made then: an aggregate saved by several
    # events of the batch is serialised once
    held: HeldRows = field(default_factory=lambda: HeldRows(_CACHE))


_UNKNOWN: Any = object()


class ReturnsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._batch: _BatchCache | None = _UNKNOWN  # looked up once per handler

    async def _cache(self) -> _BatchCache | None:
        if self._batch is _UNKNOWN:
            self._batch = await batch_cache(self._session, _CACHE, _prefetch)
        return self._batch

    async def order(self, order_id: str) -> Order | None:
        cache = await self._cache()
        held = None if cache is None else cache.orders
        return await held_or_read(self._session, held, order_id, _ORDER, Order.from_dict)

    async def save_order(self, order: Order, now: datetime) -> None:
        if (cache := await self._cache()) is not None:
            cache.orders[order.order_id] = order
            cache.held.hold(
                self._session, _SAVE_ORDERS, order.order_id, partial(_order_row, order, now)
            )
        else:
            await self._session.execute(_SAVE_ORDER, _order_row(order, now))

    async def outbound_signature(self, order_id: str) -> datetime | None:
        cache = await self._cache()
        held = None if cache is None else cache.signatures
        return await held_or_read(self._session, held, order_id, _OUTBOUND_SIGNATURE)

    async def record_outbound_signature(self, order_id: str, signed_at: datetime) -> None:
        """The first signature counts; a later one (a redelivery, a re-sign) changes nothing."""
        row = {"order_id": order_id, "signed_at": signed_at}
        cache = await self._cache()
        if cache is not None and order_id in cache.signatures:
            if cache.signatures[order_id] is not None:
                return  # the first one is stored already
            cache.signatures[order_id] = signed_at
            cache.held.hold(self._session, _RECORD_OUTBOUND_SIGNATURES, order_id, row)
        else:  # not named by the batch: whether a row exists is unknown, write now
            await self._session.execute(_RECORD_OUTBOUND_SIGNATURE, row)

    async def ledger(self, order_id: str) -> OrderLedger:
        cache = await self._cache()
        if cache is not None and order_id in cache.ledgers:
            held = loaded(cache.ledgers, order_id, OrderLedger)
            if held is None:  # none stored yet: the batch's handlers share a new one
                held = cache.ledgers[order_id] = OrderLedger(order_id=order_id)
            return held
        state = await self._session.scalar(_LEDGER, {"b_id": order_id})
        return OrderLedger(order_id=order_id) if state is None else OrderLedger.from_dict(state)

    async def save_ledger(self, ledger: OrderLedger, now: datetime) -> None:
        if (cache := await self._cache()) is not None:
            cache.ledgers[ledger.order_id] = ledger
            row = partial(_ledger_row, ledger, now)
            cache.held.hold(self._session, _SAVE_LEDGERS, ledger.order_id, row)
        else:
            await self._session.execute(_SAVE_LEDGER, _ledger_row(ledger, now))

    async def return_request(self, return_id: str) -> ReturnRequest | None:
        cache = await self._cache()
        held = None if cache is None else cache.requests.by_id
        return await case_or_read(self._session, held, return_id, _RETURN_REQUEST, ReturnRequest)

    async def returns_of_order(self, order_id: str) -> list[ReturnRequest]:
        cache = await self._cache()
        held = None if cache is None else cache.requests
        return await cases_or_read(self._session, held, order_id, _RETURNS_OF_ORDER, ReturnRequest)

    async def save_return(self, request: ReturnRequest, now: datetime) -> None:
        if (cache := await self._cache()) is None:
            await self._session.execute(_SAVE_RETURN, _return_row(request, now))
            return
        return_id = request.return_id
        before = cache.requests.by_id.get(return_id)
        # A request the batch holds as this very object (loaded by this batch) stays as it is.
        if before is None or before.case is not request:
            if before is not None:
                created = before.created_at  # kept on update, like the row
            elif return_id in cache.requests.by_id:  # known not to exist
                created = now
            else:  # not read in this batch: the row may exist with an earlier created_at
                created = await self._session.scalar(_CREATED_AT, {"b_id": return_id}) or now
            cache.requests.put(return_id, _Request(created, request.order_id, request))
        cache.held.hold(self._session, _SAVE_RETURNS, return_id, partial(_return_row, request, now))


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
    # Ids in byte order, as the batch cache sorts them (Python's), whatever the database's
    # collation: competing requests are reassessed in the same order on both paths.
    .order_by(tables.return_requests.c.created_at, tables.return_requests.c.return_id.collate("C"))
)
_SAVE_RETURN = document_upsert(
    tables.return_requests, key="return_id", update=("status", "state", "updated_at")
)
_CREATED_AT = select(tables.return_requests.c.created_at).where(
    tables.return_requests.c.return_id == bindparam("b_id")
)


# A batch's held rows, one statement per table with the rows as one JSON parameter (the
# documents embedded as the text they were serialised to); the same columns and conflicts.
_SAVE_ORDERS = JsonRowsWrite(
    json_upsert(
        tables.orders,
        ("order_id", "customer_id", "state", "updated_at"),
        key="order_id",
        update=("state", "updated_at"),
    ),
    documents=("state",),
)
_RECORD_OUTBOUND_SIGNATURES = JsonRowsWrite(
    json_upsert(tables.outbound_signatures, ("order_id", "signed_at"), key="order_id", update=())
)
_SAVE_LEDGERS = JsonRowsWrite(
    json_upsert(
        tables.order_ledgers,
        ("order_id", "state", "updated_at"),
        key="order_id",
        update=("state", "updated_at"),
    ),
    documents=("state",),
)
_SAVE_RETURNS = JsonRowsWrite(
    json_upsert(
        tables.return_requests,
        ("return_id", "order_id", "status", "state", "created_at", "updated_at"),
        key="return_id",
        update=("status", "state", "updated_at"),
    ),
    documents=("state",),
)


# Each a semi-join on the batch's ids (`one_of`): one parameter, not an IN list compiled anew
# for every batch, and no generic plan that compares every row with every id.
_PREFETCH_ORDERS = select(tables.orders.c.order_id, cast(tables.orders.c.state, Text)).where(
    one_of(tables.orders.c.order_id, "ids")
)
_PREFETCH_LEDGERS = select(
    tables.order_ledgers.c.order_id, cast(tables.order_ledgers.c.state, Text)
).where(one_of(tables.order_ledgers.c.order_id, "ids"))
_PREFETCH_SIGNATURES = select(
    tables.outbound_signatures.c.order_id, tables.outbound_signatures.c.signed_at
).where(one_of(tables.outbound_signatures.c.order_id, "ids"))
# The requests named by id or of the batch's orders: `= ANY` here, planned as two index scans
# on the document table, whose rows are wide (a semi-join of each would be a hash join over the
# whole table while it has no statistics).
_PREFETCH_RETURNS = select(
    tables.return_requests.c.return_id,
    tables.return_requests.c.order_id,
    cast(tables.return_requests.c.state, Text),
    tables.return_requests.c.created_at,
).where(
    or_(
        tables.return_requests.c.order_id == any_(bindparam("ids", type_=ARRAY(Text))),
        tables.return_requests.c.return_id == any_(bindparam("rids", type_=ARRAY(Text))),
    )
)


async def _prefetch(session: AsyncSession, events: Iterable[CloudEvent]) -> _BatchCache:
    """Everything the batch's events name, in four statements; absent ones recorded as such."""
    order_ids: set[str] = set()
    return_ids: set[str] = set()
    for event in events:
        # The model's fields as it keeps them: a missing attribute (order.paid names no return)
        # would raise and catch an error for every such event.
        named = vars(event.data)
        if isinstance(order_id := named.get("order_id"), str):
            order_ids.add(order_id)
        if isinstance(return_id := named.get("return_id"), str):
            return_ids.add(return_id)
    cache = _BatchCache(
        orders=dict.fromkeys(order_ids),
        ledgers=dict.fromkeys(order_ids),
        signatures=dict.fromkeys(order_ids),
        requests=HeldCases(dict.fromkeys(return_ids), complete=set(order_ids)),
    )
    if not order_ids and not return_ids:
        return cache
    given = {"ids": sorted(order_ids), "rids": sorted(return_ids)}
    # Documents as text: a ledger or a request is read when a handler first loads it.
    for order_id, state in await driver_rows(session, _PREFETCH_ORDERS, given):
        cache.orders[order_id] = Order.from_json(state)
    for order_id, state in await driver_rows(session, _PREFETCH_LEDGERS, given):
        cache.ledgers[order_id] = state  # read on first use
    for order_id, signed_at in await driver_rows(session, _PREFETCH_SIGNATURES, given):
        cache.signatures[order_id] = signed_at
    for return_id, order_id, state, created_at in await driver_rows(
        session, _PREFETCH_RETURNS, given
    ):
        cache.requests.put(return_id, _Request(created_at, order_id, state))
    return cache
