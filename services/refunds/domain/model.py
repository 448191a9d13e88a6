"""The refund ledger of one order (SPEC 4.11): every case's refund, capped and split.

Pure: no I/O, no clock. The service layer loads an `OrderLedger`, calls one method with the
instant, stores it and turns the returned events into messages, all in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.refunds.domain.events import (
    BreachKind,
    DomainEvent,
    PayoutFailed,
    RefundIssued,
    RefundSettled,
    RefundSlaBreached,
    RefusalReason,
    RequestRefused,
    RequestRepeated,
    StopWaiting,
    WaitForOrder,
)
from services.refunds.domain.refund import IssuedRefund, PayoutFailure
from services.refunds.domain.split import cumulative_split, proportional_split
from shared.contracts.ids import reissue_refund_id
from shared.documents import DocumentType
from shared.refusal import Refusal

# Breakdown kinds (SPEC section 3). Goods and the deductions on them are one capped group,
# the outbound fee another; return freight and compensation come on top of both.
GOODS = "goods"
OUTBOUND_SHIPPING = "outbound_shipping"
RETURN_SHIPPING = "return_shipping"
FREE_SHIPPING_DEDUCTION = "free_shipping_deduction"
GIFT_CHARGE = "gift_charge"
COMPENSATION = "compensation"
ALREADY_REFUNDED = "already_refunded"
GOODS_KINDS = frozenset({GOODS, FREE_SHIPPING_DEDUCTION, GIFT_CHARGE})

# A request for an order the ledger has not seen paid waits for it; past this it is alerted
# on (returns and complaints ask only about orders they saw paid, so the ledger lags behind).
ORDER_WAIT_ALERT = timedelta(minutes=15)
# A re-issue to the payout method is a new payout instruction, issued at once: its deadline.
REISSUE_DEADLINE = timedelta(hours=24)
REISSUED_BY = "ledger"


class UnknownRefund(Refusal):
    """A payout result for a refund this order's ledger never issued."""

    def __init__(self, detail: str) -> None:
        super().__init__("unknown_refund", detail)


class PayoutMismatch(Refusal):
    """A payout failure that names a method or amount the refund did not pay."""

    def __init__(self, detail: str) -> None:
        super().__init__("payout_mismatch", detail)


@dataclass(frozen=True)
class OrderFacts:
    """What the ledger keeps of `order.paid`: amounts and ids, never the buyer's contact."""

    order_id: str
    customer_id: str
    currency: str
    paid_at: datetime
    goods_total: int
    shipping_fee_paid: int
    # (method, amount charged), one entry per method in the order's own order.
    payments: tuple[tuple[str, int], ...]
    # (line_id, quantity, paid_amount), for the ledger's own account of the order.
    lines: tuple[tuple[str, int, int], ...] = ()

    @classmethod
    def of(
        cls,
        *,
        order_id: str,
        customer_id: str,
        currency: str,
        paid_at: datetime,
        shipping_fee_paid: int,
        payments: Iterable[tuple[str, int]],
        lines: Iterable[tuple[str, int, int]],
    ) -> OrderFacts:
        merged: dict[str, int] = {}
        for method, amount in payments:
            merged[method] = merged.get(method, 0) + amount
        lines = tuple(lines)
        return cls(
            order_id=order_id,
            customer_id=customer_id,
            currency=currency,
            paid_at=paid_at,
            goods_total=sum(paid for _, _, paid in lines),
            shipping_fee_paid=shipping_fee_paid,
            payments=tuple(merged.items()),
            lines=lines,
        )


