"""The follow-up service's tables, all in the `followup` schema."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, Table, text
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging.tables import service_schema
from shared.schema import document_table, instant_column, key_column, now_column, text_column

metadata, messaging = service_schema("followup")

# Order -> shop (and buyer), from order.paid: who a case's score counts for. No personal data.
orders = Table(
    "orders",
    metadata,
    key_column("order_id"),
    text_column("shop_id"),
    text_column("customer_id"),
    instant_column("paid_at"),
    now_column("recorded_at"),
)

# Complaint -> buyer, from complaint.opened (complaint.resolved does not name the buyer). A
# resolution that arrives before its complaint.opened is kept here until the buyer is known.
complaints = Table(
    "complaints",
    metadata,
    key_column("complaint_id"),
    text_column("order_id"),
    text_column("customer_id", nullable=True),
    instant_column("opened_at", nullable=True),
    Column("resolution", JSONB, nullable=True),
    now_column("updated_at"),
)

# The Callback aggregate as a document (its own to_dict), with the columns the service and
# the report query by.
callbacks = document_table(
    "callbacks",
    metadata,
    key_column("callback_id"),
    text_column("customer_id"),
    text_column("status"),
    instant_column("due_at"),
    instant_column("deadline"),
    instant_column("sent_at", nullable=True),
    instant_column("answered_at", nullable=True),
    Column("score", Integer, nullable=True),
    # Once sent: `awaiting`, `delivered` or `failed` (what the notifier reported).
    text_column("delivery", nullable=True),
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
    key_column("case_type"),
    key_column("case_id"),
    text_column("callback_id"),
    text_column("customer_id"),
    text_column("order_id"),
    instant_column("closed_at"),
    text_column("closed_by"),
    instant_column("deadline"),
    text_column("outcome"),
    now_column("created_at"),
    Index("ix_cases_callback_id", "callback_id"),
    Index("ix_cases_order_id", "order_id"),
)
