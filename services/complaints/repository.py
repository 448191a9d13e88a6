"""Loading and storing the complaints aggregates (documents in the `complaints` schema).

Within a batch the consumer applies in one transaction (`BATCH_EVENTS` in the session's info),
what its events name is read in three statements on first use and kept for the rest of the
transaction: the orders, every complaint of those orders and the complaints named by id, and
the low scores parked for them. Orders, complaints and budgets are kept as objects (each read
from its JSON text on first use): every handler of the batch works on the same one, and the
changed ones are serialised, once each in their last state, and written in one statement per
table when the unit of work commits (`shared.db.pending_writes`). So a handler saves every
aggregate it changes, on every path that changes it (`ComplaintsHandlers._finish` saves the
complaint, and the budget and the order whenever compensating changed them; an order event or
timer saves its order; a review saves the budget): an object changed and not saved would be
written anyway if another handler saves it, and not otherwise. A handler that fails ends the
fast path: the transaction and this cache are dropped, changed objects with them, and the
consumer applies the batch again event by event, without a cache. A copy is kept only of what
the batch's advisory locks keep every other transaction from changing: an order whose id is one
of the batch's lock keys, with all its complaints; a complaint whose `complaint:<id>` key is
locked (its parked scores; while it does not exist, its absence). A buyer's budget is read
after the buyer's lock, and with it the budgets of the batch's other buyers whose complaints
are being upheld or reviewed (`locked_budget`: one lock statement and one read for them all).
Whatever else a handler reaches (a complaint of an order outside the batch, through a low
score) is a query and a write, as outside a batch (the event-by-event path, timers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Table, Text, any_, bindparam, cast, delete, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.complaints import tables
from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.model import Complaint, LowScore
from services.complaints.domain.orders import ShopOrder
from services.complaints.domain.rules import Outcome
from services.complaints.locks import COMPLAINT_LOCK_PREFIX, lock_keys
from shared.contracts import CloudEvent, CompensationReviewed, ComplaintOpened, ComplaintResolved
from shared.db import driver_rows, pending_writes
from shared.messaging.batchcache import HeldRows, batch_cache, loaded
from shared.messaging.batchcases import HeldCase, HeldCases, case_or_read, cases_or_read
from shared.schema import one_of
from shared.upserts import document_upsert

_CACHE = "complaints.batch_cache"
_PARKED = "complaints.parked_low_scores"

Lock = Callable[[Iterable[str]], Awaitable[None]]
Row = dict[str, Any]


def _order_row(order: ShopOrder, now: datetime) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "customer_id": None if order.facts is None else order.facts.customer_id,
        "state": order.to_json(),
        "updated_at": now,
    }


def _complaint_row(complaint: Complaint, now: datetime) -> dict[str, Any]:
    """`created_at` counts on insert only: the upsert keeps a stored row's."""
    return {
        "complaint_id": complaint.complaint_id,
        "order_id": complaint.order_id,
        "customer_id": complaint.customer_id or None,
        "status": complaint.status.value,
        "state": complaint.to_json(),
        "created_at": now,
        "updated_at": now,
    }


def _budget_row(budget: CompensationBudget, now: datetime) -> dict[str, Any]:
    return {"customer_id": budget.customer_id, "state": budget.to_json(), "updated_at": now}


@dataclass
class _Stored(HeldCase[Complaint]):
    """A complaint of the batch, with the buyer its row names while it is the JSON text read."""

    kind = Complaint

    customer_id: str | None

    @property
    def buyer(self) -> str | None:
        if isinstance(self.case, str):
            return self.customer_id
        return self.case.customer_id or None


