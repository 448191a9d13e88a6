"""Wires the follow-up service: topics it reads and writes, handlers, timers, lock keys."""

from __future__ import annotations

from services.followup import api, tables
from services.followup.handlers import SERVICE, FollowupHandlers, lock_keys
from shared.contracts import topics
from shared.messaging.definition import policy_service
from shared.messaging.retention import case_records

build = policy_service(
    SERVICE,
    tables,
    FollowupHandlers,
    topics=(
        topics.ORDERS,  # order.paid: the order -> shop projection
        topics.COMPLAINTS,  # complaint.opened (the buyer) and complaint.resolved
        topics.SURVEYS,  # survey.answered
        topics.REFUNDS,  # refund.issued of a return
        topics.FULFILMENT,  # reshipment.requested of a return (exchange)
        topics.RETURN_DECISIONS,  # return.completed
        # notification.sent / .failed of its own survey invitations (others ignored)
        topics.NOTIFICATION_STATUS,
    ),
    lock_keys=lock_keys,
    publishes={
        topics.FOLLOWUPS: (
            "callback.scheduled",
            "callback.sent",
            "satisfaction.recorded",
            "satisfaction.low",
        ),
        topics.NOTIFICATIONS: ("notification.requested",),
        topics.SLA: ("sla.breached",),
    },
    case_records=case_records(
        tables.callbacks.c.updated_at,
        tables.cases.c.closed_at,
        tables.complaints.c.updated_at,
    ),
    kpis=api.kpis,
)
