"""Late shipment detected without a complaint (SPEC 5): the ship-by instant, the timer, the
once-per-order refund with its cap, shipments and cancellations in any order; and the
compensation budget on its own."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.complaints.domain.budget import CompensationBudget
from services.complaints.domain.events import (
    Notify,
    RefundDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.complaints.domain.orders import OrderFacts, ShopOrder
from services.complaints.domain.rules import Template, TimerKind
from shared.catchup import CATCH_UP_GRACE

from . import DAY, LATE, POLICY, T0, H, facts, one, only, policy

PAID = T0
SHIP_BY = PAID + 72 * H
CHECK = SHIP_BY + CATCH_UP_GRACE  # the timer: a grace after the ship-by, for the shipment
TIMER = TimerKind.LATE_SHIPMENT.value


def paid(order_facts: OrderFacts | None = None, *, rules=POLICY) -> tuple[ShopOrder, list]:
    order = ShopOrder.new("o1")
    events = order.record_paid(order_facts or facts(20000, paid_at=PAID), rules, PAID)
    return order, events


def test_order_paid_sets_the_timer_72_hours_after_payment() -> None:
    order, events = paid()
    assert events == [TimerSet(TimerKind.LATE_SHIPMENT, SHIP_BY + CATCH_UP_GRACE)]
    assert order.ship_by == SHIP_BY


def test_a_presale_date_replaces_the_72_hours() -> None:
    later = PAID + 10 * DAY
    _order, events = paid(facts(20000, paid_at=PAID, presale_ship_by=later))
    assert events == [TimerSet(TimerKind.LATE_SHIPMENT, later + CATCH_UP_GRACE)]
    earlier = PAID + DAY  # even when it is sooner
    _order, events = paid(facts(20000, paid_at=PAID, presale_ship_by=earlier))
    assert events == [TimerSet(TimerKind.LATE_SHIPMENT, earlier + CATCH_UP_GRACE)]


def test_the_hours_follow_the_policy() -> None:
    rules = policy(late_shipment_hours=48)
    _order, events = paid(rules=rules)
    assert events == [TimerSet(TimerKind.LATE_SHIPMENT, PAID + 48 * H + CATCH_UP_GRACE)]


def test_a_repeated_order_paid_has_no_effect() -> None:
    order, _ = paid()
    assert order.record_paid(facts(99999, paid_at=PAID + H), POLICY, PAID + H) == []
    assert order.facts is not None and order.facts.goods_total == 20000


def test_shipped_in_time_cancels_the_timer() -> None:
    order, _ = paid()
    assert order.record_shipped(SHIP_BY, POLICY, SHIP_BY) == [
        TimerCancelled(TimerKind.LATE_SHIPMENT)
    ]  # exactly at the deadline is in time
    assert order.timers == {}
    assert order.on_timer(TIMER, CHECK, POLICY, CHECK) == []  # the row fires anyway


def test_cancelled_in_time_cancels_the_timer() -> None:
    order, _ = paid()
    assert order.record_cancelled(PAID + H, POLICY, PAID + H) == [
        TimerCancelled(TimerKind.LATE_SHIPMENT)
    ]
    assert order.late_penalty is None


def test_the_timer_issues_5_percent_once_with_an_apology() -> None:
    order, _ = paid(facts(20000, paid_at=PAID))
    now = CHECK + timedelta(seconds=2)
    events = order.on_timer(TIMER, CHECK, POLICY, now)
    refund = one(events, RefundDue)
    assert refund.case == LATE
    assert refund.amount == 1000
    assert refund.breakdown == (("compensation", 1000),)
    assert refund.due_by == SHIP_BY + 24 * H
    assert refund.requested_at == now
    apology = one(events, Notify)
    assert apology.template == Template.APOLOGY_LATE_SHIPMENT
    assert apology.case == LATE
    assert apology.params == {
        "order_id": "o1",
        "ship_by": SHIP_BY.isoformat(),
        "order_state": "not_shipped",
        "amount": 1000,
        "currency": "CNY",
    }
    assert not only(events, SlaBreached)
    assert order.late_penalty is not None and order.late_penalty.cause == "timer"
    assert order.on_timer(TIMER, CHECK, POLICY, now) == []  # once
    assert order.issue_late_penalty(POLICY, now, owed_at=now, cause="again") == []


@pytest.mark.parametrize(("goods", "amount"), [(59999, 2999), (60000, 3000), (80000, 3000)])
def test_the_late_shipment_refund_is_capped_at_3000(goods: int, amount: int) -> None:
    order, _ = paid(facts(goods, paid_at=PAID))
    assert one(order.on_timer(TIMER, CHECK, POLICY, CHECK), RefundDue).amount == amount


def test_a_presale_order_is_late_after_its_presale_date() -> None:
    presale = PAID + 15 * DAY
    order, _ = paid(facts(20000, paid_at=PAID, presale_ship_by=presale))
    assert order.record_shipped(SHIP_BY + H, POLICY, SHIP_BY + H) == [
        TimerCancelled(TimerKind.LATE_SHIPMENT)
    ]  # after 72 hours but before the presale date: in time
    order, _ = paid(facts(20000, paid_at=PAID, presale_ship_by=presale))
    check = presale + CATCH_UP_GRACE
    assert one(order.on_timer(TIMER, check, POLICY, check), RefundDue).amount == 1000


def test_a_late_shipment_seen_before_the_timer_fired_is_late_too() -> None:
    order, _ = paid()
    now = SHIP_BY + 2 * H
    events = order.record_shipped(SHIP_BY + H, POLICY, now)
    assert one(events, RefundDue).due_by == SHIP_BY + 24 * H
    assert TimerCancelled(TimerKind.LATE_SHIPMENT) in events
    assert order.late_penalty is not None and order.late_penalty.cause == "shipped"


def test_a_cancellation_after_the_deadline_does_not_undo_the_lateness() -> None:
    order, _ = paid()
    events = order.record_cancelled(SHIP_BY + H, POLICY, SHIP_BY + H)
    assert one(events, RefundDue).amount == 1000
    assert order.late_penalty is not None and order.late_penalty.cause == "cancelled"


def test_a_shipment_reported_after_the_timer_fired_cannot_claw_back() -> None:
    order, _ = paid()
    assert only(order.on_timer(TIMER, CHECK, POLICY, CHECK), RefundDue)
    # order.shipped arrives later than the grace (delayed in transit), saying it shipped before
    # the deadline: the penalty stands
    assert order.record_shipped(SHIP_BY - H, POLICY, SHIP_BY + H) == []
    assert order.late_penalty is not None


def test_a_timer_that_fires_after_an_outage_still_requests_the_refund() -> None:
    order, _ = paid()
    now = SHIP_BY + 2 * DAY
    # fired long after its due time: judged after the catch-up grace (see the next test)
    assert order.on_timer(TIMER, CHECK, POLICY, now) == [
        TimerSet(TimerKind.LATE_SHIPMENT, now + CATCH_UP_GRACE)
    ]
    later = now + CATCH_UP_GRACE
    events = order.on_timer(TIMER, later, POLICY, later + timedelta(days=1))  # once only
    refund = one(events, RefundDue)
    assert (refund.case, refund.due_by, refund.requested_at) == (
        LATE,
        SHIP_BY + 24 * H,
        later + timedelta(days=1),
    )
    # issued after due_by, the refund ledger reports the breach (SPEC 4.11)
    assert not only(events, SlaBreached)


def test_a_timer_that_fires_after_an_outage_waits_for_the_shipment_behind_it() -> None:
    # The service was down across the ship-by instant: when it starts again its scheduler fires
    # the timer at once, while the order.shipped dated in time is still in the backlog.
    order, _ = paid()
    now = SHIP_BY + 2 * H
    assert order.on_timer(TIMER, CHECK, POLICY, now) == [
        TimerSet(TimerKind.LATE_SHIPMENT, now + CATCH_UP_GRACE)
    ]
    assert order.record_shipped(SHIP_BY - H, POLICY, now + timedelta(seconds=3)) == [
        TimerCancelled(TimerKind.LATE_SHIPMENT)
    ]
    assert order.on_timer(TIMER, now + CATCH_UP_GRACE, POLICY, now + CATCH_UP_GRACE) == []
    assert order.late_penalty is None


def test_a_timer_that_fires_within_the_grace_after_its_due_time_judges_at_once() -> None:
    order, _ = paid()
    now = CHECK + CATCH_UP_GRACE  # a scheduler a little behind: no second grace
    assert one(order.on_timer(TIMER, CHECK, POLICY, now), RefundDue).amount == 1000


def test_an_order_shipped_by_its_ship_by_is_not_penalised_for_the_platforms_latency() -> None:
    # The shop ships at the ship-by instant; its order.shipped reaches this service a few
    # seconds later (the shop's system, the broker, the consumer). The timer does not wait
    # for it: it is due a grace after the ship-by, so the shipment is read first.
    order, events = paid()
    assert events == [TimerSet(TimerKind.LATE_SHIPMENT, SHIP_BY + CATCH_UP_GRACE)]
    assert order.on_timer(TIMER, SHIP_BY, POLICY, SHIP_BY + timedelta(seconds=1)) == []
    assert order.record_shipped(SHIP_BY, POLICY, SHIP_BY + timedelta(seconds=3)) == [
        TimerCancelled(TimerKind.LATE_SHIPMENT)
    ]
    assert order.on_timer(TIMER, CHECK, POLICY, CHECK) == []
    assert order.late_penalty is None


def test_an_order_not_shipped_owes_the_penalty_from_its_ship_by_found_a_grace_later() -> None:
    order, _ = paid()
    # shipped a second after the ship-by, read before the timer fired: late by its date
    assert one(order.record_shipped(SHIP_BY + timedelta(seconds=1), POLICY, CHECK), RefundDue)
    never, _ = paid()
    events = never.on_timer(TIMER, CHECK, POLICY, CHECK)
    refund = one(events, RefundDue)
    assert (refund.due_by, refund.requested_at) == (SHIP_BY + 24 * H, CHECK)
    assert never.late_penalty is not None and never.late_penalty.owed_at == SHIP_BY


def test_a_timer_at_the_ship_by_itself_set_before_the_grace_is_moved_to_it() -> None:
    # An order stored with its timer at the ship-by instant (as it was set before the grace).
    order, _ = paid()
    order.timers[TimerKind.LATE_SHIPMENT] = SHIP_BY
    on_time = SHIP_BY + timedelta(seconds=1)
    assert order.on_timer(TIMER, SHIP_BY, POLICY, on_time) == [
        TimerSet(TimerKind.LATE_SHIPMENT, CHECK)
    ]
    assert order.record_shipped(SHIP_BY, POLICY, on_time) == [
        TimerCancelled(TimerKind.LATE_SHIPMENT)
    ]
    assert order.late_penalty is None
    # fired after an outage: a grace from now, then judged
    order, _ = paid()
    order.timers[TimerKind.LATE_SHIPMENT] = SHIP_BY
    now = SHIP_BY + 2 * H
    assert order.on_timer(TIMER, SHIP_BY, POLICY, now) == [
        TimerSet(TimerKind.LATE_SHIPMENT, now + CATCH_UP_GRACE)
    ]
    later = now + CATCH_UP_GRACE
    assert one(order.on_timer(TIMER, later, POLICY, later + H), RefundDue).amount == 1000


def test_shipment_or_cancellation_before_order_paid_is_judged_when_it_arrives() -> None:
    order = ShopOrder.new("o1")
    assert order.record_shipped(PAID + H, POLICY, PAID + H) == []
    assert order.record_paid(facts(20000, paid_at=PAID), POLICY, PAID + 2 * H) == []
    assert order.late_penalty is None and order.timers == {}
    late = ShopOrder.new("o1")
    late.record_shipped(SHIP_BY + H, POLICY, SHIP_BY + H)
    events = late.record_paid(facts(20000, paid_at=PAID), POLICY, SHIP_BY + 2 * H)
    assert one(events, RefundDue).amount == 1000
    assert not only(events, TimerSet)


def test_a_stale_or_unknown_timer_has_no_effect() -> None:
    order, _ = paid()
    assert order.on_timer(TIMER, SHIP_BY - H, POLICY, SHIP_BY) == []
    assert ShopOrder.new("o2").on_timer(TIMER, CHECK, POLICY, CHECK) == []
    assert order.late_penalty is None


def test_a_free_order_gets_an_apology_but_no_refund_of_zero() -> None:
    order, _ = paid(facts(0, paid_at=PAID))
    events = order.on_timer(TIMER, CHECK, POLICY, CHECK)
    assert not only(events, RefundDue)
    assert "amount" not in one(events, Notify).params  # no "refunded 0.00"


def test_the_apology_tells_whether_the_order_shipped_late_or_was_cancelled() -> None:
    shipped, _ = paid(facts(20000, paid_at=PAID))
    events = shipped.record_shipped(SHIP_BY + H, POLICY, SHIP_BY + H)
    assert one(events, Notify).params["order_state"] == "shipped"
    cancelled, _ = paid(facts(20000, paid_at=PAID))
    events = cancelled.record_cancelled(SHIP_BY + H, POLICY, SHIP_BY + H)
    assert one(events, Notify).params["order_state"] == "cancelled"


def test_an_order_round_trips_through_json() -> None:
    order, _ = paid(facts(20000, 500, paid_at=PAID, presale_ship_by=SHIP_BY, gift=True))
    order.record_shipped(SHIP_BY + H, POLICY, SHIP_BY + H)
    document = json.loads(json.dumps(order.to_dict()))
    assert ShopOrder.from_dict(document) == order
    text = json.dumps(document)
    for personal in ('"customer"', '"name"', '"phone"', '"email"'):
        assert personal not in text  # ids and amounts only, no personal data (SPEC 7)


# --- the budget on its own ------------------------------------------------------------------


def test_budget_counts_grants_inside_the_window_only() -> None:
    budget = CompensationBudget("c1")
    assert budget.record("k1", 4000, "CNY", T0, POLICY)
    assert not budget.record("k1", 4000, "CNY", T0 + H, POLICY)  # once per complaint
    assert budget.used("CNY", T0, POLICY) == 4000
    assert budget.used("CNY", T0 + 30 * DAY - timedelta(microseconds=1), POLICY) == 4000
    assert budget.used("CNY", T0 + 30 * DAY, POLICY) == 0
    # granted by a transaction whose clock read later than this one's: it counts
    assert budget.used("CNY", T0 - H, POLICY) == 4000
    assert budget.fits(6000, "CNY", T0, POLICY)
    assert not budget.fits(6001, "CNY", T0, POLICY)


def test_budget_drops_grants_that_no_longer_count_and_round_trips() -> None:
    budget = CompensationBudget("c1")
    budget.record("old", 100, "CNY", T0, POLICY)
    budget.record("new", 200, "CNY", T0 + 31 * DAY, POLICY)
    assert [g.complaint_id for g in budget.grants] == ["new"]
    assert CompensationBudget.from_dict(json.loads(json.dumps(budget.to_dict()))) == budget


def test_an_order_learnt_of_after_its_ship_by_is_checked_after_a_grace() -> None:
    order = ShopOrder.new("o1")
    now = SHIP_BY + DAY  # order.paid processed a day late (an outage, a backlog)
    events = order.record_paid(facts(20000, paid_at=PAID), POLICY, now)
    assert events == [TimerSet(TimerKind.LATE_SHIPMENT, now + CATCH_UP_GRACE)]
    # order.shipped, right behind it in the partition, says it shipped in time
    assert order.record_shipped(SHIP_BY - H, POLICY, now) == [
        TimerCancelled(TimerKind.LATE_SHIPMENT)
    ]
    assert order.on_timer(TIMER, now + CATCH_UP_GRACE, POLICY, now + CATCH_UP_GRACE) == []
    assert order.late_penalty is None


def test_an_order_learnt_of_late_and_never_shipped_owes_from_its_ship_by() -> None:
    order = ShopOrder.new("o1")
    now = SHIP_BY + DAY
    order.record_paid(facts(20000, paid_at=PAID), POLICY, now)
    events = order.on_timer(TIMER, now + CATCH_UP_GRACE, POLICY, now + CATCH_UP_GRACE)
    refund = one(events, RefundDue)
    assert refund.due_by == SHIP_BY + 24 * H
    assert not only(events, SlaBreached)  # issued late: the refund ledger's breach
