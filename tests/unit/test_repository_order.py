"""The statements that list an order's cases sort ids in byte order, as the batch caches do
(Python's `sorted`): under a database collation such as en_US, "R-B" and "R-a" would come in
the other order, and the batch path and the event-by-event path would reassess competing
cases in different orders."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql

from services.complaints import repository as complaints
from services.returns import repository as returns


@pytest.mark.parametrize(
    ("statement", "id_column"),
    [
        (returns._RETURNS_OF_ORDER, "return_id"),
        (complaints._COMPLAINTS_OF_ORDER, "complaint_id"),
    ],
)
def test_an_orders_cases_are_listed_by_id_in_byte_order(statement: object, id_column: str) -> None:
    sql = str(statement.compile(dialect=postgresql.dialect()))  # type: ignore[attr-defined]
    order_by = sql.split("ORDER BY", 1)[1]
    assert order_by.strip().endswith(f'{id_column} COLLATE "C"')
