"""A view of another object: a dataclass (a service's own view of an input) or a pydantic model
(an output event's data, from a domain event), filled from the same-named attributes; a
dataclass filled from a stored row's same-named columns, or a row from an object's attributes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import BaseModel

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")
M = TypeVar("M", bound=BaseModel)


@cache
def _filled(cls: type[DataclassInstance] | type[BaseModel]) -> tuple[str, ...]:
    # Looked up once per class: `fields` walks the class on every call, and views are made
    # for every input event (an order and each of its lines).
    if issubclass(cls, BaseModel):
        return tuple(cls.model_fields)
    return tuple(f.name for f in fields(cls) if f.init)


@overload
def projected(cls: type[D], source: object, **given: Any) -> D: ...
@overload
def projected(cls: type[M], source: object, **given: Any) -> M: ...
def projected(
    cls: type[DataclassInstance] | type[BaseModel], source: object, **given: Any
) -> DataclassInstance | BaseModel:
    """A `cls` from the attributes of `source` that it has fields for, and `given`. Every other
    field must be on `source` (a field renamed on one side fails here rather than silently
    keeping a default). What `cls` does not name (a buyer's contact) is never copied."""
    copied = {name: getattr(source, name) for name in _filled(cls) if name not in given}
    return cls(**copied, **given)


def from_row(cls: type[D], row: Mapping[str, Any], **given: Any) -> D:
    """A `cls` from the columns of `row` (a `RowMapping`) that it has fields for, and `given`.
    A field with no column keeps its default; the row's other columns are not read."""
    copied = {name: row[name] for name in _filled(cls) if name not in given and name in row}
    return cls(**copied, **given)


def as_row(source: object, columns: Iterable[str], **given: Any) -> dict[str, Any]:
    """A row of `columns`: `given`, and for every other column the same-named attribute of
    `source` (which must have it)."""
    return {name: given[name] if name in given else getattr(source, name) for name in columns}