@dataclass
class _BatchCache:
    """The copies of one batch's transaction, as objects (JSON text until first loaded);
    None: known not to exist."""

    events: list[CloudEvent]
    # Orders whose lock the batch holds: every complaint of these is in `complaints`.
    orders: dict[str, ShopOrder | str | None] = field(default_factory=dict)
    complaints: HeldCases[_Stored] = field(default_factory=lambda: HeldCases({}, set()))
    # complaint id -> its order, for complaints read but of an order outside the batch
    order_of: dict[str, str] = field(default_factory=dict)
    # complaint id -> its parked scores (received_at, callback_id, score), for the locked ones
    parked: dict[str, list[tuple[datetime, str, int]]] = field(default_factory=dict)
    stored_parked: set[str] = field(default_factory=set)  # with rows in the database
    # buyers locked by this transaction -> their budget
    budgets: dict[str, CompensationBudget | str | None] = field(default_factory=dict)
    # the rows of orders, complaints and budgets written at commit, made then: an aggregate
    # saved by several events of the batch is serialised once
    held: HeldRows = field(default_factory=lambda: HeldRows(_CACHE))
    # parked scores written at commit: complaints whose stored rows go, rows that come after
    unparked: set[str] = field(default_factory=set)
    new_parked: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def take_parked(self, session: AsyncSession, complaint_id: str) -> None:
        pending_writes(session, _PARKED, lambda: self)
        self.parked[complaint_id] = []
        for key in [key for key in self.new_parked if key[0] == complaint_id]:
            del self.new_parked[key]
        if complaint_id in self.stored_parked:
            self.stored_parked.discard(complaint_id)
            self.unparked.add(complaint_id)

    def buyers_upheld_or_reviewed(self) -> set[str]:
        """The buyers of the batch's complaints that are being upheld or reviewed: the budgets
        the batch will most likely need (a guess: a budget outside it is read on its own)."""
        opened = {
            data.complaint_id: data.customer_id
            for event in self.events
            if isinstance(data := event.data, ComplaintOpened)
        }
        buyers: set[str] = set()
        for event in self.events:
            data = event.data
            if isinstance(data, CompensationReviewed) or (
                isinstance(data, ComplaintResolved) and data.outcome == Outcome.UPHELD.value
            ):
                stored = self.complaints.by_id.get(data.complaint_id)
                buyer = opened.get(data.complaint_id) or (stored and stored.buyer)
                if buyer:
                    buyers.add(buyer)
        return buyers

    async def flush(self, session: AsyncSession) -> None:
        """The parked scores' changes (the other rows are `held`'s): deletes first."""
        unparked, self.unparked = self.unparked, set()
        if unparked:
            await session.execute(_UNPARK, {"ids": sorted(unparked)})
        new_parked, self.new_parked = self.new_parked, {}
        if new_parked:
            await session.execute(_PARK_LOW_SCORE, list(new_parked.values()))


class ComplaintsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _cache(self) -> _BatchCache | None:
        cache: _BatchCache | None = self._session.info.get(_CACHE)  # made: every call but one
        return cache if cache is not None else await batch_cache(self._session, _CACHE, _prefetch)

    async def _save(
        self, copies: str, key: str, aggregate: object, statement: Any, row: Callable[[], Row]
    ) -> None:
        """An aggregate the batch holds (`key` among its cache's `copies`, "orders" or "budgets")
        is kept as its copy and its row written at commit; any other one is written now."""
        cache = await self._cache()
        held: dict[str, object] = {} if cache is None else getattr(cache, copies)
        if cache is None or key not in held:
            await self._session.execute(statement, row())
            return
        held[key] = aggregate
        cache.held.hold(self._session, statement, key, row)

    # --- orders -----------------------------------------------------------------------------

    async def order(self, order_id: str) -> ShopOrder | None:
        cache = await self._cache()
        if cache is not None and order_id in cache.orders:
            return loaded(cache.orders, order_id, ShopOrder)
        state = await self._session.scalar(_ORDER, {"b_id": order_id})
        return None if state is None else ShopOrder.from_dict(state)

    async def order_stored(self, order_id: str) -> bool:
        cache = await self._cache()
        if cache is not None and order_id in cache.orders:
            return cache.orders[order_id] is not None
        return await self._session.scalar(_ORDER_STORED, {"b_id": order_id}) is not None

    async def save_order(self, order: ShopOrder, now: datetime) -> None:
        row = partial(_order_row, order, now)
        await self._save("orders", order.order_id, order, _SAVE_ORDER, row)

    # --- complaints -------------------------------------------------------------------------

    async def complaint(self, complaint_id: str) -> Complaint | None:
        cache = await self._cache()
        held = None if cache is None else cache.complaints.by_id
        return await case_or_read(self._session, held, complaint_id, _COMPLAINT, Complaint)

    async def order_of_complaint(self, complaint_id: str) -> str | None:
        """A complaint's order id (it never changes), readable before taking the order's lock."""
        cache = await self._cache()
        if cache is not None:
            if complaint_id in cache.complaints.by_id:
                stored = cache.complaints.by_id[complaint_id]
                return None if stored is None else stored.order_id
            if complaint_id in cache.order_of:
                return cache.order_of[complaint_id]
        return await self._session.scalar(_ORDER_OF_COMPLAINT, {"b_id": complaint_id})

    async def complaints_of_order(self, order_id: str) -> list[Complaint]:
        cache = await self._cache()
        held = None if cache is None else cache.complaints
        return await cases_or_read(self._session, held, order_id, _COMPLAINTS_OF_ORDER, Complaint)

    async def save_complaint(self, complaint: Complaint, now: datetime) -> None:
        complaint_id = complaint.complaint_id
        cache = await self._cache()
        if cache is not None and complaint.order_id in cache.orders:
            # Its order is held, so every complaint of it is known: one not among them is new.
            before = cache.complaints.by_id.get(complaint_id)
            created = now if before is None else before.created_at  # kept on update, as the row
            cache.complaints.put(
                complaint_id, _Stored(created, complaint.order_id, complaint, None)
            )
            row = partial(_complaint_row, complaint, now)
            cache.held.hold(self._session, _SAVE_COMPLAINT, complaint_id, row)
            return
        if cache is not None:  # no copy of it from now on: written now, read as written
            cache.complaints.by_id.pop(complaint_id, None)
            cache.order_of[complaint_id] = complaint.order_id
        await self._session.execute(_SAVE_COMPLAINT, _complaint_row(complaint, now))

    # --- budgets ----------------------------------------------------------------------------

    async def locked_budget(self, customer_id: str, lock: Lock) -> CompensationBudget:
        """The buyer's budget, read once `lock` holds the buyer's key (the buyer's complaints may
        be on other partitions). In a batch, the first budget it needs takes the locks of its
        other likely buyers too, in one statement, and reads all their budgets in one more;
        a buyer it holds already costs neither."""
        cache = await self._cache()
        if cache is None:
            await lock([customer_id])
            state = await self._session.scalar(_BUDGET, {"b_id": customer_id})
            if state is None:
                return CompensationBudget(customer_id=customer_id)
            return CompensationBudget.from_dict(state)
        if customer_id not in cache.budgets:
            likely = cache.buyers_upheld_or_reviewed()
            buyers = sorted(({customer_id} | likely) - cache.budgets.keys())
            await lock(buyers)
            cache.budgets.update(dict.fromkeys(buyers))
            for buyer, text in await driver_rows(self._session, _PREFETCH_BUDGETS, {"ids": buyers}):
                cache.budgets[buyer] = text  # read on first use
        budget = loaded(cache.budgets, customer_id, CompensationBudget)
        if budget is None:
            budget = cache.budgets[customer_id] = CompensationBudget(customer_id=customer_id)
        return budget

    async def save_budget(self, budget: CompensationBudget, now: datetime) -> None:
        row = partial(_budget_row, budget, now)
        await self._save("budgets", budget.customer_id, budget, _SAVE_BUDGET, row)

    # --- low scores for complaints not seen yet ---------------------------------------------

    async def park_low_score(self, complaint_id: str, score: LowScore, now: datetime) -> None:
        row = {
            "complaint_id": complaint_id,
            "callback_id": score.callback_id,
            "score": score.score,
            "received_at": now,
        }
        cache = await self._cache()
        if cache is None or complaint_id not in cache.parked:
            await self._session.execute(_PARK_LOW_SCORE, row)
            return
        parked = cache.parked[complaint_id]
        if any(callback_id == score.callback_id for _, callback_id, _ in parked):
            return  # parked already: the first one stays, as the row would
        pending_writes(self._session, _PARKED, lambda: cache)
        parked.append((now, score.callback_id, score.score))
        cache.new_parked[(complaint_id, score.callback_id)] = row

    async def take_parked_low_scores(self, complaint_id: str) -> list[LowScore]:
        """The parked scores of a complaint, removed from the parking table."""
        cache = await self._cache()
        if cache is not None and complaint_id in cache.parked:
            found = sorted(cache.parked[complaint_id])
            if found:
                cache.take_parked(self._session, complaint_id)
            return [
                LowScore(callback_id=callback_id, score=score) for _, callback_id, score in found
            ]
        rows = await self._session.execute(_TAKE_PARKED_LOW_SCORES, {"b_id": complaint_id})
        taken = sorted(rows.all(), key=lambda row: (row.received_at, row.callback_id))
        return [LowScore(callback_id=row.callback_id, score=row.score) for row in taken]


# Statements built once and executed with parameters: building one (an upsert's `excluded`
# alias above all) cost more CPU than running it, for every event.


def _insert(table: Table) -> Insert:
    """An insert of every column of `table`, each bound by its name."""
    return insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in table.c})


