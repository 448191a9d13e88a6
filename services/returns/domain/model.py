"""Returns domain model: the order as the returns service sees it, the order's refund ledger and
the ReturnRequest aggregate (SPEC section 4).

ReturnRequest methods take what they need (the Order or None, the order's OrderLedger, the
Policy, `now`) and return the domain events to publish. They change the request and the ledger
passed in: the service layer persists both, with the events, in one transaction.
Every value round-trips through JSON-safe dicts (`to_dict` / `from_dict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from services.returns.domain.events import (
    Decided,
    DomainEvent,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.returns.domain.messages import MessageFacts, compose
from services.returns.domain.refunds import (
    RefundCalculation,
    calculate_refund,
    calculate_return_shipping_refund,
)
from services.returns.domain.rules import (
    CONDITION_FLAGS,
    FINAL_STATUSES,
    Assessment,
    Payer,
    ReturnKind,
    ReturnStatus,
    Rule,
    Sla,
    TimerKind,
    WaitingFor,
    add_working_hours,
    assess,
    exceeding_lines,
    instant_from_json,
    instant_to_json,
    is_seller_fault,
    needs_inspection,
    require_aware,
    return_shipping_cap,
    return_shipping_payer,
)
from shared.policy import Policy

__all__ = [
    "Inspection",
    "Order",
    "OrderLedger",
    "OrderLine",
    "ReturnRequest",
    "ReturnStatus",
]


def _instant(text: str) -> datetime:
    instant = instant_from_json(text)
    assert instant is not None
    return instant


def _optional_aware(instant: datetime | None, name: str) -> None:
    if instant is not None:
        require_aware(instant, name)


def _units(data: Mapping[str, Any] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (data or {}).items()}


# --- the order --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    line_id: str
    sku: str
    title: str
    category: str
    quantity: int
    paid_amount: int  # for the whole line, after discounts
    is_gift: bool = False
    stated_price: int = 0  # a gift's value, for the whole line
    no_reason_return_waived: bool = False

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"line {self.line_id}: quantity must be positive")
        if self.paid_amount < 0 or self.stated_price < 0:
            raise ValueError(f"line {self.line_id}: amounts must not be negative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "line_id": self.line_id,
            "sku": self.sku,
            "title": self.title,
            "category": self.category,
            "quantity": self.quantity,
            "paid_amount": self.paid_amount,
            "is_gift": self.is_gift,
            "stated_price": self.stated_price,
            "no_reason_return_waived": self.no_reason_return_waived,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderLine:
        return cls(
            line_id=data["line_id"],
            sku=data["sku"],
            title=data["title"],
            category=data["category"],
            quantity=int(data["quantity"]),
            paid_amount=int(data["paid_amount"]),
            is_gift=bool(data.get("is_gift", False)),
            stated_price=int(data.get("stated_price", 0)),
            no_reason_return_waived=bool(data.get("no_reason_return_waived", False)),
        )


@dataclass(frozen=True)
class Order:
    """An order from order.paid, plus the outbound signature and cancellation seen since."""

    order_id: str
    shop_id: str
    customer_id: str
    paid_at: datetime
    currency: str
    lines: tuple[OrderLine, ...]
    shipping_fee_paid: int
    standard_shipping_fee: int
    free_shipping_threshold: int | None
    shipping_insurance: bool
    presale_ship_by: datetime | None
    outbound_signed_at: datetime | None = None
    cancelled_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        require_aware(self.paid_at, "paid_at")
        _optional_aware(self.presale_ship_by, "presale_ship_by")
        _optional_aware(self.outbound_signed_at, "outbound_signed_at")
        _optional_aware(self.cancelled_at, "cancelled_at")
        if not self.currency:
            raise ValueError("an order carries its currency")
        if self.shipping_fee_paid < 0 or self.standard_shipping_fee < 0:
            raise ValueError("shipping fees must not be negative")
        if self.free_shipping_threshold is not None and self.free_shipping_threshold < 0:
            raise ValueError("free_shipping_threshold must not be negative")
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line ids must be unique within an order")

    @property
    def goods_total(self) -> int:
        return sum(line.paid_amount for line in self.lines)

    def has_line(self, line_id: str) -> bool:
        return any(line.line_id == line_id for line in self.lines)

    def line(self, line_id: str) -> OrderLine:
        for line in self.lines:
            if line.line_id == line_id:
                return line
        raise KeyError(f"order {self.order_id} has no line {line_id!r}")

    def with_outbound_signature(self, signed_at: datetime) -> Order:
        """The order once the buyer signed for it; the first signature counts."""
        require_aware(signed_at, "signed_at")
        if self.outbound_signed_at is not None:
            return self
        return replace(self, outbound_signed_at=signed_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "shop_id": self.shop_id,
            "customer_id": self.customer_id,
            "paid_at": instant_to_json(self.paid_at),
            "currency": self.currency,
            "lines": [line.to_dict() for line in self.lines],
            "shipping_fee_paid": self.shipping_fee_paid,
            "standard_shipping_fee": self.standard_shipping_fee,
            "free_shipping_threshold": self.free_shipping_threshold,
            "shipping_insurance": self.shipping_insurance,
            "presale_ship_by": instant_to_json(self.presale_ship_by),
            "outbound_signed_at": instant_to_json(self.outbound_signed_at),
            "cancelled_at": instant_to_json(self.cancelled_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Order:
        threshold = data.get("free_shipping_threshold")
        return cls(
            order_id=data["order_id"],
            shop_id=data["shop_id"],
            customer_id=data["customer_id"],
            paid_at=_instant(data["paid_at"]),
            currency=data["currency"],
            lines=tuple(OrderLine.from_dict(line) for line in data["lines"]),
            shipping_fee_paid=int(data["shipping_fee_paid"]),
            standard_shipping_fee=int(data["standard_shipping_fee"]),
            free_shipping_threshold=None if threshold is None else int(threshold),
            shipping_insurance=bool(data["shipping_insurance"]),
            presale_ship_by=instant_from_json(data.get("presale_ship_by")),
            outbound_signed_at=instant_from_json(data.get("outbound_signed_at")),
            cancelled_at=instant_from_json(data.get("cancelled_at")),
        )


@dataclass
class OrderLedger:
    """What an order's returns have taken back so far, and which units open returns claim.

    Changed only by ReturnRequest methods: `reserve` on approval, `settle` on completion,
    `release` on rejection or cancellation, `settle_return_shipping` for freight learnt after
    completion. Both settle methods are idempotent per return.
    """

    order_id: str
    units_refunded: dict[str, int] = field(default_factory=dict)  # paid lines
    gift_units_returned: dict[str, int] = field(default_factory=dict)  # gift lines
    goods_refunded: int = 0
    outbound_shipping_refunded: int = 0
    return_shipping_refunded: int = 0  # on top of goods + outbound (SPEC 4.7)
    free_shipping_deducted: bool = False
    gift_charged: bool = False
    reserved: dict[str, dict[str, int]] = field(default_factory=dict)  # return_id -> units
    settled_returns: list[str] = field(default_factory=list)
    # Returns whose freight came after their refund and was reimbursed by a refund of its own.
    return_shipping_settled: list[str] = field(default_factory=list)

    def reserved_units(self, line_id: str, *, excluding: str | None = None) -> int:
        return sum(
            units.get(line_id, 0)
            for return_id, units in self.reserved.items()
            if return_id != excluding
        )

    def reserve(self, return_id: str, lines: Mapping[str, int]) -> None:
        self.reserved[return_id] = dict(lines)

    def release(self, return_id: str) -> None:
        self.reserved.pop(return_id, None)

    def is_settled(self, return_id: str) -> bool:
        return return_id in self.settled_returns

    def settle(self, return_id: str, calculation: RefundCalculation) -> bool:
        """Record a completed return; False (and no change) if it was recorded before."""
        self.release(return_id)
        if self.is_settled(return_id):
            return False
        for line_id, units in calculation.goods_units.items():
            self.units_refunded[line_id] = self.units_refunded.get(line_id, 0) + units
        for line_id, units in calculation.gift_units.items():
            self.gift_units_returned[line_id] = self.gift_units_returned.get(line_id, 0) + units
        self.goods_refunded += calculation.goods
        self.outbound_shipping_refunded += calculation.outbound_shipping
        self.return_shipping_refunded += calculation.return_shipping
        self.free_shipping_deducted = (
            self.free_shipping_deducted or calculation.free_shipping_deduction > 0
        )
        self.gift_charged = self.gift_charged or calculation.gift_charge > 0
        self.settled_returns.append(return_id)
        return True

    def settle_return_shipping(self, return_id: str, amount: int) -> bool:
        """Record freight reimbursed after the return was settled: freight only, never goods.
        False (and no change) if it was recorded before."""
        if amount < 0:
            raise ValueError("a reimbursement is never negative")
        if return_id in self.return_shipping_settled:
            return False
        self.return_shipping_refunded += amount
        self.return_shipping_settled.append(return_id)
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "units_refunded": dict(self.units_refunded),
            "gift_units_returned": dict(self.gift_units_returned),
            "goods_refunded": self.goods_refunded,
            "outbound_shipping_refunded": self.outbound_shipping_refunded,
            "return_shipping_refunded": self.return_shipping_refunded,
            "free_shipping_deducted": self.free_shipping_deducted,
            "gift_charged": self.gift_charged,
            "reserved": {rid: dict(units) for rid, units in self.reserved.items()},
            "settled_returns": list(self.settled_returns),
            "return_shipping_settled": list(self.return_shipping_settled),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderLedger:
        return cls(
            order_id=data["order_id"],
            units_refunded=_units(data.get("units_refunded")),
            gift_units_returned=_units(data.get("gift_units_returned")),
            goods_refunded=int(data.get("goods_refunded", 0)),
            outbound_shipping_refunded=int(data.get("outbound_shipping_refunded", 0)),
            return_shipping_refunded=int(data.get("return_shipping_refunded", 0)),
            free_shipping_deducted=bool(data.get("free_shipping_deducted", False)),
            gift_charged=bool(data.get("gift_charged", False)),
            reserved={rid: _units(units) for rid, units in data.get("reserved", {}).items()},
            settled_returns=list(data.get("settled_returns", [])),
            return_shipping_settled=list(data.get("return_shipping_settled", [])),
        )


@dataclass(frozen=True)
class Inspection:
    passed: bool
    findings: tuple[str, ...]
    at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(self.findings))
        require_aware(self.at, "inspected_at")

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "findings": list(self.findings),
            "at": instant_to_json(self.at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inspection:
        return cls(
            passed=bool(data["passed"]), findings=tuple(data["findings"]), at=_instant(data["at"])
        )


# --- the aggregate ----------------------------------------------------------------------------

_WAITING_FOR_DELIVERY = (WaitingFor.ORDER, WaitingFor.SIGNATURE)


@dataclass
class ReturnRequest:
    """One return or exchange request and everything that happened to it.

    A request can exist before return.requested arrives (`ReturnRequest.new`): facts that come
    early (return shipped or signed, inspection, evidence, cancellation) are remembered and
    used once it is submitted. Every method is idempotent for a repeated input.
    """

    return_id: str
    order_id: str
    customer_id: str = ""
    kind: ReturnKind = ReturnKind.REFUND
    reason: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # line_id -> quantity
    condition: list[str] = field(default_factory=list)
    evidence_urls: list[str] = field(default_factory=list)
    requested_at: datetime | None = None  # None until return.requested arrives
    status: ReturnStatus = ReturnStatus.PENDING
    waiting_for: WaitingFor | None = None
    rule: Rule | None = None  # last rule code; on completion, the approval rule
    decided_at: datetime | None = None
    return_shipping_payer: Payer | None = None
    carrier: str | None = None
    tracking_no: str | None = None
    return_shipping_fee_paid: int | None = None
    shipped_at: datetime | None = None
    return_signed_at: datetime | None = None
    refund_due_by: datetime | None = None
    inspection: Inspection | None = None
    reviewed_by: str | None = None
    review_note: str | None = None
    reviewed_at: datetime | None = None
    refund: RefundCalculation | None = None  # what completion refunded, if anything
    # The freight alone, when return.shipped came after completion (a refund of its own).
    return_shipping_refund: RefundCalculation | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    timers: dict[TimerKind, datetime] = field(default_factory=dict)  # pending timers
    breaches_reported: set[Sla] = field(default_factory=set)

    @classmethod
    def new(cls, return_id: str, order_id: str) -> ReturnRequest:
        """A request known only by id: the first event about it may not be return.requested."""
        return cls(return_id=return_id, order_id=order_id)

    @property
    def is_requested(self) -> bool:
        return self.requested_at is not None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def delivery_sla(self) -> Sla:
        return Sla.RESHIPMENT if self.kind == ReturnKind.EXCHANGE else Sla.REFUND

    def requested_on(self) -> datetime:
        if self.requested_at is None:
            raise ValueError(f"return {self.return_id} has not been requested yet")
        return self.requested_at

    # --- entry points ---------------------------------------------------------------------

    def submit(
        self,
        *,
        customer_id: str,
        kind: str,
        reason: str,
        lines: Mapping[str, int],
        condition: Iterable[str],
        evidence_urls: Iterable[str],
        requested_at: datetime,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.requested: assess the request (SPEC 4.6). A repeated submit has no effect."""
        if self.is_requested:
            return []
        require_aware(requested_at, "requested_at")
        require_aware(now, "now")
        return_kind = ReturnKind(kind)
        is_seller_fault(reason)  # rejects an unknown reason
        flags = list(dict.fromkeys(condition))
        unknown = [flag for flag in flags if flag not in CONDITION_FLAGS]
        if unknown:
            raise ValueError(f"unknown condition flags {unknown}")
        if not lines or any(quantity <= 0 for quantity in lines.values()):
            raise ValueError("a return names at least one line, each with a positive quantity")
        self.customer_id = customer_id
        self.kind = return_kind
        self.reason = reason
        self.lines = dict(lines)
        self.condition = flags
        self.evidence_urls = list(dict.fromkeys([*evidence_urls, *self.evidence_urls]))
        self.requested_at = requested_at
        if self.status == ReturnStatus.CANCELLED:  # cancelled before the request arrived
            return []
        return self._apply(assess(self, order, ledger, policy), order, ledger, policy, now)

    def reassess(
        self, *, order: Order | None, ledger: OrderLedger, policy: Policy, now: datetime
    ) -> list[DomainEvent]:
        """The order or its outbound signature arrived: decide a waiting request again."""
        if not self.is_requested or self.status != ReturnStatus.PENDING:
            return []
        return self._apply(assess(self, order, ledger, policy), order, ledger, policy, now)

    def add_evidence(
        self,
        urls: Iterable[str],
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.evidence_submitted: new photos let a request waiting for evidence go on."""
        if self.is_final:
            return []
        new = [url for url in dict.fromkeys(urls) if url not in self.evidence_urls]
        if not new:
            return []
        self.evidence_urls.extend(new)
        if self.waiting_for != WaitingFor.EVIDENCE:
            return []  # kept for the assessment or the reviewer
        return self.reassess(order=order, ledger=ledger, policy=policy, now=now)

    def review(
        self,
        decision: str,
        agent_id: str,
        note: str,
        at: datetime,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.reviewed: an agent decides a case in manual review; otherwise no effect."""
        if decision not in ("approve", "reject"):
            raise ValueError(f"unknown review decision {decision!r}")
        require_aware(at, "reviewed_at")
        if self.status != ReturnStatus.REVIEW:
            return []
        self.reviewed_by, self.review_note, self.reviewed_at = agent_id, note, at
        # A decision dated after the review deadline is a breach even when it beat the timer
        # (SPEC 4.5); a timer that fired first reported it already (`_breach` reports once).
        deadline = self.timers.get(TimerKind.REVIEW_SLA)
        late: list[DomainEvent] = []
        if deadline is not None and at > deadline:
            late = self._breach(Sla.RETURN_REVIEW, deadline, now)
        if decision == "reject":
            found = Assessment(ReturnStatus.REJECTED, Rule.REVIEWED_REJECT)
            return self._reject(found, order, ledger, policy, now) + late
        if order is None:
            raise ValueError("approving a return needs its order")
        # Units may have gone to another return while this one sat in review.
        exceeding = exceeding_lines(order, ledger, self.lines, self.return_id)
        if exceeding:
            found = Assessment(
                ReturnStatus.REJECTED, Rule.QUANTITY_EXCEEDS_PURCHASED, lines=exceeding
            )
            return self._reject(found, order, ledger, policy, now) + late
        return self._approve(Rule.REVIEWED_APPROVE, order, ledger, policy, now) + late

    def record_shipped(
        self,
        carrier: str,
        tracking_no: str,
        shipped_at: datetime,
        shipping_fee_paid: int,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.shipped: the buyer's return freight, reimbursed on seller fault.

        Known before completion, it is paid with the refund. The return-leg signature is on
        another topic and can come first: a completed return that did not know its freight
        then reimburses it with a refund of its own (`_reimburse_late_freight`).
        """
        require_aware(shipped_at, "shipped_at")
        require_aware(now, "now")
        if shipping_fee_paid < 0:
            raise ValueError("shipping_fee_paid must not be negative")
        if self.is_final:
            return self._reimburse_late_freight(
                carrier, tracking_no, shipped_at, shipping_fee_paid, order, ledger, policy, now
            )
        self.carrier, self.tracking_no = carrier, tracking_no
        self.shipped_at, self.return_shipping_fee_paid = shipped_at, shipping_fee_paid
        return []

    def record_return_signed(
        self,
        signed_at: datetime,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """parcel.signed, leg return, at T: the refund is due by T + refund_deadline_hours.

        Only an approved return owes a refund: one still undecided (waiting for evidence, in
        review) sets no refund deadline timer. If it is approved after the deadline, the refund
        it then issues reports the breach (`_complete`); a rejection owes nothing.
        """
        require_aware(signed_at, "signed_at")
        if self.return_signed_at is not None:
            return []
        self.return_signed_at = signed_at
        self.refund_due_by = signed_at + timedelta(hours=policy.returns.refund_deadline_hours)
        if not self.is_requested or self.is_final:
            return []
        if self.status == ReturnStatus.APPROVED:
            return self._progress(order, ledger, policy, now)
        return []

    def record_inspection(
        self,
        passed: bool,
        findings: Iterable[str],
        at: datetime,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """return.inspected: a pass releases a waiting refund, a failure rejects the return.

        An inspection after completion (the grace period ran out) has no effect.
        """
        if self.inspection is not None or self.is_final:
            return []
        self.inspection = Inspection(passed=passed, findings=tuple(findings), at=at)
        return self._progress(order, ledger, policy, now)

    def on_timer(
        self,
        kind: str,
        *,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
        due_at: datetime | None = None,
    ) -> list[DomainEvent]:
        """A timer fired. One the request no longer has (or with another `due_at`) is stale."""
        timer = TimerKind(kind)
        active = self.timers.get(timer)
        if active is None or (due_at is not None and due_at != active):
            return []
        del self.timers[timer]
        if timer == TimerKind.SIGNATURE_WAIT:
            if self.status != ReturnStatus.PENDING or self.waiting_for not in _WAITING_FOR_DELIVERY:
                return []
            found = assess(self, order, ledger, policy)
            if found.waiting_for in _WAITING_FOR_DELIVERY:
                rejected = replace(found, status=ReturnStatus.REJECTED, waiting_for=None)
                return self._reject(rejected, order, ledger, policy, now)
            return self._apply(found, order, ledger, policy, now)
        if timer == TimerKind.EVIDENCE_WAIT:
            if self.status != ReturnStatus.PENDING or self.waiting_for != WaitingFor.EVIDENCE:
                return []
            found = assess(self, order, ledger, policy)
            if found.rule == Rule.EVIDENCE_MISSING:
                rejected = replace(found, status=ReturnStatus.REJECTED, waiting_for=None)
                return self._reject(rejected, order, ledger, policy, now)
            return self._apply(found, order, ledger, policy, now)
        if timer == TimerKind.REVIEW_SLA:
            if self.status != ReturnStatus.REVIEW:
                return []
            return self._breach(Sla.RETURN_REVIEW, active, now)
        if timer == TimerKind.INSPECTION_GRACE:
            return self._progress(order, ledger, policy, now, grace_over=True)
        # refund_deadline: the refund (or reshipment) is owed, late and still not issued. A
        # request not approved (a timer stored by an earlier version) owes nothing yet.
        if self.status != ReturnStatus.APPROVED:
            return []
        return self._breach(self.delivery_sla, active, now)

    def cancel(self, at: datetime, *, ledger: OrderLedger) -> list[DomainEvent]:
        """return.cancelled: before completion the case closes; afterwards no effect."""
        require_aware(at, "cancelled_at")
        if self.is_final:
            return []
        self.status, self.rule, self.waiting_for = ReturnStatus.CANCELLED, Rule.CANCELLED, None
        self.cancelled_at = self.decided_at = at
        ledger.release(self.return_id)
        text = compose(ReturnStatus.CANCELLED, Rule.CANCELLED, MessageFacts(kind=self.kind))
        decided = Decided(ReturnStatus.CANCELLED, Rule.CANCELLED, text.zh, text.en)
        return [decided, *self._cancel_timers()]

    # --- transitions ----------------------------------------------------------------------

    def _apply(
        self,
        found: Assessment,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """Enter the assessed state, unless the request is in it already (idempotence)."""
        if self.rule is not None and (found.status, found.rule, found.waiting_for) == (
            self.status,
            self.rule,
            self.waiting_for,
        ):
            return []
        if found.status == ReturnStatus.APPROVED:
            if order is None:
                raise ValueError("approving a return needs its order")
            return self._approve(found.rule, order, ledger, policy, now)
        if found.status == ReturnStatus.REJECTED:
            return self._reject(found, order, ledger, policy, now)
        return self._wait(found, order, policy, now)

    def _wait(
        self, found: Assessment, order: Order | None, policy: Policy, now: datetime
    ) -> list[DomainEvent]:
        rules = policy.returns
        self.status, self.rule, self.waiting_for = found.status, found.rule, found.waiting_for
        self.decided_at = now
        timers: list[DomainEvent] = []
        if found.waiting_for in _WAITING_FOR_DELIVERY:
            hours = rules.signature_wait_hours
            due = self.requested_on() + timedelta(hours=hours)
            timers += self._cancel_timers(TimerKind.EVIDENCE_WAIT, TimerKind.REVIEW_SLA)
            timers += self._set_timer(TimerKind.SIGNATURE_WAIT, due)
        elif found.waiting_for == WaitingFor.EVIDENCE:
            hours = rules.evidence_wait_hours
            due = self.timers.get(TimerKind.EVIDENCE_WAIT) or now + timedelta(hours=hours)
            timers += self._cancel_timers(TimerKind.SIGNATURE_WAIT, TimerKind.REVIEW_SLA)
            timers += self._set_timer(TimerKind.EVIDENCE_WAIT, due)
        else:
            hours = rules.review_sla_working_hours
            due = self.timers.get(TimerKind.REVIEW_SLA) or add_working_hours(
                now, hours, policy.zone, rules.working_hours
            )
            timers += self._cancel_timers(TimerKind.SIGNATURE_WAIT, TimerKind.EVIDENCE_WAIT)
            timers += self._set_timer(TimerKind.REVIEW_SLA, due)
        facts = replace(self._facts(found, order, policy), wait_until=due, wait_hours=hours)
        return [self._decided(found.status, found.rule, facts), *timers]

    def _approve(
        self, rule: Rule, order: Order, ledger: OrderLedger, policy: Policy, now: datetime
    ) -> list[DomainEvent]:
        if self.inspection is not None and not self.inspection.passed:
            failed = Assessment(ReturnStatus.REJECTED, Rule.INSPECTION_FAILED)
            return self._reject(failed, order, ledger, policy, now)
        self.status, self.rule, self.waiting_for = ReturnStatus.APPROVED, rule, None
        self.decided_at = now
        self.return_shipping_payer = return_shipping_payer(self.reason, order)
        ledger.reserve(self.return_id, self.lines)
        estimate = calculate_refund(
            order, ledger, self, policy, return_shipping_fee_paid=self.return_shipping_fee_paid or 0
        )
        facts = replace(self._facts(None, order, policy), amount=estimate.amount)
        events: list[DomainEvent] = [
            self._decided(ReturnStatus.APPROVED, rule, facts, estimate=estimate)
        ]
        events += self._cancel_timers(
            TimerKind.SIGNATURE_WAIT, TimerKind.EVIDENCE_WAIT, TimerKind.REVIEW_SLA
        )
        events += self._progress(order, ledger, policy, now)
        return events

    def _reject(
        self,
        found: Assessment,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        self.status, self.rule, self.waiting_for = ReturnStatus.REJECTED, found.rule, None
        self.decided_at = now
        ledger.release(self.return_id)
        facts = self._facts(found, order, policy)
        if found.rule in (Rule.UNKNOWN_ORDER, Rule.NOT_DELIVERED):
            facts = replace(facts, wait_hours=policy.returns.signature_wait_hours)
        elif found.rule == Rule.EVIDENCE_MISSING:
            facts = replace(facts, wait_hours=policy.returns.evidence_wait_hours)
        elif found.rule == Rule.INSPECTION_FAILED and self.inspection is not None:
            facts = replace(facts, conditions=self.inspection.findings)
        return [self._decided(ReturnStatus.REJECTED, found.rule, facts), *self._cancel_timers()]

    def _progress(
        self,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
        *,
        grace_over: bool = False,
    ) -> list[DomainEvent]:
        """An approved return moves on once its parcel is signed (and inspected, if needed)."""
        if self.status != ReturnStatus.APPROVED:
            return []
        if self.inspection is not None and not self.inspection.passed:
            failed = Assessment(ReturnStatus.REJECTED, Rule.INSPECTION_FAILED)
            return self._reject(failed, order, ledger, policy, now)
        signed_at = self.return_signed_at
        if signed_at is None:
            return []
        if order is None:
            raise ValueError("completing a return needs its order")
        if self.inspection is None and needs_inspection(order, self.lines, policy):
            grace_end = signed_at + timedelta(hours=policy.returns.inspection_grace_hours)
            if not grace_over and now < grace_end:
                return self._set_timer(TimerKind.INSPECTION_GRACE, grace_end)
        return self._complete(order, ledger, policy, now)

    def _complete(
        self, order: Order, ledger: OrderLedger, policy: Policy, now: datetime
    ) -> list[DomainEvent]:
        due_by = self.refund_due_by
        assert due_by is not None and self.rule is not None
        events: list[DomainEvent] = []
        # The ledger already holding this return means it was refunded: never twice.
        if not ledger.is_settled(self.return_id):
            calculation = calculate_refund(
                order,
                ledger,
                self,
                policy,
                return_shipping_fee_paid=self.return_shipping_fee_paid or 0,
            )
            ledger.settle(self.return_id, calculation)
            if self.kind == ReturnKind.EXCHANGE:
                events.append(ReshipmentDue(dict(self.lines), due_by, now))
            if self.kind == ReturnKind.REFUND or calculation.amount > 0:
                # A seller-fault exchange still reimburses the return freight.
                self.refund = calculation
                events.append(RefundDue(calculation, due_by, now))
            facts = replace(
                self._facts(None, order, policy),
                amount=calculation.amount,
                return_shipping=calculation.return_shipping,
            )
            events.append(self._decided(ReturnStatus.COMPLETED, self.rule, facts))
            # A refund requested after due_by is the refund ledger's breach to report when it
            # issues it (SPEC 4.11); a late replacement is this service's.
            if now > due_by and self.kind == ReturnKind.EXCHANGE:
                events += self._breach(Sla.RESHIPMENT, due_by, now)
        ledger.release(self.return_id)
        self.status, self.waiting_for = ReturnStatus.COMPLETED, None
        self.completed_at = self.decided_at = now
        events += self._cancel_timers()
        return events

    def _reimburse_late_freight(
        self,
        carrier: str,
        tracking_no: str,
        shipped_at: datetime,
        fee_paid: int,
        order: Order | None,
        ledger: OrderLedger,
        policy: Policy,
        now: datetime,
    ) -> list[DomainEvent]:
        """Freight learnt after completion: on seller fault, reimbursed once, on its own.

        Only when completion did not know the freight (so the main refund holds none); the
        first return.shipped after completion counts, like the first signature. A no-reason
        return's freight is the buyer's; a rejected or cancelled return refunds nothing.
        """
        if (
            self.status != ReturnStatus.COMPLETED
            or self.return_shipping_payer != Payer.MERCHANT
            or self.return_shipping_fee_paid is not None
        ):
            return []
        if order is None:
            raise ValueError("reimbursing return freight needs its order")
        self.carrier, self.tracking_no = carrier, tracking_no
        self.shipped_at, self.return_shipping_fee_paid = shipped_at, fee_paid
        calculation = calculate_return_shipping_refund(
            order, self, policy, return_shipping_fee_paid=fee_paid
        )
        # The ledger guards too, against a stale aggregate: never reimbursed twice.
        if calculation.amount == 0 or not ledger.settle_return_shipping(
            self.return_id, calculation.amount
        ):
            return []
        self.return_shipping_refund = calculation
        # Issued at once: due by the return's refund deadline, or, when that has passed, a
        # fresh one; the freight was late to be known, not the refund.
        due_by = self.refund_due_by
        if due_by is None or due_by <= now:
            due_by = now + timedelta(hours=policy.returns.refund_deadline_hours)
        return [RefundDue(calculation, due_by, now, supplementary=True)]

    # --- helpers --------------------------------------------------------------------------

    def _set_timer(self, kind: TimerKind, due_at: datetime) -> list[DomainEvent]:
        """Set (or move) this request's one timer of `kind`; the same timer again is no event."""
        if self.timers.get(kind) == due_at:
            return []
        self.timers[kind] = due_at
        return [TimerSet(kind, due_at)]

    def _cancel_timers(self, *kinds: TimerKind) -> list[DomainEvent]:
        """Cancel the given pending timers, or all of them."""
        chosen = [kind for kind in (kinds or tuple(TimerKind)) if kind in self.timers]
        for kind in chosen:
            del self.timers[kind]
        return [TimerCancelled(kind) for kind in chosen]

    def _breach(self, sla: Sla, due_at: datetime, now: datetime) -> list[DomainEvent]:
        if sla in self.breaches_reported:
            return []
        self.breaches_reported.add(sla)
        return [SlaBreached(sla, due_at, now)]

    def _facts(self, found: Assessment | None, order: Order | None, policy: Policy) -> MessageFacts:
        rules = policy.returns
        about: tuple[str, ...] = () if found is None else found.lines
        titles = tuple(
            order.line(line_id).title if order is not None and order.has_line(line_id) else line_id
            for line_id in about
        )
        return MessageFacts(
            kind=self.kind,
            zone=policy.zone,
            currency=order.currency if order is not None else "CNY",
            lines=titles,
            other_lines=bool(about) and bool(set(self.lines) - set(about)),
            categories=() if found is None else found.categories,
            conditions=() if found is None else found.conditions,
            window_deadline=None if found is None else found.deadline,
            quality_deadline=None if found is None else found.quality_deadline,
            no_reason_days=rules.no_reason_days,
            quality_claim_days=rules.quality_claim_days,
            payer=self.return_shipping_payer,
            return_shipping_cap=(
                None if order is None else return_shipping_cap(rules, order.currency)
            ),
            refund_deadline_hours=rules.refund_deadline_hours,
        )

    def _decided(
        self,
        status: ReturnStatus,
        rule: Rule,
        facts: MessageFacts,
        *,
        estimate: RefundCalculation | None = None,
    ) -> Decided:
        text = compose(status, rule, facts)
        return Decided(
            status=status,
            rule=rule,
            message=text.zh,
            message_en=text.en,
            waiting_for=self.waiting_for,
            return_shipping_payer=(
                self.return_shipping_payer if status == ReturnStatus.APPROVED else None
            ),
            refund_estimate=estimate,
        )

    # --- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "kind": self.kind.value,
            "reason": self.reason,
            "lines": dict(self.lines),
            "condition": list(self.condition),
            "evidence_urls": list(self.evidence_urls),
            "requested_at": instant_to_json(self.requested_at),
            "status": self.status.value,
            "waiting_for": None if self.waiting_for is None else self.waiting_for.value,
            "rule": None if self.rule is None else self.rule.value,
            "decided_at": instant_to_json(self.decided_at),
            "return_shipping_payer": (
                None if self.return_shipping_payer is None else self.return_shipping_payer.value
            ),
            "carrier": self.carrier,
            "tracking_no": self.tracking_no,
            "return_shipping_fee_paid": self.return_shipping_fee_paid,
            "shipped_at": instant_to_json(self.shipped_at),
            "return_signed_at": instant_to_json(self.return_signed_at),
            "refund_due_by": instant_to_json(self.refund_due_by),
            "inspection": None if self.inspection is None else self.inspection.to_dict(),
            "reviewed_by": self.reviewed_by,
            "review_note": self.review_note,
            "reviewed_at": instant_to_json(self.reviewed_at),
            "refund": None if self.refund is None else self.refund.to_dict(),
            "return_shipping_refund": (
                None
                if self.return_shipping_refund is None
                else self.return_shipping_refund.to_dict()
            ),
            "completed_at": instant_to_json(self.completed_at),
            "cancelled_at": instant_to_json(self.cancelled_at),
            "timers": {kind.value: instant_to_json(due) for kind, due in self.timers.items()},
            "breaches_reported": sorted(sla.value for sla in self.breaches_reported),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReturnRequest:
        waiting_for = data.get("waiting_for")
        rule = data.get("rule")
        payer = data.get("return_shipping_payer")
        inspection = data.get("inspection")
        refund = data.get("refund")
        freight = data.get("return_shipping_refund")
        fee = data.get("return_shipping_fee_paid")
        return cls(
            return_id=data["return_id"],
            order_id=data["order_id"],
            customer_id=data.get("customer_id", ""),
            kind=ReturnKind(data.get("kind", ReturnKind.REFUND.value)),
            reason=data.get("reason", ""),
            lines=_units(data.get("lines")),
            condition=list(data.get("condition", [])),
            evidence_urls=list(data.get("evidence_urls", [])),
            requested_at=instant_from_json(data.get("requested_at")),
            status=ReturnStatus(data.get("status", ReturnStatus.PENDING.value)),
            waiting_for=None if waiting_for is None else WaitingFor(waiting_for),
            rule=None if rule is None else Rule(rule),
            decided_at=instant_from_json(data.get("decided_at")),
            return_shipping_payer=None if payer is None else Payer(payer),
            carrier=data.get("carrier"),
            tracking_no=data.get("tracking_no"),
            return_shipping_fee_paid=None if fee is None else int(fee),
            shipped_at=instant_from_json(data.get("shipped_at")),
            return_signed_at=instant_from_json(data.get("return_signed_at")),
            refund_due_by=instant_from_json(data.get("refund_due_by")),
            inspection=None if inspection is None else Inspection.from_dict(inspection),
            reviewed_by=data.get("reviewed_by"),
            review_note=data.get("review_note"),
            reviewed_at=instant_from_json(data.get("reviewed_at")),
            refund=None if refund is None else RefundCalculation.from_dict(refund),
            return_shipping_refund=(
                None if freight is None else RefundCalculation.from_dict(freight)
            ),
            completed_at=instant_from_json(data.get("completed_at")),
            cancelled_at=instant_from_json(data.get("cancelled_at")),
            timers={TimerKind(k): _instant(v) for k, v in data.get("timers", {}).items()},
            breaches_reported={Sla(s) for s in data.get("breaches_reported", [])},
        )
