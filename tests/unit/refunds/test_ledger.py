"""The refund ledger (SPEC 4.11): the order-level cap, the cumulative split over the payment
methods, identity of requests, waiting for the order, payout results, and its properties over
any sequence of requests."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.refunds.domain import events as decisions
from services.refunds.domain.model import (
    ALREADY_REFUNDED,
    OrderFacts,
    OrderLedger,
    PayoutMismatch,
    RefundRequest,
    UnknownRefund,
)
from services.refunds.domain.refund import IssuedRefund
from services.refunds.domain.split import cumulative_split
from shared.contracts import ids

from . import DUE, T0, facts, request

OVERFLOW = "balance"


def paid(f: OrderFacts) -> OrderLedger:
    ledger = OrderLedger(f.order_id)
    assert ledger.record_paid(f, OVERFLOW, T0) == []
    return ledger


def issued(events: list[object]) -> IssuedRefund:
    found = [event.refund for event in events if isinstance(event, decisions.RefundIssued)]
    assert len(found) == 1, events
    return found[0]


# --- the stories ---------------------------------------------------------------------------


def test_a_return_after_a_complaint_refund_of_the_same_goods_is_issued_for_nothing() -> None:
    ledger = paid(facts([("l1", 1, 25000)], 1200, [("alipay", 26200)]))
    first = issued(
        ledger.request(
            request("cp-1", [("goods", 25000), ("outbound_shipping", 1200)], case_type="complaint"),
            OVERFLOW,
            T0,
        )
    )
    second = issued(
        ledger.request(
            request("rt-1", [("goods", 25000), ("outbound_shipping", 1200)]), OVERFLOW, T0
        )
    )
    assert (first.amount, first.cut) == (26200, 0)
    assert second.amount == 0
    assert second.breakdown[-1] == (ALREADY_REFUNDED, -26200)
    assert second.payments == ()
    assert second.settled_at == T0  # nothing to pay out: the case closes
    assert second.refund_id == ids.refund_id("return", "rt-1")


def test_the_outbound_fee_is_refunded_once_across_a_complaint_and_a_return() -> None:
    ledger = paid(facts([("l1", 1, 25000)], 900, [("card", 25900)]))
    delay = issued(
        ledger.request(
            request("cp-1", [("outbound_shipping", 900)], case_type="complaint"), OVERFLOW, T0
        )
    )
    full = issued(
        ledger.request(
            request("rt-1", [("goods", 25000), ("outbound_shipping", 900)]), OVERFLOW, T0
        )
    )
    assert delay.amount == 900
    assert full.amount == 25000
    assert full.breakdown == (
        ("goods", 25000),
        ("outbound_shipping", 900),
        (ALREADY_REFUNDED, -900),
    )
    assert ledger.outbound_given == 900
    assert ledger.method_given() == {"card": 25900}


def test_three_units_returned_one_at_a_time_give_each_method_exactly_its_charge() -> None:
    ledger = paid(facts([("l1", 3, 5000)], 0, [("balance", 500), ("card", 4500)]))
    unit_shares = [1666, 1667, 1667]  # floor(5000*K/3) differences (SPEC 4.7)
    refunds = [
        issued(ledger.request(request(f"rt-{i}", [("goods", share)]), OVERFLOW, T0))
        for i, share in enumerate(unit_shares)
    ]
    balance = [refund.to_methods.get("balance", 0) for refund in refunds]
    card = [refund.to_methods.get("card", 0) for refund in refunds]
    assert sum(balance) == 500  # never 5.01, which splitting each refund on its own gives
    assert sum(card) == 4500
    assert all(refund.overflow == 0 for refund in refunds)
    assert [sum(a for _, a in r.payments) for r in refunds] == unit_shares


def test_compensation_on_top_of_a_full_refund_goes_to_the_payout_method() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    issued(ledger.request(request("rt-1", [("goods", 10000)]), OVERFLOW, T0))
    late = issued(
        ledger.request(
            request("o-1", [("compensation", 500)], case_type="late_shipment"), "wallet", T0
        )
    )
    assert late.payments == (("wallet", 500),)
    assert (late.overflow, late.to_methods) == (500, {})


def test_the_payout_method_shares_one_line_with_an_order_method_of_that_name() -> None:
    ledger = paid(facts([("l1", 1, 1000)], 0, [("balance", 200), ("card", 800)]))
    issued(ledger.request(request("rt-1", [("goods", 1000)]), OVERFLOW, T0))
    freight = issued(
        ledger.request(
            request("rt-1", [("return_shipping", 300)], part="return_shipping"), OVERFLOW, T0
        )
    )
    assert freight.payments == (("balance", 300),)
    assert ledger.method_given() == {"balance": 200, "card": 800}


def test_return_freight_comes_on_top_of_the_cap() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    first = issued(
        ledger.request(request("rt-1", [("goods", 10000), ("return_shipping", 800)]), OVERFLOW, T0)
    )
    assert (first.amount, first.cut) == (10800, 0)
    assert first.payments == (("card", 10000), ("balance", 800))


def test_deductions_count_as_given_back_for_goods() -> None:
    ledger = paid(facts([("l1", 2, 10000)], 0, [("card", 10000)]))
    first = issued(
        ledger.request(
            request("rt-1", [("goods", 5000), ("free_shipping_deduction", -800)]), OVERFLOW, T0
        )
    )
    second = issued(
        ledger.request(request("cp-1", [("goods", 10000)], case_type="complaint"), OVERFLOW, T0)
    )
    assert first.amount == 4200
    assert (second.amount, second.cut) == (5800, 4200)
    assert ledger.goods_given == 10000


# --- identity --------------------------------------------------------------------------------


def test_a_repeated_request_is_not_paid_again_and_a_different_one_is_refused() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    original = request("rt-1", [("goods", 4000)])
    issued(ledger.request(original, OVERFLOW, T0))
    resent = replace(original, requested_at=T0 + timedelta(hours=1))
    assert ledger.request(resent, OVERFLOW, T0) == [decisions.RequestRepeated(original.refund_id)]
    other = request("rt-1", [("goods", 5000)])
    assert ledger.request(other, OVERFLOW, T0) == [
        decisions.RequestRefused(original.refund_id, decisions.RefusalReason.CONFLICTING_REQUEST)
    ]
    assert len(ledger.refunds) == 1
    assert ledger.goods_given == 4000


# The fingerprint the previous release stored for request("rt-1", [("goods", 4000)]) due
# 2026-05-02T10:00:00+08:00: it hashed `due_by` as written.
LEGACY_PRINT = "5e352ca41b1703f24e81b4ceda7a949b"


def test_the_same_deadline_written_with_another_offset_is_the_same_request() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    original = request("rt-1", [("goods", 4000)])
    issued(ledger.request(original, OVERFLOW, T0))
    shanghai = timezone(timedelta(hours=8))
    resent = replace(original, due_by=original.due_by.astimezone(shanghai))
    assert resent.due_by.isoformat() != original.due_by.isoformat()
    assert ledger.request(resent, OVERFLOW, T0) == [decisions.RequestRepeated(original.refund_id)]
    later = replace(original, due_by=original.due_by + timedelta(seconds=1))
    assert ledger.request(later, OVERFLOW, T0) == [
        decisions.RequestRefused(original.refund_id, decisions.RefusalReason.CONFLICTING_REQUEST)
    ]


def test_a_replay_matches_a_refund_stored_with_the_deadline_as_written() -> None:
    """Refunds stored before the deadline counted as an instant kept its text's fingerprint."""
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    shanghai = timezone(timedelta(hours=8))
    original = request("rt-1", [("goods", 4000)])
    original = replace(original, due_by=original.due_by.astimezone(shanghai))
    issued(ledger.request(original, OVERFLOW, T0))
    refund_id = original.refund_id
    # what the previous release stored for this request (due_by's text, +08:00, hashed)
    stored = replace(ledger.refunds[refund_id], fingerprint=LEGACY_PRINT)
    ledger.refunds[refund_id] = stored
    assert ledger.request(original, OVERFLOW, T0) == [decisions.RequestRepeated(refund_id)]


