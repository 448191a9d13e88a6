"""Which `refund.issued` the notifier tells the buyer about: each refund is told once, by one
notice that states the amount the refund ledger issued.

A return's refunds are told here (`return.completed` states no amount the ledger may cut). A
complaint's own refund is told by the complaint's compensation notice
(`complaint.compensated`), which the complaints service sends once the ledger issued it, with
the issued amount; a re-issue of a failed part has an id of its own and is told here. A
late-shipment penalty is told by its apology or the compensation notice: compensation, which
the ledger never cuts.
"""

from __future__ import annotations

from shared.contracts.ids import refund_id


def told_by_its_case(case_type: str, case_id: str, issued_refund_id: str) -> bool:
    """True when the case's own notice tells this refund, so the notifier sends none."""
    if case_type == "late_shipment":
        return True
    return case_type == "complaint" and issued_refund_id == refund_id(case_type, case_id)
