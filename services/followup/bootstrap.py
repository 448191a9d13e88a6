"""Wires the follow-up service: topics it reads and writes, handlers, timers, lock keys."""

from __future__ import annotations

from services.followup import api, tables
from services.followup.handlers import SERVICE, FollowupHandlers, lock_keys
from shared.clock import Clock
from shared.contracts import topics
from shared.messaging.retention import case_records
from shared.messaging.runtime import ServiceDefinition
from shared.policy import Policy
from shared.settings import Settings


def build(policy: Policy, clock: Clock, settings: Settings | None = None) -> ServiceDefinition:
    """The service's definition; it needs no settings of its own (the runtime has them)."""
    handlers = FollowupHandlers(policy)
    return ServiceDefinition(
        name=SERVICE,
        metadata=tables.metadata,
        tables=tables.messaging,
        topics=(
            topics.ORDERS,  # order.paid: the order -> shop projection
            topics.COMPLAINTS,  # complaint.opened (the buyer) and complaint.resolved
            topics.SURVEYS,  # survey.answered
            topics.REFUNDS,  # refund.issued of a return
            topics.FULFILMENT,  # reshipment.requested of a return (exchange)
            topics.RETURN_DECISIONS,  # return.completed
        ),
        handlers=handlers.events(),
        timer_handlers=handlers.timers(),
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
