"""The returns service's tables, all in the `returns` schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Table, Text

from shared.db import service_metadata
from shared.messaging.tables import messaging_tables
from shared.schema import document_table

SCHEMA = "returns"

metadata = service_metadata(SCHEMA)
messaging = messaging_tables(metadata)

# Aggregates are stored as documents (their own to_dict), with the columns we query by.
orders = document_table(
    "orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
)

order_ledgers = document_table(
    "order_ledgers",
    metadata,
    Column("order_id", Text, primary_key=True),
)

return_requests = document_table(
    "return_requests",
    metadata,
    Column("return_id", Text, primary_key=True),
    Column("order_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Index("ix_return_requests_order_id", "order_id"),
    created=True,
)

# Outbound signatures, kept apart from orders: a signature can arrive before its order.paid.
outbound_signatures = Table(
    "outbound_signatures",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("signed_at", DateTime(timezone=True), nullable=False),
)