_O, _C, _B, _P = tables.orders, tables.complaints, tables.budgets, tables.parked_low_scores
_ORDER = select(_O.c.state).where(_O.c.order_id == bindparam("b_id"))
_ORDER_STORED = select(_O.c.order_id).where(_O.c.order_id == bindparam("b_id"))
_SAVE_ORDER = document_upsert(_O, key="order_id", update=("customer_id", "state", "updated_at"))
_COMPLAINT = select(_C.c.state).where(_C.c.complaint_id == bindparam("b_id"))
_ORDER_OF_COMPLAINT = select(_C.c.order_id).where(_C.c.complaint_id == bindparam("b_id"))
_COMPLAINTS_OF_ORDER = (
    select(_C.c.state)
    .where(_C.c.order_id == bindparam("b_id"))
    # Ids in byte order, as the batch cache sorts them, whatever the database's collation.
    .order_by(_C.c.created_at, _C.c.complaint_id.collate("C"))
)
_SAVE_COMPLAINT = document_upsert(
    _C, key="complaint_id", update=("customer_id", "status", "state", "updated_at")
)
_BUDGET = select(_B.c.state).where(_B.c.customer_id == bindparam("b_id"))
_SAVE_BUDGET = document_upsert(_B, key="customer_id", update=("state", "updated_at"))
_PARK_LOW_SCORE = _insert(_P).on_conflict_do_nothing()
_TAKE_PARKED_LOW_SCORES = (
    delete(_P)
    .where(_P.c.complaint_id == bindparam("b_id"))
    .returning(_P.c.callback_id, _P.c.score, _P.c.received_at)
)

# Each a semi-join on the batch's ids (`one_of`): one parameter, not an IN list compiled anew
# for every batch, and no generic plan that compares every row with every id.
_UNPARK = delete(_P).where(one_of(_P.c.complaint_id, "ids"))
_PREFETCH_ORDERS = select(_O.c.order_id, cast(_O.c.state, Text)).where(one_of(_O.c.order_id, "ids"))
# The complaints named by id or of the batch's orders: `= ANY` here, planned as two index scans
# on the document table, whose rows are wide (see the returns service's `_PREFETCH_RETURNS`).
_PREFETCH_COMPLAINTS = select(
    _C.c.complaint_id, _C.c.order_id, _C.c.customer_id, cast(_C.c.state, Text), _C.c.created_at
).where(
    or_(
        _C.c.order_id == any_(bindparam("ids", type_=ARRAY(Text))),
        _C.c.complaint_id == any_(bindparam("cids", type_=ARRAY(Text))),
    )
)
_PREFETCH_PARKED = select(_P.c.complaint_id, _P.c.received_at, _P.c.callback_id, _P.c.score).where(
    one_of(_P.c.complaint_id, "cids")
)
_PREFETCH_BUDGETS = select(_B.c.customer_id, cast(_B.c.state, Text)).where(
    one_of(_B.c.customer_id, "ids")
)


async def _prefetch(session: AsyncSession, events: list[CloudEvent]) -> _BatchCache:
    """What the batch's locks cover, in up to three statements; absent ones recorded as such."""
    keys = {key for event in events for key in lock_keys(event)}
    order_ids = {
        order_id
        for event in events
        if isinstance(order_id := getattr(event.data, "order_id", None), str) and order_id in keys
    }
    complaint_ids = {
        key.removeprefix(COMPLAINT_LOCK_PREFIX)
        for key in keys
        if key.startswith(COMPLAINT_LOCK_PREFIX)
    }
    cache = _BatchCache(
        events,
        orders=dict.fromkeys(order_ids),
        complaints=HeldCases(dict.fromkeys(complaint_ids), complete=set(order_ids)),
        parked={complaint_id: [] for complaint_id in complaint_ids},
    )
    given = {"ids": sorted(order_ids), "cids": sorted(complaint_ids)}
    # Documents as text: each is read when a handler first loads it.
    if order_ids:
        for order_id, text in await driver_rows(session, _PREFETCH_ORDERS, given):
            cache.orders[order_id] = text
    if order_ids or complaint_ids:
        rows = await driver_rows(session, _PREFETCH_COMPLAINTS, given)
        for complaint_id, order_id, customer_id, text, created_at in rows:
            if order_id in cache.orders:
                stored = _Stored(created_at, order_id, text, customer_id)
                cache.complaints.put(complaint_id, stored)
            else:  # named, but of an order the batch does not hold: read when needed
                cache.complaints.by_id.pop(complaint_id, None)
                cache.order_of[complaint_id] = order_id
    if complaint_ids:
        for complaint_id, received_at, callback_id, score in await driver_rows(
            session, _PREFETCH_PARKED, given
        ):
            cache.parked[complaint_id].append((received_at, callback_id, score))
            cache.stored_parked.add(complaint_id)
    return cache
