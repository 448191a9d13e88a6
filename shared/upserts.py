"""INSERT ... ON CONFLICT DO UPDATE, the one way the services store a row by its key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, Insert, insert
from sqlalchemy.sql.dml import Update


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


def json_rows(table: Table, names: Sequence[str], *, param: str = "rows") -> Select[Any]:
    """The rows of the JSON array bound as text to `param` (one object per row, a member per
    column of `names`), as a SELECT of `table`'s columns in array order: many rows sent as one
    parameter (see `dump_rows`), not a parameter set each. JSONB columns are taken as they
    are, others cast from the member's text to the column's type; each labelled with its name
    (a statement may join them as a subquery)."""
    elements = (
        func.jsonb_array_elements(cast(bindparam(param, type_=Text), JSONB))
        .table_valued("value", with_ordinality="n")
        .render_derived()
    )
    row = elements.c.value

    def member(name: str) -> Any:
        if isinstance(table.c[name].type, JSONB):
            return row.op("->")(literal_column(f"'{name}'")).label(name)
        return cast(row.op("->>")(literal_column(f"'{name}'")), table.c[name].type).label(name)

    return select(*(member(name) for name in names)).order_by(elements.c.n)


def json_upsert(table: Table, names: Sequence[str], *, key: str, update: Iterable[str]) -> Insert:
    """`upsert` of the rows of a JSON array parameter (`json_rows`); their keys must differ
    (a statement updates a row once). No `update` columns: a row whose key is stored already
    is left as it is (ON CONFLICT DO NOTHING)."""
    stmt = insert(table).from_select(list(names), json_rows(table, names))
    update = list(update)
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=[key])
    return stmt.on_conflict_do_update(
        index_elements=[key], set_={name: stmt.excluded[name] for name in update}
    )


@dataclass(frozen=True, eq=False)
class JsonRowsWrite:
    """A statement that writes many rows sent as one JSON array parameter (`json_upsert`):
    one parameter to bind and encode, not a parameter set per row (SQLAlchemy's processing
    and asyncpg's encoding of every value). `documents` name the columns whose values are
    JSON text (a document as it was serialised), embedded in the array as they are."""

    statement: Insert | Update
    documents: tuple[str, ...] = ()

    def parameters(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
        if self.documents:
            rows = [
                {**row, **{name: orjson.Fragment(row[name]) for name in self.documents}}
                for row in rows
            ]
        return {"rows": dump_rows(rows)}


def dump_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as the JSON array `json_rows` reads: instants and dates by `isoformat()` (the same
    instant back, whatever the offset), JSON text wrapped in `orjson.Fragment` embedded as it
    is."""
    return orjson.dumps(
        list(rows), default=_instant, option=orjson.OPT_PASSTHROUGH_DATETIME
    ).decode()


def _instant(value: Any) -> str:
    # orjson hands over dates as well as instants (OPT_PASSTHROUGH_DATETIME)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a row value")