def test_a_request_in_another_currency_is_refused() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    events = ledger.request(request("rt-1", [("goods", 100)], currency="USD"), OVERFLOW, T0)
    assert events == [
        decisions.RequestRefused(
            ids.refund_id("return", "rt-1"), decisions.RefusalReason.CURRENCY_MISMATCH
        )
    ]
    assert ledger.refunds == {}


@pytest.mark.parametrize("waits", [False, True], ids=["paid", "waiting"])
def test_a_request_for_another_buyer_than_the_one_who_paid_is_refused(waits: bool) -> None:
    # Money beyond what the methods were charged (here freight on top of a full refund) goes
    # to the buyer's payout method: another buyer's would be paid the order's money.
    order = facts([("l1", 1, 10000)], 0, [("card", 10000)])
    asked = request("rt-1", [("goods", 10000), ("return_shipping", 1200)], customer_id="c-2")
    ledger = OrderLedger("o-1") if waits else paid(order)
    events = ledger.request(asked, OVERFLOW, T0)
    if waits:
        events = ledger.record_paid(order, OVERFLOW, T0)[1:]  # after StopWaiting
    assert events == [
        decisions.RequestRefused(asked.refund_id, decisions.RefusalReason.CUSTOMER_MISMATCH)
    ]
    assert (ledger.refunds, ledger.goods_given, ledger.overflow_given) == ({}, 0, 0)
    # Nothing was kept of it: the requester's corrected request under the same id is paid.
    fixed = request("rt-1", [("goods", 10000), ("return_shipping", 1200)])
    refund = issued(ledger.request(fixed, OVERFLOW, T0))
    assert (refund.customer_id, refund.amount) == ("c-1", 11200)


