"""The journal: every event a service took in or queued out, filed under the cases it names.

Written in the state change's transaction (by the consumer for inputs, by `HandlerContext.emit`
for outputs), so a case's timeline holds exactly what was applied. On the consumer's fast path
the rows are held back and inserted in one statement at commit, like the outbox rows.

No personal data: the buyer is a customer_id, and of an event's data only the fields named in
`DETAIL_FIELDS` are kept (never a name, phone, address, e-mail or free text the buyer wrote).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from shared.contracts import CloudEvent
from shared.db import driver_rows, pending_writes
from shared.upserts import dump_rows, json_rows

from .store import HOLD_WRITES

# Fields of event data a timeline and the KPIs need, none of them personal. `lines` keep only
# LINE_FIELDS (an order line's title is the product's, but the journal needs no more).
DETAIL_FIELDS = frozenset(
    {
        "shop_id",
        "kind",
        "reason",
        "category",
        "rule",
        "message",
        "message_en",
        "amount",
        "value",
        "currency",
        "status",
        "sla",
        "due_at",
        "due_by",
        "deadline",
        "score",
        "decision",
        "outcome",
        "remedy",
        "passed",
        "findings",
        "refund_id",
        "callback_id",
        "waiting_for",
        "refund_estimate",
        "return_shipping_payer",
        "priority",
        "template",
        "lines",
    }
)
LINE_FIELDS = ("line_id", "sku", "category", "quantity")


def _is_mapping(value: object) -> bool:
    # Dumped data is made of dicts: a class test first, the ABC's (slower) only for the rest.
    return value.__class__ is dict or isinstance(value, Mapping)


def _case_refs(data: Mapping[str, Any]) -> list[tuple[str | None, str | None]]:
    """(case type, case id) of each case the data names; one (None, None) when none."""
    case = data.get("case")
    if case is not None and _is_mapping(case):
        return [(case.get("type"), case.get("id"))]
    cases = data.get("cases")
    if isinstance(cases, list) and cases:
        return [(c.get("type"), c.get("id")) for c in cases if _is_mapping(c)]
    if data.get("return_id"):
        return [("return", data["return_id"])]
    if data.get("complaint_id"):
        return [("complaint", data["complaint_id"])]
    return [(None, None)]


def _detail(data: Mapping[str, Any], fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The detail of dumped `data`; `fields`, when given, are its keys among DETAIL_FIELDS in
    the order they were dumped (no need to walk the others)."""
    if fields is None:
        detail = {k: v for k, v in data.items() if k in DETAIL_FIELDS and v is not None}
    else:
        detail = {k: v for k in fields if (v := data[k]) is not None}
    if isinstance(detail.get("lines"), list):
        detail["lines"] = [
            {k: line[k] for k in LINE_FIELDS if k in line}
            for line in detail["lines"]
            if _is_mapping(line)
        ]
    return detail


# The fields of event data a journal row is made of: its detail, the cases and the keys. Only
# these are dumped (an `order.paid`'s buyer and payments are never read here).
_READ_FIELDS: set[str] = set(DETAIL_FIELDS) | {
    "case",
    "cases",
    "return_id",
    "complaint_id",
    "order_id",
    "customer_id",
}


def entries(event: CloudEvent, direction: str, occurred_at: datetime) -> list[dict[str, Any]]:
    """The journal rows of one event: one per case it names (a callback names several)."""
    data = event.data
    if data is None:
        return _rows(event, {}, {}, direction, occurred_at)
    read, detail_fields = _read_fields(type(data))
    dumped = data.__pydantic_serializer__.to_python(data, mode="json", include=read)
    return _rows(event, dumped, _detail(dumped, detail_fields), direction, occurred_at)


@cache
def _read_fields(model: type[BaseModel]) -> tuple[set[str] | None, tuple[str, ...]]:
    """The fields of `model` a row reads, None when that is all of them (nothing to filter:
    pydantic builds a filter from the set on every dump); and those of its detail, in the
    order they are dumped."""
    fields = {name for name in model.model_fields if name in _READ_FIELDS}
    detail = tuple(name for name in model.model_fields if name in DETAIL_FIELDS)
    return (None if len(fields) == len(model.model_fields) else fields), detail


def entries_of_data(
    event: CloudEvent, data: Mapping[str, Any], direction: str, occurred_at: datetime
) -> list[dict[str, Any]]:
    """The journal rows of `event` from `data`, its data dumped as JSON (at least the fields
    `entries` dumps)."""
    return _rows(event, data, _detail(data), direction, occurred_at)


def _rows(
    event: CloudEvent,
    data: Mapping[str, Any],
    detail: dict[str, Any],
    direction: str,
    occurred_at: datetime,
) -> list[dict[str, Any]]:
    return [
        {
            "event_id": event.id,
            "direction": direction,
            "event_type": event.type,
            "occurred_at": occurred_at,
            "order_id": data.get("order_id"),
            "customer_id": data.get("customer_id"),
            "case_type": case_type,
            "case_id": case_id,
            "detail": detail,
        }
        for case_type, case_id in _case_refs(data)
    ]


async def record(
    session: AsyncSession, table: Table, event: CloudEvent, direction: str, occurred_at: datetime
) -> None:
    """File `event` in the journal, in the session's transaction (held back on the fast path)."""
    rows = entries(event, direction, occurred_at)
    if session.info.get(HOLD_WRITES):
        pending_writes(session, "journal", lambda: _HeldJournal(table)).rows.extend(rows)
        return
    await session.execute(_journal_add(table), rows)


class _HeldJournal:
    """Journal rows of one transaction, inserted together at commit: the rows as one JSON
    array (a single parameter), taken apart by the server in the order they were filed."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self.rows: list[dict[str, Any]] = []

    async def flush(self, session: AsyncSession) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        await driver_rows(session, _journal_add_many(self._table), {"rows": dump_rows(rows)})


_COLUMNS = (
    "event_id",
    "direction",
    "event_type",
    "occurred_at",
    "order_id",
    "customer_id",
    "case_type",
    "case_id",
    "detail",
)


@cache
def _journal_add(table: Table) -> Insert:
    return insert(table)


@cache
def _journal_add_many(table: Table) -> Insert:
    # Rows in array order: ids follow the order of filing.
    return insert(table).from_select(list(_COLUMNS), json_rows(table, _COLUMNS))
