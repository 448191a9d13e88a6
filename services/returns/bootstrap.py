"""Wires the returns service: topics it reads and writes, handlers, timers."""

from __future__ import annotations

from services.returns import api, tables
from services.returns.handlers import SERVICE, ReturnsHandlers
from shared.contracts import topics
from shared.messaging.definition import policy_service
from shared.messaging.retention import case_records

build = policy_service(
    SERVICE,
    tables,
    ReturnsHandlers,
    topics=(topics.ORDERS, topics.SIGNATURES, topics.RETURNS),
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
