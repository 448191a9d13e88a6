"""A service process settles its heap once started: start-up's objects frozen, young objects
collected every `YOUNG_THRESHOLD` allocations."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared import heap


@pytest.fixture
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_settle_freezes_what_exists_and_collects_young_objects_less_often(restored: None) -> None:
    gc.unfreeze()
    older = gc.get_threshold()[1:]
    heap.settle()
    assert gc.get_freeze_count() > 0
    # Only the young generation's threshold changes; the older generations' stay.
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *older)
