"""Columns and tables the services' schemas share in shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    MetaData,
    Table,
    Text,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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


def one_of(column: ColumnElement[Any], param: str) -> ColumnElement[bool]:
    """`column` is one of the values of the array bound to `param`: a batch's read or write of
    the rows it names, as a semi-join on the array's elements, never `= ANY(array)`. Statements
    run prepared, and PostgreSQL keeps a generic plan of `= ANY($1)` made while a table was
    small (a new deployment, the first batches) until the table is analysed again: a scan of
    the whole table comparing every row with every value of the array, rows x values per
    batch (one read of 500 ids cost 15 ms on 10,000 rows). A semi-join is an index lookup per
    value on an analysed table and a hash join (linear) on one that looks small."""
    return column.in_(select(func.unnest(bindparam(param, type_=ARRAY(column.type)))))
