"""Compensation of upheld complaints: the buyer's rolling budget and the supervisor's review of
a coupon over it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.events import (
    CouponAwaitingApproval,
    CouponGranted,
    Notify,
    RefundDue,
)
from services.complaints.domain.rules import CouponStatus, Template

from . import DAY, POLICY, RESOLVED, T0, Case, H, coupons, facts, one, paid_order, policy

# --- the buyer's budget ---------------------------------------------------------------------


def budget_with(*grants: tuple[int, object]) -> CompensationBudget:
    budget = CompensationBudget("c1")
    for i, (value, at) in enumerate(grants):
        budget.record(f"earlier-{i}", value, "CNY", at, POLICY)  # type: ignore[arg-type]
    return budget


def test_a_coupon_that_brings_the_buyer_exactly_to_the_budget_is_granted() -> None:
    budget = budget_with((9000, T0 - DAY))
    case = Case(budget=budget)
    assert coupons(case.upheld("wrong_item")) == [1000]  # 9000 + 1000 = 10000
    assert budget.used("CNY", RESOLVED, POLICY) == 10000


def test_a_coupon_over_the_budget_waits_for_approval() -> None:
    budget = budget_with((9001, T0 - DAY))
    case = Case(budget=budget)
    events = case.upheld("wrong_item")  # 9001 + 1000 = 10001
    assert not coupons(events)
    pending = one(events, CouponAwaitingApproval)
    assert (pending.value, pending.used, pending.budget, pending.window_days) == (
        1000,
        9001,
        10000,
        30,
    )
    assert pending.requested_at == RESOLVED
    assert case.complaint.compensation is not None
    assert case.complaint.compensation.coupon_status == CouponStatus.PENDING_APPROVAL
    notice = one(events, Notify)
    assert notice.template == Template.COMPENSATED
    assert notice.params["coupon_pending_value"] == 1000
    assert "coupon_value" not in notice.params  # not granted (yet)
    assert budget.used("CNY", RESOLVED, POLICY) == 9001  # a waiting coupon does not count


def test_the_budget_is_a_rolling_window_of_30_days() -> None:
    granted_at = RESOLVED - timedelta(days=30)
    # 30 days ago to the microsecond: no longer counts
    assert coupons(Case(budget=budget_with((9500, granted_at))).upheld("wrong_item")) == [1000]
    # one microsecond later: still counts
    late = granted_at + timedelta(microseconds=1)
    assert not coupons(Case(budget=budget_with((9500, late))).upheld("wrong_item"))


def test_other_currencies_do_not_count_against_the_budget() -> None:
    budget = CompensationBudget("c1")
    budget.record("usd", 9999, "USD", T0, POLICY)
    assert coupons(Case(budget=budget).upheld("wrong_item")) == [1000]


def test_refunds_do_not_wait_for_the_budget() -> None:
    order = paid_order(facts(10000, shipping_fee_paid=600))
    events = Case(order=order, budget=budget_with((10000, T0))).upheld("logistics_delay")
    assert one(events, RefundDue).amount == 600
    assert one(events, CouponAwaitingApproval).value == 500


def test_the_budget_follows_the_policy() -> None:
    rules = policy(compensation_budget=600, compensation_window_days=7)
    case = Case(budget=budget_with((100, T0 - timedelta(days=6))), rules=rules)
    assert coupons(case.upheld("service_attitude")) == [500]
    case2 = Case("k2", budget=case.budget, rules=rules)
    assert not coupons(case2.upheld("service_attitude"))


def test_several_complaints_of_one_buyer_add_up() -> None:
    budget = CompensationBudget("c1")
    granted = []
    for i in range(4):
        case = Case(f"k{i}", order=paid_order(facts(200000)), budget=budget)
        granted.append(coupons(case.upheld("quality_issue")))
    assert granted == [[5000], [5000], [], []]  # 10000 reached


def test_a_coupon_granted_by_a_transaction_that_started_later_still_counts() -> None:
    # Two complaints of one buyer on two partitions: each transaction takes its processing time
    # before it waits for the buyer's lock, so the second to get the lock can read a grant dated
    # after its own `now`. That grant was made: it counts, or the buyer gets both coupons.
    rules = policy(compensation_budget=1000)
    budget = CompensationBudget("c1")
    first = Case("k1", order=paid_order(facts(order_id="o1")), budget=budget, rules=rules)
    assert coupons(first.upheld("wrong_item", now=RESOLVED + timedelta(seconds=1))) == [1000]
    second = Case("k2", order=paid_order(facts(order_id="o2")), budget=budget, rules=rules)
    events = second.upheld("service_attitude", now=RESOLVED)  # its clock read a second earlier
    assert not coupons(events)
    assert one(events, CouponAwaitingApproval).used == 1000


# --- supervisor review ----------------------------------------------------------------------

HELD = {"complaint_id": "k1", "value": 1000, "currency": "CNY"}  # the coupon held for review


def held_for_review(budget: CompensationBudget | None = None) -> Case:
    """An upheld wrong-item complaint whose coupon (1000) would take the buyer's budget (9600
    used a day ago) over its 10000: the coupon waits for a supervisor."""
    case = Case(budget=budget_with((9600, T0 - DAY)) if budget is None else budget)
    case.upheld("wrong_item")
    return case


def test_an_approved_coupon_is_granted_and_counts() -> None:
    budget = budget_with((9600, T0 - DAY))
    case = held_for_review(budget)
    approved_at = RESOLVED + 3 * H
    events = case.review("approve", now=approved_at)
    granted = one(events, CouponGranted)
    assert (granted.value, granted.granted_at) == (1000, approved_at)
    assert granted.expires_at == approved_at + timedelta(days=30)
    approved = one(events, Notify)
    assert approved.template == Template.COMPENSATION_APPROVED
    assert approved.params == {
        **HELD,
        "expires_at": (approved_at + timedelta(days=30)).isoformat(),
    }
    assert budget.used("CNY", approved_at, POLICY) == 10600
    assert case.complaint.compensation is not None
    assert case.complaint.compensation.coupon_status == CouponStatus.APPROVED
    assert case.complaint.compensation.reviewed_by == "supervisor-1"
    assert case.review("approve", now=approved_at + H) == []  # once
    assert case.review("deny", now=approved_at + H) == []


def test_a_denied_coupon_is_not_granted_and_the_buyer_is_told() -> None:
    case = held_for_review()
    events = case.review("deny", now=RESOLVED + H)
    assert not coupons(events)
    notice = one(events, Notify)
    assert notice.template == Template.COMPENSATION_DENIED
    assert notice.params == {**HELD, "window_days": 30}
    assert case.complaint.compensation is not None
    assert case.complaint.compensation.coupon_status == CouponStatus.DENIED
    assert case.review("approve", now=RESOLVED + 2 * H) == []


@pytest.mark.parametrize("outcome", ["not_upheld", "withdrawn"])
def test_a_waiting_coupon_of_a_complaint_no_longer_upheld_is_not_granted(outcome: str) -> None:
    case = held_for_review()
    case.resolve(outcome, at=RESOLVED + H)  # the agent's correction, while the coupon waits
    assert case.review("approve", now=RESOLVED + 2 * H) == []
    assert case.budget.used("CNY", RESOLVED + 2 * H, POLICY) == 9600
    case.resolve("upheld", at=RESOLVED + 3 * H)  # upheld again: the coupon may be approved
    assert coupons(case.review("approve", now=RESOLVED + 4 * H)) == [1000]


def test_a_review_of_a_coupon_that_does_not_wait_has_no_effect() -> None:
    case = Case()
    case.upheld("wrong_item")  # granted at once
    assert case.review("approve", now=RESOLVED + H) == []
    fresh = Case("k2")
    assert fresh.review("approve", now=RESOLVED) == []
    with pytest.raises(ValueError, match="unknown review decision"):
        fresh.review("maybe", now=RESOLVED)
