"""What a reconciliation found: counts, discrepancies (the run fails) and notes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Findings:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # discrepancies: the run fails
    notes: list[str] = field(default_factory=list)  # worth knowing, not failures

    def problem(self, text: str, examples: Iterable[object] = ()) -> None:
        shown = list(examples)[:5]
        self.problems.append(text + (f" (e.g. {', '.join(map(str, shown))})" if shown else ""))

    def each(self, *labelled: tuple[str, Collection[object]], prefix: str = "") -> None:
        """A problem of every non-empty collection: `prefix`, how many, its label, examples."""
        for label, items in labelled:
            if items:
                self.problem(f"{prefix}{len(items)} {label}", items)


def ours(event: Mapping[str, Any], run_id: str) -> bool:
    return str(event.get("data", {}).get("order_id", "")).startswith(run_id)


def of_run(
    by_id: Mapping[str, Mapping[str, Any]], run_id: str, *types: str
) -> list[Mapping[str, Any]]:
    """The run's events (`ours`) of `by_id` whose type is one of `types`, in its order."""
    return [event for event in by_id.values() if event["type"] in types and ours(event, run_id)]


def by_key(
    by_id: Mapping[str, Mapping[str, Any]], run_id: str, event_type: str, key: str
) -> dict[str, list[Mapping[str, Any]]]:
    """The run's events of `event_type` by their data's `key`, in its order (more than one
    under a key: published more than once, under other event ids)."""
    found: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in of_run(by_id, run_id, event_type):
        found[event["data"][key]].append(event)
    return found


def count_found(
    f: Findings, noun: str, expected: Collection[str], found: Collection[str], missing: list[str]
) -> None:
    """The first counts of the outputs of one kind (`noun`): expected, found of those, missing."""
    f.counts[f"{noun} expected"] = len(expected)
    f.counts[f"{noun} found"] = len([key for key in found if key in expected])
    f.counts[f"{noun} missing"] = len(missing)
