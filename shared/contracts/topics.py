"""Kafka topic names (SPEC sections 2 and 3)."""

from __future__ import annotations

# Inputs: written by the e-commerce platform.
ORDERS = "orders"
SIGNATURES = "signatures"
RETURNS = "returns"
COMPLAINTS = "complaints"
SURVEYS = "surveys"
CUSTOMERS = "customers"  # requests about a buyer rather than an order (erasure), by customer_id
PAYOUTS = "payouts"  # finance: what the payment provider did with a refund

# Outputs: written by this system.
REFUNDS = "aftersales.refunds"
COUPONS = "aftersales.coupons"
RETURN_DECISIONS = "aftersales.returns"
FULFILMENT = "aftersales.fulfilment"
SLA = "aftersales.sla"
FOLLOWUPS = "aftersales.followups"
NOTIFICATIONS = "aftersales.notifications"  # internal: requests to the notifier service
NOTIFICATION_STATUS = "aftersales.notifications.status"  # the notifier: sent / failed
ESCALATIONS = "aftersales.escalations"
# internal: what returns and complaints ask the refund ledger to pay (keyed by order_id)
REFUND_REQUESTS = "aftersales.refund-requests"

INPUT_TOPICS: tuple[str, ...] = (
    ORDERS,
    SIGNATURES,
    RETURNS,
    COMPLAINTS,
    SURVEYS,
    CUSTOMERS,
    PAYOUTS,
)
OUTPUT_TOPICS: tuple[str, ...] = (
    REFUNDS,
    COUPONS,
    RETURN_DECISIONS,
    FULFILMENT,
    SLA,
    FOLLOWUPS,
    NOTIFICATIONS,
    NOTIFICATION_STATUS,
    ESCALATIONS,
    REFUND_REQUESTS,
)

DEAD_LETTER_PREFIX = "aftersales.deadletter."


def dead_letter_topic(service: str) -> str:
    """The dead-letter topic of one service, e.g. `aftersales.deadletter.returns`."""
    if not service or not service.replace("_", "").replace("-", "").isalnum():
        raise ValueError("service must be a non-empty name of letters, digits, '-' or '_'")
    return f"{DEAD_LETTER_PREFIX}{service}"