@dataclass(frozen=True)
class RefundRequest:
    """What a case asks for (`refund.requested`), before the order-level cap."""

    refund_id: str
    order_id: str
    customer_id: str
    case_type: str
    case_id: str
    amount: int
    currency: str
    breakdown: tuple[tuple[str, int], ...]
    due_by: datetime
    requested_at: datetime
    requested_by: str
    return_shipping_payer: str | None = None

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("a refund request is never negative")
        if sum(amount for _, amount in self.breakdown) != self.amount:
            raise ValueError("a request's breakdown must sum to its amount")
        if any(kind == ALREADY_REFUNDED for kind, _ in self.breakdown):
            raise ValueError("already_refunded is the ledger's own kind")

    @property
    def fingerprint(self) -> str:
        """What makes two requests the same request: everything but when it was sent. `due_by`
        counts as an instant: the same deadline written with another offset is the same."""
        return self._fingerprint(self.due_by.astimezone(UTC).isoformat())

    def same_as(self, stored_print: str) -> bool:
        """Whether a stored fingerprint is this request's: the current one, or the one stored
        before `due_by` counted as an instant (its text as written; a replay writes it alike)."""
        return stored_print in (self.fingerprint, self._fingerprint(self.due_by.isoformat()))

    def _fingerprint(self, due_by: str) -> str:
        parts = (
            self.refund_id,
            self.order_id,
            self.customer_id,
            self.case_type,
            self.case_id,
            str(self.amount),
            self.currency,
            ";".join(f"{kind}={amount}" for kind, amount in self.breakdown),
            due_by,
            self.requested_by,
            self.return_shipping_payer or "",
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass
class OrderLedger:
    """One order: what it was paid (once `order.paid` is seen), its refunds, the requests that
    wait for the order. Serialised per order by the service's lock on the order id."""

    order_id: str
    facts: OrderFacts | None = None
    refunds: dict[str, IssuedRefund] = field(default_factory=dict)
    waiting: dict[str, RefundRequest] = field(default_factory=dict)

    # --- what the order's refunds gave so far ----------------------------------------------

    @property
    def goods_given(self) -> int:
        return sum(refund.goods_given for refund in self.refunds.values())

    @property
    def outbound_given(self) -> int:
        return sum(refund.outbound_given for refund in self.refunds.values())

    def method_given(self) -> dict[str, int]:
        given: dict[str, int] = {}
        for refund in self.refunds.values():
            for method, amount in refund.to_methods.items():
                given[method] = given.get(method, 0) + amount
        return given

    @property
    def overflow_given(self) -> int:
        return sum(refund.overflow for refund in self.refunds.values())

    # --- inputs ------------------------------------------------------------------------------

    def record_paid(
        self,
        facts: OrderFacts,
        overflow_method: str,
        now: datetime,
        *,
        issued_elsewhere: Collection[str] = (),
    ) -> list[DomainEvent]:
        """The first `order.paid` counts; the requests that waited for it are issued now, in the
        order they came.

        `issued_elsewhere`: refund_ids of waiting requests that another order issued meanwhile
        (a requester's bug): refused, as `request` refuses them."""

        if self.facts is not None:
            return []
        self.facts = facts
        events: list[DomainEvent] = []
        for request in list(self.waiting.values()):
            del self.waiting[request.refund_id]
            events.append(StopWaiting(request.refund_id))
            if request.refund_id in issued_elsewhere:
                events.append(RequestRefused(request.refund_id, RefusalReason.OTHER_ORDER))
                continue
            events += self._issue(request, overflow_method, now)
        return events

    def request(
        self,
        request: RefundRequest,
        overflow_method: str,
        now: datetime,
        *,
        issued_for_other_order: bool = False,
    ) -> list[DomainEvent]:
        """A case asks for a refund: issue it (capped and split), or wait for the order.

        `issued_for_other_order`: the refund_id is another order's already (a requester's bug):
        refused, never paid twice under one id."""
        if issued_for_other_order:
            return [RequestRefused(request.refund_id, RefusalReason.OTHER_ORDER)]

        known = self.refunds.get(request.refund_id)
        known_print = known.fingerprint if known else None
        if known_print is None and request.refund_id in self.waiting:
            known_print = self.waiting[request.refund_id].fingerprint
        if known_print is not None:
            if request.same_as(known_print):
                return [RequestRepeated(request.refund_id)]
            return [RequestRefused(request.refund_id, RefusalReason.CONFLICTING_REQUEST)]
        if self.facts is None:
            self.waiting[request.refund_id] = request
            return [WaitForOrder(request.refund_id, now + ORDER_WAIT_ALERT)]
        return self._issue(request, overflow_method, now)

    def settle(self, refund_id: str, settled_at: datetime) -> list[DomainEvent]:
        """Finance paid it out: the refund is closed (a repeated settlement changes nothing)."""

        refund = self._refund(refund_id)
        if refund.settled_at is not None:
            return []
        refund.settled_at = settled_at
        return [RefundSettled(refund)]

    def fail(
        self,
        refund_id: str,
        method: str,
        amount: int,
        reason: str,
        failed_at: datetime,
        overflow_method: str,
        now: datetime,
    ) -> list[DomainEvent]:
        """Finance could not pay a part: re-issue it once to the payout method; a re-issue that
        fails too is left for a person (`sla.breached`)."""

        refund = self._refund(refund_id)
        if amount <= 0 or amount > refund.paid_to(method):
            raise PayoutMismatch(
                f"refund {refund_id} paid {refund.paid_to(method)} to {method}, not {amount}"
            )
        if refund.failed_on(method):
            return []  # the same part reported again: it is handled already
        refund.failures.append(PayoutFailure(method, amount, reason, failed_at))
        if refund.reissue_of is not None:
            refund.needs_person = True
            events: list[DomainEvent] = [PayoutFailed(refund, method, amount, reissued=False)]
            if BreachKind.PAYOUT_FAILED_TWICE not in refund.breaches:
                refund.breaches.add(BreachKind.PAYOUT_FAILED_TWICE)
                events.append(RefundSlaBreached(refund, BreachKind.PAYOUT_FAILED_TWICE, now))
            return events
        reissue = IssuedRefund(
            refund_id=reissue_refund_id(refund_id, method),
            order_id=refund.order_id,
            customer_id=refund.customer_id,
            case_type=refund.case_type,
            case_id=refund.case_id,
            currency=refund.currency,
            amount=amount,
            # The failed money was for what the refund paid: its positive kinds, pro rata.
            breakdown=tuple(
                proportional_split(amount, [(k, a) for k, a in refund.breakdown if a > 0])
            ),
            method_shares=(),
            overflow=amount,
            overflow_method=overflow_method,
            requested=amount,
            cut=0,
            goods_given=0,
            outbound_given=0,
            due_by=now + REISSUE_DEADLINE,
            issued_at=now,
            requested_by=REISSUED_BY,
            fingerprint=f"reissue:{refund_id}:{method}",
            return_shipping_payer=refund.return_shipping_payer,
            reissue_of=refund_id,
        )
        self.refunds[reissue.refund_id] = reissue
        return [PayoutFailed(refund, method, amount, reissued=True), RefundIssued(reissue)]

    # --- the rules ---------------------------------------------------------------------------

    def _refund(self, refund_id: str) -> IssuedRefund:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise UnknownRefund(f"refund {refund_id} is not one of order {self.order_id}'s")
        return refund

    def _issue(
        self, request: RefundRequest, overflow_method: str, now: datetime
    ) -> list[DomainEvent]:

        facts = self.facts
        assert facts is not None
        if request.currency != facts.currency:
            return [RequestRefused(request.refund_id, RefusalReason.CURRENCY_MISMATCH)]
        if request.customer_id != facts.customer_id:
            # What the methods cannot take back (and a failed part) goes to the buyer's payout
            # method: never to another buyer's.
            return [RequestRefused(request.refund_id, RefusalReason.CUSTOMER_MISMATCH)]
        cap = cap_request(
            request,
            goods_room=facts.goods_total - self.goods_given,
            outbound_room=facts.shipping_fee_paid - self.outbound_given,
        )
        to_methods, overflow = cumulative_split(cap.amount, facts.payments, self.method_given())
        breakdown = request.breakdown + (((ALREADY_REFUNDED, -cap.cut),) if cap.cut else ())
        refund = IssuedRefund(
            refund_id=request.refund_id,
            order_id=self.order_id,
            customer_id=request.customer_id,
            case_type=request.case_type,
            case_id=request.case_id,
            currency=facts.currency,
            amount=cap.amount,
            breakdown=breakdown,
            method_shares=tuple(
                (method, to_methods.get(method, 0)) for method, _ in facts.payments
            ),
            overflow=overflow,
            overflow_method=overflow_method,
            requested=request.amount,
            cut=cap.cut,
            goods_given=cap.goods_given,
            outbound_given=cap.outbound_given,
            due_by=request.due_by,
            issued_at=now,
            requested_by=request.requested_by,
            fingerprint=request.fingerprint,
            return_shipping_payer=request.return_shipping_payer,
            # Nothing to pay out (cut to nothing, or asked for nothing): closed at once.
            settled_at=now if cap.amount == 0 else None,
        )
        self.refunds[refund.refund_id] = refund
        events: list[DomainEvent] = [RefundIssued(refund)]
        if not refund.on_time:
            refund.breaches.add(BreachKind.LATE)
            events.append(RefundSlaBreached(refund, BreachKind.LATE, now))
        return events

    # --- storage -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return ORDER_LEDGER_DOCUMENT.dump(self._stored())

    def to_json(self) -> str:
        return ORDER_LEDGER_DOCUMENT.dump_json(self._stored())

    def _stored(self) -> _StoredLedger:
        return _StoredLedger(
            self.order_id, self.facts, list(self.refunds.values()), list(self.waiting.values())
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderLedger:
        return cls._of(ORDER_LEDGER_DOCUMENT.load(data))

    @classmethod
    def from_json(cls, text: str) -> OrderLedger:
        return cls._of(ORDER_LEDGER_DOCUMENT.load_json(text))

    @classmethod
    def _of(cls, stored: _StoredLedger) -> OrderLedger:
        return cls(
            order_id=stored.order_id,
            facts=stored.facts,
            refunds={refund.refund_id: refund for refund in stored.refunds},
            waiting={request.refund_id: request for request in stored.waiting},
        )


@dataclass
class _StoredLedger:
    """The ledger as stored: refunds and waiting requests as lists, in the order they came
    (a JSONB object would not keep the order of its keys)."""

    order_id: str
    facts: OrderFacts | None
    refunds: list[IssuedRefund]
    waiting: list[RefundRequest]


def _v1_method_shares(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 stored each refund's `payments` (one line per method, the payout method's
    share merged in) beside `to_methods` (a JSON object, its order lost) and `overflow`.
    Version 2 stores `method_shares`, what the refund gave each of the order's methods in the
    order's order (a re-issue: none), and derives the payments from it and the overflow."""
    facts = data.get("facts")
    methods = [method for method, _ in facts["payments"]] if facts else []
    refunds = []
    for refund in data.get("refunds", []):
        upcast = {k: v for k, v in refund.items() if k not in ("payments", "to_methods")}
        given = refund["to_methods"]
        upcast["method_shares"] = (
            [] if refund.get("reissue_of") else [[m, given.get(m, 0)] for m in methods]
        )
        refunds.append(upcast)
    return {**data, "refunds": refunds}


ORDER_LEDGER_DOCUMENT = DocumentType(
    "refunds.order_ledger", _StoredLedger, version=2, upcasters={1: _v1_method_shares}
)


@dataclass(frozen=True)
class Cap:
    """A request after the order-level cap: `amount` = requested − `cut`."""

    amount: int
    cut: int
    goods_given: int
    outbound_given: int


def cap_request(request: RefundRequest, *, goods_room: int, outbound_room: int) -> Cap:
    """SPEC 4.7 and 4.11: what all of an order's refunds give back for goods (net of the
    deductions on them) never exceeds the goods paid, nor for outbound shipping the fee paid;
    return freight and compensation come on top. The cut never takes a refund below 0."""
    goods = outbound = 0
    for kind, amount in request.breakdown:
        if kind in GOODS_KINDS:
            goods += amount
        elif kind == OUTBOUND_SHIPPING:
            outbound += amount
    outbound_excess = max(0, outbound - max(outbound_room, 0))
    goods_excess = max(0, goods - max(goods_room, 0))
    cut = min(outbound_excess + goods_excess, request.amount)
    outbound_given = outbound - outbound_excess
    return Cap(
        amount=request.amount - cut,
        cut=cut,
        goods_given=goods + outbound - cut - outbound_given,
        outbound_given=outbound_given,
    )
