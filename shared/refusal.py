"""A refusal for a business reason: a short `reason` code and a `detail` without personal data.

The domains raise their own kinds of it; the consumer dead-letters one with that reason
(`shared.messaging.errors.Rejected`).
"""

from __future__ import annotations


class Refusal(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
