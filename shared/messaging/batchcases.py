"""The cases of an order a repository's batch cache holds (return requests, complaints): each as
the JSON text read until a handler first loads it, an order's listed as the schema's query
lists them (by their row's created_at, then by id in byte order)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Generic, TypeVar, cast

from shared.documents import Stored

S = TypeVar("S", bound=Stored)


@dataclass
class HeldCase(Generic[S]):
    """A case of the batch: its row's created_at and order, and the case, as the JSON text read
    until a handler first loads it. A subclass names the case's class (`kind`)."""

    kind: ClassVar[type[Stored]]

    created_at: datetime
    order_id: str
    case: S | str

    def load(self) -> S:
        case = self.case
        if isinstance(case, str):
            case = self.case = cast(S, self.kind.from_json(case))
        return case


def loaded_in_order(held: Mapping[str, HeldCase[S] | None], case_ids: Iterable[str]) -> list[S]:
    """The cases named by `case_ids` that exist (`held` maps an id to None where it is known not
    to), loaded, ordered by created_at and then id: Python compares str in code point order,
    which is the byte order of the queries' `COLLATE "C"`, whatever the database's collation."""
    found = sorted(
        (case.created_at, case_id, case)
        for case_id in case_ids
        if (case := held[case_id]) is not None
    )
    return [case.load() for _, _, case in found]
