"""The follow-up service's tables, all in the `followup` schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import service_metadata
from shared.messaging.tables import messaging_tables

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
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
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
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The Callback aggregate as a document (its own to_dict), with the columns the service and
# the report query by.
callbacks = Table(
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
    Column("state", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "ix_callbacks_scheduled_customer",
        "customer_id",
        postgresql_where=text("status = 'scheduled'"),
    ),
    Index("ix_callbacks_due_at", "due_at"),
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
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_cases_callback_id", "callback_id"),
    Index("ix_cases_order_id", "order_id"),
)
