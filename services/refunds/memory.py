"""The refund ledger in memory: `RefundsRepository`'s interface over journalled rows of a
`MemoryUnitOfWork`, so the service's own handlers run without PostgreSQL (fast tests, the
policy simulation). Ledgers are kept as JSON text, as in the schema."""

from __future__ import annotations

from datetime import datetime

from services.refunds.bootstrap import build
from services.refunds.domain.model import OrderLedger
from services.refunds.handlers import SERVICE, RefundsHandlers
from services.refunds.repository import RefundsRepository
from shared.clock import Clock
from shared.messaging.membus import MemoryService
from shared.messaging.memory import MemoryUnitOfWork
from shared.policy import Policy


class MemoryRefundsRepository(RefundsRepository):
    """The same interface as the schema's (mypy holds it to it), kept in memory."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:  # no session: nothing of the parent's
        self._ledgers = uow.rows()  # order id -> document
        self._owners = uow.rows()  # refund id -> the order it was issued for

    async def ledger(self, order_id: str) -> OrderLedger | None:
        return self._ledgers.aggregate(order_id, OrderLedger.from_dict)

    async def order_of_refund(self, refund_id: str) -> str | None:
        owner: str | None = self._owners.get(refund_id)
        return owner

    async def save(self, ledger: OrderLedger, now: datetime) -> None:
        self._ledgers.put_document(ledger.order_id, ledger.to_dict())
        for refund_id in ledger.refunds:
            if refund_id not in self._owners:
                self._owners.put(refund_id, ledger.order_id)


def in_memory(policy: Policy, clock: Clock) -> MemoryService:
    """The refund ledger on a bus in memory: its own handlers, its state in memory."""
    uow = MemoryUnitOfWork(SERVICE)
    repo = MemoryRefundsRepository(uow)
    handlers = RefundsHandlers(policy, lambda ctx: repo)
    return MemoryService.of(build(policy, clock), handlers, uow)
