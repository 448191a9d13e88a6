"""Outbox rows the broker refuses are parked instead of failing every relay cycle.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from shared.migrations import add_outbox_parking, drop_outbox_parking

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_parking("refunds")


def downgrade() -> None:
    drop_outbox_parking("refunds")
