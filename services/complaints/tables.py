"""The complaints service's tables, all in the `complaints` schema."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, Table

from shared.messaging.tables import service_schema
from shared.schema import document_table, key_column, now_column, text_column

metadata, messaging = service_schema("complaints")

# Aggregates are stored as documents (their own to_dict), with the columns we query by.
# No personal data: the buyer is only a customer_id here (SPEC 7).
orders = document_table(
    "orders",
    metadata,
    key_column("order_id"),
    text_column("customer_id", nullable=True),  # unknown until order.paid arrives
)

complaints = document_table(
    "complaints",
    metadata,
    key_column("complaint_id"),
    text_column("order_id"),
    text_column("customer_id", nullable=True),  # unknown until complaint.opened arrives
    text_column("status"),
    Index("ix_complaints_order_id", "order_id"),
    Index("ix_complaints_customer_id", "customer_id"),
    created=True,
)

# A buyer's coupons within the rolling compensation window (CompensationBudget).
budgets = document_table(
    "budgets",
    metadata,
    key_column("customer_id"),
)

# satisfaction.low for a complaint not seen yet (its order, hence its lock, is unknown): kept
# here and handed to the complaint by the first complaint event that arrives for it.
parked_low_scores = Table(
    "parked_low_scores",
    metadata,
    key_column("complaint_id"),
    key_column("callback_id"),
    Column("score", Integer, nullable=False),
    now_column("received_at"),
)