# --- waiting for the order -------------------------------------------------------------------


def test_a_request_before_order_paid_waits_and_is_issued_when_the_order_comes() -> None:
    ledger = OrderLedger("o-1")
    asked = request("rt-1", [("goods", 10000)])
    events = ledger.request(asked, OVERFLOW, T0)
    assert events == [decisions.WaitForOrder(asked.refund_id, T0 + timedelta(minutes=15))]
    assert ledger.request(asked, OVERFLOW, T0) == [decisions.RequestRepeated(asked.refund_id)]
    later = T0 + timedelta(hours=2)
    events = ledger.record_paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]), OVERFLOW, later)
    assert events[0] == decisions.StopWaiting(asked.refund_id)
    refund = issued(events)
    assert (refund.amount, refund.issued_at) == (10000, later)
    assert ledger.waiting == {}


def test_a_waiting_request_whose_refund_id_another_order_was_paid_under_is_refused() -> None:
    ledger = OrderLedger("o-1")
    asked = request("cp-1", [("goods", 4000)], case_type="complaint")
    ledger.request(asked, OVERFLOW, T0)
    events = ledger.record_paid(
        facts([("l1", 1, 10000)], 0, [("card", 10000)]),
        OVERFLOW,
        T0,
        issued_elsewhere={asked.refund_id},
    )
    assert events == [
        decisions.StopWaiting(asked.refund_id),
        decisions.RequestRefused(asked.refund_id, decisions.RefusalReason.OTHER_ORDER),
    ]
    assert (ledger.refunds, ledger.waiting, ledger.goods_given) == ({}, {}, 0)


def test_a_refund_issued_after_its_due_by_is_reported_once() -> None:
    ledger = OrderLedger("o-1")
    ledger.request(request("rt-1", [("goods", 100)]), OVERFLOW, T0)
    after = DUE + timedelta(minutes=1)
    events = ledger.record_paid(facts([("l1", 1, 100)], 0, [("card", 100)]), OVERFLOW, after)
    breaches = [e for e in events if isinstance(e, decisions.RefundSlaBreached)]
    assert [(b.kind, b.detected_at) for b in breaches] == [(decisions.BreachKind.LATE, after)]
    assert ledger.record_paid(facts([("l1", 1, 100)], 0, [("card", 100)]), OVERFLOW, after) == []


