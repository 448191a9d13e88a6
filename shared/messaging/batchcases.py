"""The cases of an order a repository's batch cache holds (return requests, complaints), listed
as the schema's query lists them: by their row's created_at, then by id in byte order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol, TypeVar

A = TypeVar("A", covariant=True)


class HeldCase(Protocol[A]):
    """A case as a batch cache keeps it: its row's created_at, and the aggregate it loads."""

    @property
    def created_at(self) -> datetime: ...

    def load(self) -> A: ...


def loaded_in_order(held: Mapping[str, HeldCase[A] | None], case_ids: Iterable[str]) -> list[A]:
    """The cases named by `case_ids` that exist (`held` maps an id to None where it is known not
    to), loaded, ordered by created_at and then id: Python compares str in code point order,
    which is the byte order of the queries' `COLLATE "C"`, whatever the database's collation."""
    found = sorted(
        (case.created_at, case_id, case)
        for case_id in case_ids
        if (case := held[case_id]) is not None
    )
    return [case.load() for _, _, case in found]
