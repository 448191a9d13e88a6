"""The refund ledger's tables, all in the `refunds` schema. No personal data: the buyer is a
customer_id only (SPEC 7)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Table

from shared.messaging.tables import service_schema
from shared.schema import document_table, instant_column, key_column, text_column

metadata, messaging = service_schema("refunds")

# One document per order (OrderLedger.to_dict): what was paid, every refund, waiting requests.
ledgers = document_table(
    "ledgers",
    metadata,
    key_column("order_id"),
    Column("paid", Boolean, nullable=False),
)

# One row per refund.issued, written from the ledger document: what the report and the
# operators query (by day, by case type, open ones).
refunds = Table(
    "refunds",
    metadata,
    key_column("refund_id"),
    text_column("order_id"),
    text_column("case_type"),
    text_column("case_id"),
    text_column("currency"),
    Column("requested", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("cut", BigInteger, nullable=False),
    Column("overflow", BigInteger, nullable=False),
    instant_column("due_by"),
    instant_column("issued_at"),
    instant_column("settled_at", nullable=True),
    Column("failed", Boolean, nullable=False),
    Column("needs_person", Boolean, nullable=False),
    text_column("reissue_of", nullable=True),
    text_column("requested_by"),
    Index("ix_refunds_issued_at", "issued_at"),
    Index("ix_refunds_order_id", "order_id"),
)