# --- payout results --------------------------------------------------------------------------


def test_a_failed_part_is_reissued_once_to_the_payout_method_then_left_for_a_person() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 6000), ("alipay", 4000)]))
    refund = issued(ledger.request(request("rt-1", [("goods", 10000)]), OVERFLOW, T0))
    now = T0 + timedelta(days=2)
    events = ledger.fail(refund.refund_id, "card", 6000, "card_closed", now, OVERFLOW, now)
    assert isinstance(events[0], decisions.PayoutFailed) and events[0].reissued
    reissue = issued(events)
    assert reissue.refund_id == ids.reissue_refund_id(refund.refund_id, "card")
    assert (reissue.case_type, reissue.case_id) == ("return", "rt-1")
    assert reissue.payments == (("balance", 6000),)
    assert reissue.breakdown == (("goods", 6000),)
    assert reissue.due_by == now + timedelta(hours=24)
    # The same part reported again is handled already.
    assert ledger.fail(refund.refund_id, "card", 6000, "card_closed", now, OVERFLOW, now) == []
    again = ledger.fail(reissue.refund_id, "balance", 6000, "account_frozen", now, OVERFLOW, now)
    assert [type(e) for e in again] == [decisions.PayoutFailed, decisions.RefundSlaBreached]
    assert reissue.needs_person
    assert not any(isinstance(e, decisions.RefundIssued) for e in again)
    assert sum(r.amount for r in ledger.refunds.values()) == 16000  # two refunds, no third


def test_payout_results_for_unknown_refunds_or_parts_are_refused() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    refund = issued(ledger.request(request("rt-1", [("goods", 100)]), OVERFLOW, T0))
    with pytest.raises(UnknownRefund):
        ledger.settle("rf-nope", T0)
    with pytest.raises(UnknownRefund):
        ledger.fail("rf-nope", "card", 1, "x", T0, OVERFLOW, T0)
    with pytest.raises(PayoutMismatch):
        ledger.fail(refund.refund_id, "card", 101, "x", T0, OVERFLOW, T0)
    with pytest.raises(PayoutMismatch):
        ledger.fail(refund.refund_id, "alipay", 1, "x", T0, OVERFLOW, T0)


def test_settlement_closes_a_refund_once() -> None:
    ledger = paid(facts([("l1", 1, 10000)], 0, [("card", 10000)]))
    refund = issued(ledger.request(request("rt-1", [("goods", 100)]), OVERFLOW, T0))
    assert ledger.settle(refund.refund_id, DUE) == [decisions.RefundSettled(refund)]
    assert ledger.settle(refund.refund_id, DUE + timedelta(days=1)) == []
    assert refund.settled_at == DUE and refund.settled_on_time


def test_the_ledger_survives_storage() -> None:
    ledger = OrderLedger("o-1")
    ledger.request(request("rt-0", [("goods", 100)]), OVERFLOW, T0)
    ledger.record_paid(facts([("l1", 1, 10000)], 500, [("card", 10500)]), OVERFLOW, T0)
    refund = issued(
        ledger.request(
            request("rt-1", [("goods", 10000), ("outbound_shipping", 500)]), OVERFLOW, T0
        )
    )
    ledger.fail(refund.refund_id, "card", 100, "x", T0, OVERFLOW, T0)
    ledger.request(request("rt-9", [("goods", 1)], order_id="o-1"), OVERFLOW, T0)
    assert OrderLedger.from_dict(ledger.to_dict()) == ledger


# --- the split ---------------------------------------------------------------------------------


