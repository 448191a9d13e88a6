"""A service's own view of an input: a dataclass filled from the same-named attributes."""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


@cache
def _filled(cls: type[DataclassInstance]) -> tuple[str, ...]:
    # Looked up once per class: `fields` walks the class on every call, and views are made
    # for every input event (an order and each of its lines).
    return tuple(f.name for f in fields(cls) if f.init)


def projected(cls: type[T], source: object, **given: Any) -> T:
    """A `cls` from the attributes of `source` that it has fields for, and `given`. Every other
    field must be on `source` (a field renamed on one side fails here rather than silently
    keeping a default). What `cls` does not name (a buyer's contact) is never copied."""
    copied = {name: getattr(source, name) for name in _filled(cls) if name not in given}
    return cls(**copied, **given)
