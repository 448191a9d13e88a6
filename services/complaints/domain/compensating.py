"""Compensating an upheld complaint (SPEC 5): what its category gives (the `COMPENSATION`
table), once per complaint, and a supervisor's review of a coupon over the buyer's budget.

`Complaint` (model.py) takes `Compensating` as a base class; what it records of the
compensation is a `Compensation`, stored inside the complaint's document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.compensation import COMPENSATION, CompensationRule
from services.complaints.domain.events import (
    CouponAwaitingApproval,
    CouponGranted,
    DomainEvent,
    Notify,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
)
from services.complaints.domain.orders import OrderFacts, ShopOrder
from services.complaints.domain.rules import (
    FULFIL_WITHIN,
    CaseKey,
    Category,
    CouponStatus,
    EscalationReason,
    Outcome,
    Remedy,
    Resolution,
    Sla,
    Template,
    amounts_apply,
)
from shared.clock import instant_to_json, require_aware
from shared.documents import require_aware_fields
from shared.policy import ComplaintsPolicy


@dataclass
class Compensation:
    """What an upheld complaint gave the buyer; decided once per complaint."""

    decided_at: datetime
    currency: str
    coupon_value: int = 0
    coupon_status: CouponStatus = CouponStatus.NONE
    coupon_granted_at: datetime | None = None
    coupon_expires_at: datetime | None = None
    refund_amount: int = 0  # goods and outbound shipping asked of the refund ledger
    refund_issued: int | None = None  # what the ledger issued of it, once refund.issued came
    refund_already_refunded: bool = False  # the ledger's order-level cap cut it
    reshipment: bool = False
    late_shipment_refund: int = 0  # the order's penalty, issued now or before
    late_shipment_refund_earlier: bool = False  # issued before, by the late-shipment watch
    coupon_by_supervisor: bool = False  # the order's currency is not the policy's: a person decides
    not_buyer: bool = False  # the complainant did not pay the order: a supervisor decides
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware_fields(
            self, "decided_at", "coupon_granted_at", "coupon_expires_at", "reviewed_at"
        )

    @property
    def has_news(self) -> bool:
        """A refund, a coupon (or a supervisor's coupon decision), a replacement or the
        late-shipment penalty to tell the buyer about; or that a supervisor decides it all."""
        return bool(
            self.refund_amount
            or self.coupon_value
            or self.reshipment
            or self.late_shipment_refund
            or self.coupon_by_supervisor
            or self.not_buyer
        )

    @property
    def awaits_refund(self) -> bool:
        """A goods or shipping refund was asked for and the ledger has not issued it yet.

        The buyer's one notice of the compensation waits for it, so that it states the amount
        the ledger issued after its order-level cap (SPEC 4.11), not the amount asked for.
        """
        return bool(self.refund_amount) and self.refund_issued is None


class Compensating:
    """Compensation steps of a complaint; the complaint's fields are declared for typing."""

    if TYPE_CHECKING:
        complaint_id: str
        order_id: str
        customer_id: str
        round: int
        resolution: Resolution | None
        compensation: Compensation | None

        @property
        def case(self) -> CaseKey: ...
        @property
        def awaits_compensation(self) -> bool: ...
        def _category(self) -> Category: ...
        def _escalate(
            self, reason: EscalationReason, due_at: datetime, now: datetime
        ) -> list[DomainEvent]: ...

    def compensate(
        self,
        order: ShopOrder,
        budget: CompensationBudget,
        policy: ComplaintsPolicy,
        now: datetime,
    ) -> list[DomainEvent]:
        """Compensate an upheld complaint by its category (SPEC 5), once.

        Refunds, reshipments and the late-shipment penalty go out at once; a coupon is granted
        when it fits the buyer's rolling budget, else it waits for a supervisor's review.

        A complainant who is not the buyer who paid the order (`order.paid`'s customer_id) gets
        nothing automatic (`_not_the_buyers`): a supervisor decides.
        """
        if not self.awaits_compensation:
            return []
        facts = order.facts
        if facts is None:
            raise ValueError(f"compensating complaint {self.complaint_id} needs its order")
        if order.order_id != self.order_id:
            raise ValueError(f"complaint {self.complaint_id} is not about order {order.order_id}")
        assert self.resolution is not None
        category, remedy = self._category(), self.resolution.remedy
        resolved_at = self.resolution.resolved_at
        due_by = resolved_at + FULFIL_WITHIN
        comp = Compensation(decided_at=now, currency=facts.currency)
        events: list[DomainEvent] = []

        rule = COMPENSATION[category]
        if self.customer_id != facts.customer_id:
            return self._not_the_buyers(comp, rule, remedy, facts, due_by, policy, now)
        breakdown = rule.refund_breakdown(remedy, facts)
        if breakdown:
            amount = sum(a for _, a in breakdown)
            comp.refund_amount = amount
            events.append(
                RefundDue(
                    case=self.case,
                    amount=amount,
                    currency=facts.currency,
                    breakdown=tuple(breakdown),
                    due_by=due_by,
                    requested_at=now,
                )
            )
            # Issued late, the refund ledger reports it (SPEC 4.11).

        if rule.reships(remedy):
            comp.reshipment = True
            events.append(ReshipmentDue(self.case, facts.all_lines, due_by, now))
            if now > due_by:
                events.append(SlaBreached(self.case, Sla.RESHIPMENT, due_by, now, self.round))

        if rule.late_shipment_refund:
            comp.late_shipment_refund_earlier = order.late_penalty is not None
            events += order.issue_late_penalty(
                policy,
                now,
                owed_at=resolved_at,
                cause=f"complaint:{self.complaint_id}",
                apologise=False,
            )
            assert order.late_penalty is not None
            comp.late_shipment_refund = order.late_penalty.amount

        value = rule.coupon(facts.goods_total, policy)
        if value > 0 and not amounts_apply(facts.currency, policy):
            # Coupon amounts and the budget are the policy's currency, not the order's: no
            # coupon is computed, a supervisor decides the compensation (docs/decisions.md).
            comp.coupon_by_supervisor = True
            events += self._escalate(EscalationReason.COMPENSATION_CURRENCY, due_by, now)
        elif value > 0:
            comp.coupon_value = value
            if budget.fits(value, facts.currency, now, policy):
                events += self._grant_coupon(comp, budget, policy, now, CouponStatus.GRANTED)
            else:
                comp.coupon_status = CouponStatus.PENDING_APPROVAL
                events.append(
                    CouponAwaitingApproval(
                        value=value,
                        currency=facts.currency,
                        used=budget.used(facts.currency, now, policy),
                        budget=policy.compensation_budget,
                        window_days=policy.compensation_window_days,
                        requested_at=now,
                    )
                )
        self.compensation = comp
        if comp.has_news and not comp.awaits_refund:
            events.append(self._compensated_notice(category, comp))
        return events

    def _not_the_buyers(
        self,
        comp: Compensation,
        rule: CompensationRule,
        remedy: Remedy,
        facts: OrderFacts,
        due_by: datetime,
        policy: ComplaintsPolicy,
        now: datetime,
    ) -> list[DomainEvent]:
        """An upheld complaint about an order another buyer paid: decided once, as nothing.

        No coupon (it would be counted against the complainant's budget for someone else's
        order), no refund (the ledger refuses one for another customer, `customer_mismatch`,
        after the complainant was told it is coming), no replacement and no late-shipment
        penalty (the order's buyer still gets theirs from the late-shipment watch). When the
        category would have given anything, the complaint is escalated (`customer_mismatch`)
        for a supervisor to decide, and the complainant is told so (`not_buyer`).
        """
        would_give = bool(
            rule.coupon(facts.goods_total, policy) > 0
            or rule.refund_breakdown(remedy, facts)
            or rule.reships(remedy)
            or rule.late_shipment_refund
        )
        self.compensation = comp
        if not would_give:
            return []
        comp.not_buyer = True
        events = self._escalate(EscalationReason.CUSTOMER_MISMATCH, due_by, now)
        return [*events, self._compensated_notice(self._category(), comp)]

    def record_refund_issued(self, amount: int, already_refunded: bool) -> list[DomainEvent]:
        """refund.issued of this complaint's refund: the buyer's one notice of the whole
        compensation goes out now, with the amount the ledger issued. Once."""
        comp = self.compensation
        if comp is None or not comp.awaits_refund:
            return []
        if amount < 0:
            raise ValueError("an issued refund is never negative")
        comp.refund_issued = amount
        comp.refund_already_refunded = already_refunded
        return [self._compensated_notice(self._category(), comp)]

    def review_compensation(
        self,
        decision: str,
        agent_id: str,
        reviewed_at: datetime,
        budget: CompensationBudget,
        policy: ComplaintsPolicy,
        now: datetime,
    ) -> list[DomainEvent]:
        """compensation.reviewed: a supervisor approves or denies a coupon over budget.

        Only a coupon waiting for approval is affected; any other review has no effect. So has
        a review of a complaint whose resolution on record is no longer `upheld` (an agent's
        correction while the coupon waited): the coupon keeps waiting.
        """
        if decision not in ("approve", "deny"):
            raise ValueError(f"unknown review decision {decision!r}")
        require_aware(reviewed_at, "reviewed_at")
        comp = self.compensation
        if comp is None or comp.coupon_status != CouponStatus.PENDING_APPROVAL:
            return []
        if self.resolution is None or self.resolution.outcome != Outcome.UPHELD:
            return []
        comp.reviewed_by, comp.reviewed_at = agent_id, reviewed_at
        if decision == "approve":
            events = self._grant_coupon(comp, budget, policy, now, CouponStatus.APPROVED)
            expires_at = instant_to_json(comp.coupon_expires_at) or ""
            approved = self._reviewed_notice(
                Template.COMPENSATION_APPROVED, comp, expires_at=expires_at
            )
            return [*events, approved]
        comp.coupon_status = CouponStatus.DENIED
        denied = self._reviewed_notice(
            Template.COMPENSATION_DENIED, comp, window_days=policy.compensation_window_days
        )
        return [denied]

    def _reviewed_notice(self, template: Template, comp: Compensation, **more: str | int) -> Notify:
        """The buyer told a supervisor's decision on the coupon: its value and `more` (when the
        approved one expires, or the window of the budget the denied one did not fit in)."""
        params: dict[str, str | int] = {
            "complaint_id": self.complaint_id,
            "value": comp.coupon_value,
            "currency": comp.currency,
            **more,
        }
        return Notify(template=template, case=self.case, params=params)

    def _grant_coupon(
        self,
        comp: Compensation,
        budget: CompensationBudget,
        policy: ComplaintsPolicy,
        now: datetime,
        status: CouponStatus,
    ) -> list[DomainEvent]:
        comp.coupon_status = status
        comp.coupon_granted_at = now
        comp.coupon_expires_at = now + timedelta(days=policy.coupon_validity_days)
        budget.record(self.complaint_id, comp.coupon_value, comp.currency, now, policy)
        return [
            CouponGranted(
                value=comp.coupon_value,
                currency=comp.currency,
                granted_at=now,
                expires_at=comp.coupon_expires_at,
                reason=self._category().value,
            )
        ]

    def _compensated_notice(self, category: Category, comp: Compensation) -> Notify:
        """What the buyer gets; a part it does not get is left out of the params."""
        params: dict[str, str | int] = {
            "complaint_id": self.complaint_id,
            "order_id": self.order_id,
            "category": category.value,
            "currency": comp.currency,
        }
        # A goods or shipping refund is told once the ledger issued it, with what it issued
        # (its cap may cut it). The late-shipment penalty is compensation, which the ledger
        # never cuts (SPEC 4.11), so its amount is the one issued.
        if comp.refund_issued is not None:
            params["refund_amount"] = comp.refund_issued
            if comp.refund_already_refunded:
                params["refund_already_refunded"] = 1
        if comp.late_shipment_refund_earlier and comp.late_shipment_refund:
            params["late_shipment_refund_earlier"] = comp.late_shipment_refund
        elif comp.late_shipment_refund:
            params["late_shipment_refund"] = comp.late_shipment_refund
        if comp.reshipment:
            params["reshipment"] = 1
        if comp.coupon_status == CouponStatus.GRANTED:
            params["coupon_value"] = comp.coupon_value
            params["coupon_expires_at"] = instant_to_json(comp.coupon_expires_at) or ""
        elif comp.coupon_status == CouponStatus.PENDING_APPROVAL:
            params["coupon_pending_value"] = comp.coupon_value
        if comp.coupon_by_supervisor:
            params["coupon_by_supervisor"] = 1
        if comp.not_buyer:
            params["not_buyer"] = 1
        return Notify(template=Template.COMPENSATED, case=self.case, params=params)
