"""Money in integer minor units (fen for CNY). No floats anywhere in money paths.

Also the one place that turns minor units into text for buyers (`format_money`), with each
currency's ISO 4217 minor-unit digits (JPY 0, CNY 2, KWD 3; SPEC 8), from babel's CLDR data.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import cache, lru_cache
from typing import Literal

from babel import Locale
from babel.numbers import get_currency_precision, get_currency_symbol, is_currency

# CLDR (babel) shows these with fewer digits than ISO 4217 defines, because their minor unit
# is not used in practice; amounts on the wire are ISO minor units, so ISO's digits count.
_ISO_DIGITS_WHERE_CLDR_DIFFERS = {
    "AFN": 2,
    "ALL": 2,
    "IQD": 3,
    "IRR": 2,
    "KPW": 2,
    "LAK": 2,
    "LBP": 2,
    "MGA": 2,
    "MMK": 2,
    "RSD": 2,
    "SLL": 2,
    "SOS": 2,
    "SYP": 2,
    "YER": 2,
}

Language = Literal["zh-CN", "en"]


# Bounded: codes come from events; babel's look-up walks its currency list every time.
@lru_cache(maxsize=256)
def is_known_currency(code: str) -> bool:
    """An ISO 4217 code babel knows (upper case, as on the wire)."""
    return len(code) == 3 and code.isupper() and is_currency(code)


@lru_cache(maxsize=256)
def minor_digits(currency: str) -> int:
    """How many digits the currency's minor unit has (ISO 4217): JPY 0, CNY 2, KWD 3."""
    if not is_known_currency(currency):
        raise ValueError(f"unknown currency {currency!r} (expected an ISO 4217 code)")
    return _ISO_DIGITS_WHERE_CLDR_DIFFERS.get(currency, get_currency_precision(currency))


def major_units(amount: int, currency: str) -> Decimal:
    """An integer amount of minor units as an exact decimal of major units (12345 KWD: 12.345)."""
    return Decimal(amount).scaleb(-minor_digits(currency))


def format_money(amount: int, currency: str, language: Language) -> str:
    """An amount for a buyer: `¥123.45` or `12.345 KWD` in Chinese, `CNY 123.45` in English.

    Exactly the currency's digits, no grouping (amounts are read next to the order's own).
    What babel writes for the patterns of `babel_pattern` (a test holds them equal), built
    here: babel's general formatter cost more CPU than the rest of a return's decision.
    """
    number = f"{major_units(abs(amount), currency):.{minor_digits(currency)}f}"
    sign = "-" if amount < 0 else ""
    if language == "en":
        return f"{sign}{currency} {number}"
    if currency == "CNY":
        return f"{sign}{_zh_cn_symbol(currency)}{number}"
    return f"{sign}{number} {currency}"


def babel_pattern(currency: str, language: Language) -> tuple[str, Locale]:
    """The CLDR pattern and locale `format_money` writes an amount by, for babel."""
    digits = minor_digits(currency)
    fraction = "." + "0" * digits if digits else ""
    if language == "zh-CN":
        pattern = f"¤0{fraction}" if currency == "CNY" else f"0{fraction} ¤¤"
    else:
        pattern = f"¤¤ 0{fraction}"
    return pattern, _locale(language)


@cache
def _zh_cn_symbol(currency: str) -> str:
    return get_currency_symbol(currency, locale=_locale("zh-CN"))


@cache
def _locale(language: Language) -> Locale:
    return Locale.parse("zh_CN" if language == "zh-CN" else "en")


def per_unit_share(total: int, units_before: int, units_after: int, quantity: int) -> int:
    """What `units_after - units_before` more units of a line are worth.

    floor(total*K_new/n) - floor(total*K_old/n): returning every unit gives back exactly
    `total`, whatever the order in which the units come back.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    if not 0 <= units_before <= units_after <= quantity:
        raise ValueError("units must satisfy 0 <= before <= after <= quantity")
    if total < 0:
        raise ValueError("total must not be negative")
    return (total * units_after) // quantity - (total * units_before) // quantity


def split_largest_remainder(amount: int, weights: Sequence[int]) -> list[int]:
    """Split `amount` pro rata over `weights`; the parts sum to `amount` exactly.

    Each part gets floor(amount*w/W); the units left over go one each to the largest
    remainders, ties to the earlier weight, so the result is deterministic.
    """
    if amount < 0:
        raise ValueError("amount must not be negative")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    total_weight = sum(weights)
    if not weights:
        raise ValueError("at least one weight is needed")
    if total_weight == 0:
        if amount == 0:
            return [0] * len(weights)
        raise ValueError("cannot split a positive amount over zero weights")
    parts = [amount * w // total_weight for w in weights]
    remainders = [amount * w % total_weight for w in weights]
    left = amount - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def percent_bp(amount: int, basis_points: int) -> int:
    """`amount` times basis points (1/100 of a percent), rounded down."""
    if amount < 0 or basis_points < 0:
        raise ValueError("amount and basis points must not be negative")
    return amount * basis_points // 10_000
