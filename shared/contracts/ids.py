"""Deterministic ids finance and the buyers rely on, in one place.

A replay or a redelivery of the same case yields the same ids, so consumers can deduplicate.
"""

from __future__ import annotations

from .envelope import deterministic_id


def refund_id(case_type: str, case_id: str, part: str | None = None) -> str:
    """`rf-<uuid5('refund', case type, case id)>`: the id a case's refund has always had.

    `part` names a further refund of the same case (e.g. `return_shipping` for freight learnt
    after the refund was issued): it is folded into the case id as `"<case id>:<part>"`, the
    formula such refunds had before the ledger existed.
    """
    case_key = case_id if part is None else f"{case_id}:{part}"
    return f"rf-{deterministic_id('refund', case_type, case_key)}"


def reissue_refund_id(refund_id: str, method: str) -> str:
    """The re-issue of a failed part of a refund to the payout method (SPEC 4.11): once each."""
    return f"rf-{deterministic_id('refund.reissue', refund_id, method)}"
