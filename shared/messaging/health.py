"""A service consumer's failing batches: the gauge and readiness while they fail in a row."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared import metrics

from .errors import describe_failure, sqlstate


class ConsumerHealth:
    """Batches of one service's consumer that failed in a row: the gauge
    `aftersales_consecutive_failed_batches` while they keep failing, and readiness degraded
    once they have failed for `stuck_after` seconds (work is stuck, someone must look)."""

    def __init__(
        self,
        service: str,
        *,
        stuck_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.stuck_after = stuck_after
        self._monotonic = monotonic
        self.failures = 0
        self.failing_since: float | None = None
        self.sqlstate = ""
        self.error = ""
        self._labels: set[str] = set()

    def failed(self, exc: BaseException) -> None:
        state = sqlstate(exc) or ""
        if self.failing_since is None:
            self.failing_since = self._monotonic()
        self.failures += 1
        self.sqlstate, self.error = state, describe_failure(exc)
        for other in self._labels - {state}:  # one series carries the count: the latest kind
            metrics.CONSECUTIVE_FAILED_BATCHES.labels(self.service, other).set(0)
        self._labels.add(state)
        metrics.CONSECUTIVE_FAILED_BATCHES.labels(self.service, state).set(self.failures)

    def succeeded(self) -> None:
        if self.failures == 0:
            return
        for state in self._labels:
            metrics.CONSECUTIVE_FAILED_BATCHES.labels(self.service, state).set(0)
        self.failures, self.failing_since, self.sqlstate, self.error = 0, None, "", ""

    def stuck(self) -> dict[str, Any] | None:
        """Why the consumer is stuck, or None while it is not (or not for long)."""
        if self.failing_since is None:
            return None
        failing_for = self._monotonic() - self.failing_since
        if failing_for < self.stuck_after:
            return None
        return {
            "failed_batches": self.failures,
            "failing_for_seconds": round(failing_for, 1),
            "sqlstate": self.sqlstate,
            "error": self.error,
        }
