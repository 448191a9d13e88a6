"""The inbox, outbox and timer tables every service keeps in its own schema."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.schema import now_column


@dataclass(frozen=True)
class MessagingTables:
    inbox: Table
    outbox: Table
    timers: Table
    # What each case went through (inputs taken, outputs queued), for the read API's timelines.
    journal: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    inbox = Table(
        "inbox",
        metadata,
        # Processed event ids: a redelivered event finds its id here and has no second effect.
        Column("event_id", Text, primary_key=True),
        Column("event_type", Text, nullable=False),
        Column("topic", Text, nullable=False),
        now_column("received_at"),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        # Deterministic ids: reprocessing the same cause cannot queue the same event twice.
        Column("event_id", Text, nullable=False, unique=True),
        Column("event_type", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=True),
        Column("payload", LargeBinary, nullable=False),
        now_column("created_at"),
        Column("published_at", DateTime(timezone=True), nullable=True),
        # A row the broker or the producer refuses whatever the retry (too large, not
        # serialisable) is parked: left for `aftersales outbox retry`, holding back the later
        # rows of its key, instead of failing every relay cycle.
        Column("parked_at", DateTime(timezone=True), nullable=True),
        Column("parked_error", Text, nullable=True),
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_outbox_parked",
            "key",
            "id",
            postgresql_where=text("parked_at IS NOT NULL AND published_at IS NULL"),
        ),
    )
    timers = Table(
        "timers",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("kind", Text, nullable=False),
        Column("ref", Text, nullable=False),
        # The business key the timer's work locks (an order id), like the consumer does.
        Column("lock_key", Text, nullable=False),
        Column("due_at", DateTime(timezone=True), nullable=False),
        Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("fired_at", DateTime(timezone=True), nullable=True),
        Column("cancelled_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        now_column("created_at"),
        UniqueConstraint("kind", "ref"),
        Index(
            "ix_timers_due",
            "due_at",
            postgresql_where=text("fired_at IS NULL AND cancelled_at IS NULL"),
        ),
    )
    journal = Table(
        "journal",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Text, nullable=False),
        # input (taken from a topic) or output (queued in the outbox)
        Column("direction", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("order_id", Text, nullable=True),
        Column("customer_id", Text, nullable=True),
        Column("case_type", Text, nullable=True),
        Column("case_id", Text, nullable=True),
        # The event's fields that carry no personal data (shared.messaging.journal.DETAIL_FIELDS).
        Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        now_column("recorded_at"),
        Index("ix_journal_order_id", "order_id"),
        Index("ix_journal_case_id", "case_id"),
        Index("ix_journal_customer_id", "customer_id"),
        Index("ix_journal_occurred_at", "occurred_at"),
    )
    return MessagingTables(inbox=inbox, outbox=outbox, timers=timers, journal=journal)
