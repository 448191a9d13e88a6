"""Wires the refund ledger: topics it reads and writes, handlers, timers."""

from __future__ import annotations

from services.refunds import api, tables
from services.refunds.handlers import SERVICE, RefundsHandlers
from shared.contracts import topics
from shared.messaging.definition import policy_service

build = policy_service(
    SERVICE,
    tables,
    RefundsHandlers,
    topics=(
        topics.ORDERS,  # order.paid: what each method was charged
        topics.REFUND_REQUESTS,  # refund.requested from returns and complaints
        topics.PAYOUTS,  # refund.settled and refund.failed from finance
    ),
    publishes={
        topics.REFUNDS: ("refund.issued",),
        topics.SLA: ("sla.breached",),
    },
    kpis=api.kpis,
    read_routes=api.routes,
)
