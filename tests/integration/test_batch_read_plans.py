"""A batch's reads and writes by id stay cheap under the plan PostgreSQL keeps for them.

Statements run prepared, and after a few runs PostgreSQL keeps one generic plan per statement,
made for the table as it was then. For `col = ANY($1)` made while a table was small (a new
deployment catching up a backlog) that plan is a scan of the whole table comparing every row
with every id of the array, until the table is analysed again: rows x ids per batch (15 ms
for 500 ids on 10,000 rows, most of a batch's database time in the benchmark). Every such
statement is a semi-join on the ids instead (`shared.schema.one_of`). Here each is planned
generically on tables of a few hundred and of a few thousand rows that were never analysed (the
plan depends on the size at the time), and no plan may filter rows by the array.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Delete,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    Table,
    Text,
    Update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from services.complaints import repository as complaints_repository
from services.complaints import tables as complaints_tables
from services.refunds import repository as refunds_repository
from services.refunds import tables as refunds_tables
from services.returns import repository as returns_repository
from services.returns import tables as returns_tables
from shared.messaging.relay import _mark_published
from tests.harness import fresh_schema

# What a filled row holds, by column type: distinct text keys, the row's number, now.
_FILL = {
    Text: "'k' || g",
    BigInteger: "g",
    Integer: "g",
    Boolean: "false",
    DateTime: "now()",
    # a document of about a kilobyte, as stored ones are: the width of a row is part of the plan
    JSONB: "jsonb_build_object('filler', repeat('x', 1000))",
    LargeBinary: "'\\x00'::bytea",
}


def _by_array(module: ModuleType) -> list[Executable]:
    """The repository's statements built once at module level that take an array of ids: a
    batch read or write added later is planned here without being listed."""
    dialect = postgresql.dialect()
    return [
        statement
        for statement in vars(module).values()
        if isinstance(statement, Select | Update | Delete)
        and any(
            isinstance(b.type, ARRAY) for b in statement.compile(dialect=dialect).binds.values()
        )
    ]


def _batch_statements() -> dict[str, tuple[MetaData, Sequence[Any]]]:
    found: dict[str, tuple[MetaData, Sequence[Any]]] = {
        "returns": (
            returns_tables.metadata,
            [
                *_by_array(returns_repository),
                _mark_published(returns_tables.messaging.outbox),
            ],
        ),
        "refunds": (refunds_tables.metadata, _by_array(refunds_repository)),
        "complaints": (complaints_tables.metadata, _by_array(complaints_repository)),
    }
    # The batch reads known when this was written are among them (the search finds them).
    r, f, c = returns_repository, refunds_repository, complaints_repository
    known: dict[str, list[Any]] = {
        "returns": [r._PREFETCH_ORDERS, r._PREFETCH_SIGNATURES, r._PREFETCH_RETURNS],
        "refunds": [f._PREFETCH, f._PREFETCH_OWNERS],
        "complaints": [c._PREFETCH_ORDERS, c._PREFETCH_COMPLAINTS, c._UNPARK],
    }
    for service, statements in known.items():
        assert all(any(s is t for t in found[service][1]) for s in statements), service
    return found


def _argument(bind: Any) -> str:
    """A value for a statement's parameter: five ids of the array's type, or an instant."""
    if not isinstance(bind.type, ARRAY):
        return "now()"
    return "'{1,2,3,4,5}'" if isinstance(bind.type.item_type, Integer) else "'{k1,k2,k3,k4,k5}'"


def _fill(table: Table, schema: str, rows: int) -> str:
    names, values = [], []
    for column in table.c:
        if column.server_default is not None or column.autoincrement is True:
            continue
        kind = next((v for t, v in _FILL.items() if isinstance(column.type, t)), None)
        assert kind is not None, f"no filler for {table.name}.{column.name} ({column.type})"
        names.append(f'"{column.name}"')
        values.append(kind)
    return (
        f'INSERT INTO "{schema}"."{table.name}" ({", ".join(names)}) '
        f"SELECT {', '.join(values)} FROM generate_series(1, {rows}) AS g"
    )


@pytest.mark.parametrize("rows", [300, 3000])
@pytest.mark.parametrize("service", ["returns", "refunds", "complaints"])
async def test_no_generic_plan_compares_every_row_with_the_batchs_ids(
    database_engine: AsyncEngine, service: str, rows: int
) -> None:
    metadata, statements = _batch_statements()[service]
    assert metadata.schema is not None
    async with fresh_schema(database_engine, metadata.schema, metadata) as engine:
        translate = engine.get_execution_options()["schema_translate_map"]
        copy = translate[metadata.schema]
        async with engine.connect() as conn:
            for table in metadata.sorted_tables:
                await conn.exec_driver_sql(_fill(table, copy, rows))
            # For this transaction only: the connection goes back to the pool.
            await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            for n, statement in enumerate(statements):
                compiled = statement.compile(
                    dialect=conn.dialect,
                    schema_translate_map=translate,
                    render_schema_translate=True,
                )
                arguments = [_argument(compiled.binds[name]) for name in compiled.positiontup or ()]
                await conn.exec_driver_sql(f"PREPARE batch_{n} AS {compiled}")
                try:
                    plan = "\n".join(
                        row[0]
                        for row in await conn.exec_driver_sql(
                            f"EXPLAIN (VERBOSE) EXECUTE batch_{n}({', '.join(arguments)})"
                        )
                    )
                finally:
                    await conn.exec_driver_sql(f"DEALLOCATE batch_{n}")
                assert re.search(r"\$\d", plan), plan  # generic: parameters, not values
                filtered = re.findall(r"Filter: .*= ANY \(\$\d", plan)
                assert not filtered, f"{service}: every row compared with the ids:\n{plan}"
            await conn.rollback()
