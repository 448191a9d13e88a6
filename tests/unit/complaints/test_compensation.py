"""Compensation of upheld complaints: every category, one notice per refund, once per
complaint, and waiting for the order (the budget and its review: test_compensation_budget.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.compensation import COMPENSATION, Refund
from services.complaints.domain.events import (
    CouponAwaitingApproval,
    CouponGranted,
    Escalated,
    Notify,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
)
from services.complaints.domain.orders import ShopOrder
from services.complaints.domain.rules import (
    CouponStatus,
    EscalationReason,
    Priority,
    Template,
    TimerKind,
)
from services.notifier.domain.refunds import told_by_its_case
from shared.contracts.ids import refund_id

from . import (
    COMPLAINT,
    DAY,
    LATE,
    POLICY,
    RESOLVED,
    T0,
    Case,
    H,
    coupons,
    facts,
    one,
    only,
    paid_order,
    policy,
)

# --- by category ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("goods", "coupon"),
    [((8000,), 500), ((10000, 20000), 1500), ((150000,), 5000)],
)
def test_quality_issue_coupon_of_5_percent_of_the_goods_total(goods, coupon) -> None:
    case = Case(order=paid_order(facts(*goods, shipping_fee_paid=800)))
    events = case.upheld("quality_issue")
    granted = one(events, CouponGranted)
    assert granted.value == coupon
    assert granted.currency == "CNY"
    assert granted.granted_at == RESOLVED
    assert granted.expires_at == RESOLVED + timedelta(days=30)
    assert granted.reason == "quality_issue"
    assert not only(events, RefundDue) and not only(events, ReshipmentDue)
    assert case.complaint.compensation is not None
    assert case.complaint.compensation.coupon_status == CouponStatus.GRANTED


def test_logistics_delay_refunds_the_shipping_fee_and_grants_500() -> None:
    order = paid_order(facts(10000, shipping_fee_paid=799))
    events = Case(order=order).upheld("logistics_delay")
    refund = one(events, RefundDue)
    assert refund.case == COMPLAINT
    assert refund.amount == 799
    assert refund.breakdown == (("outbound_shipping", 799),)
    assert refund.due_by == RESOLVED + timedelta(hours=24)
    assert refund.requested_at == RESOLVED
    assert coupons(events) == [500]


def test_logistics_delay_without_a_shipping_fee_is_the_coupon_alone() -> None:
    events = Case(order=paid_order(facts(10000, shipping_fee_paid=0))).upheld("logistics_delay")
    assert not only(events, RefundDue)
    assert coupons(events) == [500]


def test_missing_item_reships_the_order_lines_and_grants_1000() -> None:
    events = Case(order=paid_order(facts(3000, 4000, gift=True))).upheld("missing_item")
    reship = one(events, ReshipmentDue)
    assert reship.case == COMPLAINT
    assert reship.lines == {"l1": 1, "l2": 2, "gift": 1}
    assert reship.due_by == RESOLVED + timedelta(hours=24)
    assert coupons(events) == [1000]
    assert not only(events, RefundDue)


def test_wrong_item_grants_1000() -> None:
    events = Case().upheld("wrong_item")
    assert coupons(events) == [1000]
    assert not only(events, RefundDue) and not only(events, ReshipmentDue)


def test_not_received_with_reship_reships_and_grants_1000() -> None:
    events = Case().upheld("not_received", "reship")
    assert one(events, ReshipmentDue).lines == {"l1": 1}
    assert not only(events, RefundDue)
    assert coupons(events) == [1000]


def test_not_received_with_refund_refunds_goods_and_shipping_and_grants_1000() -> None:
    order = paid_order(facts(10000, shipping_fee_paid=500))
    events = Case(order=order).upheld("not_received", "refund")
    refund = one(events, RefundDue)
    assert refund.amount == 10500
    assert refund.breakdown == (("goods", 10000), ("outbound_shipping", 500))
    assert not only(events, ReshipmentDue)
    assert coupons(events) == [1000]


def test_not_received_with_no_remedy_is_the_coupon_alone() -> None:
    events = Case().upheld("not_received", "none")
    assert not only(events, RefundDue) and not only(events, ReshipmentDue)
    assert coupons(events) == [1000]


def test_service_attitude_grants_500() -> None:
    assert coupons(Case().upheld("service_attitude")) == [500]


def test_late_shipment_complaint_is_the_orders_late_shipment_refund() -> None:
    case = Case(order=paid_order(facts(30000)))
    events = case.upheld("late_shipment")
    refund = one(events, RefundDue)
    assert refund.case == LATE
    assert refund.amount == 1500
    assert refund.breakdown == (("compensation", 1500),)
    assert refund.due_by == RESOLVED + timedelta(hours=24)
    assert TimerCancelled(TimerKind.LATE_SHIPMENT) in events  # the watch ends
    assert not coupons(events)
    notice = one(events, Notify)  # the compensation notice, no separate apology
    assert notice.template == Template.COMPENSATED
    # compensation, which the refund ledger never cuts: its amount is the one issued
    assert notice.params["late_shipment_refund"] == 1500
    assert "refund" not in notice.params
    assert "late_shipment_refund_earlier" not in notice.params
    assert case.order.late_penalty is not None
    assert case.order.late_penalty.cause == "complaint:k1"


# --- an order in another currency than the policy's amounts --------------------------------


def test_an_order_in_another_currency_gets_no_coupon_but_a_supervisor() -> None:
    """500 (fen) is no amount of yen: the coupon is not computed, a person decides."""
    budget = CompensationBudget("c1")
    case = Case(order=paid_order(facts(30000, currency="JPY")), budget=budget)
    events = case.upheld("service_attitude")
    assert not only(events, CouponGranted) and not only(events, CouponAwaitingApproval)
    escalation = one(events, Escalated)
    assert (escalation.reason, escalation.priority) == (
        EscalationReason.COMPENSATION_CURRENCY,
        Priority.HIGH,
    )
    assert escalation.due_at == RESOLVED + timedelta(hours=24)
    assert budget.grants == []  # the budget, in the policy's currency, is not touched
    assert case.complaint.compensation is not None
    assert case.complaint.compensation.coupon_value == 0
    notice = one(events, Notify)  # the buyer learns a person decides the coupon
    assert notice.template == Template.COMPENSATED
    assert notice.params["coupon_by_supervisor"] == 1
    assert "coupon_value" not in notice.params and "coupon_pending_value" not in notice.params


def test_a_policy_in_the_orders_currency_grants_its_coupon() -> None:
    yen = policy(amounts_currency="JPY")
    case = Case(order=paid_order(facts(30000, currency="JPY")), rules=yen)
    assert coupons(case.upheld("service_attitude")) == [500]


def test_the_late_shipment_cap_is_not_applied_to_another_currency() -> None:
    case = Case(order=paid_order(facts(300000, currency="JPY")))
    refund = one(case.upheld("late_shipment"), RefundDue)
    assert (refund.amount, refund.currency) == (15000, "JPY")  # 5 %, not capped at 3000
    same = Case(order=paid_order(facts(300000)))
    assert one(same.upheld("late_shipment"), RefundDue).amount == 3000


# --- a complaint from someone who did not pay the order --------------------------------------

NOT_THE_BUYERS = [
    ("logistics_delay", "none"),
    ("not_received", "refund"),
    ("not_received", "reship"),
    ("missing_item", "none"),
    ("quality_issue", "none"),
    ("service_attitude", "none"),
    ("late_shipment", "none"),
    ("fake_shipment", "refund"),
]


@pytest.mark.parametrize(("category", "remedy"), NOT_THE_BUYERS)
def test_a_complaint_about_an_order_another_buyer_paid_gets_a_supervisor_not_money(
    category: str, remedy: str
) -> None:
    """The order's buyer (order.paid) is c1, the complainant c2: no coupon for someone else's
    order on c2's budget, no refund the ledger would refuse (customer_mismatch) after c2 was
    told it is coming, no replacement, no late-shipment penalty (the order's buyer still gets
    theirs from the watch). A supervisor decides; c2 is told so."""
    budget = CompensationBudget("c2")
    order = paid_order(facts(30000, shipping_fee_paid=799))
    case = Case(order=order, budget=budget, customer_id="c2")
    opened = case.open(category)
    assert one(opened, Notify).template == Template.ACKNOWLEDGED  # heard like any complaint
    events = case.resolve("upheld", remedy)
    assert not only(events, CouponGranted) and not only(events, CouponAwaitingApproval)
    assert not only(events, RefundDue) and not only(events, ReshipmentDue)
    assert budget.grants == []
    assert order.late_penalty is None and TimerKind.LATE_SHIPMENT in order.timers
    escalation = one(events, Escalated)
    assert (escalation.reason, escalation.priority) == (
        EscalationReason.CUSTOMER_MISMATCH,
        Priority.HIGH,
    )
    assert escalation.due_at == RESOLVED + timedelta(hours=24)
    notice = one(events, Notify)
    assert notice.template == Template.COMPENSATED
    assert notice.params["not_buyer"] == 1
    assert set(notice.params) == {"complaint_id", "order_id", "category", "currency", "not_buyer"}
    comp = case.complaint.compensation
    assert comp is not None and comp.not_buyer and not comp.awaits_refund
    assert case.complaint.compensate(order, budget, POLICY, RESOLVED + H) == []  # once
    assert case.review("approve", now=RESOLVED + H) == []  # no coupon waits


def test_a_complaint_from_the_buyer_of_the_order_is_compensated_as_usual() -> None:
    case = Case(customer_id="c1")
    assert coupons(case.upheld("service_attitude")) == [500]
    assert case.complaint.compensation is not None
    assert not case.complaint.compensation.not_buyer


def test_another_buyers_complaint_with_nothing_automatic_is_not_escalated() -> None:
    case = Case(customer_id="c2")
    events = case.upheld("other")
    assert not only(events, Escalated) and not only(events, Notify)
    assert case.complaint.compensation is not None
    assert not case.complaint.compensation.not_buyer


def test_an_order_paid_by_another_buyer_after_the_upheld_complaint_gives_no_money() -> None:
    """order.paid arrives after the resolution: judged then, the same way."""
    order = ShopOrder.new("o1")
    case = Case(order=order, customer_id="c2")
    assert not only(case.upheld("logistics_delay", now=RESOLVED), Notify)  # waits
    order.record_paid(facts(10000, shipping_fee_paid=799), POLICY, RESOLVED + H)
    events = case.complaint.compensate(order, case.budget, POLICY, RESOLVED + H)
    assert not only(events, RefundDue) and not coupons(events)
    assert one(events, Escalated).reason == EscalationReason.CUSTOMER_MISMATCH
    assert one(events, Notify).params["not_buyer"] == 1


def test_a_complaint_resolved_before_its_opening_about_another_buyers_order() -> None:
    case = Case(customer_id="c2")
    assert case.resolve("upheld", "refund") == []  # kept until the opening
    events = case.open("not_received", at=T0, now=RESOLVED + H)
    assert not only(events, RefundDue) and not coupons(events)
    assert one(events, Escalated).reason == EscalationReason.CUSTOMER_MISMATCH


def test_late_shipment_complaint_after_the_timer_paid_gives_nothing_twice() -> None:
    order = paid_order(facts(30000))
    due = order.timers[TimerKind.LATE_SHIPMENT]
    assert only(order.on_timer("late_shipment", due, POLICY, due), RefundDue)
    case = Case(order=order)
    events = case.upheld("late_shipment")
    assert not only(events, RefundDue)
    notice = one(events, Notify)
    assert "late_shipment_refund" not in notice.params  # nothing refunded now
    assert "refund" not in notice.params
    assert notice.params["late_shipment_refund_earlier"] == 1500


def test_fake_shipment_is_the_late_shipment_refund_plus_the_remedy() -> None:
    events = Case(order=paid_order(facts(30000, shipping_fee_paid=1000))).upheld(
        "fake_shipment", "refund"
    )
    refunds = {r.case: r for r in only(events, RefundDue)}
    assert refunds[LATE].amount == 1500
    assert refunds[COMPLAINT].amount == 31000
    assert not coupons(events)
    # no notice before the ledger issued the goods refund, which its cap may cut
    assert not only(events, Notify)
    case_events = Case(order=paid_order(facts(30000, shipping_fee_paid=1000)))
    case_events.upheld("fake_shipment", "refund")
    notice = one(case_events.complaint.record_refund_issued(31000, False), Notify)
    assert notice.params["late_shipment_refund"] == 1500
    assert notice.params["refund_amount"] == 31000
    reshipped = Case(order=paid_order(facts(30000))).upheld("fake_shipment", "reship")
    assert one(reshipped, ReshipmentDue).lines == {"l1": 1}
    assert one(reshipped, RefundDue).case == LATE


def test_other_has_no_automatic_compensation() -> None:
    case = Case()
    events = case.upheld("other")
    assert not only(events, CouponGranted) and not only(events, RefundDue)
    assert not [n for n in only(events, Notify) if n.template == Template.COMPENSATED]
    assert case.complaint.compensation is not None  # decided: nothing


@pytest.mark.parametrize("outcome", ["not_upheld", "withdrawn"])
def test_no_compensation_unless_upheld(outcome: str) -> None:
    case = Case()
    events = case.open("quality_issue") + case.resolve(outcome)
    assert not only(events, CouponGranted) and not only(events, RefundDue)
    assert case.complaint.compensation is None


def test_compensation_notice_lists_what_was_given() -> None:
    order = paid_order(facts(10000, shipping_fee_paid=600))
    case = Case(order=order)
    case.upheld("logistics_delay")
    notice = one(case.complaint.record_refund_issued(600, False), Notify)
    assert notice.template == Template.COMPENSATED
    assert notice.case == COMPLAINT
    assert notice.params == {
        "complaint_id": "k1",
        "order_id": "o1",
        "category": "logistics_delay",
        "currency": "CNY",
        "coupon_value": 500,
        "coupon_expires_at": (RESOLVED + timedelta(days=30)).isoformat(),
        "refund_amount": 600,  # what the ledger issued
    }
    reshipped = Case(order=paid_order(facts(3000))).upheld("missing_item")
    assert one(reshipped, Notify).params == {
        "complaint_id": "k1",
        "order_id": "o1",
        "category": "missing_item",
        "currency": "CNY",
        "coupon_value": 1000,
        "coupon_expires_at": (RESOLVED + timedelta(days=30)).isoformat(),
        "reshipment": 1,
    }


def test_a_refund_requested_after_its_due_time_leaves_the_breach_to_the_ledger() -> None:
    order = paid_order(facts(10000, shipping_fee_paid=600))
    case = Case(order=order)
    events = case.open("logistics_delay") + case.resolve(at=RESOLVED, now=RESOLVED + 2 * DAY)
    refund = one(events, RefundDue)
    assert refund.due_by == RESOLVED + timedelta(hours=24)
    assert refund.requested_at == RESOLVED + 2 * DAY
    # the refund ledger reports a refund issued after due_by (SPEC 4.11), whoever asked
    assert not only(events, SlaBreached)


def test_a_refund_alone_is_told_once_the_ledger_issued_it() -> None:
    rules = policy(logistics_delay_coupon=0)
    case = Case(order=paid_order(facts(10000, shipping_fee_paid=600)), rules=rules)
    events = case.upheld("logistics_delay")
    assert one(events, RefundDue).amount == 600
    assert not only(events, Notify)
    notice = one(case.complaint.record_refund_issued(600, False), Notify)
    assert notice.params["refund_amount"] == 600 and "coupon_value" not in notice.params


# --- one notice, one amount, for every category whose compensation refunds -----------------


def _refunding_categories() -> list[tuple[str, str]]:
    """(category, remedy) for every row of the compensation table that refunds something:
    goods or shipping (a refund remedy where the row reads it), or the late-shipment penalty."""
    cases = []
    for category, rule in COMPENSATION.items():
        if rule.refund == Refund.BY_REMEDY:
            cases.append((category.value, "refund"))
        elif rule.refund != Refund.NONE or rule.late_shipment_refund:
            cases.append((category.value, "none"))
    return cases


@pytest.mark.parametrize(("category", "remedy"), _refunding_categories())
@pytest.mark.parametrize("cut", [0, 400])
def test_one_notice_states_the_amount_the_ledger_issued(category, remedy, cut) -> None:
    """The complaint's own refund is told by the compensation notice alone, with what the
    ledger issued (here `cut` less than asked, as its order-level cap may do); the notifier
    tells no refund.issued of the complaint; the late-shipment penalty, which the ledger never
    cuts, is stated as asked."""
    case = Case(order=paid_order(facts(30000, shipping_fee_paid=800)))
    events = case.upheld(category, remedy)
    refunds = only(events, RefundDue)
    assert refunds, category
    own = [r for r in refunds if r.case == COMPLAINT]
    notices = only(events, Notify)
    if own:
        assert not notices  # the notice waits for the ledger
        issued = own[0].amount - cut
        notices = only(case.complaint.record_refund_issued(issued, cut > 0), Notify)
        assert case.complaint.record_refund_issued(issued, cut > 0) == []  # once
    (notice,) = notices
    assert notice.template == Template.COMPENSATED
    if own:
        assert notice.params["refund_amount"] == own[0].amount - cut
        assert ("refund_already_refunded" in notice.params) == (cut > 0)
    penalty = [r for r in refunds if r.case == LATE]
    if penalty:
        assert notice.params["late_shipment_refund"] == penalty[0].amount
    told_by_the_notifier = [
        r
        for r in refunds
        if not told_by_its_case(r.case.type.value, r.case.id, refund_id(r.case.type, r.case.id))
    ]
    assert told_by_the_notifier == []


def test_every_refunding_category_is_covered() -> None:
    assert {c for c, _ in _refunding_categories()} == {
        "logistics_delay",
        "not_received",
        "fake_shipment",
        "late_shipment",
    }


# --- once per complaint ---------------------------------------------------------------------


def test_at_most_one_compensation_however_often_the_resolution_arrives() -> None:
    case = Case(order=paid_order(facts(10000, shipping_fee_paid=600)))
    first = case.upheld("logistics_delay")
    assert len(only(first, RefundDue)) == 1 and coupons(first) == [500]
    assert case.resolve() == []  # the same resolution again
    again = case.resolve(at=RESOLVED + H)  # a later one (a correction)
    assert not only(again, RefundDue) and not coupons(again)
    assert case.budget.used("CNY", RESOLVED + 2 * H, POLICY) == 500


def test_a_correction_to_upheld_compensates_once() -> None:
    case = Case()
    assert not coupons(case.open("wrong_item") + case.resolve("not_upheld"))
    assert coupons(case.resolve("upheld", at=RESOLVED + H)) == [1000]
    assert not coupons(case.resolve("upheld", at=RESOLVED + 2 * H))


def test_a_reopened_and_again_upheld_complaint_is_not_compensated_twice() -> None:
    case = Case()
    assert coupons(case.upheld("service_attitude")) == [500]
    case.low_score(now=RESOLVED + DAY)
    assert not coupons(case.resolve(at=RESOLVED + DAY + H))


def test_compensation_waits_for_the_order() -> None:
    order = ShopOrder.new("o1")
    case = Case(order=order)
    events = case.upheld("quality_issue")
    assert not coupons(events)
    assert case.complaint.awaits_compensation
    # order.paid arrives: the service layer calls compensate
    order.record_paid(facts(30000), POLICY, RESOLVED + H)
    later = case.complaint.compensate(order, case.budget, POLICY, RESOLVED + H)
    assert coupons(later) == [1500]
    assert not case.complaint.awaits_compensation
    assert case.complaint.compensate(order, case.budget, POLICY, RESOLVED + H) == []


def test_compensate_needs_the_orders_facts() -> None:
    case = Case(order=ShopOrder.new("o1"))
    case.upheld("wrong_item")
    with pytest.raises(ValueError, match="needs its order"):
        case.complaint.compensate(case.order, case.budget, POLICY, RESOLVED)
