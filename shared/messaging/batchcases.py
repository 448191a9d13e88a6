"""The cases of an order a repository's batch cache holds (return requests, complaints): each as
the JSON text read until a handler first loads it, an order's listed as the schema's query
lists them (by their row's created_at, then by id in byte order); what the batch does not hold
is read by the repository's query."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession

from shared.documents import Stored

S = TypeVar("S", bound=Stored)
H = TypeVar("H", bound="HeldCase[Any]")


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


@dataclass
class HeldCases(Generic[H]):
    """A batch's cases by id (None: known not to exist), and the ids of each order's; every case
    of the orders in `complete` is among them."""

    by_id: dict[str, H | None]
    complete: set[str]
    of_order: dict[str, set[str]] = field(default_factory=dict)

    def put(self, case_id: str, case: H) -> None:
        self.by_id[case_id] = case
        self.of_order.setdefault(case.order_id, set()).add(case_id)


async def case_or_read(
    session: AsyncSession,
    held: Mapping[str, HeldCase[S] | None] | None,
    case_id: str,
    query: Any,
    kind: type[S],
) -> S | None:
    """A case by id: the batch's copy where it holds the id (`held`: its cases by id, None
    outside a batch), else the `kind` whose document `query` reads (`b_id`); None: there is no
    such case."""
    if held is not None and case_id in held:
        case = held[case_id]
        return None if case is None else case.load()
    state = await session.scalar(query, {"b_id": case_id})
    return None if state is None else kind.from_dict(state)


async def cases_or_read(
    session: AsyncSession,
    held: HeldCases[H] | None,
    order_id: str,
    query: Any,
    kind: type[S],
) -> list[S]:
    """An order's cases: the batch's copies where it holds them all, else the `kind`s whose
    documents `query` reads (`b_id`), in the same order."""
    if held is not None and order_id in held.complete:
        return cast(list[S], loaded_in_order(held.by_id, held.of_order.get(order_id, ())))
    return [kind.from_dict(state) for state in await session.scalars(query, {"b_id": order_id})]
