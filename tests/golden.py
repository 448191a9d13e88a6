"""Histories replayed against outputs recorded byte for byte: a change that should not alter a
service's outputs is held to what the code before it wrote (RECORD_GOLDEN=1 records anew)."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

# An instant and the events fed at it.
Step = tuple[datetime, list[dict[str, Any]]]


def in_order(steps: list[Step], history: str) -> list[Step]:
    """The steps by instant, each event given a fixed id (the n-th event of `history`)."""
    steps.sort(key=lambda step: step[0])
    n = 0
    for _, batch in steps:
        for event in batch:
            n += 1
            event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"golden-{history}-{n}"))
    return steps


def check_recorded(recorded: Path, got: list[str]) -> None:
    """`got` (output payloads) equal, one by one, to the ones recorded in `recorded`."""
    if os.environ.get("RECORD_GOLDEN"):
        recorded.write_text(json.dumps(got, ensure_ascii=False, indent=0) + "\n")
    expected = json.loads(recorded.read_text())
    assert len(got) == len(expected)
    for n, (payload, wanted) in enumerate(zip(got, expected, strict=True)):
        assert payload == wanted, f"output {n} differs"


@contextmanager
def applied_together() -> Iterator[None]:
    """Every batch fed meanwhile is applied on the batch path, not again event by event: the
    slow path writes the same outputs, so only this tells that a batch's held writes failed
    (a batch cache's flush refused by the database, or a row the JSON encoder refuses)."""
    again: list[logging.LogRecord] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "the batch is applied again event by event":
                again.append(record)

    consumer = logging.getLogger("aftersales.consumer")
    seen, level = Seen(), consumer.level
    consumer.addHandler(seen)
    consumer.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        consumer.removeHandler(seen)
        consumer.setLevel(level)
    assert not again, [getattr(record, "error", "") for record in again]
