"""The refund ledger's tables, all in the `refunds` schema. No personal data: the buyer is a
customer_id only (SPEC 7)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Table, Text

from shared.db import service_metadata
from shared.messaging.tables import messaging_tables
from shared.schema import document_table

SCHEMA = "refunds"

metadata = service_metadata(SCHEMA)
messaging = messaging_tables(metadata)

# One document per order (OrderLedger.to_dict): what was paid, every refund, waiting requests.
ledgers = document_table(
    "ledgers",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("paid", Boolean, nullable=False),
)

# One row per refund.issued, written from the ledger document: what the report and the
# operators query (by day, by case type, open ones).
refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", Text, primary_key=True),
    Column("order_id", Text, nullable=False),
    Column("case_type", Text, nullable=False),
    Column("case_id", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("requested", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("cut", BigInteger, nullable=False),
    Column("overflow", BigInteger, nullable=False),
    Column("due_by", DateTime(timezone=True), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("failed", Boolean, nullable=False),
    Column("needs_person", Boolean, nullable=False),
    Column("reissue_of", Text, nullable=True),
    Column("requested_by", Text, nullable=False),
    Index("ix_refunds_issued_at", "issued_at"),
    Index("ix_refunds_order_id", "order_id"),
)
