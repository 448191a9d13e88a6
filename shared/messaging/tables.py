"""The inbox, outbox and timer tables every service keeps in its own schema."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
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

from shared.db import service_metadata
from shared.schema import instant_column, key_column, now_column, text_column


@dataclass(frozen=True)
class MessagingTables:
    inbox: Table
    outbox: Table
    timers: Table
    # What each case went through (inputs taken, outputs queued), for the read API's timelines.
    journal: Table


def service_schema(schema: str) -> tuple[MetaData, MessagingTables]:
    """A service's metadata (every table in its own schema) with the messaging tables on it."""
    metadata = service_metadata(schema)
    return metadata, messaging_tables(metadata)


def messaging_tables(metadata: MetaData) -> MessagingTables:
    inbox = Table(
        "inbox",
        metadata,
        # Processed event ids: a redelivered event finds its id here and has no second effect.
        key_column("event_id"),
        text_column("event_type"),
        text_column("topic"),
        now_column("received_at"),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        # Deterministic ids: reprocessing the same cause cannot queue the same event twice.
        Column("event_id", Text, nullable=False, unique=True),
        text_column("event_type"),
        text_column("topic"),
        text_column("key", nullable=True),
        Column("payload", LargeBinary, nullable=False),
        now_column("created_at"),
        instant_column("published_at", nullable=True),
        # A row the broker or the producer refuses whatever the retry (too large, not
        # serialisable) is parked: left for `aftersales outbox retry`, holding back the later
        # rows of its key, instead of failing every relay cycle.
        instant_column("parked_at", nullable=True),
        text_column("parked_error", nullable=True),
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
        text_column("kind"),
        text_column("ref"),
        # The business key the timer's work locks (an order id), like the consumer does.
        text_column("lock_key"),
        instant_column("due_at"),
        Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        instant_column("fired_at", nullable=True),
        instant_column("cancelled_at", nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        # After a failed attempt, not fired again before this instant. `due_at` stays the
        # instant it was set for: handlers take a timer due at another instant for stale.
        instant_column("retry_at", nullable=True),
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
        text_column("event_id"),
        # input (taken from a topic) or output (queued in the outbox)
        text_column("direction"),
        text_column("event_type"),
        instant_column("occurred_at"),
        text_column("order_id", nullable=True),
        text_column("customer_id", nullable=True),
        text_column("case_type", nullable=True),
        text_column("case_id", nullable=True),
        # The event's fields that carry no personal data (shared.messaging.journal.DETAIL_FIELDS).
        Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        now_column("recorded_at"),
        Index("ix_journal_order_id", "order_id"),
        Index("ix_journal_case_id", "case_id"),
        Index("ix_journal_customer_id", "customer_id"),
        Index("ix_journal_occurred_at", "occurred_at"),
    )
    return MessagingTables(inbox=inbox, outbox=outbox, timers=timers, journal=journal)
