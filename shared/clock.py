"""Injectable time source, so every rule can be tested at any instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, always timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; for tests and replays."""

    def __init__(self, start: datetime) -> None:
        require_aware(start, "datetimes")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        require_aware(instant, "datetimes")
        self._now = instant

    def advance(self, delta: timedelta) -> datetime:
        self._now = self._now + delta
        return self._now


def require_aware(instant: datetime, name: str = "datetime") -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return instant


def instant_to_json(instant: datetime | None) -> str | None:
    return None if instant is None else require_aware(instant).isoformat()


def instant_from_json(text: str | None) -> datetime | None:
    if text is None:
        return None
    return require_aware(datetime.fromisoformat(text), text)
