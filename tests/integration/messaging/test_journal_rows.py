"""The journal rows a batch files at commit (held back, one statement of arrays) are exactly
those one statement per event files: every column, the detail's JSON, the order of filing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from aftersales_dev.events import encode
from shared.contracts import CloudEvent, new_event, parse_event
from shared.db import UnitOfWork
from shared.messaging import journal
from shared.messaging.store import HOLD_WRITES
from tests.unit.contract_examples import NOW, VALID_INPUTS, envelope
from tests.unit.test_contract_outputs import output_examples

from .kit import MessagingKit

# Text a JSON writer must escape or pass through: quotes, a backslash, a tab, CJK, an emoji.
AWKWARD = 'say "退货" \\ \t 🙂 </script>'
# When the rows were filed: an offset and microseconds, which the row must keep as the instant.
FILED = datetime(2024, 5, 3, 20, 1, 2, 345678, tzinfo=timezone(timedelta(hours=8)))


def events() -> list[CloudEvent]:
    inputs = [parse_event(encode(envelope(t, data))) for t, data in VALID_INPUTS.items()]
    outputs = []
    for n, (event_type, data) in enumerate(output_examples()):
        if "message" in type(data).model_fields:
            data = data.model_copy(update={"message": AWKWARD})
        # Ids are text columns of the row: written and read back exactly.
        outputs.append(new_event(event_type, data, id=f'e-{n} "é" \\', source="s", time=NOW))
    return inputs + outputs


async def file_and_read(kit: MessagingKit, *, held: bool) -> list[dict[str, Any]]:
    table = kit.harness.tables.journal
    async with UnitOfWork(kit.sessions, namespace=kit.harness.name) as uow:
        uow.session.info[HOLD_WRITES] = held
        for n, event in enumerate(events()):
            await journal.record(uow.session, table, event, "input" if n % 2 else "output", FILED)
        await uow.commit()
    async with kit.engine.connect() as conn:
        rows = (await conn.execute(select(table).order_by(table.c.id))).mappings().all()
        await conn.execute(table.delete())
        await conn.commit()
    return [{k: v for k, v in row.items() if k not in ("id", "recorded_at")} for row in rows]


async def test_held_rows_are_the_rows_filed_one_statement_per_event(kit: MessagingKit) -> None:
    one_by_one = await file_and_read(kit, held=False)
    together = await file_and_read(kit, held=True)
    assert together == one_by_one
    expected = [
        row
        for n, event in enumerate(events())
        for row in journal.entries(event, "input" if n % 2 else "output", FILED)
    ]
    assert together == expected
    assert any(row["detail"].get("message") == AWKWARD for row in together)
