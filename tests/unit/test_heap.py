"""A service process settles its heap once started: start-up's objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_settle_freezes_what_exists_and_keeps_the_thresholds(unfrozen: None) -> None:
    thresholds = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == thresholds
