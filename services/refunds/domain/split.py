"""Splitting refunds over an order's payment methods (SPEC 4.11). Integer minor units only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.money import split_largest_remainder


def cumulative_split(
    amount: int, charged: Sequence[tuple[str, int]], given: Mapping[str, int]
) -> tuple[dict[str, int], int]:
    """What each method gets of a new refund of `amount`, and what is left for the payout method.

    The running total of what the order's methods got back (plus this refund, up to what they
    were charged in all) is split by largest remainder over the charges; each method gets its
    share of the new running total less what it already got. So a full refund in several parts
    gives every method exactly its charge, and no method ever gets more than it was charged.

    Largest remainder is not monotone in the total (the Alabama paradox, possible from three
    methods on): a method whose share of the new total is below what it already got gets 0,
    and the methods with the most room left give up the difference, so no part is negative.
    """
    if amount < 0:
        raise ValueError("a refund is never negative")
    charges = [charge for _, charge in charged]
    before = [given.get(method, 0) for method, _ in charged]
    already = sum(before)
    to_methods = min(amount, max(sum(charges) - already, 0))
    if not to_methods:
        return {}, amount
    targets = split_largest_remainder(already + to_methods, charges)
    parts = {
        method: target - got
        for (method, _), target, got in zip(charged, targets, before, strict=True)
    }
    deficit = sum(-part for part in parts.values() if part < 0)
    if deficit:  # the paradox struck: no part is negative otherwise
        for method in parts:
            parts[method] = max(parts[method], 0)
        room = {m: charge - given.get(m, 0) - parts[m] for m, charge in charged}
        for method in sorted(room, key=lambda m: (-room[m], m)):
            if deficit <= 0:
                break
            take = min(deficit, parts[method])
            parts[method] -= take
            deficit -= take
    return {m: part for m, part in parts.items() if part}, amount - to_methods


def proportional_split(amount: int, weights: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """`amount` over named positive weights by largest remainder; zero parts left out."""
    positive = [(name, weight) for name, weight in weights if weight > 0]
    if not positive:
        return []
    parts = split_largest_remainder(amount, [weight for _, weight in positive])
    return [(name, part) for (name, _), part in zip(positive, parts, strict=True) if part]
