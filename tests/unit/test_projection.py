"""`projected`: a view filled from same-named attributes, never guessing a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from shared.projection import projected


@dataclass(frozen=True)
class View:
    order_id: str
    cancelled_at: str | None = None


def test_copies_what_the_view_names_and_nothing_else() -> None:
    source = SimpleNamespace(order_id="O1", cancelled_at="t", customer={"phone": "138"})
    assert projected(View, source) == View("O1", "t")


def test_a_field_the_source_lacks_fails_even_with_a_default() -> None:
    with pytest.raises(AttributeError, match="cancelled_at"):
        projected(View, SimpleNamespace(order_id="O1"))
    assert projected(View, SimpleNamespace(order_id="O1"), cancelled_at=None) == View("O1")


@dataclass(frozen=True)
class Other:
    order_id: str
    shop_id: str


def test_each_view_fills_its_own_fields_however_often_and_in_whatever_order() -> None:
    source = SimpleNamespace(order_id="O1", cancelled_at=None, shop_id="S1")
    for _ in range(2):  # the field names are looked up once per class
        assert projected(View, source) == View("O1")
        assert projected(Other, source) == Other("O1", "S1")
        assert projected(Other, source, shop_id="S2") == Other("O1", "S2")
