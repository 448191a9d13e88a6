"""Journal rows are built from the fields they need only: the same rows as from the whole of
an event's data, for every input and output type of the contract."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from aftersales_dev.events import encode
from shared.contracts import CloudEvent, new_event, parse_event
from shared.messaging import journal
from tests.unit.contract_examples import NOW, VALID_INPUTS, envelope
from tests.unit.test_contract_outputs import output_examples


def whole_data_entries(
    event: CloudEvent, direction: str, occurred_at: datetime
) -> Iterator[dict[str, Any]]:
    """The rows as first written: from the whole of `data` dumped."""
    return journal.entries_of_data(
        event, event.data.model_dump(mode="json"), direction, occurred_at
    )


def _events() -> list[CloudEvent]:
    inputs = [parse_event(encode(envelope(t, data))) for t, data in VALID_INPUTS.items()]
    outputs = [
        new_event(t, data, id=f"e-{n}", source="s", time=NOW)
        for n, (t, data) in enumerate(output_examples())
    ]
    return inputs + outputs


@pytest.mark.parametrize("event", _events(), ids=lambda e: e.type)
def test_rows_are_those_of_the_whole_data(event: CloudEvent) -> None:
    rows = list(journal.entries(event, "input", NOW))
    assert rows == list(whole_data_entries(event, "input", NOW))
    # Key order too: the detail is stored as JSON text.
    assert [list(row["detail"]) for row in rows] == [
        list(row["detail"]) for row in whole_data_entries(event, "input", NOW)
    ]


def test_the_examples_name_cases_every_way() -> None:
    """The comparison above covers each way a row finds its case, and lines."""
    rows = [row for event in _events() for row in journal.entries(event, "output", NOW)]
    kinds = {row["case_type"] for row in rows}
    assert {"return", "complaint", None} <= kinds
    assert any(len(list(journal.entries(e, "output", NOW))) > 1 for e in _events())
    assert any("lines" in row["detail"] for row in rows)
