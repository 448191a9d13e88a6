"""INSERT ... ON CONFLICT DO UPDATE, the one way the services store a row by its key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Table, Text, bindparam, cast
from sqlalchemy.dialects.postgresql import JSONB, Insert, insert


def upsert(
    table: Table,
    values: Mapping[str, Any] | None,
    *,
    key: Iterable[str],
    update: Iterable[str],
    where: ColumnElement[bool] | None = None,
) -> Insert:
    """Insert `values`; a row with the same `key` takes the new row's `update` columns instead
    (only where `where` holds, when it is given). `values=None`: the rows are the statement's
    parameters."""
    stmt = insert(table) if values is None else insert(table).values(dict(values))
    return stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={name: stmt.excluded[name] for name in update},
        where=where,
    )


def document_upsert(table: Table, *, key: str, update: Iterable[str]) -> Insert:
    """The upsert of a document table with every column a bound parameter and the JSONB ones
    bound as JSON text (cast by the server): a document is serialised once, for the row and,
    in a batch, for the cache that keeps it as text."""
    values = {
        c.name: cast(bindparam(c.name, type_=Text), JSONB)
        if isinstance(c.type, JSONB)
        else bindparam(c.name, type_=c.type)
        for c in table.c
    }
    return upsert(table, values, key=[key], update=update)
