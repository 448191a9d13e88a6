"""The returns aggregates in memory: `ReturnsRepository`'s interface over journalled rows of a
`MemoryUnitOfWork`, so the service's own handlers run without PostgreSQL (fast tests, the
policy simulation). Documents are kept as JSON text, as in the schema, so every load builds
fresh objects and a rolled-back handler leaves the stored state as it was."""

from __future__ import annotations

from datetime import datetime

from services.returns.bootstrap import build
from services.returns.domain.model import ReturnRequest
from services.returns.domain.order_returns import OrderLedger
from services.returns.domain.values import Order
from services.returns.handlers import SERVICE, ReturnsHandlers
from services.returns.repository import ReturnsRepository
from shared.clock import Clock
from shared.messaging.membus import MemoryService
from shared.messaging.memory import MemoryUnitOfWork
from shared.messaging.memorycases import MemoryCaseDocuments
from shared.policy import Policy


class MemoryReturnsRepository(ReturnsRepository):
    """The same interface as the schema's (mypy holds it to it), kept in memory."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:  # no session: nothing of the parent's
        self._orders = uow.rows()  # order id -> Order (immutable)
        self._ledgers = uow.rows()  # order id -> document
        self._signatures = uow.rows()  # order id -> signed_at
        self._requests = MemoryCaseDocuments(uow)  # return id -> document, by order

    async def order(self, order_id: str) -> Order | None:
        order: Order | None = self._orders.get(order_id)
        return order

    async def save_order(self, order: Order, now: datetime) -> None:
        self._orders.put(order.order_id, order)

    async def outbound_signature(self, order_id: str) -> datetime | None:
        signed_at: datetime | None = self._signatures.get(order_id)
        return signed_at

    async def record_outbound_signature(self, order_id: str, signed_at: datetime) -> None:
        if order_id not in self._signatures:  # the first signature counts
            self._signatures.put(order_id, signed_at)

    async def ledger(self, order_id: str) -> OrderLedger:
        ledger = self._ledgers.aggregate(order_id, OrderLedger.from_dict)
        return OrderLedger(order_id=order_id) if ledger is None else ledger

    async def save_ledger(self, ledger: OrderLedger, now: datetime) -> None:
        self._ledgers.put_document(ledger.order_id, ledger.to_dict())

    async def return_request(self, return_id: str) -> ReturnRequest | None:
        return self._requests.case(return_id, ReturnRequest.from_dict)

    async def returns_of_order(self, order_id: str) -> list[ReturnRequest]:
        return self._requests.cases_of(order_id, ReturnRequest.from_dict)

    async def save_return(self, request: ReturnRequest, now: datetime) -> None:
        self._requests.save(request.return_id, request.order_id, request.to_dict(), now)


def in_memory(policy: Policy, clock: Clock) -> MemoryService:
    """The returns service on a bus in memory: its own handlers, its state in memory."""
    uow = MemoryUnitOfWork(SERVICE)
    repo = MemoryReturnsRepository(uow)
    return MemoryService.of(build(policy, clock), ReturnsHandlers(policy, lambda ctx: repo), uow)
