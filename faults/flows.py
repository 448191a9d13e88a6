"""The flows the fault run publishes, with what each must produce, computed here independently
of the services (default policy, integer minor units).

Return flows (the returns service):

=====================  =====================================================================
kind                   events and expected outcome
=====================  =====================================================================
full                   1 line (apparel), every unit returned for no reason: refund = paid
partial                n units, k < n returned: refund = floor(paid * k / n)
two_lines              2 lines, one return per line: floor(p1 * k1 / n1) and floor(p2 * k2 / n2)
seller_fault           quality_issue with evidence, every unit, return freight F, outbound fee S:
                       refund = paid + S + min(F, 3000); `return.shipped` is published before
                       `return.requested` (same topic and key, kept in that order)
electronics_grace      electronics, no inspection; the return leg is signed T = now - 20 h + d,
                       so the inspection grace (20 h) ends d seconds into the run: the refund
                       (= paid) comes from the `inspection_grace` timer
electronics_inspected  as above, with a passed `return.inspected`: refund = paid
electronics_failed     signed 1 h ago, failed inspection: rejected `inspection_failed`, no refund
excluded               fresh food, no reason: rejected `excluded_category`, no refund
orphan                 only a `return.requested` of 50 h ago, for an order never paid: its
                       signature wait (48 h) is over when it is processed, so the already due
                       `signature_wait` timer rejects it (`unknown_order`), no refund
after_complaint        seller_fault with an outbound fee S > 0, and an upheld logistics_delay
                       complaint on the same order (refund S, a 500 coupon): the refund ledger
                       refunds S once, to whichever case asks first; the other is cut by S
                       (`already_refunded`). Together: paid + S + min(F, 3000)
=====================  =====================================================================

Every return flow but `orphan` has `order.paid`, an on-time `order.shipped`, the outbound
`parcel.signed` and `return.requested` (and the return-leg `parcel.signed` where the parcel
comes back).

Complaint flows (the complaints service):

=============  ============================================================================
late_timer     paid at now - 72 h - 5 min + d, never shipped: the `late_shipment` timer (due
               the catch-up grace after the ship-by) fires d seconds into the run:
               refund = min(goods * 5 %, 3000), case late_shipment
late_shipped   paid 5 days ago, shipped 1 day ago (late): the same refund, at once
coupon         upheld service_attitude (500) / wrong_item (1000) / missing_item (1000) /
               quality_issue (5 % of goods, 500..5000) complaint: one coupon
logistics      upheld logistics_delay with an outbound fee S: refund = S (case complaint)
               and a 500 coupon
not_upheld     no coupon, no refund
=============  ============================================================================

Order of publication: events of every flow are spread over the publishing period and
interleaved with other flows' (so events of one order on different topics come in any order).
Within one topic and key (one partition) the order is shuffled too, which the rules allow
(decisions.md: facts that overtake a request are remembered; any of order.paid / shipped may
come first; a complaint resolved before it was opened is kept), with these exceptions kept in
publication order:

* seller_fault: `return.shipped` before `return.requested` (the freight must be known before the
  refund completes; the refund otherwise completes without it, which is the documented rule
  but not a computable expectation);
* outbound `parcel.signed` before the return-leg `parcel.signed` (a parcel comes back after it
  was delivered).

Duplicates: a share of the events is published a second time (same id and bytes) at a random
later position, sometimes in the same fetched batch, sometimes long after. Poison records
(malformed JSON, a negative amount, an unknown type) are mixed in, and hostile ones on the keys
of real orders (a record over 256 KiB, an internal `refund.issued` on the platform's `orders`
topic, U+0000 and an unpaired surrogate, a deadline past year 9999, a flood of control
characters; a 100 000-character key on its own; see POISON_KINDS); each consuming service must
dead-letter them, and the flows whose keys they share must still come out as expected.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.catchup import CATCH_UP_GRACE
from shared.contracts.ids import coupon_id, refund_id

from . import events as ev

H = timedelta(hours=1)
DAY = timedelta(days=1)

RETURN_KINDS: dict[str, float] = {
    "full": 0.22,
    "after_complaint": 0.04,
    "orphan": 0.04,
    "partial": 0.20,
    "two_lines": 0.10,
    "seller_fault": 0.10,
    "electronics_grace": 0.12,
    "electronics_inspected": 0.06,
    "electronics_failed": 0.06,
    "excluded": 0.06,
}
COMPLAINT_KINDS: dict[str, float] = {
    "late_timer": 0.15,
    "late_shipped": 0.15,
    "coupon": 0.45,
    "logistics": 0.15,
    "not_upheld": 0.10,
}
NO_REASONS = ("no_reason", "dislike", "size_fit", "changed_mind")
RETURN_SHIPPING_CAP = 3000  # policy default
INSPECTION_GRACE = 20 * H  # policy default


def late_shipment_amount(goods: int) -> int:
    return min(goods * 500 // 10_000, 3000)


@dataclass(frozen=True)
class ExpectedRefund:
    order_id: str
    case_type: str
    case_id: str
    amount: int
    flow: str
    # Other amounts that are right as well (the order-level cap cuts whichever case asks last).
    alternatives: tuple[int, ...] = ()

    def accepts(self, amount: int) -> bool:
        return amount == self.amount or amount in self.alternatives


@dataclass
class Flow:
    kind: str
    order_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    # (i, j): events[i] must be published before events[j] (same topic and key).
    before: list[tuple[int, int]] = field(default_factory=list)
    refunds: list[ExpectedRefund] = field(default_factory=list)
    coupons: dict[str, int] = field(default_factory=dict)  # coupon_id -> value
    returns: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (status, rule)
    no_refund: list[str] = field(default_factory=list)  # refund ids that must not exist
    # (schema, kind, ref) of the timer its outcome depends on (due during the run or already)
    timer: tuple[str, str, str] | None = None
    early: bool = False  # published first (its timer must be set before it is due)
    # (refund ids, total): refunds of one order whose amounts must add up to the total
    totals: list[tuple[tuple[str, ...], int]] = field(default_factory=list)


@dataclass
class Message:
    """One Kafka record to publish."""

    topic: str
    key: str
    value: bytes
    event_id: str | None  # None for poison without a readable id
    event_type: str | None
    position: float
    duplicate: bool = False
    poison_reason: str | None = None  # the dead-letter reason every consumer must give


class Generator:
    def __init__(self, run_id: str, now: datetime, rng: random.Random) -> None:
        self.run = run_id
        self.now = now
        self.rng = rng
        self._n = 0

    def _id(self, flow: str, what: str) -> str:
        self._n += 1
        return f"{self.run}-{flow}-{what}-{self._n}"

    # --- returns --------------------------------------------------------------------------

    def return_flow(self, n: int, kind: str, timer_window: tuple[float, float]) -> Flow:
        rng, now = self.rng, self.now
        fid = f"r{n}"
        order_id = f"{self.run}-O{n}"
        customer = f"{self.run}-C{n}"
        flow = Flow(kind, order_id)
        category = {"excluded": "fresh_perishable"}.get(
            kind, "electronics" if kind.startswith("electronics") else "apparel"
        )
        quantity = rng.randint(2, 5) if kind == "partial" else rng.randint(1, 3)
        paid = rng.randint(990, 59_900)
        lines = [ev.line("L1", category=category, quantity=quantity, paid_amount=paid)]
        shipping_fee = 0
        if kind == "two_lines":
            quantity2, paid2 = rng.randint(1, 4), rng.randint(500, 30_000)
            lines.append(ev.line("L2", category="home", quantity=quantity2, paid_amount=paid2))
        if kind == "seller_fault":
            shipping_fee = rng.choice((0, 800, 1200))
        if kind == "after_complaint":
            shipping_fee = rng.choice((800, 1200))

        def add(event: dict[str, Any]) -> int:
            flow.events.append(event)
            return len(flow.events) - 1

        add(
            ev.order_paid(
                order_id,
                customer,
                id=self._id(fid, "paid"),
                at=now - 60 * H,
                lines=lines,
                shipping_fee_paid=shipping_fee,
            )
        )
        add(ev.order_shipped(order_id, id=self._id(fid, "shipped"), at=now - 56 * H))
        outbound = add(ev.outbound_signed(order_id, id=self._id(fid, "out"), at=now - 40 * H))

        def request(
            return_id: str,
            units: dict[str, int],
            *,
            reason: str | None = None,
            evidence: tuple[str, ...] = (),
        ) -> int:
            return add(
                ev.return_requested(
                    order_id,
                    return_id,
                    customer,
                    id=self._id(fid, "req"),
                    at=now - 20 * H,
                    lines=units,
                    reason=reason or rng.choice(NO_REASONS),
                    condition=rng.choice(((), ("opened_for_inspection",), ("trial_use",))),
                    evidence_urls=evidence,
                )
            )

        def signed(return_id: str, at: datetime) -> None:
            index = add(ev.return_signed(order_id, return_id, id=self._id(fid, "back"), at=at))
            flow.before.append((outbound, index))

        def refund(return_id: str, amount: int) -> None:
            flow.refunds.append(ExpectedRefund(order_id, "return", return_id, amount, kind))
            flow.returns[return_id] = ("completed", "eligible")

        r1 = f"{order_id}-R1"
        if kind in ("full", "partial"):
            units = quantity if kind == "full" else rng.randint(1, quantity - 1)
            request(r1, {"L1": units})
            signed(r1, now - 2 * H)
            refund(r1, paid * units // quantity)
        elif kind == "two_lines":
            r2 = f"{order_id}-R2"
            k1, k2 = rng.randint(1, quantity), rng.randint(1, quantity2)
            request(r1, {"L1": k1})
            request(r2, {"L2": k2})
            signed(r1, now - 3 * H)
            signed(r2, now - 2 * H)
            refund(r1, paid * k1 // quantity)
            refund(r2, paid2 * k2 // quantity2)
        elif kind in ("seller_fault", "after_complaint"):
            fee = rng.choice((0, 1200, 2800, 4500))
            shipped = add(
                ev.return_shipped(order_id, r1, id=self._id(fid, "rship"), at=now - 19 * H, fee=fee)
            )
            req = request(
                r1,
                {"L1": quantity},
                reason=rng.choice(("quality_issue", "damaged_in_transit", "not_as_described")),
                evidence=(f"https://img.example.com/{r1}.jpg",),
            )
            flow.before.append((shipped, req))
            signed(r1, now - 2 * H)
            freight = min(fee, RETURN_SHIPPING_CAP)
            refund(r1, paid + shipping_fee + freight)
            if kind == "after_complaint":
                # The outbound fee is refunded once, to whichever case the ledger serves first.
                flow.refunds[-1] = dataclasses.replace(
                    flow.refunds[-1], alternatives=(paid + freight,)
                )
                self._logistics_complaint(flow, fid, customer, shipping_fee)
                ids = tuple(refund_id(e.case_type, e.case_id) for e in flow.refunds)
                flow.totals.append((ids, paid + shipping_fee + freight))
        elif kind == "electronics_grace" or kind == "electronics_inspected":
            d = rng.uniform(*timer_window)
            signed_at = now - INSPECTION_GRACE + timedelta(seconds=d)
            request(r1, {"L1": quantity})
            signed(r1, signed_at)
            if kind == "electronics_inspected":
                add(
                    ev.return_inspected(
                        order_id,
                        r1,
                        id=self._id(fid, "insp"),
                        at=signed_at + timedelta(minutes=1),
                        passed=True,
                    )
                )
            else:
                flow.timer = ("returns", "inspection_grace", r1)
            refund(r1, paid)
        elif kind == "electronics_failed":
            request(r1, {"L1": quantity})
            signed(r1, now - 1 * H)
            add(
                ev.return_inspected(
                    order_id,
                    r1,
                    id=self._id(fid, "insp"),
                    at=now - 50 * timedelta(minutes=1),
                    passed=False,
                    findings=("soiled_or_damaged",),
                )
            )
            flow.returns[r1] = ("rejected", "inspection_failed")
            flow.no_refund.append(refund_id("return", r1))
        elif kind == "excluded":
            request(r1, {"L1": quantity})
            flow.returns[r1] = ("rejected", "excluded_category")
            flow.no_refund.append(refund_id("return", r1))
        elif kind == "orphan":
            # Only the request, 50 h ago, for an order never paid: its signature wait (48 h)
            # is over before it is processed, so the timer rejects it at once.
            flow.events = [
                ev.return_requested(
                    order_id,
                    r1,
                    customer,
                    id=self._id(fid, "req"),
                    at=now - 50 * H,
                    lines={"L1": 1},
                )
            ]
            flow.before = []
            flow.timer = ("returns", "signature_wait", r1)
            flow.returns[r1] = ("rejected", "unknown_order")
            flow.no_refund.append(refund_id("return", r1))
        else:  # pragma: no cover
            raise ValueError(kind)
        return flow

    def _logistics_complaint(self, flow: Flow, fid: str, customer: str, fee: int) -> None:
        """An upheld logistics_delay complaint on the flow's order: its outbound fee back (the
        whole fee, or nothing when a return refunded it first) and a 500 coupon."""
        order_id, now = flow.order_id, self.now
        complaint_id = f"{order_id}-K1"
        minute = timedelta(minutes=1)
        flow.events += [
            ev.complaint_opened(
                complaint_id,
                order_id,
                customer,
                "logistics_delay",
                id=self._id(fid, "open"),
                at=now - 50 * minute,
            ),
            ev.complaint_responded(
                complaint_id, order_id, id=self._id(fid, "resp"), at=now - 40 * minute
            ),
            ev.complaint_resolved(
                complaint_id, order_id, id=self._id(fid, "res"), at=now - 30 * minute
            ),
        ]
        flow.coupons[coupon_id(complaint_id)] = 500
        flow.refunds.append(
            ExpectedRefund(order_id, "complaint", complaint_id, fee, flow.kind, alternatives=(0,))
        )

    # --- complaints -----------------------------------------------------------------------

    def complaint_flow(self, n: int, kind: str, timer_window: tuple[float, float]) -> Flow:
        rng, now = self.rng, self.now
        fid = f"c{n}"
        order_id = f"{self.run}-P{n}"
        customer = f"{self.run}-B{n}"  # one buyer per flow: the compensation budget never binds
        flow = Flow(kind, order_id)
        goods = rng.randint(990, 99_900)
        lines = [ev.line("L1", category="home", quantity=1, paid_amount=goods)]
        shipping_fee = rng.choice((600, 1000)) if kind == "logistics" else 0
        paid_at = now - DAY
        shipped_at: datetime | None = now - 20 * H
        if kind == "late_timer":
            d = rng.uniform(*timer_window)
            # The timer is due the catch-up grace after the ship-by (P + 72 h).
            paid_at = now - 72 * H - CATCH_UP_GRACE + timedelta(seconds=d)
            shipped_at = None
            flow.timer = ("complaints", "late_shipment", order_id)
            flow.early = True
        elif kind == "late_shipped":
            paid_at, shipped_at = now - 5 * DAY, now - DAY
        flow.events.append(
            ev.order_paid(
                order_id,
                customer,
                id=self._id(fid, "paid"),
                at=paid_at,
                lines=lines,
                shipping_fee_paid=shipping_fee,
            )
        )
        if shipped_at is not None:
            flow.events.append(
                ev.order_shipped(order_id, id=self._id(fid, "shipped"), at=shipped_at)
            )
        if kind in ("late_timer", "late_shipped"):
            flow.refunds.append(
                ExpectedRefund(
                    order_id, "late_shipment", order_id, late_shipment_amount(goods), kind
                )
            )
            return flow

        complaint_id = f"{order_id}-K1"
        category, value = {
            "logistics": ("logistics_delay", 500),
            "not_upheld": (rng.choice(("wrong_item", "service_attitude")), 0),
        }.get(kind, (None, 0))
        if kind == "coupon":
            category = rng.choice(
                ("service_attitude", "wrong_item", "missing_item", "quality_issue")
            )
            value = {
                "service_attitude": 500,
                "wrong_item": 1000,
                "missing_item": 1000,
                "quality_issue": max(500, min(goods * 500 // 10_000, 5000)),
            }[category]
        assert category is not None
        flow.events += [
            ev.complaint_opened(
                complaint_id,
                order_id,
                customer,
                category,
                id=self._id(fid, "open"),
                at=now - 50 * timedelta(minutes=1),
            ),
            ev.complaint_responded(
                complaint_id, order_id, id=self._id(fid, "resp"), at=now - 40 * timedelta(minutes=1)
            ),
            ev.complaint_resolved(
                complaint_id,
                order_id,
                id=self._id(fid, "res"),
                at=now - 30 * timedelta(minutes=1),
                outcome="not_upheld" if kind == "not_upheld" else "upheld",
            ),
        ]
        if value:
            flow.coupons[coupon_id(complaint_id)] = value
        if kind == "logistics":
            flow.refunds.append(
                ExpectedRefund(order_id, "complaint", complaint_id, shipping_fee, kind)
            )
        else:
            flow.no_refund.append(refund_id("complaint", complaint_id))
        return flow


def _pick(rng: random.Random, weights: dict[str, float]) -> Callable[[], str]:
    kinds, w = list(weights), list(weights.values())
    return lambda: rng.choices(kinds, w)[0]


def generate(
    *,
    run_id: str,
    now: datetime,
    seed: int,
    returns: int,
    complaints: int,
    timer_window: tuple[float, float],
) -> list[Flow]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    gen = Generator(run_id, now, rng)
    pick_return, pick_complaint = _pick(rng, RETURN_KINDS), _pick(rng, COMPLAINT_KINDS)
    flows = [gen.return_flow(n, pick_return(), timer_window) for n in range(returns)]
    flows += [gen.complaint_flow(n, pick_complaint(), timer_window) for n in range(complaints)]
    return flows
