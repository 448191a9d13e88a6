"""The returns service's tables, all in the `returns` schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import service_metadata
from shared.messaging.tables import messaging_tables

SCHEMA = "returns"

metadata = service_metadata(SCHEMA)
messaging = messaging_tables(metadata)

# Aggregates are stored as documents (their own to_dict), with the columns we query by.
orders = Table(
    "orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

order_ledgers = Table(
    "order_ledgers",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("state", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

return_requests = Table(
    "return_requests",
    metadata,
    Column("return_id", Text, primary_key=True),
    Column("order_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_return_requests_order_id", "order_id"),
)

# Outbound signatures, kept apart from orders: a signature can arrive before its order.paid.
outbound_signatures = Table(
    "outbound_signatures",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("signed_at", DateTime(timezone=True), nullable=False),
)
