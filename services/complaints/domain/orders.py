"""The order as the complaints service sees it, and late-shipment detection (SPEC 5).

`OrderFacts` is what `order.paid` says that compensation needs (amounts, payments, currency,
line ids) and nothing personal (SPEC 7). `ShopOrder` adds what happened since (shipped,
cancelled) and the once-per-order late-shipment penalty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.complaints.domain.events import (
    DomainEvent,
    Notify,
    RefundDue,
    TimerCancelled,
    TimerSet,
)
from services.complaints.domain.rules import (
    FULFIL_WITHIN,
    CaseKey,
    CaseType,
    Template,
    TimerKind,
    late_shipment_amount,
)
from shared.catchup import deadline_timer, set_again_for
from shared.clock import instant_to_json, require_aware
from shared.documents import DocumentType, Stored, require_aware_fields
from shared.policy import ComplaintsPolicy
from shared.timers import cancel_timers, set_timer

COMPENSATION = "compensation"  # refund breakdown kind of a penalty (SPEC 3)


@dataclass(frozen=True)
class OrderLine:
    line_id: str
    quantity: int
    paid_amount: int
    is_gift: bool = False

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"line {self.line_id}: quantity must be positive")
        if self.paid_amount < 0:
            raise ValueError(f"line {self.line_id}: paid_amount must not be negative")


@dataclass(frozen=True)
class OrderFacts:
    """What order.paid said, without the buyer's personal data."""

    order_id: str
    customer_id: str
    paid_at: datetime
    currency: str
    lines: tuple[OrderLine, ...]
    shipping_fee_paid: int
    presale_ship_by: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        require_aware(self.paid_at, "paid_at")
        if self.presale_ship_by is not None:
            require_aware(self.presale_ship_by, "presale_ship_by")
        if not self.currency:
            raise ValueError("an order carries its currency")
        if self.shipping_fee_paid < 0:
            raise ValueError("shipping_fee_paid must not be negative")

    @property
    def goods_total(self) -> int:
        return sum(line.paid_amount for line in self.lines)

    @property
    def all_lines(self) -> dict[str, int]:
        """Every line of the order with its full quantity (gifts included)."""
        return {line.line_id: line.quantity for line in self.lines}

    def ship_by(self, policy: ComplaintsPolicy) -> datetime:
        """The order is late if not shipped by this instant: the presale date when it has one
        (it replaces the 72 hours), else paid_at + late_shipment_hours."""
        if self.presale_ship_by is not None:
            return self.presale_ship_by
        return self.paid_at + timedelta(hours=policy.late_shipment_hours)


@dataclass(frozen=True)
class LatePenalty:
    """The late-shipment refund of one order, issued once (by whichever path came first)."""

    amount: int
    currency: str
    owed_at: datetime  # when it became owed: the ship-by instant, or an upheld complaint
    due_by: datetime
    issued_at: datetime
    cause: str  # "timer", "shipped", "cancelled" or "complaint:<id>"

    def __post_init__(self) -> None:
        require_aware_fields(self, "owed_at", "due_by", "issued_at")


