from decimal import Decimal

import pytest
from babel.numbers import format_currency, list_currencies
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.money import (
    babel_pattern,
    format_money,
    is_known_currency,
    major_units,
    minor_digits,
    per_unit_share,
    percent_bp,
    split_largest_remainder,
)

amounts = st.integers(min_value=0, max_value=10**12)


def test_per_unit_share_examples():
    assert [per_unit_share(1000, k, k + 1, 3) for k in range(3)] == [333, 333, 334]
    assert per_unit_share(1000, 0, 3, 3) == 1000
    assert per_unit_share(1, 0, 1, 2) == 0
    assert per_unit_share(1, 1, 2, 2) == 1


@given(total=amounts, quantity=st.integers(1, 50), data=st.data())
def test_returning_every_unit_in_any_steps_gives_back_exactly_the_total(total, quantity, data):
    steps = data.draw(st.lists(st.integers(1, quantity), min_size=1, max_size=quantity))
    returned, refunded = 0, 0
    for step in steps:
        step = min(step, quantity - returned)
        if step == 0:
            break
        share = per_unit_share(total, returned, returned + step, quantity)
        assert share >= 0
        refunded += share
        returned += step
        assert refunded <= total
    refunded += per_unit_share(total, returned, quantity, quantity)
    assert refunded == total


def test_per_unit_share_rejects_impossible_units():
    with pytest.raises(ValueError):
        per_unit_share(100, 2, 1, 3)
    with pytest.raises(ValueError):
        per_unit_share(100, 0, 4, 3)
    with pytest.raises(ValueError):
        per_unit_share(100, 0, 1, 0)


def test_split_examples():
    assert split_largest_remainder(100, [1, 1, 1]) == [34, 33, 33]
    assert split_largest_remainder(8950, [20000, 5800]) == [6938, 2012]
    assert split_largest_remainder(0, [5, 5]) == [0, 0]
    assert split_largest_remainder(7, [0, 3]) == [0, 7]


@given(amount=amounts, weights=st.lists(st.integers(0, 10**9), min_size=1, max_size=8))
def test_split_sums_exactly_and_is_proportional(amount, weights):
    if sum(weights) == 0:
        return
    parts = split_largest_remainder(amount, weights)
    assert sum(parts) == amount
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert part >= 0
        # Largest remainder never moves a part more than one unit from its exact share.
        assert abs(part * total - amount * weight) < total
        if weight == 0:
            assert part == 0


def test_split_rejects_bad_input():
    with pytest.raises(ValueError):
        split_largest_remainder(-1, [1])
    with pytest.raises(ValueError):
        split_largest_remainder(5, [0, 0])
    with pytest.raises(ValueError):
        split_largest_remainder(5, [])


def test_percent_bp_rounds_down():
    assert percent_bp(19999, 500) == 999
    assert percent_bp(0, 500) == 0


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("JPY", 0), ("CLP", 0), ("CNY", 2), ("USD", 2), ("KWD", 3), ("BHD", 3), ("IQD", 3)],
)
def test_minor_digits_follow_iso_4217(currency, digits):
    assert minor_digits(currency) == digits


@pytest.mark.parametrize("code", ["ZZZ", "cny", "CN", ""])
def test_an_unknown_currency_is_refused(code):
    with pytest.raises(ValueError, match="ISO 4217"):
        minor_digits(code)


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["JPY", "CNY", "KWD"]))
def test_formatted_amounts_read_back_exactly(amount, currency):
    """The text holds exactly the amount: its digits, read as major units, give it back."""
    en = format_money(amount, currency, "en")
    sign, number = ("-", en[1:]) if en.startswith("-") else ("", en)
    code, digits = number.split(" ")
    assert code == currency
    assert major_units(amount, currency) == Decimal(sign + digits)
    assert len(digits.partition(".")[2]) == minor_digits(currency)


@settings(max_examples=300)
@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from(sorted(c for c in list_currencies() if is_known_currency(c))),
    st.sampled_from(["zh-CN", "en"]),
)
def test_formatted_amounts_are_what_babel_writes(amount, currency, language):
    pattern, locale = babel_pattern(currency, language)
    expected = format_currency(
        major_units(amount, currency),
        currency,
        format=pattern,
        locale=locale,
        currency_digits=False,
    )
    assert format_money(amount, currency, language) == expected