def test_no_method_part_is_negative_even_where_largest_remainder_is_not_monotone() -> None:
    # Hamilton's method loses a seat here when the total grows (the Alabama paradox).
    charged = [("a", 6), ("b", 6), ("c", 2)]
    given: dict[str, int] = {}
    for amount in [1] * 14:
        parts, overflow = cumulative_split(amount, charged, given)
        assert overflow == 0 and all(part > 0 for part in parts.values())
        for method, part in parts.items():
            given[method] = given.get(method, 0) + part
    assert given == {"a": 6, "b": 6, "c": 2}


@given(
    charges=st.lists(st.integers(0, 5000), min_size=1, max_size=5),
    amounts=st.lists(st.integers(0, 4000), max_size=12),
)
def test_cumulative_split_never_overpays_a_method(charges: list[int], amounts: list[int]) -> None:
    charged = [(f"m{i}", charge) for i, charge in enumerate(charges)]
    given: dict[str, int] = {}
    for amount in amounts:
        parts, overflow = cumulative_split(amount, charged, given)
        assert all(part > 0 for part in parts.values())
        assert sum(parts.values()) + overflow == amount
        for method, part in parts.items():
            given[method] = given.get(method, 0) + part
        assert all(given.get(m, 0) <= charge for m, charge in charged)
    if sum(amounts) >= sum(charges):
        assert all(given.get(m, 0) == charge for m, charge in charged)


# --- properties over any sequence of requests --------------------------------------------------

KINDS = ["goods", "outbound_shipping", "return_shipping", "compensation"]


@st.composite
def orders(draw: st.DrawFn) -> OrderFacts:
    lines = [
        (f"l{i}", draw(st.integers(1, 4)), draw(st.integers(0, 30000)))
        for i in range(draw(st.integers(1, 3)))
    ]
    shipping = draw(st.integers(0, 2000))
    total = sum(paid for _, _, paid in lines) + shipping
    methods = draw(st.integers(1, 3))
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=methods - 1, max_size=methods - 1)))
    bounds = [0, *cuts, total]
    names = draw(st.permutations(["card", "balance", "alipay"]))[:methods]
    return facts(lines, shipping, [(names[i], bounds[i + 1] - bounds[i]) for i in range(methods)])


@st.composite
def requests(draw: st.DrawFn, order: OrderFacts) -> list[RefundRequest]:
    made: list[RefundRequest] = []
    for n in range(draw(st.integers(1, 8))):
        case_type = draw(st.sampled_from(["return", "complaint", "late_shipment"]))
        case_id = f"case-{draw(st.integers(0, 4))}"
        items = draw(
            st.lists(
                st.tuples(st.sampled_from(KINDS), st.integers(0, order.goods_total + 3000)),
                min_size=1,
                max_size=4,
                unique_by=lambda item: item[0],
            )
        )
        goods = sum(a for k, a in items if k == "goods")
        if goods and draw(st.booleans()):
            items.append(("gift_charge", -draw(st.integers(0, goods))))
        made.append(
            request(
                case_id,
                items,
                case_type=case_type,
                order_id=order.order_id,
                part=draw(st.sampled_from([None, None, f"p{n}"])),
            )
        )
    # Duplicates, and the lot in any order.
    made += draw(st.lists(st.sampled_from(made), max_size=3))
    return draw(st.permutations(made))


