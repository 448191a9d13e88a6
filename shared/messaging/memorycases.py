"""The cases of orders (return requests, complaints) kept in memory as their documents, each
listed under its order as the schema lists them: a repository's case table in memory."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.messaging.memory import MemoryCasesOfOrder, MemoryUnitOfWork


class MemoryCaseDocuments(MemoryCasesOfOrder):
    """Each case's document by id, and when and for which order each case was created."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        super().__init__(uow)
        self._documents = uow.rows()  # case id -> document

    def document(self, case_id: str) -> Any:
        return self._documents.document(case_id)

    def documents_of(self, order_id: str) -> list[Any]:
        """The documents of an order's cases, by created_at, then id."""
        return [self._documents.document(case_id) for case_id in self.of_order(order_id)]

    def save(self, case_id: str, order_id: str, document: Mapping[str, Any], now: datetime) -> None:
        """A case stored; its created_at is the first save's, like the row's."""
        self.add(case_id, order_id, now)
        self._documents.put_document(case_id, document)
