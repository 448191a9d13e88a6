"""Money in integer minor units (fen for CNY). No floats anywhere in money paths."""

from __future__ import annotations

from collections.abc import Sequence


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
