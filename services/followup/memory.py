"""The follow-up state in memory: `FollowupRepository`'s interface over journalled rows of a
`MemoryUnitOfWork`, so the service's own handlers run without PostgreSQL (fast tests, the
policy simulation). Callbacks are kept as JSON text, as in the schema."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from services.followup.bootstrap import build
from services.followup.domain.model import Callback
from services.followup.domain.rules import CallbackStatus, CaseKey
from services.followup.handlers import SERVICE, FollowupHandlers
from services.followup.repository import UNKNOWN_SHOP, Complaint, FollowupRepository
from shared.clock import Clock
from shared.messaging.membus import MemoryService
from shared.messaging.memory import MemoryUnitOfWork
from shared.policy import Policy


class MemoryFollowupRepository(FollowupRepository):
    """The same interface as the schema's (mypy holds it to it), kept in memory."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:  # no session: nothing of the parent's
        self._shops = uow.rows()  # order id -> shop id
        self._complaints = uow.rows()  # complaint id -> Complaint (frozen)
        self._cases = uow.rows()  # (case type, case id) -> callback id
        self._callbacks = uow.rows()  # callback id -> document
        self._of_customer = uow.rows()  # customer id -> callback ids

    async def record_order(
        self, order_id: str, shop_id: str, customer_id: str, paid_at: datetime
    ) -> None:
        if order_id not in self._shops:  # the first order.paid counts
            self._shops.put(order_id, shop_id)

    async def shops(self, order_ids: Iterable[str]) -> dict[str, str]:
        return {
            order_id: self._shops.get(order_id, UNKNOWN_SHOP) for order_id in sorted(set(order_ids))
        }

    async def complaint(self, complaint_id: str) -> Complaint | None:
        found: Complaint | None = self._complaints.get(complaint_id)
        return found

    async def record_complaint_opened(
        self, complaint_id: str, order_id: str, customer_id: str, opened_at: datetime, now: datetime
    ) -> None:
        known: Complaint | None = self._complaints.get(complaint_id)
        if known is None:
            self._complaints.put(complaint_id, Complaint(complaint_id, order_id, customer_id, None))
        elif known.customer_id is None:  # the buyer is learnt once
            self._complaints.put(
                complaint_id,
                Complaint(complaint_id, known.order_id, customer_id, known.resolution),
            )

    async def record_resolution(
        self, complaint_id: str, order_id: str, resolution: Mapping[str, Any], now: datetime
    ) -> None:
        known: Complaint | None = self._complaints.get(complaint_id)
        if known is None:
            known = Complaint(complaint_id, order_id, None, None)
        self._complaints.put(
            complaint_id,
            Complaint(complaint_id, known.order_id, known.customer_id, dict(resolution)),
        )

    async def case_known(self, key: CaseKey) -> bool:
        return (str(key.type), key.id) in self._cases

    async def callback(self, callback_id: str) -> Callback | None:
        return self._callbacks.aggregate(callback_id, Callback.from_dict)

    async def scheduled_callbacks(self, customer_id: str) -> list[Callback]:
        found = [
            callback
            for callback_id in self._of_customer.get(customer_id, ())
            if (callback := await self.callback(callback_id)) is not None
            and callback.status == CallbackStatus.SCHEDULED
        ]
        return sorted(found, key=lambda callback: (callback.due_at, callback.callback_id))

    async def save_callback(self, callback: Callback, now: datetime) -> None:
        callback_id = callback.callback_id
        if callback_id not in self._callbacks:
            known = self._of_customer.get(callback.customer_id, ())
            self._of_customer.put(callback.customer_id, (*known, callback_id))
        self._callbacks.put_document(callback_id, callback.to_dict())
        for case in callback.cases:
            if (str(case.type), case.case_id) not in self._cases:
                self._cases.put((str(case.type), case.case_id), callback_id)


def in_memory(policy: Policy, clock: Clock) -> MemoryService:
    """The follow-up service on a bus in memory: its own handlers, its state in memory."""
    uow = MemoryUnitOfWork(SERVICE)
    repo = MemoryFollowupRepository(uow)
    handlers = FollowupHandlers(policy, lambda ctx: repo)
    return MemoryService.of(build(policy, clock), handlers, uow)
