"""The complaints aggregates in memory: `ComplaintsRepository`'s interface over journalled rows
of a `MemoryUnitOfWork`, so the service's own handlers run without PostgreSQL (fast tests, the
policy simulation). Documents are kept as JSON text, as in the schema."""

from __future__ import annotations

from datetime import datetime

from services.complaints.bootstrap import build
from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.model import Complaint, LowScore
from services.complaints.domain.orders import ShopOrder
from services.complaints.handlers import SERVICE, ComplaintsHandlers
from services.complaints.repository import ComplaintsRepository, Lock
from shared.clock import Clock
from shared.messaging.membus import MemoryService
from shared.messaging.memory import MemoryUnitOfWork
from shared.messaging.memorycases import MemoryCaseDocuments
from shared.policy import Policy


class MemoryComplaintsRepository(ComplaintsRepository):
    """The same interface as the schema's (mypy holds it to it), kept in memory."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:  # no session: nothing of the parent's
        self._orders = uow.rows()  # order id -> document
        self._complaints = MemoryCaseDocuments(uow)  # complaint id -> document, by order
        self._budgets = uow.rows()  # customer id -> document
        self._parked = uow.rows()  # complaint id -> ((received_at, callback id, score), ...)

    async def order(self, order_id: str) -> ShopOrder | None:
        return self._orders.aggregate(order_id, ShopOrder.from_dict)

    async def order_stored(self, order_id: str) -> bool:
        return self._orders.document(order_id) is not None

    async def save_order(self, order: ShopOrder, now: datetime) -> None:
        self._orders.put_document(order.order_id, order.to_dict())

    async def complaint(self, complaint_id: str) -> Complaint | None:
        return self._complaints.case(complaint_id, Complaint.from_dict)

    async def order_of_complaint(self, complaint_id: str) -> str | None:
        return self._complaints.order_of(complaint_id)

    async def complaints_of_order(self, order_id: str) -> list[Complaint]:
        return self._complaints.cases_of(order_id, Complaint.from_dict)

    async def save_complaint(self, complaint: Complaint, now: datetime) -> None:
        complaint_id, order_id = complaint.complaint_id, complaint.order_id
        self._complaints.save(complaint_id, order_id, complaint.to_dict(), now)

    async def locked_budget(self, customer_id: str, lock: Lock) -> CompensationBudget:
        await lock([customer_id])
        budget = self._budgets.aggregate(customer_id, CompensationBudget.from_dict)
        return CompensationBudget(customer_id=customer_id) if budget is None else budget

    async def save_budget(self, budget: CompensationBudget, now: datetime) -> None:
        self._budgets.put_document(budget.customer_id, budget.to_dict())

    async def park_low_score(self, complaint_id: str, score: LowScore, now: datetime) -> None:
        parked = self._parked.get(complaint_id, ())
        if any(callback_id == score.callback_id for _, callback_id, _ in parked):
            return  # one row per (complaint, callback), as the table's key
        self._parked.put(complaint_id, (*parked, (now, score.callback_id, score.score)))

    async def take_parked_low_scores(self, complaint_id: str) -> list[LowScore]:
        parked = sorted(self._parked.pop(complaint_id) or ())
        return [LowScore(callback_id=callback_id, score=score) for _, callback_id, score in parked]


def in_memory(policy: Policy, clock: Clock) -> MemoryService:
    """The complaints service on a bus in memory: its own handlers, its state in memory."""
    uow = MemoryUnitOfWork(SERVICE)
    repo = MemoryComplaintsRepository(uow)
    handlers = ComplaintsHandlers(policy, lambda ctx: repo)
    return MemoryService.of(build(policy, clock), handlers, uow)
