"""Builders shared by the returns domain tests: orders, policies and a `Case` that drives
ReturnRequests against one order and its ledger the way the service layer does."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from services.returns.domain.events import Decided, DomainEvent, RefundDue
from services.returns.domain.model import ReturnRequest
from services.returns.domain.order_returns import OrderLedger, OrderReturns
from services.returns.domain.values import Order, OrderLine
from shared.policy import Policy, ReturnsPolicy

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 16:30 UTC on 03-01 is 00:30 on 03-02 in Shanghai: D = 2026-03-02, the window ends with 03-09.
SIGNED = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
SOON = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # a request well inside every window

E = TypeVar("E")


def at(text: str) -> datetime:
    instant = datetime.fromisoformat(text)
    assert instant.tzinfo is not None
    return instant


# The lifecycle tests' instant: the warehouse signs for the returned parcel.
T = at("2026-03-06T10:00:00+08:00")
H = timedelta(hours=1)


def policy(timezone: str = "Asia/Shanghai", **returns: Any) -> Policy:
    return Policy(timezone=timezone, returns=ReturnsPolicy(**returns))


def line(
    line_id: str = "l1",
    *,
    quantity: int = 1,
    paid: int = 1000,
    category: str = "apparel",
    title: str | None = None,
    gift: bool = False,
    stated_price: int = 0,
    waived: bool = False,
) -> OrderLine:
    return OrderLine(
        line_id=line_id,
        sku=f"sku-{line_id}",
        title=title or f"Item {line_id}",
        category=category,
        quantity=quantity,
        paid_amount=0 if gift else paid,
        is_gift=gift,
        stated_price=stated_price,
        no_reason_return_waived=waived,
    )


def order(
    *lines: OrderLine,
    shipping_fee_paid: int = 0,
    standard_shipping_fee: int = 800,
    threshold: int | None = None,
    insurance: bool = False,
    signed_at: datetime | None = SIGNED,
    currency: str = "CNY",
) -> Order:
    lines = lines or (line(),)
    return Order(
        order_id="o1",
        shop_id="shop1",
        customer_id="c1",
        paid_at=at("2026-02-27T10:00:00+08:00"),
        currency=currency,
        lines=tuple(lines),
        shipping_fee_paid=shipping_fee_paid,
        standard_shipping_fee=standard_shipping_fee,
        free_shipping_threshold=threshold,
        shipping_insurance=insurance,
        presale_ship_by=None,
        outbound_signed_at=signed_at,
    )


def only(events: Iterable[DomainEvent], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


def kinds(events: Iterable[DomainEvent], kind: type[Any]) -> list[Any]:
    """The `kind` of each event of type `kind` (timers set or cancelled, breaches)."""
    return [event.kind for event in only(events, kind)]


def decided(events: Iterable[DomainEvent]) -> Decided:
    found = only(events, Decided)
    assert len(found) == 1, found
    return found[0]


class Case:
    """One order, its ledger and the policy; drives requests like the service layer would."""

    def __init__(self, the_order: Order | None = None, the_policy: Policy | None = None) -> None:
        self.order = the_order
        self.ledger = OrderLedger("o1")
        self.policy = the_policy or Policy()
        self.requests: dict[str, ReturnRequest] = {}

    def get(self, return_id: str = "r1") -> ReturnRequest:
        return self.requests.setdefault(return_id, ReturnRequest.new(return_id, "o1"))

    @property
    def returns(self) -> OrderReturns:
        """The order with what its returns took back, as the service layer loads it."""
        return OrderReturns(self.order, self.ledger)

    def _ctx(self, now: datetime) -> dict[str, Any]:
        return {"returns": self.returns, "policy": self.policy, "now": now}

    def submit(
        self,
        return_id: str = "r1",
        *,
        lines: Mapping[str, int] | None = None,
        reason: str = "no_reason",
        kind: str = "refund",
        condition: Iterable[str] = (),
        evidence: Iterable[str] = (),
        requested_at: datetime = SOON,
        now: datetime | None = None,
        customer_id: str = "c1",
    ) -> list[DomainEvent]:
        return self.get(return_id).submit(
            customer_id=customer_id,
            kind=kind,
            reason=reason,
            lines=lines if lines is not None else {"l1": 1},
            condition=condition,
            evidence_urls=evidence,
            requested_at=requested_at,
            **self._ctx(now or requested_at),
        )

    def reassess(self, return_id: str = "r1", *, now: datetime) -> list[DomainEvent]:
        return self.get(return_id).reassess(**self._ctx(now))

    def evidence(
        self, urls: Iterable[str], return_id: str = "r1", *, now: datetime
    ) -> list[DomainEvent]:
        return self.get(return_id).add_evidence(urls, **self._ctx(now))

    def review(
        self,
        decision: str,
        return_id: str = "r1",
        *,
        now: datetime,
        reviewed_at: datetime | None = None,
    ) -> list[DomainEvent]:
        return self.get(return_id).review(
            decision, "agent7", "looked at photos", reviewed_at or now, **self._ctx(now)
        )

    def ship(
        self,
        fee: int,
        return_id: str = "r1",
        *,
        shipped_at: datetime = SOON,
        now: datetime | None = None,
    ) -> list[DomainEvent]:
        return self.get(return_id).record_shipped(
            "SF", "SF123", shipped_at, fee, **self._ctx(now or shipped_at)
        )

    def sign(
        self, signed_at: datetime, return_id: str = "r1", *, now: datetime | None = None
    ) -> list[DomainEvent]:
        return self.get(return_id).record_return_signed(signed_at, **self._ctx(now or signed_at))

    def inspect(
        self,
        passed: bool,
        inspected_at: datetime,
        return_id: str = "r1",
        *,
        findings: Iterable[str] = (),
        now: datetime | None = None,
    ) -> list[DomainEvent]:
        return self.get(return_id).record_inspection(
            passed, findings, inspected_at, **self._ctx(now or inspected_at)
        )

    def fire(self, kind: str, return_id: str = "r1", *, now: datetime) -> list[DomainEvent]:
        return self.get(return_id).on_timer(kind, **self._ctx(now))

    def cancel(
        self, cancelled_at: datetime, return_id: str = "r1", *, now: datetime | None = None
    ) -> list[DomainEvent]:
        return self.get(return_id).cancel(cancelled_at, returns=self.returns, now=now)

    def refund(
        self,
        return_id: str = "r1",
        *,
        fee: int | None = None,
        signed_at: datetime = SOON + timedelta(days=1),
        **submit: Any,
    ) -> RefundDue:
        """Submit, ship and sign one request that is approved at once; its refund."""
        events = self.submit(return_id, **submit)
        assert decided(events).status == "approved", decided(events)
        if fee is not None:
            self.ship(fee, return_id)
        refunds = only(self.sign(signed_at, return_id), RefundDue)
        assert len(refunds) == 1
        return refunds[0]


def electronics_case() -> Case:
    """A submitted request for an order of one electronics line (inspection required)."""
    case = Case(order(line(category="electronics")))
    case.submit()
    return case


def round_trip(request: ReturnRequest) -> None:
    data = json.loads(json.dumps(request.to_dict()))
    assert ReturnRequest.from_dict(data) == request
