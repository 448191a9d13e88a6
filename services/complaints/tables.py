"""The complaints service's tables, all in the `complaints` schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import service_metadata
from shared.messaging.tables import messaging_tables

SCHEMA = "complaints"

metadata = service_metadata(SCHEMA)
messaging = messaging_tables(metadata)

# Aggregates are stored as documents (their own to_dict), with the columns we query by.
# No personal data: the buyer is only a customer_id here (SPEC 7).
orders = Table(
    "orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=True),  # unknown until order.paid arrives
    Column("state", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

complaints = Table(
    "complaints",
    metadata,
    Column("complaint_id", Text, primary_key=True),
    Column("order_id", Text, nullable=False),
    Column("customer_id", Text, nullable=True),  # unknown until complaint.opened arrives
    Column("status", Text, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_complaints_order_id", "order_id"),
    Index("ix_complaints_customer_id", "customer_id"),
)

# A buyer's coupons within the rolling compensation window (CompensationBudget).
budgets = Table(
    "budgets",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("state", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# satisfaction.low for a complaint not seen yet (its order, hence its lock, is unknown): kept
# here and handed to the complaint by the first complaint event that arrives for it.
parked_low_scores = Table(
    "parked_low_scores",
    metadata,
    Column("complaint_id", Text, primary_key=True),
    Column("callback_id", Text, primary_key=True),
    Column("score", Integer, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
