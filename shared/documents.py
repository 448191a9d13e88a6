"""Aggregates stored as JSONB documents: one versioned serialiser for every service.

A `DocumentType` names one kind of document, the dataclass it holds and its current version.
`dump` writes the dataclass as JSON-safe data (through pydantic's TypeAdapter; enums as their
values, instants as `datetime.isoformat()` with their offset, tuples as lists, sets as sorted
lists) and stamps the version under `document_version`. `load` reads any version this code
knows: an older document is brought forward by explicit upcasters, one per version step
(1 -> 2, 2 -> 3, ...), before it is validated, so a change of layout needs no data migration
and a stored document never stops a partition because the code moved on. Documents written
before versioning carry no version and are version 1. A document newer than the code, or one
that does not validate, is a `DocumentError` with a one-line message naming the document type.
`dump_json` / `load_json` are the same documents as compact JSON text, for the stores that bind
and read them as text: orjson writes the dataclass in one pass, with no dict in between.

An aggregate stored whole derives from `Stored`: its `to_dict` / `to_json` / `from_dict` /
`from_json` go through the `DocumentType` made for its class, which registers itself there.

Changing a stored layout: bump `version`, add the upcaster from the previous version, keep a
fixture of the old layout under tests/fixtures/documents (docs/decisions.md, "Documents").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import Enum
from functools import cached_property
from typing import Any, ClassVar, Generic, Self, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError

__all__ = [
    "VERSION_KEY",
    "DocumentError",
    "DocumentType",
    "Stored",
    "Upcaster",
    "require_aware_fields",
]

T = TypeVar("T")

VERSION_KEY = "document_version"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def require_aware_fields(owner: object, *names: str) -> None:
    """Refuse an instant without its offset in the named attributes of `owner` (each None, an
    instant, or a mapping of instants such as timers). For a dataclass's `__post_init__`: a
    loaded document runs it too, so a naive instant is refused, never guessed."""
    for name in names:
        value = getattr(owner, name)
        if value is None:
            continue
        if type(value) is datetime:  # most fields: no Mapping check (an ABC's is slow)
            if value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
            continue
        moments = value.items() if isinstance(value, Mapping) else ((name, value),)
        for label, moment in moments:
            if moment is not None and moment.utcoffset() is None:
                where = name if label == name else f"{name} {label}"
                raise ValueError(f"{where} must be timezone-aware")


class DocumentError(ValueError):
    """A stored document this code cannot read."""


class Stored:
    """An aggregate stored as one document, through the `DocumentType` of its class."""

    _document: ClassVar[DocumentType[Any]]

    def to_dict(self) -> dict[str, Any]:
        return self._document.dump(self)

    def to_json(self) -> str:
        return self._document.dump_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        loaded: Self = cls._document.load(data)
        return loaded

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        loaded: Self = cls._document.load_json(text)
        return loaded


class DocumentType(Generic[T]):
    """One kind of stored document: its name, its dataclass, its version and its upcasters.

    `upcasters[n]` turns a version-n document into version n + 1; there is one for every
    version below the current one.
    """

    def __init__(
        self,
        name: str,
        model: type[T],
        *,
        version: int = 1,
        upcasters: Mapping[int, Upcaster] | None = None,
    ) -> None:
        steps = dict(upcasters or {})
        if version < 1:
            raise ValueError(f"document {name}: version must be at least 1")
        if set(steps) != set(range(1, version)):
            raise ValueError(f"document {name}: needs one upcaster per version 1..{version - 1}")
        self.name = name
        self.model = model
        self.version = version
        self._upcasters = steps
        if isinstance(model, type) and issubclass(model, Stored):
            model._document = self

    @cached_property
    def _adapter(self) -> TypeAdapter[T]:
        # Built on first use: the dataclass's annotations name types of its whole module.
        return TypeAdapter(self.model)

    def dump(self, value: T) -> dict[str, Any]:
        data: dict[str, Any] = _json_safe(self._adapter.dump_python(value))
        data[VERSION_KEY] = self.version
        return data

    def dump_json(self, value: T) -> str:
        """`dump(value)` as compact JSON text (non-ASCII text as it is, not escaped)."""
        text = orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS)
        if text == b"{}":
            return self._version_only
        return (text[:-1] + self._version_suffix).decode()

    @cached_property
    def _version_suffix(self) -> bytes:
        return f',"{VERSION_KEY}":{self.version}}}'.encode()

    @cached_property
    def _version_only(self) -> str:
        return f'{{"{VERSION_KEY}":{self.version}}}'

    def load_json(self, text: str | bytes) -> T:
        """`load` of a document stored as JSON text."""
        return self.load(orjson.loads(text))

    def load(self, stored: Mapping[str, Any]) -> T:
        data = dict(stored)
        version = data.pop(VERSION_KEY, 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise DocumentError(f"{self.name} document: bad {VERSION_KEY} {version!r}")
        if version > self.version:
            raise DocumentError(
                f"{self.name} document version {version} is newer than this code reads"
                f" ({self.version})"
            )
        for step in range(version, self.version):
            data = self._upcasters[step](data)
        try:
            return self._adapter.validate_python(data)
        except ValidationError as error:
            # A dataclass's own checks (__post_init__, e.g. aware instants) arrive here too.
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "document"
            raise DocumentError(f"{self.name} document: {where}: {first['msg']}") from None


def _json_safe(value: Any) -> Any:
    """pydantic's python dump made JSON-safe the way the stored documents always were
    (`isoformat()` keeps "+00:00" where pydantic's JSON mode would write "Z"). Dispatches on
    the exact type first: documents are loaded and stored for every record of a batch."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {
            key if type(key) is str else _json_safe(key): _json_safe(item)
            for key, item in value.items()
        }
    if kind is list or kind is tuple:
        return [_json_safe(item) for item in value]
    if kind is datetime or kind is date:
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, _SETS):
        return sorted(_json_safe(item) for item in value)
    if isinstance(value, Mapping):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, _INSTANTS):
        return value.isoformat()
    return value


def _json_default(value: Any) -> Any:
    """What orjson leaves to us: sets (sorted, as `dump` writes them) and instants (passed
    through, so each is written by `isoformat()` exactly: orjson would drop an offset's
    seconds)."""
    if isinstance(value, (set, frozenset, datetime, date)):
        return _json_safe(value)
    raise TypeError(f"{type(value).__name__} is not a document value")


# Enum keys (timers by kind) are written as their values, as `dump` writes them.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME

_SETS = (set, frozenset)
_INSTANTS = (datetime, date)
_SCALARS = frozenset({str, int, float, bool, type(None)})
