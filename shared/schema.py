"""Columns and tables the services' schemas share in shape."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.schema import SchemaItem


def key_column(name: str) -> Column[str]:
    """A text primary key (every id here is text); two of them make a composite key."""
    return Column(name, Text, primary_key=True)


def text_column(name: str, *, nullable: bool = False) -> Column[str]:
    return Column(name, Text, nullable=nullable)


def instant_column(name: str, *, nullable: bool = False) -> Column[datetime]:
    """An aware instant (timestamptz)."""
    return Column(name, DateTime(timezone=True), nullable=nullable)


def now_column(name: str) -> Column[datetime]:
    """An aware instant the database fills in with now() where an insert leaves it out."""
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


def document_table(
    name: str, metadata: MetaData, *items: SchemaItem, created: bool = False
) -> Table:
    """An aggregate stored as a document (`state`, JSONB) next to `items`, the columns it is
    queried by and their indexes; `updated_at`, and `created_at` where `created`."""
    stamps = (now_column("created_at"),) if created else ()
    return Table(
        name,
        metadata,
        *items,
        Column("state", JSONB, nullable=False),
        *stamps,
        now_column("updated_at"),
    )
