"""An aggregate's pending timers: at most one per kind, by its due instant.

Pure: the aggregates keep the mapping and turn what changed into their own timer events.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import datetime
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def set_timer(timers: dict[K, datetime], kind: K, due_at: datetime) -> bool:
    """Set (or move) the timer of `kind`; False when it is already due at `due_at`."""
    if timers.get(kind) == due_at:
        return False
    timers[kind] = due_at
    return True


def cancel_timers(timers: dict[K, datetime], kinds: Iterable[K]) -> list[K]:
    """Drop the pending timers among `kinds`, in that order; the kinds dropped."""
    chosen = [kind for kind in kinds if kind in timers]
    for kind in chosen:
        del timers[kind]
    return chosen
