"""Which `refund.issued` the notifier tells the buyer about: each refund is told once, by one
notice that states the amount the refund ledger issued.

A return's refunds are told here (`return.completed` states no amount the ledger may cut). A
complaint's own refund is told by the complaint's compensation notice
(`complaint.compensated`), which the complaints service sends once the ledger issued it, with
the issued amount. A late-shipment penalty is told by its apology or the compensation notice:
compensation, which the ledger never cuts. A re-issue of a failed part, whatever the case, has
an id of its own and is told here: no case's notice mentions it.
"""

from __future__ import annotations

from shared.contracts.ids import refund_id

# Case types whose own notice states the refund: the compensation notice, the apology.
_TOLD_BY_THEIR_CASE = frozenset({"complaint", "late_shipment"})


def told_by_its_case(case_type: str, case_id: str, issued_refund_id: str) -> bool:
    """True when the case's own notice tells this refund, so the notifier sends none."""
    own = issued_refund_id == refund_id(case_type, case_id)
    return own and case_type in _TOLD_BY_THEIR_CASE
