"""The follow-up service's tables, all in the `followup` schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import service_metadata
from shared.messaging.tables import messaging_tables
from shared.schema import document_table, now_column

SCHEMA = "followup"

metadata = service_metadata(SCHEMA)
messaging = messaging_tables(metadata)

# Order -> shop (and buyer), from order.paid: who a case's score counts for. No personal data.
orders = Table(
    "orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("shop_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("paid_at", DateTime(timezone=True), nullable=False),
    now_column("recorded_at"),
)

# Complaint -> buyer, from complaint.opened (complaint.resolved does not name the buyer). A
# resolution that arrives before its complaint.opened is kept here until the buyer is known.
complaints = Table(
    "complaints",
    metadata,
    Column("complaint_id", Text, primary_key=True),
    Column("order_id", Text, nullable=False),
    Column("customer_id", Text, nullable=True),
    Column("opened_at", DateTime(timezone=True), nullable=True),
    Column("resolution", JSONB, nullable=True),
    now_column("updated_at"),
)

# The Callback aggregate as a document (its own to_dict), with the columns the service and
# the report query by.
callbacks = document_table(
    "callbacks",
    metadata,
    Column("callback_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("score", Integer, nullable=True),
    Index(
        "ix_callbacks_scheduled_customer",
        "customer_id",
        postgresql_where=text("status = 'scheduled'"),
    ),
    Index("ix_callbacks_due_at", "due_at"),
    created=True,
)

# One row per closed case: a case has one callback, whatever events close it again.
cases = Table(
    "cases",
    metadata,
    Column("case_type", Text, primary_key=True),
    Column("case_id", Text, primary_key=True),
    Column("callback_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("closed_by", Text, nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=False),
    now_column("created_at"),
    Index("ix_cases_callback_id", "callback_id"),
    Index("ix_cases_order_id", "order_id"),
)
