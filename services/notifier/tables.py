"""The notifier's tables, all in the `notifier` schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging.tables import service_schema
from shared.schema import instant_column, key_column, now_column, text_column

metadata, messaging = service_schema("notifier")

# The buyers' contact directory (SPEC section 7): name, phone and e-mail only as AES-GCM tokens
# (`v1.<kid>.<nonce+ciphertext>`, bound to customer and field). The latest paid order wins.
contacts = Table(
    "contacts",
    metadata,
    key_column("customer_id"),
    text_column("name", nullable=True),
    text_column("phone", nullable=True),
    text_column("email", nullable=True),
    text_column("preferred_channel"),
    text_column("language", nullable=True),
    # The key that encrypted the tokens: `aftersales notifier rotate-keys` finds old ones by it.
    text_column("key_id"),
    text_column("order_id"),
    instant_column("paid_at"),
    now_column("updated_at"),
    Index("ix_contacts_key_id", "key_id"),
)

# Buyers who asked to be forgotten (`customer.erasure_requested`, `aftersales notifier erase`):
# no personal data, only the id and when they asked. A contact of an order paid up to then,
# read late, is not stored again.
erasures = Table(
    "erasures",
    metadata,
    key_column("customer_id"),
    instant_column("requested_at"),
    now_column("updated_at"),
)

# One row per notification: the request id is the key, so a repeated request has no effect.
# Parameters only, never contact data: the message is rendered when it is sent.
deliveries = Table(
    "deliveries",
    metadata,
    key_column("delivery_id"),
    text_column("source_event_id"),
    text_column("source_type"),
    text_column("customer_id"),
    text_column("order_id", nullable=True),
    text_column("case_type", nullable=True),
    text_column("case_id", nullable=True),
    text_column("template"),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("urgent", Boolean, nullable=False),
    instant_column("deadline", nullable=True),
    # scheduled -> sent | failed
    text_column("status"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Channels that refused this message for good (HTTP 4xx, SMTP 5xx): not tried again.
    Column("refused_channels", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # The live timer is `<delivery_id>#<timer_seq>`; every deferral or retry takes the next one.
    Column("timer_seq", Integer, nullable=False, server_default=text("0")),
    instant_column("next_attempt_at", nullable=True),
    text_column("defer_reason", nullable=True),
    # The local day whose non-urgent quota this message uses (daily cap); NULL: none.
    Column("slot_day", Date, nullable=True),
    text_column("channel", nullable=True),
    text_column("recipient", nullable=True),  # masked (138****5678), never in clear
    text_column("language", nullable=True),
    text_column("last_error", nullable=True),
    instant_column("requested_at"),
    instant_column("sent_at", nullable=True),
    instant_column("failed_at", nullable=True),
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
    text_column("customer_id"),
    text_column("order_id", nullable=True),
    text_column("template"),
    Column("urgent", Boolean, nullable=False),
    text_column("reason"),
    text_column("detail"),
    Column("attempts", Integer, nullable=False),
    text_column("channel", nullable=True),
    instant_column("failed_at"),
    now_column("created_at"),
)
