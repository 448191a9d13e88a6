"""A service's own view of an input: a dataclass filled from the same-named attributes."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def projected(cls: type[T], source: object, **given: Any) -> T:
    """A `cls` from the attributes of `source` that it has fields for, and `given`. Every other
    field must be on `source` (a field renamed on one side fails here rather than silently
    keeping a default). What `cls` does not name (a buyer's contact) is never copied."""
    names = [f.name for f in fields(cls) if f.init and f.name not in given]
    return cls(**{name: getattr(source, name) for name in names}, **given)
