"""Wires the refund ledger: topics it reads and writes, handlers, timers."""

from __future__ import annotations

from services.refunds import api, tables
from services.refunds.handlers import SERVICE, RefundsHandlers
from shared.clock import Clock
from shared.contracts import topics
from shared.messaging.runtime import ServiceDefinition
from shared.policy import Policy
from shared.settings import Settings


def build(policy: Policy, clock: Clock, settings: Settings | None = None) -> ServiceDefinition:
    """The service's definition; it needs no settings of its own (the runtime has them)."""
    handlers = RefundsHandlers(policy)
    return ServiceDefinition(
        name=SERVICE,
        metadata=tables.metadata,
        tables=tables.messaging,
        topics=(
            topics.ORDERS,  # order.paid: what each method was charged
            topics.REFUND_REQUESTS,  # refund.requested from returns and complaints
            topics.PAYOUTS,  # refund.settled and refund.failed from finance
        ),
        handlers=handlers.events(),
        timer_handlers=handlers.timers(),
        publishes={
            topics.REFUNDS: ("refund.issued",),
            topics.SLA: ("sla.breached",),
        },
        kpis=api.kpis,
        read_routes=api.routes,
    )
