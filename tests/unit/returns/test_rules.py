"""Eligibility rules (SPEC 4.1-4.6) at their boundaries, and the time arithmetic behind them."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from services.returns.domain.eligibility import no_reason_deadline
from services.returns.domain.events import TimerSet
from services.returns.domain.vocabulary import (
    EXCLUDED_CATEGORIES,
    NOT_INTACT_CONDITIONS,
    ReturnStatus,
    Rule,
    TimerKind,
    WaitingFor,
)
from services.returns.domain.waiting import add_working_hours
from shared.policy import LocalHours

from . import SHANGHAI, SIGNED, Case, at, decided, line, only, order, policy

NINE_TO_SIX = LocalHours(start=time(9), end=time(18))


# --- the window -------------------------------------------------------------------------------


def test_deadline_counts_from_the_local_date_of_the_signature():
    # Signed 00:30 local on 03-02 (16:30 UTC on 03-01): D = 03-02, late from 03-10 00:00 local.
    assert no_reason_deadline(SIGNED, SHANGHAI, 7) == at("2026-03-10T00:00:00+08:00")
    # Signed 23:59:59 local on 03-01 (15:59:59 UTC): D = 03-01, one day earlier.
    assert no_reason_deadline(at("2026-03-01T15:59:59Z"), SHANGHAI, 7) == at(
        "2026-03-09T00:00:00+08:00"
    )
    assert no_reason_deadline(SIGNED, SHANGHAI, 15) == at("2026-03-18T00:00:00+08:00")


def test_deadline_rejects_naive_signature():
    with pytest.raises(ValueError, match="aware"):
        no_reason_deadline(datetime(2026, 3, 1), SHANGHAI, 7)


@pytest.mark.parametrize(
    ("requested_at", "rule"),
    [
        ("2026-03-09T15:59:59Z", Rule.ELIGIBLE),  # 23:59:59 local on 03-09: last second
        ("2026-03-09T16:00:00Z", Rule.WINDOW_EXPIRED),  # 00:00:00 local on 03-10: first late
        # After midnight UTC, still 03-09 local: a UTC-date implementation would refuse this.
        ("2026-03-09T08:00:00Z", Rule.ELIGIBLE),
        ("2026-03-10T00:30:00+08:00", Rule.WINDOW_EXPIRED),
    ],
)
def test_no_reason_window_in_shanghai(requested_at, rule):
    case = Case(order(signed_at=SIGNED))
    assert decided(case.submit(requested_at=at(requested_at))).rule == rule


def test_signature_just_before_local_midnight_starts_the_count_a_day_earlier():
    case = Case(order(signed_at=at("2026-03-01T15:59:59Z")))  # 23:59:59 on 03-01 local
    assert decided(case.submit("a", requested_at=at("2026-03-08T15:59:59Z"))).rule == Rule.ELIGIBLE
    case = Case(order(signed_at=at("2026-03-01T15:59:59Z")))
    assert (
        decided(case.submit("b", requested_at=at("2026-03-08T16:00:00Z"))).rule
        == Rule.WINDOW_EXPIRED
    )


def test_a_shop_in_another_time_zone_counts_in_its_own_local_dates():
    # 04:30 UTC on 03-01 is 23:30 on 02-28 in New York: D = 02-28, late from 03-08 00:00 EST.
    ny = policy(timezone="America/New_York")
    signed = at("2026-03-01T04:30:00Z")
    assert no_reason_deadline(signed, ZoneInfo("America/New_York"), 7) == at(
        "2026-03-08T00:00:00-05:00"
    )
    in_time = Case(order(signed_at=signed), ny)
    assert decided(in_time.submit(requested_at=at("2026-03-08T04:59:59Z"))).rule == Rule.ELIGIBLE
    late = Case(order(signed_at=signed), ny)
    assert decided(late.submit(requested_at=at("2026-03-08T05:00:00Z"))).rule == Rule.WINDOW_EXPIRED
    # The same instants in Shanghai (D = 03-01) are both in time.
    assert (
        decided(Case(order(signed_at=signed)).submit(requested_at=at("2026-03-08T05:00:00Z"))).rule
        == Rule.ELIGIBLE
    )


def test_no_reason_days_come_from_the_policy():
    case = Case(order(), policy(no_reason_days=10))
    assert decided(case.submit(requested_at=at("2026-03-12T23:59:59+08:00"))).rule == Rule.ELIGIBLE


# --- exclusions, waivers, condition ---------------------------------------------------------


@pytest.mark.parametrize("category", sorted(EXCLUDED_CATEGORIES))
def test_each_statutory_category_is_excluded_from_no_reason_returns(category):
    case = Case(order(line("l1", category=category, title="Thing"), line("l2")))
    event = decided(case.submit(lines={"l1": 1, "l2": 1}))
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.EXCLUDED_CATEGORY)
    assert "「Thing」" in event.message
    assert "单独" in event.message and "on their own" in event.message_en
    assert case.ledger.reserved == {}


@pytest.mark.parametrize(
    "category", ["electronics", "underwear", "cosmetics", "food", "jewellery", "software"]
)
def test_nothing_else_is_excluded(category):
    case = Case(order(line(category=category)))
    assert decided(case.submit()).rule == Rule.ELIGIBLE


@pytest.mark.parametrize("category", sorted(EXCLUDED_CATEGORIES))
def test_excluded_categories_may_still_be_returned_for_seller_fault(category):
    case = Case(order(line(category=category)))
    event = decided(case.submit(reason="quality_issue", evidence=["https://img/1.jpg"]))
    assert (event.status, event.rule) == (ReturnStatus.APPROVED, Rule.ELIGIBLE)


def test_a_line_waived_at_purchase_is_refused_for_no_reason():
    case = Case(order(line("l1", waived=True), line("l2")))
    event = decided(case.submit(lines={"l1": 1, "l2": 1}))
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.WAIVED_AT_PURCHASE)
    only_other = Case(order(line("l1", waived=True), line("l2")))
    assert decided(only_other.submit(lines={"l2": 1})).rule == Rule.ELIGIBLE


def test_a_waived_line_may_still_be_returned_for_seller_fault():
    case = Case(order(line(waived=True)))
    assert decided(case.submit(reason="wrong_item", evidence=["u"])).rule == Rule.ELIGIBLE


def test_checks_run_in_order_excluded_then_waived_then_window_then_condition():
    late = at("2026-03-20T12:00:00+08:00")
    both = order(line("l1", category="periodical"), line("l2", waived=True))
    assert (
        decided(
            Case(both).submit(lines={"l1": 1, "l2": 1}, requested_at=late, condition=["activated"])
        ).rule
        == Rule.EXCLUDED_CATEGORY
    )
    assert (
        decided(Case(order(line(waived=True))).submit(requested_at=late)).rule
        == Rule.WAIVED_AT_PURCHASE
    )
    assert (
        decided(Case(order()).submit(requested_at=late, condition=["activated"])).rule
        == Rule.WINDOW_EXPIRED
    )


@pytest.mark.parametrize("flag", sorted(NOT_INTACT_CONDITIONS))
def test_each_other_condition_flag_makes_goods_not_intact(flag):
    event = decided(Case(order()).submit(condition=["opened_for_inspection", flag]))
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.NOT_INTACT)


@pytest.mark.parametrize(
    "flags", [[], ["opened_for_inspection"], ["trial_use"], ["opened_for_inspection", "trial_use"]]
)
def test_opened_for_inspection_and_trial_use_keep_goods_intact(flags):
    assert decided(Case(order()).submit(condition=flags)).rule == Rule.ELIGIBLE


@pytest.mark.parametrize("flag", sorted(NOT_INTACT_CONDITIONS))
def test_condition_does_not_matter_for_seller_fault(flag):
    event = decided(
        Case(order()).submit(reason="damaged_in_transit", condition=[flag], evidence=["u"])
    )
    assert event.rule == Rule.ELIGIBLE


def test_unknown_reason_kind_or_flag_is_refused_loudly():
    for bad in ({"reason": "bored"}, {"kind": "swap"}, {"condition": ["smelly"]}, {"lines": {}}):
        with pytest.raises(ValueError):
            Case(order()).submit(**bad)
    with pytest.raises(ValueError):
        Case(order()).submit(lines={"l1": 0})


# --- quantity ---------------------------------------------------------------------------------


def test_quantity_above_what_was_bought_is_refused():
    event = decided(Case(order(line(quantity=2))).submit(lines={"l1": 3}))
    assert (event.status, event.rule) == (ReturnStatus.REJECTED, Rule.QUANTITY_EXCEEDS_PURCHASED)


def test_a_line_not_in_the_order_is_refused():
    event = decided(Case(order()).submit(lines={"l1": 1, "nope": 1}))
    assert event.rule == Rule.QUANTITY_EXCEEDS_PURCHASED
    assert "nope" in event.message


def test_units_already_refunded_or_claimed_by_an_open_return_are_not_available():
    case = Case(order(line(quantity=3)))
    case.refund("r1", lines={"l1": 1})
    assert decided(case.submit("r2", lines={"l1": 1})).status == ReturnStatus.APPROVED  # reserved
    assert decided(case.submit("r3", lines={"l1": 2})).rule == Rule.QUANTITY_EXCEEDS_PURCHASED
    assert decided(case.submit("r4", lines={"l1": 1})).rule == Rule.ELIGIBLE
    assert case.ledger.reserved == {"r2": {"l1": 1}, "r4": {"l1": 1}}


def test_a_gift_line_on_its_own_may_be_returned():
    case = Case(order(line("l1"), line("g", gift=True, stated_price=500)))
    assert decided(case.submit(lines={"g": 1})).rule == Rule.ELIGIBLE


# --- seller fault ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "requested_at", "outcome", "timer", "says"),
    [
        (
            "quality_issue",
            "2026-03-05T10:00:00+08:00",
            (ReturnStatus.PENDING, Rule.EVIDENCE_MISSING, WaitingFor.EVIDENCE),
            TimerSet(TimerKind.EVIDENCE_WAIT, at("2026-03-08T10:00:00+08:00")),
            ("72", "photos"),
        ),
        (
            "missing_parts",
            "2026-03-20T10:00:00+08:00",
            (ReturnStatus.REVIEW, Rule.QUALITY_WINDOW_EXPIRED, WaitingFor.REVIEW),
            # 12 working hours from 10:00: 8 today, 4 tomorrow.
            TimerSet(TimerKind.REVIEW_SLA, at("2026-03-21T13:00:00+08:00")),
            ("15天", "answers by 13:00 on 21 March"),
        ),
    ],
    ids=["in-the-window-waits-for-photos", "past-the-window-goes-to-review"],
)
def test_seller_fault_without_evidence(reason, requested_at, outcome, timer, says):
    events = Case(order()).submit(reason=reason, requested_at=at(requested_at))
    event = decided(events)
    assert (event.status, event.rule, event.waiting_for) == outcome
    assert event.event_type == "return.pending"
    assert only(events, TimerSet) == [timer]
    assert says[0] in event.message and says[1] in event.message_en


@pytest.mark.parametrize(
    ("requested_at", "status"),
    [
        ("2026-03-17T23:59:59+08:00", ReturnStatus.APPROVED),  # last second of 15 days
        ("2026-03-18T00:00:00+08:00", ReturnStatus.REVIEW),  # first second after
        ("2026-06-01T00:00:00+08:00", ReturnStatus.REVIEW),  # never rejected for lateness
    ],
)
def test_quality_window(requested_at, status):
    event = decided(
        Case(order()).submit(
            reason="not_as_described", evidence=["u"], requested_at=at(requested_at)
        )
    )
    assert event.status == status


def test_seller_fault_is_not_bound_by_the_no_reason_window():
    late_for_no_reason = at("2026-03-12T10:00:00+08:00")
    event = decided(
        Case(order()).submit(reason="wrong_item", evidence=["u"], requested_at=late_for_no_reason)
    )
    assert event.rule == Rule.ELIGIBLE


# --- working hours ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "hours", "end"),
    [
        ("2026-03-02T08:00:00+08:00", 12, "2026-03-03T12:00:00+08:00"),  # before hours
        ("2026-03-02T10:00:00+08:00", 12, "2026-03-03T13:00:00+08:00"),  # within hours
        ("2026-03-02T19:00:00+08:00", 12, "2026-03-04T12:00:00+08:00"),  # after hours
        ("2026-03-02T18:00:00+08:00", 1, "2026-03-03T10:00:00+08:00"),  # exactly at closing
        ("2026-03-02T09:00:00+08:00", 9, "2026-03-02T18:00:00+08:00"),  # ends at closing
        ("2026-03-02T09:00:00+08:00", 30, "2026-03-05T12:00:00+08:00"),  # spans days
        ("2026-03-07T17:30:00+08:00", 1, "2026-03-08T09:30:00+08:00"),  # Saturday to Sunday
        ("2026-03-02T17:59:30+08:00", 1, "2026-03-03T09:59:30+08:00"),  # seconds carry
        ("2026-03-01T23:00:00Z", 12, "2026-03-03T12:00:00+08:00"),  # 07:00 local on 03-02
    ],
)
def test_add_working_hours(start, hours, end):
    assert add_working_hours(at(start), hours, SHANGHAI, NINE_TO_SIX) == at(end)


def test_add_working_hours_with_other_hours_and_zone():
    short_day = LocalHours.parse("10:00-16:00")
    assert add_working_hours(
        at("2026-03-02T15:00:00+01:00"), 12, ZoneInfo("Europe/Paris"), short_day
    ) == at("2026-03-04T15:00:00+01:00")  # 1h + 6h + 5h


def test_add_working_hours_is_aware_and_zero_is_identity():
    start = at("2026-03-02T20:00:00+08:00")
    assert add_working_hours(start, 0, SHANGHAI, NINE_TO_SIX) == start
    assert add_working_hours(start, 1, SHANGHAI, NINE_TO_SIX).utcoffset() is not None
    with pytest.raises(ValueError):
        add_working_hours(datetime(2026, 3, 2, 10), 1, SHANGHAI, NINE_TO_SIX)
    with pytest.raises(ValueError):
        add_working_hours(start.astimezone(UTC), -1, SHANGHAI, NINE_TO_SIX)


def test_review_sla_uses_the_policy_working_hours_and_zone():
    case = Case(order(), policy(review_sla_working_hours=2, working_hours="09:00-17:00"))
    events = case.submit(reason="quality_issue", requested_at=at("2026-03-20T16:30:00+08:00"))
    assert only(events, TimerSet) == [
        TimerSet(TimerKind.REVIEW_SLA, at("2026-03-21T10:30:00+08:00"))
    ]
