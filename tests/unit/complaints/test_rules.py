"""Complaints rules at their boundaries: SLA deadlines, coupon amounts, the late-shipment
amount."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.complaints.domain.compensation import coupon_for
from services.complaints.domain.rules import (
    Category,
    is_complex,
    late_shipment_amount,
    quality_issue_coupon,
    resolution_hours,
    sla_deadlines,
)

from . import POLICY, T0, policy


@pytest.mark.parametrize(
    ("category", "hours"),
    [
        ("logistics_delay", 2),
        ("late_shipment", 2),
        ("wrong_item", 2),
        ("missing_item", 2),
        ("service_attitude", 2),
        ("other", 2),
        ("quality_issue", 24),
        ("not_received", 24),
        ("fake_shipment", 24),
    ],
)
def test_sla_deadlines_simple_and_complex_categories(category: str, hours: int) -> None:
    deadlines = sla_deadlines(Category(category), T0, POLICY)
    assert deadlines.first_response == T0 + timedelta(hours=2)
    assert deadlines.resolution == T0 + timedelta(hours=hours)
    assert resolution_hours(Category(category), POLICY) == hours
    assert is_complex(Category(category), POLICY) is (hours == 24)


def test_sla_deadlines_follow_the_policy() -> None:
    rules = policy(first_response_hours=1, resolution_hours=4, complex_resolution_hours=48)
    assert sla_deadlines(Category.OTHER, T0, rules).first_response == T0 + timedelta(hours=1)
    assert sla_deadlines(Category.OTHER, T0, rules).resolution == T0 + timedelta(hours=4)
    assert sla_deadlines(Category.QUALITY_ISSUE, T0, rules).resolution == T0 + timedelta(hours=48)


def test_sla_deadlines_need_an_aware_instant() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sla_deadlines(Category.OTHER, T0.replace(tzinfo=None), POLICY)


@pytest.mark.parametrize(
    ("goods_total", "coupon"),
    [
        (0, 500),  # the minimum
        (9999, 500),  # 5 % is 499: the minimum
        (10000, 500),  # exactly 500
        (10020, 501),  # 501: above the minimum, rounded down
        (10039, 501),
        (99999, 4999),
        (100000, 5000),  # exactly the maximum
        (100020, 5000),  # 5001 -> the maximum
        (10**9, 5000),
    ],
)
def test_quality_issue_coupon_is_5_percent_between_500_and_5000(
    goods_total: int, coupon: int
) -> None:
    assert quality_issue_coupon(goods_total, POLICY) == coupon
    assert coupon_for(Category.QUALITY_ISSUE, goods_total, POLICY) == coupon


@pytest.mark.parametrize(
    ("goods_total", "amount"),
    [
        (0, 0),
        (19, 0),  # 0.95 rounds down
        (20, 1),
        (10000, 500),
        (59999, 2999),
        (60000, 3000),  # exactly the cap
        (60020, 3000),  # 3001 -> the cap
        (10**9, 3000),
    ],
)
def test_late_shipment_amount_is_5_percent_capped_at_3000(goods_total: int, amount: int) -> None:
    assert late_shipment_amount(goods_total, "CNY", POLICY) == amount


def test_late_shipment_amount_follows_the_policy() -> None:
    rules = policy(late_shipment_rate_bp=1000, late_shipment_cap=500)
    assert late_shipment_amount(4000, "CNY", rules) == 400
    assert late_shipment_amount(6000, "CNY", rules) == 500


@pytest.mark.parametrize(
    ("category", "coupon"),
    [
        ("logistics_delay", 500),
        ("missing_item", 1000),
        ("wrong_item", 1000),
        ("not_received", 1000),
        ("service_attitude", 500),
        ("late_shipment", 0),
        ("fake_shipment", 0),
        ("other", 0),
    ],
)
def test_fixed_coupons_by_category(category: str, coupon: int) -> None:
    assert coupon_for(Category(category), 123456, POLICY) == coupon


def test_coupon_amounts_follow_the_policy() -> None:
    rules = policy(service_attitude_coupon=800, quality_issue_min=100, quality_issue_max=200)
    assert coupon_for(Category.SERVICE_ATTITUDE, 0, rules) == 800
    assert coupon_for(Category.QUALITY_ISSUE, 0, rules) == 100
    assert coupon_for(Category.QUALITY_ISSUE, 10**6, rules) == 200
