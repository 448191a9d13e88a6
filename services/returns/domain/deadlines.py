"""Refund and reshipment deadlines (SPEC 4.9, 4.10): due 24 h after the return leg is signed,
after inspection where the category needs it (no later than the grace period)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from services.returns.domain.values import Order
from services.returns.domain.vocabulary import ReturnKind, Sla
from shared.policy import Policy


def refund_due_by(return_signed_at: datetime, policy: Policy) -> datetime:
    """T + refund_deadline_hours, T the return leg's signature (refunds and reshipments)."""
    return return_signed_at + timedelta(hours=policy.returns.refund_deadline_hours)


def delivery_sla(kind: ReturnKind) -> Sla:
    """What a late completion breaches: the reshipment of an exchange, else the refund."""
    return Sla.RESHIPMENT if kind == ReturnKind.EXCHANGE else Sla.REFUND


def needs_inspection(order: Order, lines: Mapping[str, int], policy: Policy) -> bool:
    required = policy.returns.inspection_required_categories
    # One pass over the order's lines; a requested line the order lacks needs nothing.
    return any(line.category in required for line in order.lines if line.line_id in lines)


def inspection_grace_end(return_signed_at: datetime, policy: Policy) -> datetime:
    """When a refund waiting for its inspection is issued anyway."""
    return return_signed_at + timedelta(hours=policy.returns.inspection_grace_hours)


def late_freight_due_by(refund_due: datetime | None, policy: Policy, now: datetime) -> datetime:
    """Freight learnt after completion is issued at once: by the return's refund deadline, or,
    when that has passed, a fresh one; the freight was late to be known, not the refund."""
    if refund_due is None or refund_due <= now:
        return now + timedelta(hours=policy.returns.refund_deadline_hours)
    return refund_due