def _run(
    order: OrderFacts, asked: list[RefundRequest], paid_after: int
) -> tuple[OrderLedger, list[object]]:
    ledger = OrderLedger(order.order_id)
    events: list[object] = []
    for i, item in enumerate(asked):
        if i == paid_after:
            events += ledger.record_paid(order, OVERFLOW, T0)
        events += ledger.request(item, OVERFLOW, T0)
    events += ledger.record_paid(order, OVERFLOW, T0)
    return ledger, events


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_ledger_properties(data: st.DataObject) -> None:
    order = data.draw(orders())
    asked = data.draw(requests(order))
    paid_after = data.draw(st.integers(0, len(asked)))
    ledger, events = _run(order, asked, paid_after)
    refunds = [event.refund for event in events if isinstance(event, decisions.RefundIssued)]

    # One refund per refund_id, never a second payment.
    assert len({r.refund_id for r in refunds}) == len(refunds) == len(ledger.refunds)
    # Goods (net of deductions) and the outbound fee never above what was paid for them.
    capped = sum(
        sum(
            a
            for k, a in r.breakdown
            if k
            in {
                "goods",
                "outbound_shipping",
                "gift_charge",
                "free_shipping_deduction",
                ALREADY_REFUNDED,
            }
        )
        for r in refunds
    )
    assert capped <= order.goods_total + order.shipping_fee_paid
    assert ledger.outbound_given <= order.shipping_fee_paid
    assert ledger.goods_given <= order.goods_total
    # No method above its charge.
    charged = dict(order.payments)
    given = ledger.method_given()
    assert all(given.get(m, 0) <= charge for m, charge in charged.items())
    for refund in refunds:
        assert refund.amount >= 0
        assert sum(a for _, a in refund.breakdown) == refund.amount
        assert sum(a for _, a in refund.payments) == refund.amount
        assert [k for k, _ in refund.breakdown].count(ALREADY_REFUNDED) == (1 if refund.cut else 0)
    # Once the methods got back as much as they were charged, each got exactly its charge.
    if sum(r.amount for r in refunds) >= sum(charged.values()):
        assert given == {m: c for m, c in charged.items() if c}
    # A replay yields the same ids and amounts.
    _, replayed = _run(order, asked, paid_after)
    again = [event.refund for event in replayed if isinstance(event, decisions.RefundIssued)]
    assert [(r.refund_id, r.amount, r.payments, r.breakdown) for r in again] == [
        (r.refund_id, r.amount, r.payments, r.breakdown) for r in refunds
    ]


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_full_refund_in_parts_gives_every_method_exactly_its_charge(data: st.DataObject) -> None:
    order = data.draw(orders())
    ledger = paid(order)
    total = order.goods_total
    cuts = sorted(data.draw(st.lists(st.integers(0, total), max_size=5)))
    bounds = [0, *cuts, total]
    parts = [("goods", bounds[i + 1] - bounds[i]) for i in range(len(bounds) - 1)]
    parts.append(("outbound_shipping", order.shipping_fee_paid))
    for i, (kind, amount) in enumerate(data.draw(st.permutations(parts))):
        ledger.request(request(f"rt-{i}", [(kind, amount)], order_id=order.order_id), OVERFLOW, T0)
    assert ledger.method_given() == {m: c for m, c in order.payments if c}
    assert ledger.overflow_given == 0


@st.composite
def as_returns_asks(draw: st.DrawFn, order: OrderFacts, n: int) -> RefundRequest:
    """A request with every kind, the deductions clipped as returns clips them (never below 0
    in all, so a gift charge can take goods below 0 against freight), sometimes in another
    currency."""
    room = order.goods_total + order.shipping_fee_paid + 3000
    goods = draw(st.sampled_from([0, 1, order.goods_total]) | st.integers(0, room))
    outbound = draw(st.sampled_from([0, 1, order.shipping_fee_paid]) | st.integers(0, room))
    freight = draw(st.integers(0, 3000))
    running = goods + outbound + freight
    deduction = min(draw(st.integers(0, 3000)), running)
    gift = min(draw(st.integers(0, 5000)), running - deduction)
    items = [
        ("goods", goods),
        ("outbound_shipping", outbound),
        ("return_shipping", freight),
        ("free_shipping_deduction", -deduction),
        ("gift_charge", -gift),
        ("compensation", draw(st.integers(0, 3000))),
    ]
    kept = [item for item in items if item[1] > 0 or (item[1] < 0 and draw(st.booleans()))]
    if sum(a for _, a in kept) < 0 or not kept:
        kept = [item for item in kept if item[1] >= 0] or [("goods", 0)]
    return request(
        f"case-{draw(st.integers(0, 4))}",
        kept,
        case_type=draw(st.sampled_from(["return", "complaint", "late_shipment"])),
        order_id=order.order_id,
        currency=draw(st.sampled_from(["CNY"] * 5 + ["JPY"])),
        part=draw(st.sampled_from([None, None, f"p{n}"])),
    )


