"""Wires the complaints service: topics it reads and writes, handlers, timers, lock keys."""

from __future__ import annotations

from services.complaints import api, tables
from services.complaints.handlers import SERVICE, ComplaintsHandlers, lock_keys
from shared.contracts import topics
from shared.messaging.definition import policy_service
from shared.messaging.retention import case_records

build = policy_service(
    SERVICE,
    tables,
    ComplaintsHandlers,
    topics=(topics.ORDERS, topics.COMPLAINTS, topics.FOLLOWUPS, topics.REFUNDS),
    lock_keys=lock_keys,
    publishes={
        topics.NOTIFICATIONS: ("notification.requested",),
        topics.COUPONS: ("coupon.granted",),
        topics.REFUND_REQUESTS: ("refund.requested",),
        topics.FULFILMENT: ("reshipment.requested",),
        topics.SLA: ("sla.breached",),
        topics.ESCALATIONS: ("complaint.escalated", "case.escalated", "compensation.pending"),
    },
    # Orders stay (late-shipment and compensation figures need them).
    case_records=case_records(
        tables.complaints.c.updated_at,
        tables.budgets.c.updated_at,
        tables.parked_low_scores.c.received_at,
    ),
    kpis=api.kpis,
)
