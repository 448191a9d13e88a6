"""The cases of orders (return requests, complaints) kept in memory as their documents, each
listed under its order as the schema lists them: a repository's case table in memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from shared.messaging.memory import MemoryCasesOfOrder, MemoryUnitOfWork

T = TypeVar("T")


class MemoryCaseDocuments(MemoryCasesOfOrder):
    """Each case's document by id, and when and for which order each case was created."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        super().__init__(uow)
        self._documents = uow.rows()  # case id -> document

    def case(self, case_id: str, load: Callable[[Mapping[str, Any]], T]) -> T | None:
        """What `load` makes of the case's document; None: no such case."""
        return self._documents.aggregate(case_id, load)

    def cases_of(self, order_id: str, load: Callable[[Mapping[str, Any]], T]) -> list[T]:
        """What `load` makes of the documents of an order's cases, by created_at, then id."""
        return [load(self._documents.document(case_id)) for case_id in self.of_order(order_id)]

    def save(self, case_id: str, order_id: str, document: Mapping[str, Any], now: datetime) -> None:
        """A case stored; its created_at is the first save's, like the row's."""
        self.add(case_id, order_id, now)
        self._documents.put_document(case_id, document)