STEPS = ["ask", "ask", "again", "paid", "fail", "settle", "store"]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_ledger_properties_with_payout_results_and_storage(data: st.DataObject) -> None:
    """Requests (deductions, other currencies, replays), order.paid at any point, settlements,
    failed parts and the ledger stored and loaded between any two steps."""
    order = data.draw(orders())
    ledger = OrderLedger(order.order_id)
    asked: list[RefundRequest] = []
    refunds: list[IssuedRefund] = []
    for n in range(data.draw(st.integers(1, 12))):
        step = data.draw(st.sampled_from(STEPS))
        events: list[decisions.DomainEvent] = []
        if step == "ask" or (step == "again" and not asked):
            asked.append(data.draw(as_returns_asks(order, n)))
            events = ledger.request(asked[-1], OVERFLOW, T0)
        elif step == "again":
            events = ledger.request(data.draw(st.sampled_from(asked)), OVERFLOW, T0)
        elif step == "paid":
            events = ledger.record_paid(order, OVERFLOW, T0)
        elif step == "store":
            ledger = OrderLedger.from_json(ledger.to_json())
        elif ledger.refunds:
            refund = ledger.refunds[data.draw(st.sampled_from(sorted(ledger.refunds)))]
            if step == "settle":
                events = ledger.settle(refund.refund_id, T0)
            elif refund.payments:
                method, paid_to = data.draw(st.sampled_from(refund.payments))
                amount = data.draw(st.integers(1, paid_to))
                events = ledger.fail(refund.refund_id, method, amount, "x", T0, OVERFLOW, T0)
        refunds += [event.refund for event in events if isinstance(event, decisions.RefundIssued)]
    refunds += [
        event.refund
        for event in ledger.record_paid(order, OVERFLOW, T0)
        if isinstance(event, decisions.RefundIssued)
    ]

    assert len({r.refund_id for r in refunds}) == len(refunds) == len(ledger.refunds)
    originals = [r for r in refunds if r.reissue_of is None]
    # Every refund_id first asked in the order's currency is issued (once, above); none asked
    # only in another one is.
    first: dict[str, RefundRequest] = {}
    for asked_for in asked:
        first.setdefault(asked_for.refund_id, asked_for)
    issued_ids = {r.refund_id for r in originals}
    assert {i for i, r in first.items() if r.currency == order.currency} <= issued_ids
    assert issued_ids <= {r.refund_id for r in asked if r.currency == order.currency}
    charged = dict(order.payments)
    given: dict[str, int] = {}
    for refund in originals:
        assert all(share >= 0 for _, share in refund.method_shares) and refund.overflow >= 0
        for method, share in refund.method_shares:
            given[method] = given.get(method, 0) + share
    assert all(given[method] <= charged[method] for method in given)
    on_top = {"return_shipping", "compensation"}
    capped = sum(r.amount - sum(a for k, a in r.breakdown if k in on_top) for r in originals)
    assert capped <= order.goods_total + order.shipping_fee_paid
    assert ledger.outbound_given <= order.shipping_fee_paid
    for refund in refunds:
        assert refund.currency == order.currency
        assert sum(a for _, a in refund.payments) == refund.amount
        assert sum(a for _, a in refund.breakdown) == refund.amount
        assert all(a > 0 for _, a in refund.payments)
    # A failed part is re-issued once, never more than the original paid that method, and a
    # re-issue is never re-issued.
    for reissue in refunds:
        if reissue.reissue_of is not None:
            original = ledger.refunds[reissue.reissue_of]
            assert original.reissue_of is None
            (failure,) = [
                f
                for f in original.failures
                if ids.reissue_refund_id(original.refund_id, f.method) == reissue.refund_id
            ]
            assert reissue.amount == failure.amount <= original.paid_to(failure.method)
