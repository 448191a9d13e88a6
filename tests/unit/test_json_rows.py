"""`dump_rows`: the JSON array a batch's held rows are sent as (shared/upserts.py)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from shared.upserts import dump_rows


def test_instants_and_dates_are_written_as_isoformat_and_documents_as_they_are() -> None:
    at = datetime(2026, 3, 1, 16, 30, 5, 120, tzinfo=timezone(timedelta(hours=8, seconds=30)))
    rows = [{"at": at, "day": date(2026, 3, 1), "state": orjson.Fragment('{"a":1}'), "n": None}]
    assert json.loads(dump_rows(rows)) == [
        {"at": at.isoformat(), "day": "2026-03-01", "state": {"a": 1}, "n": None}
    ]


def test_a_value_no_column_takes_is_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        dump_rows([{"amount": Decimal("1.5")}])