@dataclass
class ShopOrder(Stored):
    """One order: its facts once paid, shipment and cancellation, the late-shipment watch.

    Any of order.paid, order.shipped and order.cancelled may come first; what is known is kept
    and decided on as soon as the order's facts are known. Every method is idempotent.
    """

    order_id: str
    facts: OrderFacts | None = None
    ship_by: datetime | None = None
    shipped_at: datetime | None = None
    cancelled_at: datetime | None = None
    late_penalty: LatePenalty | None = None
    timers: dict[TimerKind, datetime] = field(default_factory=dict)

    @classmethod
    def new(cls, order_id: str) -> ShopOrder:
        return cls(order_id=order_id)

    @property
    def is_paid(self) -> bool:
        return self.facts is not None

    @property
    def case(self) -> CaseKey:
        return CaseKey(CaseType.LATE_SHIPMENT, self.order_id)

    def _settled_at(self) -> datetime | None:
        """The first instant the order stopped being "waiting to ship" (shipped or cancelled)."""
        known = [t for t in (self.shipped_at, self.cancelled_at) if t is not None]
        return min(known) if known else None

    # --- entry points ---------------------------------------------------------------------

    def record_paid(
        self, facts: OrderFacts, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        """order.paid: watch the shipment deadline. An order is paid once; a repeat is ignored."""
        if self.facts is not None:
            return []
        if facts.order_id != self.order_id:
            raise ValueError(f"order.paid of {facts.order_id} given to order {self.order_id}")
        self.facts = facts
        self.ship_by = facts.ship_by(policy)
        if self._settled_at() is not None:
            return self._judge(policy, now)
        return self._set_timer(TimerKind.LATE_SHIPMENT, self._check_at(now))

    def record_shipped(
        self, shipped_at: datetime, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        """order.shipped: the first shipment counts."""
        require_aware(shipped_at, "shipped_at")
        if self.shipped_at is not None:
            return []
        self.shipped_at = shipped_at
        return self._judge(policy, now)

    def record_cancelled(
        self, cancelled_at: datetime, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        """order.cancelled: the first cancellation counts."""
        require_aware(cancelled_at, "cancelled_at")
        if self.cancelled_at is not None:
            return []
        self.cancelled_at = cancelled_at
        return self._judge(policy, now)

    def on_timer(
        self, kind: str, due_at: datetime, policy: ComplaintsPolicy, now: datetime
    ) -> list[DomainEvent]:
        """The ship-by timer fired: the penalty, unless a shipment or cancellation is known.

        The timer is due `CATCH_UP_GRACE` after the ship-by instant, not at it: an
        order.shipped dated by the ship-by is on its way through the platform when that
        instant passes (the shop's system, the broker, this consumer: milliseconds to
        minutes), the timer does not wait for it, and a penalty cannot be taken back. Lateness
        is still judged by `shipped_at` / `cancelled_at` against the ship-by, and the penalty is
        owed from the ship-by (due ship-by + 24 h). An order.paid learnt of after its ship-by
        is judged a grace after it was processed (`_check_at`).

        A timer at ship-by + grace that fires more than a grace late (the service was down or
        its scheduler behind: on a restart the scheduler fires before the consumer has read
        the backlog) is a deadline learnt of late: it is set again for a grace from now and
        judged then, once (the timer set again is not at ship-by + grace, so it is judged
        whenever it fires). A timer at the ship-by instant itself was set before the grace
        existed: it is moved to ship-by + grace, or a grace from now when that has passed.

        A timer the order no longer has (or with another due time) is stale: no effect.
        """
        timer = TimerKind(kind)
        if self.timers.get(timer) != due_at:
            return []
        del self.timers[timer]
        if self.facts is None:
            return []
        if self._settled_at() is not None:
            return self._judge(policy, now)
        assert self.ship_by is not None
        if (again := set_again_for(self.ship_by, due_at, now)) is not None:
            return self._set_timer(TimerKind.LATE_SHIPMENT, again)
        return self.issue_late_penalty(policy, now, owed_at=self.ship_by, cause="timer")

    def issue_late_penalty(
        self,
        policy: ComplaintsPolicy,
        now: datetime,
        *,
        owed_at: datetime,
        cause: str,
        apologise: bool = True,
    ) -> list[DomainEvent]:
        """The late-shipment refund (5 % of the goods, at most 3000), once per order.

        Due `owed_at` + 24 h; asked of the refund ledger at once.
        """
        facts = self.facts
        if facts is None:
            raise ValueError(f"order {self.order_id}: the penalty needs the order's facts")
        if self.late_penalty is not None:
            return []
        amount = late_shipment_amount(facts.goods_total, facts.currency, policy)
        due_by = owed_at + FULFIL_WITHIN
        self.late_penalty = LatePenalty(
            amount=amount,
            currency=facts.currency,
            owed_at=owed_at,
            due_by=due_by,
            issued_at=now,
            cause=cause,
        )
        events: list[DomainEvent] = self._cancel_timers()
        if amount > 0:
            events.append(
                RefundDue(
                    case=self.case,
                    amount=amount,
                    currency=facts.currency,
                    breakdown=((COMPENSATION, amount),),
                    due_by=due_by,
                    requested_at=now,
                )
            )
            # Issued late, the refund ledger reports it (SPEC 4.11).
        if apologise:
            assert self.ship_by is not None
            events.append(
                Notify(
                    template=Template.APOLOGY_LATE_SHIPMENT,
                    case=self.case,
                    params=self._apology_params(amount, facts.currency),
                )
            )
        return events

    # --- helpers ----------------------------------------------------------------------------

    def order_state(self) -> str:
        """What the apology can promise: `not_shipped`, `shipped` (late) or `cancelled`,
        whichever came first."""
        settled = self._settled_at()
        if settled is None:
            return "not_shipped"
        return "shipped" if settled == self.shipped_at else "cancelled"

    def _apology_params(self, amount: int, currency: str) -> dict[str, Any]:
        """The apology states a refund only when one is owed (a free order gets none) and
        offers waiting or cancelling only while the order is still unshipped."""
        assert self.ship_by is not None
        params: dict[str, Any] = {
            "order_id": self.order_id,
            "ship_by": instant_to_json(self.ship_by) or "",
            "order_state": self.order_state(),
            "currency": currency,
        }
        if amount > 0:
            params["amount"] = amount
        return params

    def _judge(self, policy: ComplaintsPolicy, now: datetime) -> list[DomainEvent]:
        """Shipped or cancelled (and paid): late only if that came after the ship-by instant.

        A shipment or cancellation by the deadline stops the watch. One after it (its event
        arriving before the timer fired) is the same lateness the timer would have found.
        """
        settled = self._settled_at()
        if self.facts is None or settled is None or self.late_penalty is not None:
            return self._cancel_timers() if settled is not None else []
        assert self.ship_by is not None
        if settled <= self.ship_by:
            return self._cancel_timers()
        cause = "shipped" if settled == self.shipped_at else "cancelled"
        return self.issue_late_penalty(policy, now, owed_at=self.ship_by, cause=cause)

    def _check_at(self, now: datetime) -> datetime:
        """When the watch is judged, the order's facts known at `now`
        (`shared.catchup.deadline_timer` of the ship-by)."""
        assert self.ship_by is not None
        return deadline_timer(self.ship_by, now)

    def _set_timer(self, kind: TimerKind, due_at: datetime) -> list[DomainEvent]:
        return [TimerSet(kind, due_at)] if set_timer(self.timers, kind, due_at) else []

    def _cancel_timers(self) -> list[DomainEvent]:
        return [TimerCancelled(kind) for kind in cancel_timers(self.timers, tuple(self.timers))]

    # --- persistence ------------------------------------------------------------------------

    def __post_init__(self) -> None:
        require_aware_fields(self, "ship_by", "shipped_at", "cancelled_at", "timers")


SHOP_ORDER_DOCUMENT = DocumentType("complaints.shop_order", ShopOrder)
