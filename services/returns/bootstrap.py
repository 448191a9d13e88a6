"""Wires the returns service: topics it reads and writes, handlers, timers."""

from __future__ import annotations

from services.returns import api, tables
from services.returns.handlers import SERVICE, ReturnsHandlers
from shared.clock import Clock
from shared.contracts import topics
from shared.messaging.retention import case_records
from shared.messaging.runtime import ServiceDefinition
from shared.policy import Policy
from shared.settings import Settings


def build(policy: Policy, clock: Clock, settings: Settings | None = None) -> ServiceDefinition:
    """The service's definition; it needs no settings of its own (the runtime has them)."""
    handlers = ReturnsHandlers(policy)
    return ServiceDefinition(
        name=SERVICE,
        metadata=tables.metadata,
        tables=tables.messaging,
        topics=(topics.ORDERS, topics.SIGNATURES, topics.RETURNS),
        handlers=handlers.events(),
        timer_handlers=handlers.timers(),
        publishes={
            topics.RETURN_DECISIONS: (
                "return.approved",
                "return.rejected",
                "return.pending",
                "return.completed",
            ),
            topics.REFUND_REQUESTS: ("refund.requested",),
            topics.FULFILMENT: ("reshipment.requested",),
            topics.SLA: ("sla.breached",),
        },
        # Orders and their refund ledgers stay: the ledger's cap must hold for any late claim.
        case_records=case_records(tables.return_requests.c.updated_at),
        kpis=api.kpis,
    )
