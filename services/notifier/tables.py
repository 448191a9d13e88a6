"""The notifier's tables, all in the `notifier` schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import service_metadata
from shared.messaging.tables import messaging_tables
from shared.schema import now_column

SCHEMA = "notifier"

metadata = service_metadata(SCHEMA)
messaging = messaging_tables(metadata)

# The buyers' contact directory (SPEC section 7): name, phone and e-mail only as AES-GCM tokens
# (`v1.<kid>.<nonce+ciphertext>`, bound to customer and field). The latest paid order wins.
contacts = Table(
    "contacts",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("name", Text, nullable=True),
    Column("phone", Text, nullable=True),
    Column("email", Text, nullable=True),
    Column("preferred_channel", Text, nullable=False),
    Column("language", Text, nullable=True),
    # The key that encrypted the tokens: `aftersales notifier rotate-keys` finds old ones by it.
    Column("key_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("paid_at", DateTime(timezone=True), nullable=False),
    now_column("updated_at"),
    Index("ix_contacts_key_id", "key_id"),
)

# Buyers who asked to be forgotten (`customer.erasure_requested`, `aftersales notifier erase`):
# no personal data, only the id and when they asked. A contact of an order paid up to then,
# read late, is not stored again.
erasures = Table(
    "erasures",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    now_column("updated_at"),
)

# One row per notification: the request id is the key, so a repeated request has no effect.
# Parameters only, never contact data: the message is rendered when it is sent.
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", Text, primary_key=True),
    Column("source_event_id", Text, nullable=False),
    Column("source_type", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("order_id", Text, nullable=True),
    Column("case_type", Text, nullable=True),
    Column("case_id", Text, nullable=True),
    Column("template", Text, nullable=False),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("urgent", Boolean, nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=True),
    # scheduled -> sent | failed
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Channels that refused this message for good (HTTP 4xx, SMTP 5xx): not tried again.
    Column("refused_channels", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # The live timer is `<delivery_id>#<timer_seq>`; every deferral or retry takes the next one.
    Column("timer_seq", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("defer_reason", Text, nullable=True),
    # The local day whose non-urgent quota this message uses (daily cap); NULL: none.
    Column("slot_day", Date, nullable=True),
    Column("channel", Text, nullable=True),
    Column("recipient", Text, nullable=True),  # masked (138****5678), never in clear
    Column("language", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("failed_at", DateTime(timezone=True), nullable=True),
    now_column("updated_at"),
    Index("ix_deliveries_customer_id_slot_day", "customer_id", "slot_day"),
)

# What could not be sent (SPEC section 6): one record per given-up notification, with the
# reason; `notification.failed` tells the other services.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", Text, nullable=False, unique=True),
    Column("customer_id", Text, nullable=False),
    Column("order_id", Text, nullable=True),
    Column("template", Text, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("channel", Text, nullable=True),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    now_column("created_at"),
)
