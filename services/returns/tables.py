"""The returns service's tables, all in the `returns` schema."""

from __future__ import annotations

from sqlalchemy import Index, Table

from shared.messaging.tables import service_schema
from shared.schema import document_table, instant_column, key_column, text_column

metadata, messaging = service_schema("returns")

# Aggregates are stored as documents (their own to_dict), with the columns we query by.
orders = document_table(
    "orders",
    metadata,
    key_column("order_id"),
    text_column("customer_id"),
)

order_ledgers = document_table(
    "order_ledgers",
    metadata,
    key_column("order_id"),
)

return_requests = document_table(
    "return_requests",
    metadata,
    key_column("return_id"),
    text_column("order_id"),
    text_column("status"),
    Index("ix_return_requests_order_id", "order_id"),
    created=True,
)

# Outbound signatures, kept apart from orders: a signature can arrive before its order.paid.
outbound_signatures = Table(
    "outbound_signatures",
    metadata,
    key_column("order_id"),
    instant_column("signed_at"),
)
