"""Builders shared by the complaints domain tests: orders, policies and a `Case` that drives a
Complaint against its ShopOrder and the buyer's budget the way the service layer does."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.events import CouponGranted, DomainEvent
from services.complaints.domain.model import Complaint
from services.complaints.domain.orders import OrderFacts, OrderLine, ShopOrder
from services.complaints.domain.rules import CaseKey, CaseType
from shared.policy import ComplaintsPolicy

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
H = timedelta(hours=1)
DAY = timedelta(days=1)
POLICY = ComplaintsPolicy()
RESOLVED = T0 + H  # when a `Case` resolves unless told
COMPLAINT = CaseKey(CaseType.COMPLAINT, "k1")  # the case of the complaint of a `Case()`
LATE = CaseKey(CaseType.LATE_SHIPMENT, "o1")  # the late shipment of the order of `facts()`

E = TypeVar("E")


def policy(**complaints: Any) -> ComplaintsPolicy:
    return ComplaintsPolicy(**complaints)


def facts(
    *amounts: int,
    order_id: str = "o1",
    customer_id: str = "c1",
    shipping_fee_paid: int = 0,
    paid_at: datetime = T0 - 2 * DAY,
    presale_ship_by: datetime | None = None,
    currency: str = "CNY",
    gift: bool = False,
) -> OrderFacts:
    amounts = amounts or (10000,)
    lines = [
        OrderLine(line_id=f"l{i + 1}", quantity=1 + i, paid_amount=amount)
        for i, amount in enumerate(amounts)
    ]
    if gift:
        lines.append(OrderLine(line_id="gift", quantity=1, paid_amount=0, is_gift=True))
    return OrderFacts(
        order_id=order_id,
        customer_id=customer_id,
        paid_at=paid_at,
        currency=currency,
        lines=tuple(lines),
        shipping_fee_paid=shipping_fee_paid,
        presale_ship_by=presale_ship_by,
    )


def paid_order(order_facts: OrderFacts | None = None, *, now: datetime = T0) -> ShopOrder:
    order_facts = order_facts or facts()
    order = ShopOrder.new(order_facts.order_id)
    order.record_paid(order_facts, POLICY, now)
    return order


def only(events: Iterable[object], cls: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, cls)]


def one(events: Iterable[object], cls: type[E]) -> E:
    found = only(events, cls)
    assert len(found) == 1, f"expected one {cls.__name__}, got {found}"
    return found[0]


def coupons(events: Iterable[object]) -> list[int]:
    """The values of the coupons granted in `events`."""
    return [event.value for event in only(events, CouponGranted)]


class Case:
    """One complaint with its order and the buyer's budget, driven like the handlers do:
    every call ends with `compensate` when the complaint awaits it and the order is paid."""

    def __init__(
        self,
        complaint_id: str = "k1",
        *,
        order: ShopOrder | None = None,
        budget: CompensationBudget | None = None,
        rules: ComplaintsPolicy = POLICY,
        customer_id: str = "c1",
    ) -> None:
        self.order = order if order is not None else paid_order()
        self.complaint = Complaint.new(complaint_id, self.order.order_id)
        self.customer_id = customer_id  # the complainant (the order's buyer is facts()'s c1)
        self.budget = budget if budget is not None else CompensationBudget(customer_id)
        self.rules = rules

    def _settle(self, events: list[DomainEvent], now: datetime) -> list[DomainEvent]:
        if self.complaint.awaits_compensation and self.order.is_paid:
            events += self.complaint.compensate(self.order, self.budget, self.rules, now)
        return events

    def open(
        self, category: str = "service_attitude", *, at: datetime = T0, now: datetime | None = None
    ) -> list[DomainEvent]:
        events = self.complaint.open(
            customer_id=self.customer_id,
            category=category,
            opened_at=at,
            policy=self.rules,
            now=now or at,
        )
        return self._settle(events, now or at)

    def respond(self, *, at: datetime, now: datetime | None = None) -> list[DomainEvent]:
        return self._settle(self.complaint.respond("agent-1", at, now or at), now or at)

    def resolve(
        self,
        outcome: str = "upheld",
        remedy: str = "none",
        *,
        at: datetime = RESOLVED,
        now: datetime | None = None,
    ) -> list[DomainEvent]:
        events = self.complaint.resolve(
            outcome=outcome,
            remedy=remedy,
            agent_id="agent-1",
            resolved_at=at,
            policy=self.rules,
            now=now or at,
        )
        return self._settle(events, now or at)

    def timer(self, kind: str, due_at: datetime, *, now: datetime | None = None):
        return self._settle(
            self.complaint.on_timer(kind, due_at, self.rules, now or due_at), now or due_at
        )

    def low_score(self, callback_id: str = "cb1", score: int = 1, *, now: datetime):
        return self._settle(
            self.complaint.record_low_satisfaction(callback_id, score, self.rules, now), now
        )

    def review(self, decision: str, *, now: datetime):
        return self.complaint.review_compensation(
            decision, "supervisor-1", now, self.budget, self.rules, now
        )

    def upheld(self, category: str, remedy: str = "none", **kwargs: Any) -> list[DomainEvent]:
        """Open, then resolve upheld: the resolution's events."""
        self.open(category)
        return self.resolve("upheld", remedy, **kwargs)
