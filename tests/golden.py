"""Histories replayed against outputs recorded byte for byte: a change that should not alter a
service's outputs is held to what the code before it wrote (RECORD_GOLDEN=1 records anew)."""

from __future__ import annotations

import json
import os
import uuid
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
