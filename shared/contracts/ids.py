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


def coupon_id(complaint_id: str) -> str:
    """One coupon per complaint, whether granted at once or after a supervisor's approval."""
    return f"cp-{deterministic_id('coupon', complaint_id)}"


def escalation_id(complaint_id: str, reason: str, round_: int) -> str:
    """A complaint's escalation for one reason, once per round of that reason."""
    return f"esc-{deterministic_id('escalation', complaint_id, reason, str(round_))}"


def case_escalation_id(case_type: str, case_id: str, callback_id: str) -> str:
    """A return's or late shipment's escalation after the callback `callback_id` scored low."""
    return f"esc-{deterministic_id('escalation', case_type, case_id, callback_id)}"


def notification_request_id(case_type: str, case_id: str, template: str, tag: str) -> str:
    """A case's notification from `template`; `tag` tells apart the sends of one template."""
    return f"nr-{deterministic_id('notification', case_type, case_id, template, tag)}"


def callback_id(case_type: str, case_id: str) -> str:
    """The callback opened by a closed case."""
    return f"cb-{deterministic_id('callback', case_type, case_id)}"


def survey_request_id(callback_id: str) -> str:
    """The survey invitation of a callback: one per callback."""
    return f"survey-{callback_id}"


# --- event ids: one event of a type per thing it is about, whatever causes it --------------


def event_id(event_type: str, *about: str) -> str:
    """The id of the one `event_type` event about `about` (e.g. a refund id, a coupon id)."""
    return deterministic_id(event_type, *about)


def sla_breach_event_id(case_type: str, case_id: str, sla: str, *round_: str) -> str:
    """One `sla.breached` per case and SLA (and per round, where an SLA can be breached again)."""
    return deterministic_id("sla.breached", case_type, case_id, sla, *round_)


def reshipment_event_id(case_type: str, case_id: str) -> str:
    """One `reshipment.requested` per case."""
    return deterministic_id("reshipment.requested", case_type, case_id)


def notifier_status_event_id(event_type: str, request_id: str) -> str:
    """The notifier's one `notification.sent` or `notification.failed` per request."""
    return deterministic_id("notifier", event_type, request_id)


def refund_breach_event_id(breach: str) -> str:
    """The refund ledger's `sla.breached` for `breach` (a refund id, or `<refund id>:<kind>`)."""
    return deterministic_id("sla.breached", "refund", breach)
